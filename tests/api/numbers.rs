use crate::backend_tests;
use crate::helpers::{Publish, TestApp};

backend_tests!(
    numbers_are_listed_filtered_and_paged,
    |app: TestApp| async move {
        let org = app
            .organization("Préfecture de la Gironde", "prefecture")
            .await;
        let mut ids = Vec::new();
        for i in 0..5 {
            let n = app
                .publish(Publish::new(
                    "18",
                    "commune",
                    "33063",
                    &format!("05 56 00 10 0{i}"),
                    &org,
                ))
                .await
                .unwrap();
            ids.push(n.id);
        }
        app.publish(Publish::new(
            "15",
            "departement",
            "33",
            "05 56 00 15 15",
            &org,
        ))
        .await
        .unwrap();
        app.publish(Publish::new(
            "15",
            "departement",
            "89",
            "03 86 00 15 15",
            &org,
        ))
        .await
        .unwrap();

        let (status, all) = app.get_json("/v1/numbers").await;
        assert_eq!(status, 200);
        assert_eq!(all["items"].as_array().unwrap().len(), 7);
        assert!(all["next_cursor"].is_null());
        let first = &all["items"][0];
        assert_eq!(first["provenance"]["kind"], "official");
        assert_eq!(
            first["provenance"]["organization"]["name"],
            "Préfecture de la Gironde"
        );
        assert_eq!(first["territory"]["name"], "Bordeaux");
        assert_eq!(first["phone"]["e164"], "+33556001000");
        assert_eq!(first["phone"]["display"], "05 56 00 10 00");
        assert_eq!(first["phone"]["tel_uri"], "tel:+33556001000");
        assert_eq!(first["status"], "published");
        assert_eq!(first["version"], 1);

        let count = |body: &serde_json::Value| body["items"].as_array().unwrap().len();
        assert_eq!(count(&app.get_json("/v1/numbers?service=15").await.1), 2);
        assert_eq!(
            count(&app.get_json("/v1/numbers?departement=33").await.1),
            6,
            "the département and its communes"
        );
        assert_eq!(
            count(
                &app.get_json("/v1/numbers?territory_kind=departement")
                    .await
                    .1
            ),
            2
        );
        assert_eq!(
            count(
                &app.get_json("/v1/numbers?territory_kind=departement&territory_code=89")
                    .await
                    .1
            ),
            1
        );
        assert_eq!(
            count(
                &app.get_json("/v1/numbers?service=18&departement=89")
                    .await
                    .1
            ),
            0
        );

        // Pages of two, in publication order, with no gap and no repeat.
        let mut seen = Vec::new();
        let mut path = "/v1/numbers?service=18&limit=2".to_owned();
        loop {
            let (status, page) = app.get_json(&path).await;
            assert_eq!(status, 200);
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n["id"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/v1/numbers?service=18&limit=2&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen, ids);
    }
);

backend_tests!(bad_list_parameters_are_400, |app: TestApp| async move {
    for query in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "cursor=nonsense",
        "service=SAMU",
        "departement=20",
        "territory_kind=region",
    ] {
        let response = app.get(&format!("/v1/numbers?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            !body["errors"].as_array().unwrap().is_empty(),
            "{query}: {body}"
        );
    }
    assert_eq!(app.get("/v1/numbers?limit=1000").await.status(), 200);
    assert_eq!(app.get("/v1/outages?status=ongoing").await.status(), 400);
});

backend_tests!(a_number_by_id, |app: TestApp| async move {
    let org = app.organization("SDIS 43", "sdis").await;
    let n = app
        .publish(Publish::new(
            "18",
            "departement",
            "43",
            "04 71 04 51 12",
            &org,
        ))
        .await
        .unwrap();
    let (status, body) = app.get_json(&format!("/v1/numbers/{}", n.id)).await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], n.id.as_str());
    assert_eq!(
        body["territory"],
        serde_json::json!({"kind": "departement", "code": "43", "name": "Haute-Loire"})
    );
    assert_eq!(body["demo"], false);
    let (status, body) = app
        .get_json("/v1/numbers/0190c5a3-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["status"], 404);
});

backend_tests!(
    writes_are_checked_and_append_to_the_changes_log,
    |app: TestApp| async move {
        let org = app.organization("SDIS 33", "sdis").await;
        let before = app.change_count();
        app.publish(Publish::new(
            "18",
            "departement",
            "33",
            "05 56 12 34 56",
            &org,
        ))
        .await
        .unwrap();
        assert_eq!(app.change_count(), before + 1);

        // The same number again for the same service and territory: conflict, nothing written.
        let again = app
            .publish(Publish::new("18", "departement", "33", "0556123456", &org))
            .await;
        assert!(
            matches!(again, Err(relai::error::ApiError::Conflict(_))),
            "{again:?}"
        );
        // The same number for another service or territory is fine.
        app.publish(Publish::new(
            "15",
            "departement",
            "33",
            "05 56 12 34 56",
            &org,
        ))
        .await
        .unwrap();
        // Territories and services must exist; labels must say something.
        let unknown_commune = app
            .publish(Publish::new(
                "18",
                "commune",
                "33999",
                "05 56 12 34 57",
                &org,
            ))
            .await;
        assert!(matches!(
            unknown_commune,
            Err(relai::error::ApiError::Unprocessable { .. })
        ));
        let unknown_zone = app
            .publish(Publish::new(
                "18",
                "zone",
                "Atlantide",
                "05 56 12 34 57",
                &org,
            ))
            .await;
        assert!(matches!(
            unknown_zone,
            Err(relai::error::ApiError::Unprocessable { .. })
        ));
        let unknown_service = app
            .publish(Publish::new(
                "99",
                "departement",
                "33",
                "05 56 12 34 57",
                &org,
            ))
            .await;
        assert!(matches!(
            unknown_service,
            Err(relai::error::ApiError::Unprocessable { .. })
        ));
        let mut blank = Publish::new("18", "departement", "33", "05 56 12 34 57", &org);
        blank.label = "  ".to_owned();
        assert!(matches!(
            app.publish(blank).await,
            Err(relai::error::ApiError::Unprocessable { .. })
        ));
        let mut past = Publish::new("18", "departement", "33", "05 56 12 34 57", &org);
        past.valid_until = Some(chrono::Utc::now() - chrono::Duration::hours(1));
        assert!(matches!(
            app.publish(past).await,
            Err(relai::error::ApiError::Unprocessable { .. })
        ));
        let ghost = app
            .publish(Publish::new(
                "18",
                "departement",
                "33",
                "05 56 12 34 57",
                "no-such-org",
            ))
            .await;
        assert!(matches!(ghost, Err(relai::error::ApiError::NotFound(_))));
        // An outage link must name an active outage covering the service and territory.
        let outage = app.declare(&["15"], "departement", "89", &org).await;
        let mut wrong_link = Publish::new("18", "departement", "33", "05 56 12 34 57", &org);
        wrong_link.outage_id = Some(outage.id.clone());
        assert!(matches!(
            app.publish(wrong_link).await,
            Err(relai::error::ApiError::Unprocessable { .. })
        ));
        assert_eq!(
            app.change_count(),
            before + 3,
            "only the two publications and the outage were logged"
        );
        let (_, list) = app.get_json("/v1/numbers").await;
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
    }
);
