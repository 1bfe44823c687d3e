//! Graceful shutdown: one signal that the HTTP server and every open Server-Sent Events
//! stream wait on. When it fires (SIGTERM or SIGINT in `relai serve`, a call in tests),
//! the server stops accepting connections and lets in-flight requests finish, and each
//! event stream sends a last "reconnect" event and ends, instead of being cut when the
//! shutdown timeout runs out.

use std::time::Duration;

use tokio::sync::watch;

/// How long in-flight requests get to finish after the signal; then workers are dropped.
/// Below the 30 s most orchestrators (Kubernetes, Docker) wait before killing, so that
/// the process exits on its own. Event streams end at once and do not need it.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// The shutdown signal of one running service; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown::new()
    }
}

impl Shutdown {
    /// A signal not yet triggered.
    pub fn new() -> Shutdown {
        Shutdown {
            tx: std::sync::Arc::new(watch::channel(false).0),
        }
    }

    /// Starts the shutdown. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// A handle to wait on.
    pub fn subscribe(&self) -> ShutdownListener {
        ShutdownListener {
            rx: self.tx.subscribe(),
        }
    }
}

/// Waits for a [`Shutdown`].
#[derive(Debug, Clone)]
pub struct ShutdownListener {
    rx: watch::Receiver<bool>,
}

impl ShutdownListener {
    /// Resolves once the shutdown has started (at once if it already has).
    pub async fn wait(&mut self) {
        // An error means the sender is gone: the service is going away too.
        let _ = self.rx.wait_for(|stopping| *stopping).await;
    }

    /// Whether the shutdown has started.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops gracefully");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listeners_wake_once_triggered_even_when_late() {
        let shutdown = Shutdown::new();
        let mut early = shutdown.subscribe();
        assert!(!early.is_triggered());
        let waiting = tokio::spawn(async move { early.wait().await });
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken")
            .unwrap();
        let mut late = shutdown.subscribe();
        assert!(late.is_triggered());
        tokio::time::timeout(Duration::from_secs(1), late.wait())
            .await
            .expect("a listener made after the signal does not wait");
        shutdown.trigger();
        assert!(shutdown.is_triggered());
    }
}
