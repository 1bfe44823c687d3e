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
