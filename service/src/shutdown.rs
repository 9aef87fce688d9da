//! Shutdown on SIGTERM (what systemd, Kubernetes and `docker stop` send) or Ctrl-C.

use tokio_util::sync::CancellationToken;

/// Resolves at the first SIGTERM or SIGINT, logging which. Without a SIGTERM handler (it cannot
/// be installed), only Ctrl-C ends it, and that is logged.
pub async fn signalled() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops this process");
                std::future::pending::<()>().await
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutting down"),
        _ = term => tracing::info!(signal = "SIGTERM", "shutting down"),
    }
}

/// A token cancelled at the first SIGTERM or SIGINT, for every task to watch. Must be called
/// inside the runtime.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        signalled().await;
        cancel.cancel();
    });
    token
}
