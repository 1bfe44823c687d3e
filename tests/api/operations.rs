//! Operations: the public rate limit and trusted proxies, request ids and the access log,
//! `/metrics`, backups, graceful shutdown.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl, SqliteConnection};
use relai::config::Config;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend_tests;
use crate::helpers::{Backend, Publish, TestApp};

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn number(phone: &str) -> Value {
    json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": phone, "label": "CTA-CODIS Gironde"})
}

fn tip(phone: &str) -> Value {
    json!({"service": "18", "territory": {"kind": "departement", "code": "43"}, "phone": phone, "source_url": "https://social.example/x"})
}

/// A client whose requests come from another loopback address.
fn client_from(addr: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn metrics(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(&response, "content-type").unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    response.text().await.unwrap()
}

/// The value of the sample `name` (with its labels, exactly as exposed).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

backend_tests!(
    public_reads_are_limited_per_address_with_ratelimit_headers,
    config = |c: &mut Config| c.public_rate_limit = 5,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        for i in 0..5u32 {
            // Every public read counts against the same allowance.
            let path = if i % 2 == 0 {
                "/v1/lookup?postcode=33000"
            } else {
                "/v1/services"
            };
            let response = app.get(path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(header(&response, "ratelimit-limit").unwrap(), "5");
            assert_eq!(
                header(&response, "ratelimit-remaining").unwrap(),
                (4 - i).to_string()
            );
            assert_eq!(header(&response, "ratelimit-policy").unwrap(), "5;w=60");
            let reset: u64 = header(&response, "ratelimit-reset")
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&reset), "{reset}");
        }
        let refused = app
            .client
            .get(app.url("/v1/lookup?postcode=33000"))
            .header("Origin", "https://carte.example")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 429);
        assert_eq!(
            header(&refused, "content-type").unwrap(),
            "application/problem+json"
        );
        let retry_after = header(&refused, "retry-after").unwrap();
        assert_eq!(header(&refused, "ratelimit-reset").unwrap(), retry_after);
        assert!(retry_after.parse::<u64>().unwrap() >= 1);
        assert_eq!(header(&refused, "ratelimit-remaining").unwrap(), "0");
        // A browser page on another origin can read the refusal and its headers.
        assert_eq!(
            header(&refused, "access-control-allow-origin").unwrap(),
            "https://carte.example"
        );
        let exposed = header(&refused, "access-control-expose-headers")
            .unwrap()
            .to_lowercase();
        assert!(exposed.contains("retry-after") && exposed.contains("ratelimit-remaining"));
        assert!(header(&refused, "x-request-id").is_some());
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["status"], 429);
        assert!(problem["type"].as_str().unwrap().ends_with("rate-limited"));
        let head = app
            .client
            .head(app.url("/v1/numbers"))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 429, "HEAD is a read too");

        // Probes and metrics are never limited, and say nothing of it.
        for path in ["/healthz", "/readyz", "/metrics"] {
            let response = app.get(path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert!(header(&response, "ratelimit-limit").is_none(), "{path}");
        }
        // Writes and authenticated reads are not public reads.
        let published = app
            .send(
                reqwest::Method::POST,
                "/v1/numbers",
                Some(&token),
                Some(number("0556123456")),
            )
            .await;
        assert_eq!(published.status(), 201);
        assert!(header(&published, "ratelimit-limit").is_none());
        let queue = app
            .send(
                reqwest::Method::GET,
                "/v1/moderation/queue",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(queue.status(), 200);

        // Another address has its own allowance.
        let other = client_from("127.0.0.2")
            .get(app.url("/v1/lookup?postcode=33000"))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 200);
        assert_eq!(header(&other, "ratelimit-remaining").unwrap(), "4");

        let text = metrics(&app).await;
        assert_eq!(sample(&text, "relai_public_rate_limited_total"), Some(2.0));
        assert_eq!(
            sample(
                &text,
                "relai_http_requests_total{route=\"/v1/lookup\",method=\"GET\",status=\"429\"}"
            ),
            Some(1.0)
        );
        assert_eq!(sample(&text, "relai_public_rate_limit_clients"), Some(2.0));
    }
);

