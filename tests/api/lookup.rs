use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Publish, TestApp};

/// The service entry of the first commune of a lookup answer.
fn service<'a>(answer: &'a Value, code: &str) -> &'a Value {
    answer["communes"][0]["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == code)
        .unwrap()
}

fn phones(entry: &Value) -> Vec<String> {
    entry["numbers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["phone"]["national"].as_str().unwrap().to_owned())
        .collect()
}

backend_tests!(
    the_demo_scenario_resolves_commune_then_departement,
    |app: TestApp| async move {
        app.load_demo().await;

        // Sens and Auxerre have their own commune-level police numbers.
        let (status, sens) = app.get_json("/v1/lookup?insee=89387").await;
        assert_eq!(status, 200);
        assert_eq!(service(&sens, "17")["status"], "outage");
        assert_eq!(phones(service(&sens, "17")), ["0386951417"]);
        let (_, auxerre) = app.get_json("/v1/lookup?insee=89024").await;
        assert_eq!(phones(service(&auxerre, "17")), ["0386520917"]);
        // ...and share the département-level 15 and 18 of the Yonne.
        assert_eq!(phones(service(&sens, "15")), ["0386945404"]);
        assert_eq!(phones(service(&auxerre, "18")), ["0386482778"]);

        // Another commune of the Yonne: the 17 is down and has no number there.
        let (_, joigny) = app.get_json("/v1/lookup?insee=89206").await;
        assert_eq!(joigny["communes"][0]["name"], "Joigny");
        assert_eq!(service(&joigny, "17")["status"], "outage");
        assert!(phones(service(&joigny, "17")).is_empty());

        // Le Puy-en-Velay: both département-level 17 numbers, each labelled.
        let (_, puy) = app.get_json("/v1/lookup?insee=43157").await;
        let seventeen = service(&puy, "17");
        let mut got = phones(seventeen);
        got.sort();
        assert_eq!(got, ["0471040422", "0471045200"]);
        let labels: Vec<&str> = seventeen["numbers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["label"].as_str().unwrap())
            .collect();
        assert!(
            labels.iter().any(|l| l.contains("Gendarmerie"))
                && labels.iter().any(|l| l.contains("Police")),
            "{labels:?}"
        );

        // Bordeaux: outage without numbers for the four failed services, normal for the rest.
        let (_, bordeaux) = app.get_json("/v1/lookup?postcode=33000").await;
        assert_eq!(bordeaux["communes"][0]["insee"], "33063");
        for code in ["15", "17", "18", "112"] {
            assert_eq!(service(&bordeaux, code)["status"], "outage", "{code}");
            assert!(phones(service(&bordeaux, code)).is_empty(), "{code}");
        }
        for code in ["114", "115", "119", "116000", "116117", "191", "196", "197"] {
            assert_eq!(service(&bordeaux, code)["status"], "normal", "{code}");
        }

        // Every answer says it is a historical demonstration.
        for answer in [&sens, &joigny, &bordeaux] {
            assert_eq!(answer["demo"], true);
            assert!(answer["notice"].as_str().unwrap().contains("DÉMONSTRATION"));
        }
        assert_eq!(service(&sens, "17")["numbers"][0]["demo"], true);
        let text = app
            .client
            .get(app.url("/v1/lookup?insee=89387"))
            .header("Accept", "text/plain")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.starts_with("DÉMONSTRATION HISTORIQUE"), "{text}");
    }
);

backend_tests!(
    without_outage_every_service_is_normal,
    |app: TestApp| async move {
        let (status, body) = app.get_json("/v1/lookup?postcode=33000").await;
        assert_eq!(status, 200);
        assert_eq!(body["demo"], false);
        assert!(body.get("notice").is_none());
        let services = body["communes"][0]["services"].as_array().unwrap();
        assert_eq!(
            services.len(),
            12,
            "every catalogue service for every commune"
        );
        assert!(services
            .iter()
            .all(|s| s["status"] == "normal" && s["numbers"].as_array().unwrap().is_empty()));
    }
);

backend_tests!(
    every_commune_of_a_postcode_is_answered,
    |app: TestApp| async move {
        let (_, body) = app.get_json("/v1/lookup?postcode=05110").await;
        let communes = body["communes"].as_array().unwrap();
        assert_eq!(communes.len(), 8);
        let deps: std::collections::BTreeSet<&str> = communes
            .iter()
            .map(|c| c["departement"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(deps.into_iter().collect::<Vec<_>>(), ["04", "05"]);
        let (_, body) = app.get_json("/v1/lookup?postcode=97133").await;
        assert_eq!(body["communes"][0]["insee"], "97701");
        assert_eq!(body["communes"][0]["departement"]["code"], "977");
        let (_, body) = app.get_json("/v1/lookup?postcode=20000").await;
        assert_eq!(body["communes"][0]["name"], "Ajaccio");
        assert_eq!(body["communes"][0]["departement"]["code"], "2A");
        for paris in ["75001", "75116"] {
            let (_, body) = app.get_json(&format!("/v1/lookup?postcode={paris}")).await;
            assert_eq!(body["communes"][0]["insee"], "75056");
            assert_eq!(body["communes"][0]["name"], "Paris");
        }
        let (_, body) = app.get_json("/v1/lookup?postcode=75116").await;
        assert_eq!(body["communes"][0]["arrondissement"]["insee"], "75116");
    }
);

backend_tests!(lookup_parameters_are_checked, |app: TestApp| async move {
    for (query, status) in [
        ("postcode=abc", 400),
        ("postcode=1234", 400),
        ("insee=20004", 400),
        ("insee=3306", 400),
        ("postcode=33000&insee=33063", 400),
        ("", 400),
        ("postcode=", 400),
        ("postcode=33913", 404),
        ("insee=99999", 404),
    ] {
        let response = app.get(&format!("/v1/lookup?{query}")).await;
        assert_eq!(response.status().as_u16(), status, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
    }
});

backend_tests!(the_most_specific_level_wins, |app: TestApp| async move {
    let org = app
        .organization("Ministère de l'Intérieur", "ministry")
        .await;
    app.publish(Publish::new("18", "national", "FR", "01 40 00 00 18", &org))
        .await
        .unwrap();
    app.publish(Publish::new(
        "18",
        "zone",
        "Sud-Ouest",
        "05 56 00 00 18",
        &org,
    ))
    .await
    .unwrap();
    app.publish(Publish::new(
        "18",
        "departement",
        "33",
        "05 56 11 11 18",
        &org,
    ))
    .await
    .unwrap();
    app.publish(Publish::new(
        "18",
        "commune",
        "33063",
        "05 56 22 22 18",
        &org,
    ))
    .await
    .unwrap();
    app.publish(Publish::new(
        "18",
        "commune",
        "75116",
        "01 45 00 16 18",
        &org,
    ))
    .await
    .unwrap();

    let eighteen = |body: Value| phones(service(&body, "18"));
    assert_eq!(
        eighteen(app.get_json("/v1/lookup?insee=33063").await.1),
        ["0556222218"],
        "commune"
    );
    assert_eq!(
        eighteen(app.get_json("/v1/lookup?insee=33281").await.1),
        ["0556111118"],
        "département (Mérignac)"
    );
    assert_eq!(
        eighteen(app.get_json("/v1/lookup?insee=64445").await.1),
        ["0556000018"],
        "zone (Pau)"
    );
    assert_eq!(
        eighteen(app.get_json("/v1/lookup?insee=59350").await.1),
        ["0140000018"],
        "national (Lille)"
    );
    assert_eq!(
        eighteen(app.get_json("/v1/lookup?postcode=75116").await.1),
        ["0145001618"],
        "arrondissement"
    );
    assert_eq!(
        eighteen(app.get_json("/v1/lookup?insee=75116").await.1),
        ["0145001618"],
        "arrondissement by code"
    );
    assert_eq!(
        eighteen(app.get_json("/v1/lookup?postcode=75001").await.1),
        ["0140000018"],
        "other arrondissement"
    );
    // Other services are untouched, and no outage was declared.
    let body = app.get_json("/v1/lookup?insee=33063").await.1;
    assert!(phones(service(&body, "15")).is_empty());
    assert_eq!(service(&body, "18")["status"], "normal");
});

backend_tests!(
    retired_and_expired_numbers_never_appear,
    |app: TestApp| async move {
        let org = app.organization("SDIS 33", "sdis").await;
        let now = chrono::Utc::now();
        let retired = app
            .publish(Publish::new(
                "18",
                "departement",
                "33",
                "05 56 01 01 01",
                &org,
            ))
            .await
            .unwrap();
        let mut short = Publish::new("18", "departement", "33", "05 56 02 02 02", &org);
        short.valid_until = Some(now + chrono::Duration::milliseconds(1500));
        app.publish(short).await.unwrap();
        let mut later = Publish::new("18", "departement", "33", "05 56 03 03 03", &org);
        later.valid_from = Some(now + chrono::Duration::hours(1));
        app.publish(later).await.unwrap();

        let lookup = || async {
            phones(service(
                &app.get_json("/v1/lookup?insee=33063").await.1,
                "18",
            ))
        };
        let mut got = lookup().await;
        got.sort();
        assert_eq!(got, ["0556010101", "0556020202"], "not yet valid is absent");

        let id = retired.id.clone();
        let org2 = org.clone();
        app.write(move |conn, atlas| {
            relai::store::retire_number(
                conn,
                atlas,
                &relai::store::Actor::organization(&org2),
                &id,
                "Numéro remplacé",
                relai::store::now(),
            )
        })
        .await
        .unwrap();
        assert_eq!(lookup().await, ["0556020202"]);

        tokio::time::sleep(std::time::Duration::from_millis(1700)).await;
        assert!(lookup().await.is_empty(), "expired");
        let (_, list) = app.get_json("/v1/numbers").await;
        assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
    }
);

backend_tests!(an_outage_and_its_resolution, |app: TestApp| async move {
    let org = app.organization("SDIS 33", "sdis").await;
    let outage = app.declare(&["18"], "departement", "33", &org).await;
    let body = app.get_json("/v1/lookup?postcode=33000").await.1;
    assert_eq!(service(&body, "18")["status"], "outage");
    assert_eq!(service(&body, "18")["outage_ids"][0], outage.id.as_str());
    assert_eq!(service(&body, "15")["status"], "normal");
    let other = app.get_json("/v1/lookup?postcode=75001").await.1;
    assert_eq!(service(&other, "18")["status"], "normal");

    let mut linked = Publish::new("18", "departement", "33", "05 56 90 18 18", &org);
    linked.outage_id = Some(outage.id.clone());
    let number = app.publish(linked).await.unwrap();
    assert_eq!(
        phones(service(
            &app.get_json("/v1/lookup?insee=33063").await.1,
            "18"
        )),
        ["0556901818"]
    );

    let before = app.change_count();
    let id = outage.id.clone();
    let org2 = org.clone();
    let (resolved, retired) = app
        .write(move |conn, atlas| {
            relai::store::resolve_outage(
                conn,
                atlas,
                &relai::store::Actor::organization(&org2),
                &id,
                relai::store::now(),
            )
        })
        .await
        .unwrap();
    assert_eq!(resolved.status, relai::model::OutageStatus::Resolved);
    assert_eq!(retired.len(), 1);
    assert_eq!(
        app.change_count(),
        before + 2,
        "number.retired then outage.resolved"
    );
    let body = app.get_json("/v1/lookup?insee=33063").await.1;
    assert_eq!(service(&body, "18")["status"], "normal");
    assert!(phones(service(&body, "18")).is_empty());
    let (_, n) = app.get_json(&format!("/v1/numbers/{}", number.id)).await;
    assert_eq!(n["status"], "retired");
    // Its history shows publication and retirement, with the organization and the reason.
    let (status, history) = app
        .get_json(&format!("/v1/numbers/{}/history", number.id))
        .await;
    assert_eq!(status, 200);
    let events = history["items"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["number.published", "number.retired"]);
    assert!(events
        .iter()
        .all(|e| e["organization"]["name"] == "SDIS 33"));
    assert!(events[1]["reason"]
        .as_str()
        .unwrap()
        .contains("Fin de la panne"));
    let (status, _) = app
        .get_json("/v1/numbers/0190c5a3-0000-7000-8000-000000000000/history")
        .await;
    assert_eq!(status, 404);
    let (_, active) = app.get_json("/v1/outages?status=active").await;
    assert!(active["items"].as_array().unwrap().is_empty());
    let (_, all) = app.get_json("/v1/outages?status=resolved").await;
    assert_eq!(all["items"][0]["id"], outage.id.as_str());
    assert_eq!(all["items"][0]["declared_by"]["name"], "SDIS 33");
    // Resolving twice is a conflict and writes nothing.
    let id = outage.id.clone();
    let org2 = org.clone();
    let again = app
        .write(move |conn, atlas| {
            relai::store::resolve_outage(
                conn,
                atlas,
                &relai::store::Actor::organization(&org2),
                &id,
                relai::store::now(),
            )
        })
        .await;
    assert!(matches!(again, Err(relai::error::ApiError::Conflict(_))));
    assert_eq!(app.change_count(), before + 2);
});

backend_tests!(text_answer_for_bots, |app: TestApp| async move {
    let org = app.organization("SDIS 33", "sdis").await;
    app.declare(&["18", "15"], "departement", "33", &org).await;
    app.publish(Publish::new(
        "18",
        "departement",
        "33",
        "05 56 90 18 18",
        &org,
    ))
    .await
    .unwrap();
    let response = app
        .client
        .get(app.url("/v1/lookup?postcode=33000"))
        .header("Accept", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = response.text().await.unwrap();
    assert!(text.contains("Bordeaux (Gironde - 33)"), "{text}");
    assert!(
        text.contains("18 Sapeurs-pompiers en panne : appelez le 05 56 90 18 18"),
        "{text}"
    );
    assert!(
        text.contains("15 SAMU en panne : pas encore de numéro de remplacement, appelez le 112"),
        "{text}"
    );
    assert!(!text.contains("DÉMONSTRATION"), "{text}");
});
