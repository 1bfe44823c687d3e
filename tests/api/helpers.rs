//! `spawn_app()`: the service on port 0 with a fresh database of its own, on SQLite, or on
//! PostgreSQL when `RELAI_TEST_POSTGRES_URL` is set.
//!
//! Loading all of France takes about a second, so each backend seeds one template database
//! per test run and every test starts from a copy of it.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use relai::config::Config;
use relai::db::{self, DatabaseUrl};
use relai::domain::{PhoneNumber, ServiceCode, Territory};
use relai::seed::{self, Reference};
use relai::startup::Application;
use relai::state::AppState;
use relai::store::{self, NewNumber, NewOutage, NewProvenance};
use sha2::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests may use, if any.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("RELAI_TEST_POSTGRES_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Runs a test body once per backend: `backend_tests!(name, |app| async move { ... })`
/// defines `name::sqlite` and `name::postgres` (the latter passes without running when
/// no PostgreSQL is configured, and says so).
#[macro_export]
macro_rules! backend_tests {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_admin_url().is_none() {
                    eprintln!("RELAI_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
                    return;
                }
                let app = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await;
                ($body)(app).await;
            }
        }
    };
    // The same with the configuration changed first: `config = |c: &mut Config| ...`.
    ($name:ident, config = $configure:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app =
                    $crate::helpers::spawn_app_with($crate::helpers::Backend::Sqlite, $configure)
                        .await;
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::postgres_admin_url().is_none() {
                    eprintln!("RELAI_TEST_POSTGRES_URL not set: PostgreSQL variant not run");
                    return;
                }
                let app =
                    $crate::helpers::spawn_app_with($crate::helpers::Backend::Postgres, $configure)
                        .await;
                ($body)(app).await;
            }
        }
    };
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<AppState>,
    pub database_url: String,
    /// The key the app signs tokens with.
    pub jwt_key: PathBuf,
    /// Which storage it runs on.
    pub backend: Backend,
    /// Triggers what SIGTERM does to `relai serve`.
    pub shutdown: relai::shutdown::Shutdown,
    /// The server task: ends when the server has stopped.
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    _guard: DatabaseGuard,
}

// A test body is `|app| async move { ... }`: without a Drop impl, the closure would capture
// only the fields it uses (disjoint capture) and drop the database guard before the test runs.
impl Drop for TestApp {
    fn drop(&mut self) {}
}

/// Removes the test's database when the test ends.
enum DatabaseGuard {
    Sqlite {
        _dir: tempdir::TempDir,
    },
    Postgres {
        admin_url: String,
        name: String,
        _dir: tempdir::TempDir,
    },
}

impl Drop for DatabaseGuard {
    fn drop(&mut self) {
        if let DatabaseGuard::Postgres {
            admin_url, name, ..
        } = self
        {
            if let Ok(mut conn) = PgConnection::establish(admin_url) {
                let _ =
                    conn.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"));
            }
        }
    }
}

/// A tiny temporary directory, removed on drop.
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct TempDir(PathBuf);
    impl TempDir {
        pub fn new() -> TempDir {
            let path = std::env::temp_dir().join(format!("relai-test-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&path).expect("temp dir");
            TempDir(path)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn seed_template(url: &str) {
    let url = DatabaseUrl::parse(url).expect("template url");
    let mut conn = url.connect().expect("template connection");
    db::run_migrations(&mut conn).expect("migrations");
    seed::seed_reference(
        &mut conn,
        &Reference::embedded().expect("reference"),
        false,
        store::now(),
    )
    .expect("seed");
}

/// A seeded SQLite file, made once per test run.
fn sqlite_template() -> &'static PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("relai-template-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("template dir");
        let path = dir.join("template.db");
        let _ = std::fs::remove_file(&path);
        seed_template(&format!("sqlite://{}", path.display()));
        // The connection is closed: SQLite checkpointed the WAL into the file.
        path
    })
}

fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url, String::new()),
    };
    let root = base.rsplit_once('/').map(|(r, _)| r).unwrap_or(base);
    format!("{root}/{name}{query}")
}