backend_tests!(
    with_the_limit_off_no_request_is_counted,
    config = |c: &mut Config| c.public_rate_limit = 0,
    |app: TestApp| async move {
        for _ in 0..20 {
            let response = app.get("/v1/services").await;
            assert_eq!(response.status(), 200);
            assert!(header(&response, "ratelimit-limit").is_none());
        }
        let text = metrics(&app).await;
        assert!(!text.contains("relai_public_rate_limited_total"));
    }
);

backend_tests!(
    behind_a_trusted_proxy_the_forwarded_client_is_counted,
    config = |c: &mut Config| {
        c.public_rate_limit = 2;
        c.tips_per_hour = 1;
        c.trusted_proxies = relai::net::parse_trusted_proxies("127.0.0.1/32").unwrap();
    },
    |app: TestApp| async move {
        let get = |client: reqwest::Client, forwarded: &'static str| {
            let url = app.url("/v1/services");
            async move {
                client
                    .get(url)
                    .header("X-Forwarded-For", forwarded)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        let proxy = app.client.clone();
        assert_eq!(get(proxy.clone(), "203.0.113.5").await, 200);
        assert_eq!(get(proxy.clone(), "203.0.113.5").await, 200);
        assert_eq!(get(proxy.clone(), "203.0.113.5").await, 429);
        // Another client behind the same proxy is not affected.
        assert_eq!(get(proxy.clone(), "203.0.113.6").await, 200);
        // What the client wrote on the left proves nothing; trusted hops on the right
        // are skipped.
        assert_eq!(get(proxy.clone(), "203.0.113.6, 203.0.113.5").await, 429);
        assert_eq!(get(proxy.clone(), "203.0.113.5, 127.0.0.1").await, 429);

        // A peer that is not a trusted proxy is counted as itself, whatever it claims.
        let untrusted = client_from("127.0.0.2");
        assert_eq!(get(untrusted.clone(), "198.51.100.1").await, 200);
        assert_eq!(get(untrusted.clone(), "198.51.100.2").await, 200);
        assert_eq!(get(untrusted.clone(), "198.51.100.3").await, 429);

        // The tips limit counts the same client address.
        let send_tip = |forwarded: &'static str, phone: &'static str| {
            let request = app
                .client
                .post(app.url("/v1/tips"))
                .header("X-Forwarded-For", forwarded)
                .json(&tip(phone));
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(send_tip("203.0.113.20", "04 71 00 20 01").await, 202);
        assert_eq!(send_tip("203.0.113.20", "04 71 00 20 02").await, 429);
        assert_eq!(send_tip("203.0.113.21", "04 71 00 20 03").await, 202);
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_taken_when_sane_and_always_sent_back() {
    let app = crate::helpers::spawn_app(Backend::Sqlite).await;
    let generated = app.get("/v1/services").await;
    let id = header(&generated, "x-request-id").unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(&id).unwrap().get_version_num(),
        7,
        "{id}"
    );
    let with = |value: String| {
        let request = app
            .client
            .get(app.url("/v1/numbers/no-such-number"))
            .header("X-Request-Id", value);
        async move { request.send().await.unwrap() }
    };
    let echoed = with("lb-7f3a.2026-06-02T18:30:00Z".to_owned()).await;
    assert_eq!(echoed.status(), 404);
    assert_eq!(
        header(&echoed, "content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(
        header(&echoed, "x-request-id").unwrap(),
        "lb-7f3a.2026-06-02T18:30:00Z"
    );
    for insane in ["a".repeat(129), "two words".to_owned(), "é".to_owned()] {
        let replaced = with(insane.clone()).await;
        let id = header(&replaced, "x-request-id").unwrap();
        assert_ne!(id, insane);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    assert_eq!(
        header(&with("a".repeat(128)).await, "x-request-id").unwrap(),
        "a".repeat(128)
    );
}

/// Every log line of this test binary, as the service writes them in JSON, from the
/// first call on.
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
        type Writer = Capture;
        fn make_writer(&'a self) -> Capture {
            self.clone()
        }
    }
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let subscriber = relai::telemetry::subscriber(
            relai::telemetry::LogFormat::Json,
            // Everything the service logs, at every level.
            tracing_subscriber::EnvFilter::new("info,relai=trace"),
            Capture(buffer.clone()),
        );
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        buffer
    })
}

backend_tests!(
    each_request_is_one_json_log_line_without_secrets,
    |app: TestApp| async move {
        let logs = captured_logs();
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let id = format!("it-{}", uuid::Uuid::now_v7());
        let published = app
            .client
            .post(app.url("/v1/numbers"))
            .bearer_auth(&token)
            .header("X-Request-Id", &id)
            .json(&number("0556123456"))
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 201);
        assert_eq!(header(&published, "x-request-id").unwrap(), id);
        // A forged token, a token in a query string and one on a public read: none of
        // them may reach the log either.
        let forged = app
            .send(
                reqwest::Method::GET,
                "/v1/moderation/queue",
                Some(&format!("{token}x")),
                None,
            )
            .await;
        assert_eq!(forged.status(), 401);
        let in_query = app
            .get(&format!("/v1/lookup?postcode=33000&access_token={token}"))
            .await;
        assert!(in_query.status().as_u16() < 500);
        let public = app
            .send(reqwest::Method::GET, "/v1/services", Some(&token), None)
            .await;
        assert_eq!(public.status(), 200);

        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        let lines: Vec<Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["request_id"] == id.as_str())
            .collect();
        assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
        let line = &lines[0];
        assert_eq!(line["target"], "relai::access");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["method"], "POST");
        assert_eq!(line["route"], "/v1/numbers");
        assert_eq!(line["status"], 201);
        assert_eq!(line["client"], "127.0.0.1");
        assert!(line["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(line["timestamp"].is_string());
        // The token, or any part of it, appears nowhere in anything logged.
        assert!(!text.is_empty());
        for part in token.split('.') {
            assert!(!text.contains(part), "a part of the token was logged");
        }
        assert!(!text.contains(&token));
    }
);

