use crate::backend_tests;
use crate::helpers::TestApp;

backend_tests!(
    services_list_the_whole_catalogue,
    |app: TestApp| async move {
        let (status, body) = app.get_json("/v1/services").await;
        assert_eq!(status, 200);
        let codes: Vec<&str> = body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["code"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            [
                "15", "17", "18", "112", "114", "115", "119", "116000", "116117", "191", "196",
                "197"
            ]
        );
        assert_eq!(body["items"][2]["name"], "Sapeurs-pompiers");
    }
);

backend_tests!(
    departements_have_region_and_zone,
    |app: TestApp| async move {
        let (status, body) = app.get_json("/v1/departements").await;
        assert_eq!(status, 200);
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 109);
        let find = |code: &str| items.iter().find(|d| d["code"] == code).unwrap().clone();
        assert_eq!(find("33")["zone"], "Sud-Ouest");
        assert_eq!(find("2A")["name"], "Corse-du-Sud");
        assert_eq!(find("977")["zone"], "Antilles");
        assert!(find("975")["zone"].is_null());
    }
);

backend_tests!(
    a_postcode_can_span_departements,
    |app: TestApp| async move {
        let (status, body) = app.get_json("/v1/postcodes/05110").await;
        assert_eq!(status, 200);
        let deps: std::collections::BTreeSet<&str> = body["communes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["departement"]["code"].as_str().unwrap())
            .collect();
        assert_eq!(deps.into_iter().collect::<Vec<_>>(), ["04", "05"]);
    }
);

backend_tests!(postcodes_of_the_edge_cases, |app: TestApp| async move {
    let (_, body) = app.get_json("/v1/postcodes/97133").await;
    assert_eq!(body["communes"][0]["insee"], "97701");
    assert_eq!(body["communes"][0]["name"], "Saint-Barthélemy");
    assert_eq!(body["communes"][0]["departement"]["code"], "977");
    let (_, body) = app.get_json("/v1/postcodes/94390").await;
    assert_eq!(
        body["communes"][0]["departement"]["code"], "91",
        "Paray-Vieille-Poste is in the 91"
    );
    let (_, body) = app.get_json("/v1/postcodes/20000").await;
    assert_eq!(body["communes"][0]["name"], "Ajaccio");
    assert_eq!(body["communes"][0]["departement"]["code"], "2A");
    for paris in ["75001", "75116"] {
        let (_, body) = app.get_json(&format!("/v1/postcodes/{paris}")).await;
        assert_eq!(body["communes"].as_array().unwrap().len(), 1, "{paris}");
        assert_eq!(body["communes"][0]["insee"], "75056", "{paris}");
    }
});

backend_tests!(
    bad_and_unknown_postcodes_are_problems,
    |app: TestApp| async move {
        for (path, status) in [
            ("/v1/postcodes/abc", 400),
            ("/v1/postcodes/1234", 400),
            ("/v1/postcodes/330000", 400),
            ("/v1/postcodes/33913", 404), // a CEDEX code of Bordeaux: not in the base
            ("/v1/postcodes/00000", 404),
        ] {
            let response = app.get(path).await;
            assert_eq!(response.status().as_u16(), status, "{path}");
            assert_eq!(
                response.headers()["content-type"],
                "application/problem+json",
                "{path}"
            );
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["status"], status, "{path}");
            assert!(
                body["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{path}"
            );
        }
    }
);
