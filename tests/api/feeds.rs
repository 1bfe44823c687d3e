//! Feeds: Server-Sent Events.

use std::time::Duration;

use serde_json::json;

use crate::backend_tests;
use crate::helpers::TestApp;

/// Reads SSE events (id, event) from a response until `count` arrived or `wait` passed.
async fn read_events(
    response: &mut reqwest::Response,
    count: usize,
    wait: Duration,
) -> Vec<(i64, String)> {
    let mut buffer = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while events.len() < count {
        let Ok(chunk) = tokio::time::timeout_at(deadline, response.chunk()).await else {
            break;
        };
        let Some(bytes) = chunk.unwrap() else { break };
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let id = block
                .lines()
                .find_map(|l| l.strip_prefix("id: "))
                .and_then(|v| v.parse().ok());
            let kind = block.lines().find_map(|l| l.strip_prefix("event: "));
            if let (Some(id), Some(kind)) = (id, kind) {
                events.push((id, kind.to_owned()));
            }
        }
    }
    events
}

backend_tests!(
    events_arrive_within_a_second_and_resume_exactly,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let publish = |phone: &'static str| {
            let app = &app;
            let token = token.clone();
            async move {
                let (status, body) = app.post("/v1/numbers", &token, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": phone, "label": "CTA"})).await;
                assert_eq!(status, 201);
                body["id"].as_str().unwrap().to_owned()
            }
        };
        let mut subscriber = app.client.get(app.url("/v1/events")).send().await.unwrap();
        assert_eq!(subscriber.status(), 200);
        assert_eq!(subscriber.headers()["content-type"], "text/event-stream");
        let started = std::time::Instant::now();
        publish("0556000001").await;
        let got = read_events(&mut subscriber, 1, Duration::from_secs(1)).await;
        assert_eq!(got.len(), 1, "received within one second");
        assert!(started.elapsed() < Duration::from_secs(1));
        let (first_seq, kind) = got[0].clone();
        assert_eq!(kind, "number.published");
        drop(subscriber);

        // While disconnected: two more changes, and a submission the public does not see.
        let second = publish("0556000002").await;
        let (_, _, moderator) = app
            .account_with("VISOV", "volunteers", &[], "moderator")
            .await;
        let (status, _) = app.post("/v1/numbers", &moderator, json!({"service": "15", "territory": {"kind": "departement", "code": "33"}, "phone": "0556000015", "label": "x", "source_url": "https://social.example/1"})).await;
        assert_eq!(status, 202);
        let (status, _) = app
            .post(
                &format!("/v1/numbers/{second}/retire"),
                &token,
                json!({"reason": "remplacé"}),
            )
            .await;
        assert_eq!(status, 200);

        let mut resumed = app
            .client
            .get(app.url("/v1/events"))
            .header("Last-Event-ID", first_seq.to_string())
            .send()
            .await
            .unwrap();
        let missed = read_events(&mut resumed, 3, Duration::from_millis(1500)).await;
        let kinds: Vec<&str> = missed.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(
            kinds,
            ["number.published", "number.retired"],
            "exactly what was missed, and nothing private"
        );
        assert!(missed.iter().all(|(seq, _)| *seq > first_seq));
        // And it goes on live.
        publish("0556000003").await;
        let live = read_events(&mut resumed, 1, Duration::from_secs(1)).await;
        assert_eq!(live.len(), 1);
        assert!(live[0].0 > missed[1].0);

        let bad = app
            .client
            .get(app.url("/v1/events"))
            .header("Last-Event-ID", "yesterday")
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), 400);
    }
);

fn parse_geojson(text: &str) -> geojson::FeatureCollection {
    match text.parse::<geojson::GeoJson>().expect("valid GeoJSON") {
        geojson::GeoJson::FeatureCollection(fc) => fc,
        other => panic!("expected a FeatureCollection, got {other:?}"),
    }
}