/// A seeded PostgreSQL template database, named after the reference data and the
/// migrations so that later runs reuse it; built under a temporary name and renamed when
/// complete, so a run that dies half-way leaves no broken template behind.
fn postgres_template(admin_url: &str) -> &'static String {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let reference = Reference::embedded().expect("reference");
        let migrations: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
                .expect("migrations")
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
        let mut key = reference.digest.clone();
        key.extend(migrations);
        let digest = sha2::Sha256::digest(key.as_bytes());
        let name = format!("relai_template_{}", hex::encode(&digest[..8]));
        if PgConnection::establish(&with_database(admin_url, &name)).is_ok() {
            return name;
        }
        let building = format!("relai_building_{}", uuid::Uuid::now_v7().simple());
        let mut admin =
            PgConnection::establish(admin_url).expect("PostgreSQL at RELAI_TEST_POSTGRES_URL");
        admin
            .batch_execute(&format!("CREATE DATABASE \"{building}\""))
            .expect("create template");
        seed_template(&with_database(admin_url, &building));
        if admin
            .batch_execute(&format!(
                "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
            ))
            .is_err()
        {
            // Another run finished first: use its template.
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
            ));
        }
        name
    })
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_: &mut Config| {}).await
}

/// [`spawn_app`] with the configuration changed by `configure` first.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    let (database_url, guard, data_dir) = match backend {
        Backend::Sqlite => {
            let template = sqlite_template().clone();
            let dir = tempdir::TempDir::new();
            let path = dir.path().join("relai.db");
            std::fs::copy(&template, &path).expect("copy template");
            let data_dir = dir.path().to_owned();
            (
                format!("sqlite://{}", path.display()),
                DatabaseGuard::Sqlite { _dir: dir },
                data_dir,
            )
        }
        Backend::Postgres => {
            let admin_url = postgres_admin_url().expect("RELAI_TEST_POSTGRES_URL");
            let template = postgres_template(&admin_url).clone();
            let name = format!("relai_test_{}", uuid::Uuid::now_v7().simple());
            let mut admin = PgConnection::establish(&admin_url).expect("admin connection");
            admin
                .batch_execute(&format!(
                    "CREATE DATABASE \"{name}\" TEMPLATE \"{template}\""
                ))
                .expect("create test database");
            let url = with_database(&admin_url, &name);
            let dir = tempdir::TempDir::new();
            let data_dir = dir.path().to_owned();
            (
                url,
                DatabaseGuard::Postgres {
                    admin_url,
                    name,
                    _dir: dir,
                },
                data_dir,
            )
        }
    };
    start(backend, database_url, data_dir, guard, configure)
}

/// A service on an existing SQLite database file (a backup), with a data directory of its
/// own; the file is left in place.
pub async fn spawn_app_on_sqlite(path: &std::path::Path) -> TestApp {
    let dir = tempdir::TempDir::new();
    let data_dir = dir.path().to_owned();
    start(
        Backend::Sqlite,
        format!("sqlite://{}", path.display()),
        data_dir,
        DatabaseGuard::Sqlite { _dir: dir },
        |_: &mut Config| {},
    )
}

