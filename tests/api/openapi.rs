//! The committed OpenAPI document is the one the code produces, and it is served.

use crate::backend_tests;
use crate::helpers::TestApp;

#[test]
fn committed_openapi_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .unwrap_or_default();
    let generated = relai::openapi::spec_json();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date: regenerate it with `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn every_route_and_schema_is_documented() {
    let spec: serde_json::Value = serde_json::from_str(&relai::openapi::spec_json()).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/services",
        "/v1/departements",
        "/v1/postcodes/{postcode}",
        "/v1/lookup",
        "/v1/numbers",
        "/v1/numbers/{id}",
        "/v1/numbers/{id}/history",
        "/v1/outages",
        "/healthz",
        "/readyz",
    ] {
        let item = &spec["paths"][path]["get"];
        assert!(item.is_object(), "{path} is missing");
        assert!(
            item["summary"].as_str().is_some_and(|s| !s.is_empty()),
            "{path} has no summary"
        );
    }
    // Every property of every schema has a description or a reference to a described schema.
    let mut undocumented = Vec::new();
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        if let Some(props) = schema["properties"].as_object() {
            for (field, prop) in props {
                let described = prop.get("description").is_some()
                    || prop.get("$ref").is_some()
                    || prop["oneOf"]
                        .as_array()
                        .is_some_and(|v| v.iter().any(|s| s.get("$ref").is_some()))
                    || prop["items"].get("$ref").is_some();
                if !described {
                    undocumented.push(format!("{name}.{field}"));
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "fields without description: {undocumented:?}"
    );
}

backend_tests!(
    the_spec_and_the_docs_page_are_served,
    |app: TestApp| async move {
        let (status, served) = app.get_json("/openapi.json").await;
        assert_eq!(status, 200);
        assert_eq!(
            served,
            serde_json::to_value(relai::openapi::spec()).unwrap()
        );
        let docs = app.get("/docs/").await;
        assert_eq!(docs.status(), 200);
        let html = docs.text().await.unwrap();
        assert!(html.contains("swagger-ui"), "{html}");
        assert!(
            !html.contains("https://"),
            "the docs page loads nothing from the internet"
        );
        let redirect = app.get("/docs").await;
        assert_eq!(redirect.status(), 308);
    }
);
