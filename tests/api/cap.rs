//! CAP 1.2: one immutable message per change of a number, valid against the OASIS schema.

use std::process::Command;

use serde_json::json;

use crate::backend_tests;
use crate::helpers::TestApp;

/// Validates a CAP message with xmllint against the OASIS CAP 1.2 schema kept in the repo.
/// `.ci/run` installs xmllint and sets RELAI_REQUIRE_XMLLINT=1, so CI never skips this.
fn validate_cap(xml: &str) {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemas/CAP-v1.2.xsd");
    let path = std::env::temp_dir().join(format!("relai-cap-{}.xml", uuid::Uuid::now_v7()));
    std::fs::write(&path, xml).unwrap();
    let output = Command::new("xmllint")
        .args(["--noout", "--schema", schema])
        .arg(&path)
        .output();
    let _ = std::fs::remove_file(&path);
    match output {
        Ok(out) => assert!(
            out.status.success(),
            "CAP message invalid:\n{}\n{xml}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(_) if std::env::var("RELAI_REQUIRE_XMLLINT").is_err() => {
            eprintln!("xmllint not found: CAP schema validation not run (install libxml2-utils)");
        }
        Err(e) => panic!("xmllint is required here: {e}"),
    }
}

fn tag<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    xml.match_indices(&open)
        .filter_map(|(i, _)| xml[i + open.len()..].split(&close).next())
        .collect()
}

backend_tests!(
    each_change_of_a_number_is_a_valid_cap_message,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (_, number) = app.post("/v1/numbers", &token, json!({"service": "18", "territory": {"kind": "commune", "code": "33063"}, "phone": "05 56 12 34 56", "label": "CTA-CODIS 33 & Bordeaux", "valid_until": "2099-01-01T00:00:00Z"})).await;
        let id = number["id"].as_str().unwrap().to_owned();
        let response = app
            .client
            .patch(app.url(&format!("/v1/numbers/{id}")))
            .bearer_auth(&token)
            .header("If-Match", "\"1\"")
            .json(&json!({"label": "CTA-CODIS 33"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let (status, _) = app
            .post(
                &format!("/v1/numbers/{id}/retire"),
                &token,
                json!({"reason": "Le 18 fonctionne de nouveau"}),
            )
            .await;
        assert_eq!(status, 200);

        let feed_text = app.get("/v1/cap/feed.atom").await.text().await.unwrap();
        let feed = feed_rs::parser::parse(feed_text.as_bytes()).expect("a valid Atom feed");
        assert_eq!(feed.entries.len(), 3);
        let mut messages = Vec::new();
        for entry in feed.entries.iter().rev() {
            let link = entry
                .links
                .iter()
                .find(|l| l.media_type.as_deref() == Some("application/cap+xml"))
                .unwrap();
            let path = link
                .href
                .split_once("/v1/")
                .map(|(_, p)| format!("/v1/{p}"))
                .unwrap();
            let response = app.get(&path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(response.headers()["content-type"], "application/cap+xml");
            assert!(response.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable"));
            let xml = response.text().await.unwrap();
            validate_cap(&xml);
            messages.push(xml);
        }
        let [alert, update, cancel] = [&messages[0], &messages[1], &messages[2]];
        assert_eq!(tag(alert, "msgType"), ["Alert"]);
        assert_eq!(tag(update, "msgType"), ["Update"]);
        assert_eq!(tag(cancel, "msgType"), ["Cancel"]);
        assert_eq!(tag(alert, "status"), ["Actual"]);
        assert_eq!(tag(alert, "category"), ["Infra"]);
        assert_eq!(
            tag(alert, "event"),
            ["Numéro de substitution – Sapeurs-pompiers (18)"]
        );
        assert_eq!(tag(alert, "areaDesc"), ["Bordeaux"]);
        assert_eq!(tag(alert, "value")[..2], ["+33556123456", "18"]);
        assert!(tag(alert, "value").contains(&"33063"));
        assert_eq!(tag(alert, "contact"), ["05 56 12 34 56"]);
        assert!(tag(alert, "instruction")[0].contains("appelez le 05 56 12 34 56"));
        assert!(tag(alert, "sent")[0].ends_with("+00:00") && !tag(alert, "sent")[0].contains('Z'));
        assert_eq!(tag(alert, "expires"), ["2099-01-01T00:00:00+00:00"]);
        assert!(alert.contains("CTA-CODIS 33 &amp; Bordeaux"));
        assert!(tag(alert, "references").is_empty());
        // The Cancel references the original Alert (and the Update).
        let alert_id = tag(alert, "identifier")[0];
        let update_id = tag(update, "identifier")[0];
        let refs = tag(cancel, "references")[0];
        assert!(
            refs.contains(&format!(
                "relai@relai.example,{alert_id},{}",
                tag(alert, "sent")[0]
            )),
            "{refs}"
        );
        assert!(refs.contains(update_id), "{refs}");
        assert!(tag(update, "references")[0].contains(alert_id));
        assert_eq!(
            app.get("/v1/cap/alerts/relai-change-999999.xml")
                .await
                .status(),
            404
        );
        assert_eq!(app.get("/v1/cap/alerts/whatever.xml").await.status(), 404);
    }
);

backend_tests!(
    the_end_of_an_outage_cancels_its_numbers_and_demo_is_an_exercise,
    |app: TestApp| async move {
        app.load_demo().await;
        let feed = feed_rs::parser::parse(
            app.get("/v1/cap/feed.atom")
                .await
                .text()
                .await
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(feed.entries.len(), 8, "one Alert per demo number");
        let link = &feed.entries[0].links[0].href;
        let xml = app
            .get(&format!("/v1/{}", link.split_once("/v1/").unwrap().1))
            .await
            .text()
            .await
            .unwrap();
        validate_cap(&xml);
        assert_eq!(tag(&xml, "status"), ["Exercise"]);
        // Ending the demo outage retires its numbers: eight Cancels.
        app.write(|conn, atlas| {
            relai::seed::clear_demo(conn, atlas, relai::store::now())
                .map_err(|e| relai::store::StoreError::Conflict(e.to_string()))
        })
        .await
        .unwrap();
        let feed = feed_rs::parser::parse(
            app.get("/v1/cap/feed.atom")
                .await
                .text()
                .await
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(feed.entries.len(), 16);
        let cancel = &feed.entries[0].links[0].href;
        let xml = app
            .get(&format!("/v1/{}", cancel.split_once("/v1/").unwrap().1))
            .await
            .text()
            .await
            .unwrap();
        validate_cap(&xml);
        assert_eq!(tag(&xml, "msgType"), ["Cancel"]);
        assert_eq!(tag(&xml, "references").len(), 1);
    }
);
