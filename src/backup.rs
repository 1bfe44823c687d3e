//! `relai backup FILE`: a consistent copy of a SQLite database while the service runs.
//!
//! `VACUUM INTO` reads the database in one read transaction (in WAL mode, writers go on
//! meanwhile) and writes a compact copy: every change committed before it began, nothing
//! half-written. PostgreSQL has its own tools for this (`pg_dump`), which this command
//! points to rather than wraps.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{Connection, QueryableByName, RunQueryDsl, SqliteConnection};

use crate::db::{Backend, DatabaseUrl};

/// Why a backup was not made.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "relai backup copies SQLite databases; for PostgreSQL use its own tools while the \
         service runs: `pg_dump -Fc -f relai.dump \"$DATABASE_URL\"`, restored with \
         `pg_restore --no-owner -d NEW_DATABASE relai.dump`. Back up the JWT signing key \
         (RELAI_JWT_PRIVATE_KEY, by default <data dir>/jwt-ed25519.pem) as well"
    )]
    /// The database is PostgreSQL: use `pg_dump`.
    Postgres,
    #[error("{0} already exists; a backup never overwrites a file")]
    /// The destination exists.
    Exists(PathBuf),
    #[error("the database {0} does not exist")]
    /// The SQLite file to copy does not exist.
    NoDatabase(PathBuf),
    #[error("the backup path must be valid UTF-8: {0}")]
    /// A path SQLite cannot be given.
    Path(PathBuf),
    #[error("{0}")]
    /// The database URL is not understood.
    Url(#[from] crate::db::DbError),
    #[error("cannot open the database: {0}")]
    /// The database cannot be opened.
    Connect(#[from] diesel::ConnectionError),
    #[error("the copy failed: {0}")]
    /// SQLite refused the copy.
    Copy(#[from] diesel::result::Error),
    #[error("the copy failed its integrity check: {0}")]
    /// The copy is damaged.
    Integrity(String),
    #[error("{0}")]
    /// A file operation failed.
    Io(#[from] std::io::Error),
}

/// A backup made.
#[derive(Debug, Clone)]
pub struct BackupReport {
    /// The file written.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// How long the copy took.
    pub elapsed: Duration,
}

#[derive(QueryableByName)]
struct IntegrityRow {
    #[diesel(sql_type = Text)]
    integrity_check: String,
}

/// `PRAGMA integrity_check` of a SQLite file: `Ok` when it says `ok`, else what it found.
pub fn integrity_check(path: &Path) -> Result<(), BackupError> {
    let target = path
        .to_str()
        .ok_or_else(|| BackupError::Path(path.into()))?;
    let mut conn = SqliteConnection::establish(target)?;
    let rows: Vec<IntegrityRow> = diesel::sql_query("PRAGMA integrity_check").load(&mut conn)?;
    let found: Vec<String> = rows.into_iter().map(|r| r.integrity_check).collect();
    if found == ["ok"] {
        Ok(())
    } else {
        Err(BackupError::Integrity(found.join("; ")))
    }
}

/// Copies the database at `database_url` to `dest`, which must not exist, then checks
/// the copy's integrity. The copy is readable by its owner only: it holds webhook secrets.
pub fn backup(database_url: &str, dest: &Path) -> Result<BackupReport, BackupError> {
    let url = DatabaseUrl::parse(database_url)?;
    let source = match (url.backend(), url.sqlite_path()) {
        (Backend::Sqlite, Some(path)) => PathBuf::from(path),
        _ => return Err(BackupError::Postgres),
    };
    // Opening a missing SQLite file would create an empty database and back that up.
    if !source.is_file() {
        return Err(BackupError::NoDatabase(source));
    }
    if dest.symlink_metadata().is_ok() {
        return Err(BackupError::Exists(dest.into()));
    }
    let dest_text = dest
        .to_str()
        .ok_or_else(|| BackupError::Path(dest.into()))?;
    let source_text = source
        .to_str()
        .ok_or_else(|| BackupError::Path(source.clone()))?;
    let started = Instant::now();
    let mut conn = SqliteConnection::establish(source_text)?;
    conn.batch_execute("PRAGMA busy_timeout = 10000;")?;
    // The file name is bound as a parameter, never spliced into the SQL: any name, quotes
    // included, is taken literally.
    diesel::sql_query("VACUUM INTO ?")
        .bind::<Text, _>(dest_text)
        .execute(&mut conn)?;
    drop(conn);
    let elapsed = started.elapsed();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600))?;
    }
    integrity_check(dest)?;
    Ok(BackupReport {
        path: dest.into(),
        bytes: std::fs::metadata(dest)?.len(),
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("relai-backup-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn copies_refuses_to_overwrite_and_takes_odd_names_literally() {
        let dir = temp_dir();
        let db = dir.join("source.db");
        let mut conn = SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a'), ('b');",
        )
        .unwrap();
        let url = format!("sqlite://{}", db.display());
        let dest = dir.join("it's a \"copy\"; DROP TABLE t; --.db");
        let report = backup(&url, &dest).unwrap();
        assert!(report.bytes > 0);
        integrity_check(&dest).unwrap();
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut copy = SqliteConnection::establish(dest.to_str().unwrap()).unwrap();
        let count: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM t")
            .get_result(&mut copy)
            .unwrap();
        assert_eq!(count.n, 2);
        let still: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM t")
            .get_result(&mut conn)
            .unwrap();
        assert_eq!(still.n, 2, "the source is untouched");
        assert!(matches!(backup(&url, &dest), Err(BackupError::Exists(_))));
        assert!(matches!(
            backup(
                &format!("sqlite://{}", dir.join("missing.db").display()),
                &dir.join("x.db")
            ),
            Err(BackupError::NoDatabase(_))
        ));
        assert!(!dir.join("missing.db").exists());
        assert!(matches!(
            backup("postgres://u@h/db", &dir.join("y.db")),
            Err(BackupError::Postgres)
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
