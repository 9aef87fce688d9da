//! Shutdown on SIGTERM or Ctrl-C: one cancellation token that every task watches.

use tokio_util::sync::CancellationToken;

/// A token cancelled at the first SIGTERM or Ctrl-C. Must be called inside the runtime.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops the agent");
                    std::future::pending::<()>().await
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down"),
            _ = term => tracing::info!(signal = "SIGTERM", "shutting down"),
        }
        cancel.cancel();
    });
    token
}
