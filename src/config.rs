//! Settings, from command-line flags and environment variables (see `main.rs`).

use std::path::{Path, PathBuf};

/// The default bind address: loopback, so a fresh install is not exposed by accident.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://...`.
    pub database_url: String,
    /// Address to listen on, `HOST:PORT` (port 0 picks a free port).
    pub bind: String,
    /// Where the SQLite database and generated keys live.
    pub data_dir: PathBuf,
    /// Database connections per process.
    pub pool_size: u32,
    /// HTTP worker threads (0 = one per core).
    pub workers: usize,
    /// The Ed25519 private key (PKCS#8 PEM) that signs tokens; made on first start if missing.
    pub jwt_private_key: PathBuf,
    /// During a key rotation, the previous key (private or public PEM), still trusted to verify.
    pub jwt_previous_key: Option<PathBuf>,
    /// Citizens' tips accepted per address per hour.
    pub tips_per_hour: u32,
    /// Networks webhook targets may be in; empty means public addresses only.
    pub webhook_allowed_networks: Vec<crate::feeds::webhooks::Network>,
    /// The first wait before retrying a failed webhook delivery (then doubling).
    pub webhook_retry_base: std::time::Duration,
    /// How often the changes log is read for other instances' writes when no notification
    /// came (PostgreSQL notifies at once; SQLite relies on this alone).
    pub sync_interval: std::time::Duration,
    /// The memory the rendered lookup answers may take, in MiB.
    pub answer_cache_mb: usize,
    /// How long a batch of writes waits for company when writes overlap (group commit;
    /// see `AppState::set_commit_delay`); zero never waits.
    pub commit_delay: std::time::Duration,
    /// Public reads (GET and HEAD of the public routes) allowed per client address per
    /// minute; 0 turns the limit off.
    pub public_rate_limit: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client; none by default.
    pub trusted_proxies: crate::net::TrustedProxies,
    /// How long the caller storage confirmed for a token serves the checks of its next
    /// writes (see `auth::WriteCaller`; each write's transaction reads it again anyway).
    pub caller_memory: std::time::Duration,
}

/// The default of [`Config::sync_interval`], in milliseconds.
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 500;

/// The default of [`Config::commit_delay`], in milliseconds: under a stream of 200
/// overlapping writes per second about seven share a commit (writes alone at 200/s with
/// 100,000 numbers: 0.74 ms of processor per write against 0.86 with 10 ms, which leaves
/// the core to the lookups), and a write still answers in about 20 ms (p50). A batch stops
/// waiting once 16 writes are queued, so a burst of clients is not slowed by it.
pub const DEFAULT_COMMIT_DELAY_MS: u64 = 30;

/// The default of [`Config::tips_per_hour`]: strict, a person reports a few numbers at most.
pub const DEFAULT_TIPS_PER_HOUR: u32 = 10;

/// The default of [`Config::public_rate_limit`] (see
/// [`crate::ratelimit::DEFAULT_PUBLIC_PER_MINUTE`] for why).
pub const DEFAULT_PUBLIC_RATE_LIMIT: u32 = crate::ratelimit::DEFAULT_PUBLIC_PER_MINUTE;

impl Config {
    /// The default database URL for a data directory.
    pub fn default_database_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("relai.db").display())
    }

    /// The default signing key path for a data directory.
    pub fn default_jwt_key(data_dir: &Path) -> PathBuf {
        data_dir.join("jwt-ed25519.pem")
    }

    /// A configuration with defaults for the given database (used by tests and tools).
    pub fn for_database(database_url: &str, data_dir: &Path) -> Config {
        Config {
            database_url: database_url.to_owned(),
            bind: "127.0.0.1:0".to_owned(),
            data_dir: data_dir.to_owned(),
            pool_size: 4,
            workers: 2,
            jwt_private_key: Self::default_jwt_key(data_dir),
            jwt_previous_key: None,
            tips_per_hour: DEFAULT_TIPS_PER_HOUR,
            webhook_allowed_networks: Vec::new(),
            webhook_retry_base: std::time::Duration::from_secs(1),
            sync_interval: std::time::Duration::from_millis(DEFAULT_SYNC_INTERVAL_MS),
            answer_cache_mb: crate::answers::DEFAULT_ANSWER_CACHE_MB,
            commit_delay: std::time::Duration::from_millis(DEFAULT_COMMIT_DELAY_MS),
            public_rate_limit: DEFAULT_PUBLIC_RATE_LIMIT,
            trusted_proxies: crate::net::TrustedProxies::default(),
            caller_memory: crate::auth::DEFAULT_CALLER_MEMORY,
        }
    }
}