backend_tests!(
    metrics_count_routes_and_report_snapshot_storage_and_webhooks,
    |app: TestApp| async move {
        let org = app.organization("SDIS 33", "sdis").await;
        assert_eq!(app.get("/v1/lookup?postcode=33000").await.status(), 200);
        assert_eq!(app.get("/v1/numbers/0190-no-such-id").await.status(), 404);
        assert_eq!(app.get("/no/such/path").await.status(), 404);
        let text = metrics(&app).await;
        for (name, value) in [
            (
                "relai_http_requests_total{route=\"/v1/lookup\",method=\"GET\",status=\"200\"}",
                1.0,
            ),
            (
                "relai_http_requests_total{route=\"/v1/numbers/{id}\",method=\"GET\",status=\"404\"}",
                1.0,
            ),
            (
                "relai_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}",
                1.0,
            ),
            (
                "relai_http_request_duration_seconds_bucket{route=\"/v1/lookup\",method=\"GET\",le=\"+Inf\"}",
                1.0,
            ),
            (
                "relai_http_request_duration_seconds_count{route=\"/v1/lookup\",method=\"GET\"}",
                1.0,
            ),
            ("relai_storage_up", 1.0),
            ("relai_changes_lag", 0.0),
            ("relai_webhooks_enabled", 0.0),
            ("relai_webhook_backlog", 0.0),
        ] {
            assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
        }
        // Raw paths never become labels.
        assert!(!text.contains("0190-no-such-id") && !text.contains("/no/such/path"));
        assert_eq!(
            sample(&text, "relai_snapshot_seq"),
            Some(app.state.directory().seq() as f64)
        );
        assert!(sample(&text, "relai_snapshot_age_seconds").unwrap() >= 0.0);
        let (batches, writes) = app.state.write_batches();
        assert_eq!(
            (
                sample(&text, "relai_write_batches_total"),
                sample(&text, "relai_batched_writes_total")
            ),
            (Some(batches as f64), Some(writes as f64))
        );
        assert_eq!(
            sample(&text, "relai_delayed_write_batches_total"),
            Some(app.state.delayed_batches() as f64)
        );
        // The limit is on by default.
        assert_eq!(sample(&text, "relai_public_rate_limited_total"), Some(0.0));

        // Another instance's write: in storage, not yet in this instance's snapshot.
        let seq_before = app.state.directory().seq();
        {
            let atlas = app.state.atlas().clone();
            let mut conn = relai::db::DatabaseUrl::parse(&app.database_url)
                .unwrap()
                .connect()
                .unwrap();
            let spec = Publish::new("18", "departement", "33", "05 56 00 00 01", &org);
            relai::store::publish_number(
                &mut conn,
                &atlas,
                spec.into_new_number(),
                relai::store::now(),
            )
            .unwrap();
        }
        // The lag is 1 until the follower applies it (at once on PostgreSQL, which
        // notifies; within the sync interval on SQLite), then 0 with the snapshot moved on.
        let text = metrics(&app).await;
        let lag = sample(&text, "relai_changes_lag");
        assert!(lag == Some(1.0) || lag == Some(0.0), "{lag:?}");
        let before = seq_before as f64;
        let started = std::time::Instant::now();
        loop {
            let text = metrics(&app).await;
            if sample(&text, "relai_changes_lag") == Some(0.0)
                && sample(&text, "relai_snapshot_seq") == Some(before + 1.0)
            {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(3),
                "the follower never caught up:\n{text}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        // A webhook whose receiver is down falls behind by every change.
        let admin = app.admin_token().await;
        let (status, hook) = app
            .post(
                "/v1/admin/webhooks",
                &admin,
                json!({"url": "http://127.0.0.1:9/hook", "secret": "un secret partagé assez long"}),
            )
            .await;
        assert_eq!(status, 201, "{hook}");
        let cursor = hook["delivered_seq"].as_i64().unwrap();
        for phone in ["05 56 00 00 02", "05 56 00 00 03"] {
            app.publish(Publish::new("18", "departement", "33", phone, &org))
                .await
                .unwrap();
        }
        let text = metrics(&app).await;
        assert_eq!(sample(&text, "relai_webhooks_enabled"), Some(1.0));
        let backlog = sample(&text, "relai_webhook_backlog").unwrap();
        assert_eq!(backlog, (app.change_count() - cursor) as f64);
        assert!(backlog >= 2.0);
        assert_eq!(
            sample(&text, "relai_changes_lag"),
            Some(0.0),
            "a write of this instance refreshes its snapshot"
        );

        // Storage goes away (PostgreSQL: the database refuses connections): the metrics
        // say so, public reads go on from memory.
        if app.backend == Backend::Postgres {
            let admin_url = crate::helpers::postgres_admin_url().unwrap();
            let name = app
                .database_url
                .split('?')
                .next()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned();
            let mut server = PgConnection::establish(&admin_url).unwrap();
            server
                .batch_execute(&format!(
                    "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false; \
                     SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = '{name}' AND pid <> pg_backend_pid();"
                ))
                .unwrap();
            let text = metrics(&app).await;
            assert_eq!(sample(&text, "relai_storage_up"), Some(0.0));
            assert_eq!(sample(&text, "relai_changes_lag"), None);
            assert_eq!(app.get("/v1/lookup?postcode=33000").await.status(), 200);
            server
                .batch_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
                .unwrap();
        }
    }
);

#[derive(diesel::QueryableByName)]
struct Id {
    #[diesel(sql_type = diesel::sql_types::Text)]
    id: String,
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// What a SQLite database holds: the ids of numbers, outages, accounts and audit events,
/// and the row count of the changes log and of organizations.
#[derive(Debug)]
struct Contents {
    ids: Vec<(&'static str, BTreeSet<String>)>,
    counts: Vec<(&'static str, i64)>,
}

fn contents(path: &std::path::Path) -> Contents {
    let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    conn.batch_execute("PRAGMA busy_timeout = 10000;").unwrap();
    let ids = ["numbers", "outages", "accounts", "audit_events"]
        .into_iter()
        .map(|table| {
            let rows: Vec<Id> = diesel::sql_query(format!("SELECT id FROM {table}"))
                .load(&mut conn)
                .unwrap();
            (table, rows.into_iter().map(|r| r.id).collect())
        })
        .collect();
    let counts = ["changes", "organizations"]
        .into_iter()
        .map(|table| {
            let row: Count = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
                .get_result(&mut conn)
                .unwrap();
            (table, row.n)
        })
        .collect();
    Contents { ids, counts }
}

backend_tests!(
    a_backup_during_writes_holds_everything_committed_before_it,
    |app: TestApp| async move {
        let data_dir = app.jwt_key.parent().unwrap().to_owned();
        let dest = data_dir.join("backup relai's.db");
        let database_url = app.database_url.clone();
        let backup = move |dest: std::path::PathBuf| {
            let database_url = database_url.clone();
            tokio::task::spawn_blocking(move || {
                let output = std::process::Command::new(env!("CARGO_BIN_EXE_relai"))
                    .args(["--database-url", &database_url, "backup"])
                    .arg(&dest)
                    .env("RELAI_LOG", "error")
                    .output()
                    .expect("relai runs");
                (
                    output.status.success(),
                    String::from_utf8_lossy(&output.stdout).into_owned(),
                    String::from_utf8_lossy(&output.stderr).into_owned(),
                )
            })
        };
        if app.backend == Backend::Postgres {
            let (ok, _, err) = backup(dest.clone()).await.unwrap();
            assert!(!ok);
            assert!(
                err.contains("pg_dump -Fc") && err.contains("pg_restore"),
                "{err}"
            );
            assert!(err.contains("jwt-ed25519.pem"), "{err}");
            assert!(!dest.exists());
            return;
        }
        let source = std::path::PathBuf::from(app.database_url.strip_prefix("sqlite://").unwrap());
        let (org, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        app.admin_token().await;
        let outage = app.declare(&["18"], "departement", "33", &org).await;

        // A writer publishing through the API all along.
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicUsize::new(0));
        let writer = tokio::spawn({
            let (client, url, token) = (app.client.clone(), app.url("/v1/numbers"), token.clone());
            let (stop, published) = (stop.clone(), published.clone());
            async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let status = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&number(&format!("05 56 10 {:02} {:02}", i / 100, i % 100)))
                        .send()
                        .await
                        .unwrap()
                        .status();
                    assert_eq!(status, 201);
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        while published.load(Ordering::Relaxed) < 5 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let before = contents(&source);
        let (ok, out, err) = backup(dest.clone()).await.unwrap();
        assert!(ok, "{err}");
        assert!(out.contains("integrity ok"), "{out}");
        assert!(out.contains("jwt-ed25519.pem"), "{out}");
        let at_backup_end = published.load(Ordering::Relaxed);
        while published.load(Ordering::Relaxed) < at_backup_end + 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();

        relai::backup::integrity_check(&dest).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let copy = contents(&dest);
        for ((table, ids_before), (_, ids_copy)) in before.ids.iter().zip(&copy.ids) {
            assert!(!ids_before.is_empty(), "{table}");
            let missing: Vec<_> = ids_before.difference(ids_copy).collect();
            assert!(missing.is_empty(), "{table}: {missing:?} missing");
        }
        for ((table, n_before), (_, n_copy)) in before.counts.iter().zip(&copy.counts) {
            assert!(n_copy >= n_before, "{table}: {n_copy} < {n_before}");
        }

        // A service runs on the copy, with what was there.
        let restored = crate::helpers::spawn_app_on_sqlite(&dest).await;
        let numbers = &before.ids[0].1;
        for id in numbers.iter().take(5) {
            assert_eq!(
                restored.get(&format!("/v1/numbers/{id}")).await.status(),
                200
            );
        }
        let (_, outages) = restored.get_json("/v1/outages").await;
        assert!(outages["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["id"] == outage.id.as_str()));

        // A backup never overwrites.
        let (ok, _, err) = backup(dest.clone()).await.unwrap();
        assert!(!ok);
        assert!(err.contains("already exists"), "{err}");
    }
);

/// Sends the head of a `POST /v1/tips` now and its body later: a request in flight.
async fn start_slow_tip(address: &str) -> (tokio::net::TcpStream, String) {
    let body = tip("04 71 00 30 01").to_string();
    let mut socket = tokio::net::TcpStream::connect(address.trim_start_matches("http://"))
        .await
        .unwrap();
    socket
        .write_all(
            format!(
                "POST /v1/tips HTTP/1.1\r\nHost: relai\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    (socket, body)
}

/// Reads an SSE response to its end; `Err` if it does not end within `wait`.
async fn read_to_end(response: &mut reqwest::Response, wait: Duration) -> Result<String, String> {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, response.chunk()).await {
            Err(_) => return Err(format!("still open after {wait:?}: {text}")),
            Ok(Err(e)) => return Err(format!("cut: {e}; got {text}")),
            Ok(Ok(None)) => return Ok(text),
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
        }
    }
}

backend_tests!(
    shutdown_ends_event_streams_with_a_reconnect_and_lets_requests_finish,
    |mut app: TestApp| async move {
        let mut stream = app.client.get(app.url("/v1/events")).send().await.unwrap();
        assert_eq!(stream.status(), 200);
        let first = tokio::time::timeout(Duration::from_secs(2), stream.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&first).contains("retry: 3000"));
        let (mut socket, body) = start_slow_tip(&app.address).await;
        tokio::time::sleep(Duration::from_millis(300)).await;

        app.shutdown.trigger();

        let last = read_to_end(&mut stream, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(last.contains("retry: 1000"), "{last}");
        assert!(last.contains("event: reconnect"), "{last}");
        assert!(
            !last.contains("id:"),
            "the notice keeps the client's last event id"
        );
        // The request in flight gets its answer.
        tokio::time::sleep(Duration::from_millis(300)).await;
        socket.write_all(body.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(5), socket.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
        // Then the server stops, long before its shutdown timeout.
        tokio::time::timeout(Duration::from_secs(8), &mut app.server)
            .await
            .expect("the server stopped")
            .unwrap()
            .unwrap();
        assert!(app.client.get(app.url("/healthz")).send().await.is_err());
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_relai_serve_gracefully() {
    let dir = std::env::temp_dir().join(format!("relai-sigterm-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    /// Kills the server if the test fails before it exits.
    struct Child(std::process::Child);
    impl Drop for Child {
        fn drop(&mut self) {
            if self.0.try_wait().ok().flatten().is_none() {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
    }
    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_relai"))
            .arg("--data-dir")
            .arg(&dir)
            .args(["serve", "--workers", "1", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .env_remove("DATABASE_URL")
            .env("RELAI_LOG", "info")
            .env("RELAI_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "relai serve did not start"
        );
        assert!(child.0.try_wait().unwrap().is_none(), "relai serve exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut stream = client
        .get(format!("{base}/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let last = read_to_end(&mut stream, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(last.contains("event: reconnect"), "{last}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "relai serve still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
    let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["message"].as_str().unwrap_or("").contains("SIGTERM")));
    assert!(lines
        .iter()
        .any(|l| l["target"] == "relai::access" && l["route"] == "/v1/events"));
    let _ = std::fs::remove_dir_all(&dir);
}
