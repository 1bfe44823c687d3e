//! Following the changes log: the writes of other instances (and of the command line)
//! reach this instance's snapshot, its live subscribers and its feeds.
//!
//! On PostgreSQL a dedicated connection LISTENs on [`store::CHANGES_CHANNEL`], which every
//! write transaction NOTIFYs on commit, so another instance's write shows here within a
//! few tens of milliseconds. Reading the log every `interval` is the fallback (a lost
//! notification, a listener reconnecting) and the only way on SQLite. The same loop keeps
//! track of whether storage answers, for `/readyz` and the stale-data header.

use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::db::DatabaseUrl;
use crate::state::AppState;
use crate::store;

/// How often the listener connection is checked for notifications: a check is a
/// non-blocking read of the socket, no round trip.
const NOTIFICATION_CHECK: Duration = Duration::from_millis(20);
/// How long to wait before opening the listener connection again after it failed.
const LISTENER_RETRY: Duration = Duration::from_secs(2);

/// Starts the follower thread. It stops by itself once `state` is dropped.
pub fn spawn(state: &Arc<AppState>, url: DatabaseUrl, interval: Duration) -> JoinHandle<()> {
    let state = Arc::downgrade(state);
    std::thread::Builder::new()
        .name("relai-follow".to_owned())
        .spawn(move || follow(state, url, interval))
        .expect("spawning the changes-log follower")
}

fn follow(state: Weak<AppState>, url: DatabaseUrl, interval: Duration) {
    let mut listener: Option<PgConnection> = None;
    let mut listener_tried: Option<Instant> = None;
    let mut last_poll = Instant::now();
    loop {
        std::thread::sleep(NOTIFICATION_CHECK);
        let Some(state) = state.upgrade() else {
            return;
        };
        if url.is_postgres()
            && listener.is_none()
            && listener_tried.is_none_or(|t| t.elapsed() >= LISTENER_RETRY)
        {
            listener_tried = Some(Instant::now());
            listener = listen(&url);
        }
        let mut woken = false;
        let mut lost = false;
        if let Some(conn) = listener.as_mut() {
            for notification in conn.notifications_iter() {
                match notification {
                    Ok(_) => woken = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "changes listener lost; polling until it is back");
                        lost = true;
                        break;
                    }
                }
            }
        }
        if lost {
            listener = None;
        }
        if woken || last_poll.elapsed() >= interval {
            last_poll = Instant::now();
            catch_up(&state);
        }
    }
}

/// Opens the listening connection.
fn listen(url: &DatabaseUrl) -> Option<PgConnection> {
    let mut conn = PgConnection::establish(url.target())
        .map_err(|e| tracing::debug!(error = %e, "changes listener cannot connect"))
        .ok()?;
    conn.batch_execute(&format!("LISTEN {}", store::CHANGES_CHANNEL))
        .map_err(|e| tracing::warn!(error = %e, "LISTEN failed"))
        .ok()?;
    Some(conn)
}

/// Applies what the log holds beyond the snapshot, and records whether storage answered.
fn catch_up(state: &AppState) {
    let result = state
        .pool()
        .get()
        .map_err(|e| e.to_string())
        .and_then(|mut conn| state.catch_up(&mut conn).map_err(|e| e.to_string()));
    match result {
        Ok(applied) => {
            if applied > 0 {
                tracing::debug!(applied, "snapshot caught up with the changes log");
            }
            state.mark_storage(true);
        }
        Err(e) => {
            if state.storage_up() {
                tracing::error!(error = %e, "storage unreachable: serving the last snapshot");
            }
            state.mark_storage(false);
        }
    }
}
