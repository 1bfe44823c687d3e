//! Several instances on one database, and storage going away under them.

use std::time::{Duration, Instant};

use relai::config::Config;
use relai::startup::Application;
use serde_json::Value;

use crate::backend_tests;
use crate::helpers::{Publish, TestApp};

/// Another instance on the same database with the same signing key, as behind a load
/// balancer.
pub struct Instance {
    pub address: String,
    pub client: reqwest::Client,
}

pub async fn second_instance(app: &TestApp) -> Instance {
    let data_dir = app.jwt_key.parent().expect("data dir").to_owned();
    let mut config = Config::for_database(&app.database_url, &data_dir);
    config.jwt_private_key = app.jwt_key.clone();
    config.sync_interval = Duration::from_millis(500);
    config.webhook_allowed_networks =
        relai::feeds::webhooks::parse_networks("127.0.0.0/8").expect("networks");
    config.webhook_retry_base = Duration::from_millis(100);
    let pool = relai::startup::prepare_database(&config).expect("prepare database");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let other = Application::build_with(&config, pool, listener).expect("build app");
    let address = format!("http://127.0.0.1:{}", other.port());
    tokio::spawn(other.into_server());
    Instance {
        address,
        client: reqwest::Client::new(),
    }
}

fn phones_of(answer: &Value) -> Vec<String> {
    answer["communes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["services"].as_array().into_iter().flatten())
        .flat_map(|s| s["numbers"].as_array().into_iter().flatten())
        .filter_map(|n| n["phone"]["national"].as_str().map(str::to_owned))
        .collect()
}

backend_tests!(
    a_number_published_on_one_instance_reaches_the_other_and_its_subscribers,
    |app: TestApp| async move {
        let other = second_instance(&app).await;
        // A live subscriber of the other instance, from now on.
        let mut events = other
            .client
            .get(format!("{}/v1/events", other.address))
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 200);
        let (_, _, token) = app
            .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
            .await;
        let (status, number) = app
            .post(
                "/v1/numbers",
                &token,
                serde_json::json!({"service": "18", "territory": {"kind": "commune", "code": "33063"}, "phone": "0556771818", "label": "CTA Bordeaux"}),
            )
            .await;
        assert_eq!(status, 201, "{number}");
        let acknowledged = Instant::now();

        // The other instance's lookup shows it within a second.
        loop {
            let answer: Value = other
                .client
                .get(format!("{}/v1/lookup?insee=33063", other.address))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if phones_of(&answer).contains(&"0556771818".to_owned()) {
                break;
            }
            assert!(
                acknowledged.elapsed() < Duration::from_secs(1),
                "not visible on the other instance after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ...and its subscriber received the change.
        let id = number["id"].as_str().unwrap().to_owned();
        let mut received = String::new();
        while !received.contains(&id) {
            let chunk = tokio::time::timeout(Duration::from_secs(2), events.chunk())
                .await
                .expect("the other instance's subscriber got nothing")
                .unwrap()
                .expect("stream ended");
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(received.contains("event: number.published"), "{received}");
    }
);

backend_tests!(
    a_write_of_another_process_reaches_a_running_instance,
    |app: TestApp| async move {
        // The command line (or any process) writing to the same database: here a second
        // pool and state outside the running server.
        let url = relai::db::DatabaseUrl::parse(&app.database_url).unwrap();
        let pool = relai::db::pool(&url, 1).unwrap();
        let outside = relai::state::AppState::load(pool).unwrap();
        let org = app.organization("SDIS 29", "sdis").await;
        let org2 = org.clone();
        outside
            .write_blocking(move |conn, atlas| {
                let mut spec = Publish::new("18", "commune", "29019", "0298181818", &org2);
                spec.label = "CTA Brest".to_owned();
                relai::store::publish_number(
                    conn,
                    atlas,
                    spec.into_new_number(),
                    relai::store::now(),
                )
            })
            .unwrap();
        let started = Instant::now();
        loop {
            let (_, answer) = app.get_json("/v1/lookup?insee=29019").await;
            if phones_of(&answer).contains(&"0298181818".to_owned()) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(2), "never seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
);

/// PostgreSQL going away: the test database refuses connections and its sessions are
/// terminated, as when the server stops; then it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_away_reads_keep_answering_writes_503_then_everything_resumes() {
    let Some(admin_url) = crate::helpers::postgres_admin_url() else {
        eprintln!("RELAI_TEST_POSTGRES_URL not set: PostgreSQL fault test not run");
        return;
    };
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Postgres).await;
    let (_, _, token) = app
        .account_with("SDIS 33", "sdis", &["18:departement:33"], "authority")
        .await;
    let name = app.database_url.rsplit('/').next().unwrap().to_owned();
    let admin = |sql: String| {
        let admin_url = admin_url.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                use diesel::connection::SimpleConnection;
                use diesel::Connection;
                let mut c = diesel::PgConnection::establish(&admin_url).unwrap();
                c.batch_execute(&sql).unwrap();
            })
            .await
            .unwrap()
        }
    };
    let publish = |phone: &str| serde_json::json!({"service": "18", "territory": {"kind": "departement", "code": "33"}, "phone": phone, "label": "CTA-CODIS 33"});
    let (status, _) = app.post("/v1/numbers", &token, publish("0556001801")).await;
    assert_eq!(status, 201);

    admin(format!(
        "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
    ))
    .await;
    // Reads answer from the last snapshot, and say since when it may be stale once the
    // instance has noticed.
    let started = Instant::now();
    loop {
        let response = app.get("/v1/lookup?postcode=33000").await;
        assert_eq!(response.status(), 200);
        if response.headers().contains_key("relai-stale-since") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no stale header"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, answer) = app.get_json("/v1/lookup?postcode=33000").await;
    assert!(phones_of(&answer).contains(&"0556001801".to_owned()));
    assert_eq!(app.get("/readyz").await.status(), 503);
    let response = app
        .send(
            reqwest::Method::POST,
            "/v1/numbers",
            Some(&token),
            Some(publish("0556001802")),
        )
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    admin(format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true;")).await;
    let started = Instant::now();
    loop {
        let (status, _) = app.post("/v1/numbers", &token, publish("0556001802")).await;
        if status == 201 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "writes never resumed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();
    while app.get("/readyz").await.status() != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "never ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = app.get("/v1/lookup?postcode=33000").await;
    assert!(!response.headers().contains_key("relai-stale-since"));
    let answer: Value = response.json().await.unwrap();
    assert!(phones_of(&answer).contains(&"0556001802".to_owned()));
}
