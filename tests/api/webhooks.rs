//! Webhooks: each change once, signed, retried while the receiver is down, never slowing writes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::backend_tests;
use crate::helpers::TestApp;

/// What a receiver saw: (event id, signature, body, the status it answered).
type Seen = Arc<Mutex<Vec<(String, String, Vec<u8>, u16)>>>;

/// A webhook receiver on loopback that answers 503 while `down` is set.
fn receiver() -> (String, Seen, Arc<AtomicBool>) {
    let seen: Seen = Arc::default();
    let down = Arc::new(AtomicBool::new(false));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://127.0.0.1:{}/hook",
        listener.local_addr().unwrap().port()
    );
    let (s, d) = (seen.clone(), down.clone());
    let server = HttpServer::new(move || {
        let (s, d) = (s.clone(), d.clone());
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let (s, d) = (s.clone(), d.clone());
                async move {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let status = if d.load(Ordering::SeqCst) { 503 } else { 200 };
                    s.lock().unwrap().push((
                        header("X-Relai-Event-Id"),
                        header("X-Relai-Signature"),
                        body.to_vec(),
                        status,
                    ));
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    (url, seen, down)
}

fn accepted(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|(_, _, _, status)| *status == 200)
        .map(|(id, ..)| id.clone())
        .collect()
}

async fn wait_for(seen: &Seen, count: usize, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let got = accepted(seen);
        if got.len() >= count || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

backend_tests!(
    each_change_reaches_the_receiver_once_signed_and_retried,
    |app: TestApp| async move {
        let admin = app.admin_token().await;
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (url, seen, down) = receiver();
        let secret = "un secret partagé assez long";
        let (status, hook) = app
            .post(
                "/v1/admin/webhooks",
                &admin,
                json!({"url": url, "secret": secret}),
            )
            .await;
        assert_eq!(status, 201, "{hook}");
        assert!(hook.get("secret").is_none(), "the secret is never shown");

        let publish = |phone: &'static str| {
            let (app, token) = (&app, token.clone());
            async move {
                let started = Instant::now();
                let (status, body) = app.post("/v1/numbers", &token, json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": phone, "label": "CTA"})).await;
                assert_eq!(status, 201);
                (body["id"].as_str().unwrap().to_owned(), started.elapsed())
            }
        };
        let (first, _) = publish("0556000001").await;
        publish("0556000002").await;
        let (status, _) = app
            .post(
                &format!("/v1/numbers/{first}/retire"),
                &token,
                json!({"reason": "remplacé"}),
            )
            .await;
        assert_eq!(status, 200);
        let got = wait_for(&seen, 3, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 3, "three changes delivered");
        for (id, signature, body, _) in seen.lock().unwrap().iter() {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(body);
            assert_eq!(
                *signature,
                format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
            );
            let event: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(event["seq"].to_string(), *id);
        }
        let kinds: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, b, _)| {
                serde_json::from_slice::<Value>(b).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            ["number.published", "number.published", "number.retired"]
        );

        // The receiver goes down: writes stay fast, deliveries are retried, then succeed.
        down.store(true, Ordering::SeqCst);
        let (_, took) = publish("0556000003").await;
        assert!(
            took < Duration::from_secs(1),
            "a write took {took:?} while the receiver was down"
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        let failed = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, _, s)| *s == 503)
            .count();
        assert!(failed >= 2, "retried while down ({failed} attempts)");
        let hook_id = hook["id"].as_str().unwrap();
        let log: Value = app
            .client
            .get(app.url(&format!("/v1/admin/webhooks/{hook_id}/deliveries")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(log["items"][0]["status"], 503, "{log}");
        down.store(false, Ordering::SeqCst);
        let got = wait_for(&seen, 4, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 4);
        let mut unique = got.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 4, "each change accepted once: {got:?}");
    }
);

backend_tests!(
    two_instances_deliver_each_change_once_across_the_cluster,
    |app: TestApp| async move {
        let admin = app.admin_token().await;
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (url, seen, _down) = receiver();
        let (status, _) = app
            .post(
                "/v1/admin/webhooks",
                &admin,
                json!({"url": url, "secret": "un secret partagé assez long"}),
            )
            .await;
        assert_eq!(status, 201);
        // The other instance starts after the registration: it runs a task for the
        // webhook from its first moment, beside this one's.
        let other = crate::cluster::second_instance(&app).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut ids = Vec::new();
        for i in 0..10 {
            let body = json!({"service": "18", "territory": {"kind": "departement", "code": "33"},
                "phone": format!("05569000{i:02}"), "label": "CTA"});
            let response = if i % 2 == 0 {
                app.send(
                    reqwest::Method::POST,
                    "/v1/numbers",
                    Some(&token),
                    Some(body),
                )
                .await
            } else {
                other
                    .client
                    .post(format!("{}/v1/numbers", other.address))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
            };
            assert_eq!(response.status(), 201);
            ids.push(
                response.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        let got = wait_for(&seen, 10, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 10, "{got:?}");
        // Time for a duplicate to arrive, if one were coming.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let got = accepted(&seen);
        let unique: std::collections::HashSet<&String> = got.iter().collect();
        assert_eq!(
            unique.len(),
            got.len(),
            "a change was delivered twice: {got:?}"
        );
        assert_eq!(got.len(), 10);
        // Every published number, in log order.
        let bodies: Vec<Value> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(_, _, body, _)| serde_json::from_slice(body).unwrap())
            .collect();
        let delivered: Vec<String> = bodies
            .iter()
            .map(|b| b["data"]["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(delivered, ids);
    }
);

backend_tests!(
    webhook_urls_outside_the_allowed_networks_are_refused,
    |app: TestApp| async move {
        let admin = app.admin_token().await;
        for url in [
            "http://10.0.0.1/hook",
            "http://169.254.169.254/latest/meta-data",
            "http://192.168.1.1/",
            "file:///etc/passwd",
            "ftp://127.0.0.1/",
            "http://user:pass@127.0.0.1/",
            "nonsense",
        ] {
            let (status, problem) = app
                .post(
                    "/v1/admin/webhooks",
                    &admin,
                    json!({"url": url, "secret": "0123456789abcdef"}),
                )
                .await;
            assert_eq!(status, 422, "{url}");
            assert_eq!(problem["errors"][0]["field"], "url", "{url}");
        }
        let (status, problem) = app
            .post(
                "/v1/admin/webhooks",
                &admin,
                json!({"url": "http://127.0.0.1:9/", "secret": "short"}),
            )
            .await;
        assert_eq!(
            (status, problem["errors"][0]["field"].as_str()),
            (422, Some("secret"))
        );
        let (_, list) = app.get_json("/v1/admin/webhooks").await;
        assert_eq!(list["status"], 401);
    }
);
