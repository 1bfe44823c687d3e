//! The `relai` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use relai::accounts;
use relai::auth::Auth;
use relai::config::{Config, DEFAULT_BIND};
use relai::db::{self, DatabaseUrl};
use relai::seed::{self, Reference};
use relai::startup::{prepare_database, Application};
use relai::state::AppState;
use relai::telemetry::LogFormat;

/// Relai: substitute emergency numbers for France when the short numbers fail.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Database URL: sqlite://PATH (default: sqlite://<data dir>/relai.db) or postgres://...
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Where the SQLite database and the generated keys live.
    #[arg(long, env = "RELAI_DATA_DIR", default_value = "./data", global = true)]
    data_dir: PathBuf,
    /// Database connections per process.
    #[arg(long, env = "RELAI_DB_POOL_SIZE", default_value_t = 8, global = true)]
    pool_size: u32,
    /// The Ed25519 private key (PKCS#8 PEM) that signs tokens; made if missing.
    /// Default: <data dir>/jwt-ed25519.pem. Every instance of a cluster needs the same one.
    #[arg(long, env = "RELAI_JWT_PRIVATE_KEY", global = true)]
    jwt_private_key: Option<PathBuf>,
    /// During a key rotation: the previous key (private or public PEM), still trusted to verify.
    #[arg(long, env = "RELAI_JWT_PREVIOUS_KEY", global = true)]
    jwt_previous_key: Option<PathBuf>,
    /// Citizens' tips (POST /v1/tips) accepted per client address per hour.
    #[arg(long, env = "RELAI_TIPS_PER_HOUR", default_value_t = relai::config::DEFAULT_TIPS_PER_HOUR, global = true)]
    tips_per_hour: u32,
    /// Networks webhook URLs may resolve to (comma-separated CIDR); by default public
    /// addresses only. Name 127.0.0.0/8 to deliver on loopback.
    #[arg(long, env = "RELAI_WEBHOOK_ALLOWED_NETWORKS", global = true, value_parser = parse_networks)]
    webhook_allowed_networks: Option<Networks>,
    /// How often (milliseconds) the changes log is read for other instances' writes when
    /// no notification came; PostgreSQL notifies at once, SQLite relies on this alone.
    #[arg(long, env = "RELAI_SYNC_INTERVAL_MS", default_value_t = relai::config::DEFAULT_SYNC_INTERVAL_MS, global = true)]
    sync_interval_ms: u64,
    /// Memory (MiB) the rendered lookup answers may take; beyond it answers are rendered
    /// per request.
    #[arg(long, env = "RELAI_ANSWER_CACHE_MB", default_value_t = relai::answers::DEFAULT_ANSWER_CACHE_MB, global = true)]
    answer_cache_mb: usize,
    /// How long (milliseconds) a batch of writes waits for others to join it when writes
    /// arrive side by side (group commit; a lone writer never waits); 0 never waits.
    #[arg(long, env = "RELAI_COMMIT_DELAY_MS", default_value_t = relai::config::DEFAULT_COMMIT_DELAY_MS, global = true)]
    commit_delay_ms: u64,
    /// Public reads (GET/HEAD of public routes) allowed per client address per minute;
    /// 0 turns the limit off.
    #[arg(long, env = "RELAI_PUBLIC_RATE_LIMIT", default_value_t = relai::config::DEFAULT_PUBLIC_RATE_LIMIT, global = true)]
    public_rate_limit: u32,
    /// Reverse proxies (comma-separated CIDR) whose X-Forwarded-For names the client;
    /// by default none, and the peer address is the client.
    #[arg(long, env = "RELAI_TRUSTED_PROXIES", global = true, value_parser = parse_proxies)]
    trusted_proxies: Option<relai::net::TrustedProxies>,
    /// Log lines as json or text; by default text on a terminal, json otherwise.
    #[arg(long, env = "RELAI_LOG_FORMAT", global = true, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate, load the reference data into an empty database, and serve.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "RELAI_BIND", default_value = DEFAULT_BIND)]
        bind: String,
        /// HTTP worker threads (0: one per core).
        #[arg(long, env = "RELAI_WORKERS", default_value_t = 0)]
        workers: usize,
    },
    /// Run the database migrations and exit.
    Migrate,
    /// Load the reference data, or update it in place; optionally the demo scenario.
    Seed {
        /// Also load the demo scenario of the 2 June 2021 outage (historical, never to be dialled).
        #[arg(long, conflicts_with = "clear_demo")]
        demo: bool,
        /// End the demo: resolve its outage and retire its numbers.
        #[arg(long)]
        clear_demo: bool,
        /// Reload the reference data even if it is unchanged.
        #[arg(long)]
        force: bool,
    },
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Issue and revoke tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Import numbers from a CSV file for an organization (all rows or none).
    Import {
        /// The CSV file (header service,territory_kind,territory_code,phone,label,valid_until).
        file: PathBuf,
        /// The publishing organization's id.
        #[arg(long)]
        org: String,
    },
    /// Print the OpenAPI document (regenerate the committed one with
    /// `cargo run -- openapi > openapi/openapi.json`).
    Openapi,
    /// Write a consistent copy of the SQLite database to FILE while the service runs
    /// (PostgreSQL: use pg_dump). Keep a copy of the JWT signing key too.
    Backup {
        /// Where to write the copy; must not exist.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization; prints it as JSON.
    Create {
        #[arg(long)]
        name: String,
        /// sdis, police, gendarmerie, samu, prefecture, ministry or volunteers.
        #[arg(long)]
        kind: String,
        /// SERVICE:KIND:CODE, e.g. 18:departement:33 (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// Create an account; prints it as JSON.
    Create {
        /// The organization it acts for (not needed for admins).
        #[arg(long)]
        org: Option<String>,
        /// admin, authority or moderator.
        #[arg(long)]
        role: String,
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token for an account; prints the token alone.
    Issue {
        #[arg(long)]
        account: String,
        /// Lifetime: 90s, 30m, 12h, 7d (at most 90 days).
        #[arg(long, default_value = "12h")]
        ttl: String,
    },
    /// Revoke a token by its jti.
    Revoke {
        #[arg(long)]
        jti: String,
    },
}

/// A parsed `RELAI_WEBHOOK_ALLOWED_NETWORKS`.
#[derive(Clone, Debug)]
struct Networks(Vec<relai::feeds::webhooks::Network>);

fn parse_networks(s: &str) -> Result<Networks, String> {
    relai::feeds::webhooks::parse_networks(s).map(Networks)
}

fn parse_proxies(s: &str) -> Result<relai::net::TrustedProxies, String> {
    relai::net::parse_trusted_proxies(s)
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    LogFormat::parse(s)
}

fn config(cli: &Cli, bind: &str, workers: usize) -> Config {
    Config {
        database_url: cli
            .database_url
            .clone()
            .unwrap_or_else(|| Config::default_database_url(&cli.data_dir)),
        bind: bind.to_owned(),
        data_dir: cli.data_dir.clone(),
        pool_size: cli.pool_size.max(1),
        workers,
        jwt_private_key: cli
            .jwt_private_key
            .clone()
            .unwrap_or_else(|| Config::default_jwt_key(&cli.data_dir)),
        jwt_previous_key: cli.jwt_previous_key.clone(),
        tips_per_hour: cli.tips_per_hour,
        webhook_allowed_networks: cli
            .webhook_allowed_networks
            .clone()
            .map(|n| n.0)
            .unwrap_or_default(),
        webhook_retry_base: std::time::Duration::from_secs(1),
        sync_interval: std::time::Duration::from_millis(cli.sync_interval_ms.max(10)),
        answer_cache_mb: cli.answer_cache_mb,
        commit_delay: std::time::Duration::from_millis(cli.commit_delay_ms.min(1000)),
        public_rate_limit: cli.public_rate_limit,
        trusted_proxies: cli.trusted_proxies.clone().unwrap_or_default(),
        caller_memory: relai::auth::DEFAULT_CALLER_MEMORY,
    }
}

/// Opens a prepared database and its snapshot, for commands that write.
fn open_state(cli: &Cli) -> anyhow::Result<AppState> {
    let config = config(cli, DEFAULT_BIND, 0);
    let pool = prepare_database(&config)?;
    Ok(AppState::load(pool)?)
}

/// Prints a refused command as its problem, every invalid field on a line.
fn api_error(e: relai::error::ApiError) -> anyhow::Error {
    let problem = e.problem();
    let mut text = problem.detail;
    for f in problem.errors {
        match f.line {
            Some(line) => text.push_str(&format!("\n  line {line}, {}: {}", f.field, f.message)),
            None => text.push_str(&format!("\n  {}: {}", f.field, f.message)),
        }
    }
    anyhow::anyhow!(text)
}

fn init_tracing(format: Option<LogFormat>) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RELAI_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let format = format.unwrap_or_else(LogFormat::default_for_stderr);
    let subscriber = relai::telemetry::subscriber(format, filter, std::io::stderr);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("relai: logging was already set up");
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Serve { bind, workers } => {
            let config = config(&cli, bind, *workers);
            let app = Application::build(&config)?;
            tracing::info!(bind = %config.bind, port = app.port(), "serving");
            actix_web::rt::System::new().block_on(app.run_until_stopped())?;
        }
        Command::Migrate => {
            let config = config(&cli, DEFAULT_BIND, 0);
            let url = DatabaseUrl::parse(&config.database_url)?;
            let mut conn = url.connect()?;
            db::run_migrations(&mut conn)?;
            println!("migrations applied");
        }
        Command::Seed {
            demo,
            clear_demo,
            force,
        } => {
            let config = config(&cli, DEFAULT_BIND, 0);
            let pool = prepare_database(&config)?;
            {
                let mut conn = pool.get().context("connecting to the database")?;
                let started = std::time::Instant::now();
                let outcome = seed::seed_reference(
                    &mut conn,
                    &Reference::embedded()?,
                    *force,
                    relai::store::now(),
                )?;
                println!(
                    "reference data: {outcome:?} ({} ms)",
                    started.elapsed().as_millis()
                );
            }
            if *demo || *clear_demo {
                let state = AppState::load(pool)?;
                let now = relai::store::now();
                let outcome = if *demo {
                    state.write_blocking(|conn, atlas| {
                        seed::seed_demo(conn, atlas, now)
                            .map_err(|e| relai::store::StoreError::Conflict(e.to_string()))
                    })
                } else {
                    state.write_blocking(|conn, atlas| {
                        seed::clear_demo(conn, atlas, now)
                            .map_err(|e| relai::store::StoreError::Conflict(e.to_string()))
                    })
                }
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                println!(
                    "demo: {} outage(s), {} number(s)",
                    outcome.outages, outcome.numbers
                );
            }
        }
        Command::Org(OrgCommand::Create { name, kind, scopes }) => {
            let state = open_state(&cli)?;
            let org = state
                .write_blocking(|conn, atlas| {
                    accounts::create_organization(
                        conn,
                        atlas,
                        None,
                        name,
                        kind,
                        scopes,
                        relai::store::now(),
                    )
                })
                .map_err(api_error)?;
            println!("{}", serde_json::to_string_pretty(&org)?);
        }
        Command::Account(AccountCommand::Create { org, role, name }) => {
            let state = open_state(&cli)?;
            let account = state
                .write_blocking(|conn, _| {
                    accounts::create_account(
                        conn,
                        None,
                        org.as_deref(),
                        role,
                        name,
                        relai::store::now(),
                    )
                })
                .map_err(api_error)?;
            println!("{}", serde_json::to_string_pretty(&account)?);
        }
        Command::Token(TokenCommand::Issue { account, ttl }) => {
            let ttl = accounts::parse_ttl(ttl)
                .ok_or_else(|| anyhow::anyhow!("--ttl: use 90s, 30m, 12h or 7d"))?;
            let config = config(&cli, DEFAULT_BIND, 0);
            let auth = Auth::load(&config.jwt_private_key, config.jwt_previous_key.as_deref())?;
            let state = open_state(&cli)?;
            let issued = state
                .write_blocking(|conn, _| {
                    accounts::issue_token(
                        conn,
                        &auth.signer,
                        None,
                        account,
                        ttl,
                        relai::store::now(),
                    )
                })
                .map_err(api_error)?;
            println!("{}", issued.token);
        }
        Command::Token(TokenCommand::Revoke { jti }) => {
            let state = open_state(&cli)?;
            state
                .write_blocking(|conn, _| {
                    accounts::revoke_token(conn, None, jti, relai::store::now())
                })
                .map_err(api_error)?;
            println!("revoked {jti}");
        }
        Command::Import { file, org } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            let rows = relai::import::parse(&bytes).map_err(|e| api_error(e.into_api()))?;
            let state = open_state(&cli)?;
            let rows: Vec<_> = rows
                .into_iter()
                .map(|r| (r.line, r.into_new_number(org, None)))
                .collect();
            let started = std::time::Instant::now();
            let published = state
                .write_blocking(|conn, atlas| {
                    relai::store::import_numbers(conn, atlas, rows, relai::store::now())
                })
                .map_err(api_error)?;
            println!(
                "imported {} numbers in {} ms",
                published.len(),
                started.elapsed().as_millis()
            );
        }
        Command::Openapi => print!("{}", relai::openapi::spec_json()),
        Command::Backup { file } => {
            let config = config(&cli, DEFAULT_BIND, 0);
            let report = relai::backup::backup(&config.database_url, file)?;
            println!(
                "backup written to {} ({} bytes in {} ms, integrity ok)\n\
                 keep a copy of the JWT signing key with it: {}",
                report.path.display(),
                report.bytes,
                report.elapsed.as_millis(),
                config.jwt_private_key.display()
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Openapi) {
        init_tracing(cli.log_format);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relai: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// glibc gives every thread that allocates at once its own heap ("arena"), up to eight per
/// core, and keeps what each one freed: under a burst of writes on the blocking pool the
/// process would grow by tens of megabytes it never gives back. Two arenas are plenty for
/// a service whose hot path runs on a few worker threads.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called first thing in main, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
