//! A write answered 2xx survives a `kill -9` of the server; an import killed half-way
//! leaves nothing of itself. The real binary is started and killed.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use relai::db::{self, DatabaseUrl};

use crate::backend_tests;
use crate::helpers::TestApp;

/// `relai serve` on the test's database and signing key, on a free port.
fn serve(app: &TestApp) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data_dir = app.jwt_key.parent().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_relai"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "2",
        ])
        .env("DATABASE_URL", &app.database_url)
        .env("RELAI_DATA_DIR", data_dir)
        .env("RELAI_JWT_PRIVATE_KEY", &app.jwt_key)
        .env("RUST_LOG", "warn")
        // The checks read back every acknowledged write from one address: more than the
        // public rate limit allows a minute.
        .env("RELAI_PUBLIC_RATE_LIMIT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start relai serve");
    (child, format!("http://127.0.0.1:{port}"))
}

async fn wait_ready(base: &str) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server never ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn kill9(child: &mut Child) {
    // SIGKILL: no shutdown path runs.
    child.kill().expect("kill");
    child.wait().expect("reap");
}

/// The ids of the numbers stored, straight from storage.
fn stored_ids(app: &TestApp) -> std::collections::HashSet<String> {
    let url = DatabaseUrl::parse(&app.database_url).unwrap();
    let mut conn = db::pool(&url, 1).unwrap().get().unwrap();
    relai::db::schema::numbers::table
        .select(relai::db::schema::numbers::id)
        .load::<String>(&mut *conn)
        .unwrap()
        .into_iter()
        .collect()
}

backend_tests!(
    every_acknowledged_write_survives_a_kill_9,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (mut child, base) = serve(&app);
        wait_ready(&base).await;
        let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let mut writers = Vec::new();
        for w in 0..4 {
            let (base, token, acknowledged) = (base.clone(), token.clone(), acknowledged.clone());
            writers.push(tokio::spawn(async move {
                let client = reqwest::Client::new();
                for i in 0..10_000 {
                    let body = serde_json::json!({"service": "18",
                        "territory": {"kind": "departement", "code": "33"},
                        "phone": format!("0556{w}{i:05}"), "label": "Durabilité"});
                    let Ok(response) = client
                        .post(format!("{base}/v1/numbers"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                    else {
                        return; // the server is gone
                    };
                    if response.status() == 201 {
                        if let Ok(v) = response.json::<serde_json::Value>().await {
                            acknowledged
                                .lock()
                                .unwrap()
                                .push(v["id"].as_str().unwrap().to_owned());
                        }
                    }
                }
            }));
        }
        // Long enough for dozens of writes even in a debug build, where Ed25519 is slow.
        tokio::time::sleep(Duration::from_millis(4000)).await;
        kill9(&mut child);
        for w in writers {
            w.await.unwrap();
        }
        let acknowledged = acknowledged.lock().unwrap().clone();
        assert!(
            acknowledged.len() >= 10,
            "too few writes to mean anything: {}",
            acknowledged.len()
        );
        let stored = stored_ids(&app);
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !stored.contains(*id))
            .collect();
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost: {lost:?}",
            lost.len()
        );

        // A restarted server serves every one of them.
        let (mut child, base) = serve(&app);
        wait_ready(&base).await;
        let client = reqwest::Client::new();
        for id in &acknowledged {
            let status = client
                .get(format!("{base}/v1/numbers/{id}"))
                .send()
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "{id}");
        }
        kill9(&mut child);
    }
);

backend_tests!(
    an_import_killed_half_way_leaves_none_of_itself,
    |app: TestApp| async move {
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let mut csv = String::from(relai::import::HEADER);
        csv.push('\n');
        for i in 0..10_000 {
            csv.push_str(&format!(
                "18,departement,33,0557{i:06},Import interrompu,\n"
            ));
        }
        let before = stored_ids(&app).len();
        // Kill at a few moments into the request; whatever the moment, all or nothing.
        for delay_ms in [50u64, 250, 600] {
            let (mut child, base) = serve(&app);
            wait_ready(&base).await;
            let request = reqwest::Client::new()
                .post(format!("{base}/v1/numbers/import"))
                .bearer_auth(&token)
                .header("Content-Type", "text/csv")
                .body(csv.clone())
                .send();
            let request = tokio::spawn(request);
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            kill9(&mut child);
            let answered = request.await.unwrap().map(|r| r.status().as_u16()).ok();
            let added = stored_ids(&app).len() - before;
            match answered {
                // Acknowledged before the kill: all of it is there.
                Some(201) | Some(200) => assert_eq!(added, 10_000),
                _ => assert!(
                    added == 0 || added == 10_000,
                    "{added} rows of 10000 after a kill at {delay_ms} ms"
                ),
            }
            if added == 10_000 {
                // Committed just before the kill: nothing more to learn from later delays.
                break;
            }
        }
    }
);