backend_tests!(
    geojson_feeds_are_valid_and_placed,
    |app: TestApp| async move {
        app.load_demo().await;
        let (_, _, token) = app
            .account_with("Ministère", "ministry", &["*:national:FR"], "authority")
            .await;
        let (status, _) = app.post("/v1/numbers", &token, json!({"service": "196", "territory": {"kind": "zone", "code": "Ouest"}, "phone": "02 98 89 31 31", "label": "CROSS Corsen"})).await;
        assert_eq!(status, 201);
        let response = app.get("/v1/numbers.geojson").await;
        assert_eq!(response.headers()["content-type"], "application/geo+json");
        assert!(response.headers().contains_key("etag"));
        let fc = parse_geojson(&response.text().await.unwrap());
        assert_eq!(fc.features.len(), 9);
        for feature in &fc.features {
            let props = feature.properties.as_ref().unwrap();
            let code = props["territory"]["code"].as_str().unwrap();
            match props["territory"]["kind"].as_str().unwrap() {
                "zone" => assert!(feature.geometry.is_none()),
                kind => {
                    let geometry = serde_json::to_value(&feature.geometry).unwrap();
                    assert_eq!(geometry["type"], "Point", "{kind} {code}");
                    let p: Vec<f64> =
                        serde_json::from_value(geometry["coordinates"].clone()).unwrap();
                    // Longitude first; metropolitan France lies within these bounds.
                    assert!(
                        (-5.5..10.0).contains(&p[0]) && (41.0..51.5).contains(&p[1]),
                        "{code}: {p:?}"
                    );
                }
            }
        }
        let sens = fc
            .features
            .iter()
            .find(|f| f.properties.as_ref().unwrap()["territory"]["code"] == "89387")
            .unwrap();
        let p: Vec<f64> = serde_json::from_value(
            serde_json::to_value(&sens.geometry).unwrap()["coordinates"].clone(),
        )
        .unwrap();
        assert_eq!((p[0], p[1]), (3.2978, 48.1958));
        let filtered = parse_geojson(
            &app.get("/v1/numbers.geojson?departement=89")
                .await
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(filtered.features.len(), 4);

        let map = parse_geojson(
            &app.get("/v1/departements.geojson")
                .await
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(map.features.len(), 101);
        let yonne = map
            .features
            .iter()
            .find(|f| f.properties.as_ref().unwrap()["code"] == "89")
            .unwrap();
        let services = &yonne.properties.as_ref().unwrap()["services"];
        assert_eq!(services["18"]["status"], "outage");
        assert_eq!(
            services["18"]["numbers"][0]["phone"]["national"],
            "0386482778"
        );
        assert_eq!(services["114"]["status"], "normal");
        assert!(
            services["17"]["numbers"].as_array().unwrap().is_empty(),
            "the 17 is per commune in the Yonne"
        );
        let one = parse_geojson(
            &app.get("/v1/departements.geojson?service=18")
                .await
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(
            one.features[0].properties.as_ref().unwrap()["services"]
                .as_object()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            app.get("/v1/departements.geojson?service=x").await.status(),
            400
        );
    }
);

backend_tests!(the_atom_feed_parses_and_pages, |app: TestApp| async move {
    app.load_demo().await;
    let (_, _, token) = app
        .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
        .await;
    for i in 0..55 {
        let (status, _) = app.post("/v1/numbers", &token, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": format!("05 56 00 20 {i:02}"), "label": "CTA <Gironde> & co"})).await;
        assert_eq!(status, 201);
    }
    let response = app.get("/v1/feed.atom").await;
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/atom+xml"));
    let text = response.text().await.unwrap();
    let feed = feed_rs::parser::parse(text.as_bytes()).expect("a valid Atom feed");
    assert_eq!(feed.entries.len(), 50);
    let newest = &feed.entries[0];
    let title = &newest.title.as_ref().unwrap().content;
    assert!(
        title.starts_with("Numéro publié – 18 Sapeurs-pompiers, Gironde : 05 56 00 20 54"),
        "{title}"
    );
    // Stable ids: the same change has the same id in a later fetch.
    let again = feed_rs::parser::parse(
        app.get("/v1/feed.atom")
            .await
            .text()
            .await
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(again.entries[0].id, newest.id);
    // Paging back reaches the demo: 55 + 9 (1 outage + 8 numbers) entries in all.
    let next = feed
        .links
        .iter()
        .find(|l| l.rel.as_deref() == Some("next"))
        .expect("a next link")
        .href
        .clone();
    let path = next
        .split_once("/v1/")
        .map(|(_, p)| format!("/v1/{p}"))
        .unwrap();
    let older =
        feed_rs::parser::parse(app.get(&path).await.text().await.unwrap().as_bytes()).unwrap();
    assert_eq!(older.entries.len(), 14);
    assert!(older.links.iter().all(|l| l.rel.as_deref() != Some("next")));
    let oldest = &older
        .entries
        .last()
        .unwrap()
        .title
        .as_ref()
        .unwrap()
        .content;
    assert!(
        oldest.starts_with("[DÉMONSTRATION] Panne déclarée – 15 SAMU, 17 Police - Gendarmerie"),
        "{oldest}"
    );
    assert_eq!(app.get("/v1/feed.atom?before=0").await.status(), 400);
});
