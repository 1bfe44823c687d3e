//! Server-Sent Events of the changes log: resumable with `Last-Event-ID`, with a
//! heartbeat. Each subscriber is a small future on the async runtime, not a thread.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::stream::{self, Stream};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{interval_at, Instant, Interval};

use super::ChangeEvent;
use crate::shutdown::ShutdownListener;

/// How often an idle stream says it is alive (proxies close silent connections).
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// Formats one event as SSE.
pub fn format(event: &ChangeEvent) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {}\n\n",
        event.seq, event.kind, data
    ))
}

/// The last words of a stream when the service shuts down: reconnect in a second (to
/// another instance, or to this one restarted) with `Last-Event-ID`. The event carries no
/// `id`, so the client's last event id stays that of the last change it received.
pub const RECONNECT: &[u8] = b"retry: 1000\nevent: reconnect\ndata: {\"reason\":\"shutdown\"}\n\n";

struct Subscriber {
    /// Missed changes, sent first (after a reconnection with `Last-Event-ID`).
    backlog: std::vec::IntoIter<ChangeEvent>,
    live: broadcast::Receiver<Arc<ChangeEvent>>,
    /// The last sequence sent, so that nothing is sent twice across backlog and live.
    last_sent: i64,
    heartbeat: Interval,
    shutdown: ShutdownListener,
    started: bool,
    done: bool,
}

/// The stream of one subscriber: `retry` advice, the backlog, then live changes and
/// heartbeats. Ends (so the client reconnects and catches up) if it falls too far behind,
/// and with a [`RECONNECT`] event when the service shuts down.
pub fn stream(
    backlog: Vec<ChangeEvent>,
    live: broadcast::Receiver<Arc<ChangeEvent>>,
    last_seen: i64,
    shutdown: ShutdownListener,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    let subscriber = Subscriber {
        backlog: backlog.into_iter(),
        live,
        last_sent: last_seen,
        heartbeat: interval_at(Instant::now() + HEARTBEAT, HEARTBEAT),
        shutdown,
        started: false,
        done: false,
    };
    stream::unfold(subscriber, |mut s| async move {
        if s.done {
            return None;
        }
        if s.shutdown.is_triggered() {
            s.done = true;
            return Some((Ok(Bytes::from_static(RECONNECT)), s));
        }
        if !s.started {
            s.started = true;
            return Some((Ok(Bytes::from_static(b"retry: 3000\n\n")), s));
        }
        for event in s.backlog.by_ref() {
            if event.seq > s.last_sent {
                s.last_sent = event.seq;
                return Some((Ok(format(&event)), s));
            }
        }
        loop {
            tokio::select! {
                received = s.live.recv() => match received {
                    Ok(event) if event.seq > s.last_sent => {
                        s.last_sent = event.seq;
                        return Some((Ok(format(&event)), s));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => {
                        s.done = true;
                        return Some((Ok(Bytes::from_static(b": reconnect with Last-Event-ID to catch up\n\n")), s));
                    }
                },
                _ = s.heartbeat.tick() => {
                    return Some((Ok(Bytes::from_static(b": heartbeat\n\n")), s));
                }
                _ = s.shutdown.wait() => {
                    s.done = true;
                    return Some((Ok(Bytes::from_static(RECONNECT)), s));
                }
            }
        }
    })
}