fn start(
    backend: Backend,
    database_url: String,
    data_dir: PathBuf,
    guard: DatabaseGuard,
    configure: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config::for_database(&database_url, &data_dir);
    // Webhook tests deliver to receivers on loopback, and retry quickly.
    config.webhook_allowed_networks =
        relai::feeds::webhooks::parse_networks("127.0.0.0/8").expect("networks");
    config.webhook_retry_base = std::time::Duration::from_millis(100);
    configure(&mut config);
    let pool = relai::startup::prepare_database(&config).expect("prepare database");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let app = Application::build_with(&config, pool, listener).expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let shutdown = app.shutdown();
    let server = tokio::spawn(app.into_server());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        state,
        database_url,
        jwt_key: config.jwt_private_key.clone(),
        backend,
        shutdown,
        server,
        _guard: guard,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// Runs a write through the library write path, on a blocking thread.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(
                &mut relai::db::DbConnection,
                &relai::atlas::Atlas,
            ) -> Result<T, store::StoreError>
            + Send
            + 'static,
    ) -> Result<T, relai::error::ApiError> {
        let state: Arc<AppState> = self.state.clone().into_inner();
        state.write(f).await
    }

    pub async fn organization(&self, name: &str, kind: &str) -> String {
        let (name, kind) = (name.to_owned(), kind.to_owned());
        self.write(move |conn, _| {
            store::create_organization(conn, &name, &kind, false, store::now())
        })
        .await
        .expect("organization")
        .id
    }

    pub async fn load_demo(&self) {
        self.write(|conn, atlas| {
            seed::seed_demo(conn, atlas, store::now())
                .map_err(|e| store::StoreError::Conflict(e.to_string()))
        })
        .await
        .expect("demo");
    }

    /// Publishes a number through the library write path.
    pub async fn publish(
        &self,
        spec: Publish,
    ) -> Result<relai::model::Number, relai::error::ApiError> {
        self.write(move |conn, atlas| {
            store::publish_number(conn, atlas, spec.into_new_number(), store::now())
        })
        .await
    }

    pub async fn declare(
        &self,
        services: &[&str],
        kind: &str,
        code: &str,
        org: &str,
    ) -> relai::model::Outage {
        let services: Vec<ServiceCode> = services
            .iter()
            .map(|s| ServiceCode::parse(s).expect("service"))
            .collect();
        let territory = Territory::parse(kind, code).expect("territory");
        let org = org.to_owned();
        self.write(move |conn, atlas| {
            store::declare_outage(
                conn,
                atlas,
                NewOutage {
                    services,
                    territory,
                    description: "Panne de test".to_owned(),
                    declared_by: org,
                    declared_at: None,
                    demo: false,
                    by_account: None,
                },
                store::now(),
            )
        })
        .await
        .expect("declare outage")
    }

    /// The app's signing keys.
    pub fn auth(&self) -> relai::auth::Auth {
        relai::auth::Auth::load(&self.jwt_key, None).expect("keys")
    }

    /// Creates an organization with scopes through the library, and an account of `role`
    /// in it, and returns (organization id, account id, token).
    pub async fn account_with(
        &self,
        org_name: &str,
        kind: &str,
        scopes: &[&str],
        role: &str,
    ) -> (String, String, String) {
        let (org_name, kind, role) = (org_name.to_owned(), kind.to_owned(), role.to_owned());
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let org = self
            .write(move |conn, atlas| {
                relai::accounts::create_organization(
                    conn,
                    atlas,
                    None,
                    &org_name,
                    &kind,
                    &scopes,
                    store::now(),
                )
            })
            .await
            .expect("organization");
        let org_id = org.id.clone();
        let account = self
            .write(move |conn, _| {
                relai::accounts::create_account(
                    conn,
                    None,
                    Some(&org_id),
                    &role,
                    "Test account",
                    store::now(),
                )
            })
            .await
            .expect("account");
        let token = self.token_for(&account.id).await;
        (org.id, account.id, token)
    }

    /// An admin account without organization, and its token.
    pub async fn admin_token(&self) -> String {
        let account = self
            .write(|conn, _| {
                relai::accounts::create_account(
                    conn,
                    None,
                    None,
                    "admin",
                    "Opérateur",
                    store::now(),
                )
            })
            .await
            .expect("admin");
        self.token_for(&account.id).await
    }

    pub async fn token_for(&self, account_id: &str) -> String {
        let auth = self.auth();
        let id = account_id.to_owned();
        self.write(move |conn, _| {
            relai::accounts::issue_token(
                conn,
                &auth.signer,
                None,
                &id,
                std::time::Duration::from_secs(3600),
                store::now(),
            )
        })
        .await
        .expect("token")
        .token
    }

    /// A JSON request with a bearer token.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = self
            .send(reqwest::Method::POST, path, Some(token), Some(body))
            .await;
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Counts rows of the changes log, straight from storage.
    pub fn change_count(&self) -> i64 {
        let mut conn = DatabaseUrl::parse(&self.database_url)
            .expect("url")
            .connect()
            .expect("connect");
        store::last_change_seq(&mut conn).expect("changes")
    }
}

/// What to publish in a test.
#[derive(Clone)]
pub struct Publish {
    pub service: String,
    pub kind: String,
    pub code: String,
    pub phone: String,
    pub label: String,
    pub organization: String,
    pub outage_id: Option<String>,
    pub valid_from: Option<chrono::DateTime<chrono::Utc>>,
    pub valid_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl Publish {
    pub fn new(service: &str, kind: &str, code: &str, phone: &str, organization: &str) -> Publish {
        Publish {
            service: service.to_owned(),
            kind: kind.to_owned(),
            code: code.to_owned(),
            phone: phone.to_owned(),
            label: format!("Test {service} {code}"),
            organization: organization.to_owned(),
            outage_id: None,
            valid_from: None,
            valid_until: None,
        }
    }

    /// The store's input for this publication, official for `organization`.
    pub fn into_new_number(self) -> NewNumber {
        NewNumber {
            service: ServiceCode::parse(&self.service).expect("service"),
            territory: Territory::parse(&self.kind, &self.code).expect("territory"),
            phone: PhoneNumber::parse(&self.phone).expect("phone"),
            label: self.label,
            provenance: NewProvenance::Official {
                organization_id: self.organization,
            },
            outage_id: self.outage_id,
            valid_from: self.valid_from,
            valid_until: self.valid_until,
            demo: false,
            by_account: None,
        }
    }
}
