//! The conventions of every public read: ETag and 304, Cache-Control, CORS, problem+json.

use crate::backend_tests;
use crate::helpers::{Publish, TestApp};

backend_tests!(
    public_reads_carry_etag_and_answer_304,
    |app: TestApp| async move {
        for path in [
            "/v1/services",
            "/v1/departements",
            "/v1/postcodes/33000",
            "/v1/lookup?postcode=33000",
            "/v1/numbers",
            "/v1/outages",
        ] {
            let first = app.get(path).await;
            assert_eq!(first.status(), 200, "{path}");
            assert_eq!(
                first.headers()["cache-control"],
                "public, max-age=10",
                "{path}"
            );
            let etag = first.headers()["etag"].to_str().unwrap().to_owned();
            let again = app
                .client
                .get(app.url(path))
                .header("If-None-Match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), 304, "{path}");
            assert_eq!(again.headers()["etag"].to_str().unwrap(), etag, "{path}");
            assert!(again.bytes().await.unwrap().is_empty());
            let other = app
                .client
                .get(app.url(path))
                .header("If-None-Match", "\"stale\"")
                .send()
                .await
                .unwrap();
            assert_eq!(other.status(), 200, "{path}");
        }
    }
);

backend_tests!(a_write_changes_the_etag, |app: TestApp| async move {
    let before = app.get("/v1/lookup?postcode=33000").await.headers()["etag"].clone();
    let org = app.organization("SDIS 33", "sdis").await;
    app.publish(Publish::new(
        "18",
        "departement",
        "33",
        "05 56 12 34 56",
        &org,
    ))
    .await
    .unwrap();
    let after = app
        .client
        .get(app.url("/v1/lookup?postcode=33000"))
        .header("If-None-Match", before.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 200, "the new number is visible at once");
    assert_ne!(after.headers()["etag"], before);
});

backend_tests!(cors_is_open_to_any_origin, |app: TestApp| async move {
    let response = app
        .client
        .get(app.url("/v1/lookup?postcode=33000"))
        .header("Origin", "https://carte.example.org")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://carte.example.org"
    );
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            app.url("/v1/lookup?postcode=33000"),
        )
        .header("Origin", "https://carte.example.org")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
});

backend_tests!(unknown_routes_are_problems, |app: TestApp| async move {
    let response = app.get("/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = app
        .client
        .delete(app.url("/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
});

backend_tests!(probes_answer, |app: TestApp| async move {
    let (status, body) = app.get_json("/healthz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, _) = app.get_json("/readyz").await;
    assert_eq!(status, 200);
});

backend_tests!(the_map_page_is_served_whole, |app: TestApp| async move {
    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("connect-src 'self'"));
    let html = response.text().await.unwrap();
    assert!(html.contains("<html lang=\"fr\">"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external asset"
    );
    let (status, found) = app.get_json("/v1/communes?q=saint%20etien").await;
    assert_eq!(status, 200);
    assert_eq!(found["items"][0]["name"], "Saint-Étienne");
    assert!(found["items"][0]["postcodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "42000"));
    assert_eq!(app.get("/v1/communes?q=a").await.status(), 400);
});
