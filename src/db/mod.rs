//! Storage: one diesel codebase over SQLite (the embedded default) and PostgreSQL.
//!
//! The backend is chosen from the URL scheme. Queries are written once against
//! [`DbConnection`]; the few places where the backends differ (pragmas, migrations, bulk
//! loading) match on the variant here and nowhere else.

pub mod models;
pub mod schema;

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel::{Connection, PgConnection, QueryResult, RunQueryDsl, SqliteConnection};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Runs the same code on the concrete connection of either backend, for the few
/// operations the multi-backend enum cannot express (batch inserts, migrations), and for
/// the statements of the write path and of authentication: through the enum, every
/// execution renders the statement's SQL text again (diesel's `SerializedQuery` walks the
/// inner query into a fresh string to pass it on, even when the prepared statement is
/// cached), which was a tenth of a write's processor time; on the concrete connection a
/// cached statement only binds its parameters.
#[macro_export]
macro_rules! with_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Sqlite($c) => $body,
            $crate::db::DbConnection::Postgres($c) => $body,
        }
    };
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Which engine a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A parsed database URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    backend: Backend,
    /// What the driver is given: a file path for SQLite, the URL itself for PostgreSQL.
    target: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    Url(String),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("storage unavailable: {0}")]
    Pool(#[from] r2d2::PoolError),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self {
                backend: Backend::Postgres,
                target: url.to_owned(),
            });
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| DbError::Url(url.to_owned()))?;
        if path.is_empty() {
            return Err(DbError::Url(url.to_owned()));
        }
        Ok(Self {
            backend: Backend::Sqlite,
            target: path.to_owned(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// What the driver is given: the file path (SQLite) or the URL (PostgreSQL).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The SQLite file path, if this is a SQLite URL.
    pub fn sqlite_path(&self) -> Option<&str> {
        (self.backend == Backend::Sqlite).then_some(self.target.as_str())
    }

    /// Opens one connection of the right backend, set up for this service.
    pub fn connect(&self) -> Result<DbConnection, DbError> {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::establish(&self.target)
                    .map_err(|e| DbError::Connect(e.to_string()))?;
                // WAL lets reads run beside the writer; synchronous=FULL makes a committed
                // write survive a crash or power loss before we answer 2xx; foreign keys
                // are off by default in SQLite.
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                )
                .map_err(|e| DbError::Connect(e.to_string()))?;
                Ok(DbConnection::Sqlite(conn))
            }
            Backend::Postgres => PgConnection::establish(&self.target)
                .map(DbConnection::Postgres)
                .map_err(|e| DbError::Connect(e.to_string())),
        }
    }
}

/// Runs the embedded migrations of the connection's backend.
pub fn run_migrations(conn: &mut DbConnection) -> Result<(), DbError> {
    let result = match conn {
        DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS).map(|_| ()),
        DbConnection::Postgres(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|_| ()),
    };
    result.map_err(|e| DbError::Migration(e.to_string()))
}

/// Compile-time options the bundled SQLite is expected to have (see `.cargo/config.toml`),
/// without which it runs correctly but slower.
pub const SQLITE_BUILD_OPTIONS: &[&str] = &["ENABLE_QPSG", "DEFAULT_MEMSTATUS=0"];

/// Of [`SQLITE_BUILD_OPTIONS`], those the SQLite behind `conn` was built without (none
/// on PostgreSQL).
pub fn missing_sqlite_options(conn: &mut DbConnection) -> QueryResult<Vec<&'static str>> {
    #[derive(diesel::QueryableByName)]
    struct Used {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        used: i32,
    }
    let DbConnection::Sqlite(c) = conn else {
        return Ok(Vec::new());
    };
    let mut missing = Vec::new();
    for option in SQLITE_BUILD_OPTIONS {
        let row: Used = diesel::sql_query("SELECT sqlite_compileoption_used(?) AS used")
            .bind::<diesel::sql_types::Text, _>(*option)
            .get_result(c)?;
        if row.used == 0 {
            missing.push(*option);
        }
    }
    Ok(missing)
}

/// Hands out connections made by [`DatabaseUrl::connect`].
#[derive(Debug)]
pub struct Manager(DatabaseUrl);

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        self.0.connect().map_err(|e| match e {
            DbError::Query(q) => r2d2::Error::QueryError(q),
            other => r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(
                other.to_string(),
            )),
        })
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        match conn {
            // An open SQLite file does not go away under its connection: a round of the
            // parser on every checkout would buy nothing.
            DbConnection::Sqlite(_) => Ok(()),
            // A PostgreSQL connection may have died with its server: find out before a
            // request does.
            DbConnection::Postgres(_) => conn
                .batch_execute("SELECT 1")
                .map_err(r2d2::Error::QueryError),
        }
    }

    /// A connection given back while its thread panics, or with a transaction still open
    /// or in error (a panic or an error that skipped the rollback), is closed rather than
    /// handed to the next request: that one would run inside, and never commit, what
    /// the previous one left behind. Closing it rolls the transaction back.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

pub type DbPool = Pool<Manager>;
pub type PooledConn = PooledConnection<Manager>;

/// Builds the pool. Connections are opened lazily so that a service can start, and keep
/// serving its snapshot, while the database is briefly away.
pub fn pool(url: &DatabaseUrl, size: u32) -> Result<DbPool, DbError> {
    Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(5))
        .test_on_check_out(true)
        .build(Manager(url.clone()))
        .map_err(DbError::Pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_backend() {
        let u = DatabaseUrl::parse("sqlite://data/relai.db").unwrap();
        assert_eq!(
            (u.backend(), u.sqlite_path()),
            (Backend::Sqlite, Some("data/relai.db"))
        );
        let u = DatabaseUrl::parse("sqlite:///var/lib/relai/relai.db").unwrap();
        assert_eq!(u.sqlite_path(), Some("/var/lib/relai/relai.db"));
        assert_eq!(
            DatabaseUrl::parse("postgres://h/db").unwrap().backend(),
            Backend::Postgres
        );
        assert_eq!(
            DatabaseUrl::parse("postgresql://h/db").unwrap().backend(),
            Backend::Postgres
        );
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
        assert!(DatabaseUrl::parse("sqlite://").is_err());
        assert!(DatabaseUrl::parse("relai.db").is_err());
    }

    /// The bundled SQLite carries the options of `.cargo/config.toml`: a build that lost
    /// them would still pass every other test, only slower.
    #[test]
    fn the_bundled_sqlite_has_its_build_options() {
        let mut conn = DatabaseUrl::parse("sqlite://:memory:")
            .unwrap()
            .connect()
            .unwrap();
        assert_eq!(
            missing_sqlite_options(&mut conn).unwrap(),
            Vec::<&str>::new()
        );
    }
}
