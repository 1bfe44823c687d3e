//! The `relai` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use relai::config::{Config, DEFAULT_BIND};
use relai::db::{self, DatabaseUrl};
use relai::seed::{self, Reference};
use relai::startup::{prepare_database, Application};
use relai::state::AppState;

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
    /// Print the OpenAPI document (regenerate the committed one with
    /// `cargo run -- openapi > openapi/openapi.json`).
    Openapi,
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
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RELAI_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
        Command::Openapi => print!("{}", relai::openapi::spec_json()),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Openapi) {
        init_tracing();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relai: {e:#}");
            ExitCode::FAILURE
        }
    }
}
