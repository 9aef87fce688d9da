//! The admin API's listener: HTTPS (or plain HTTP on loopback), with its connections bounded so
//! that a flood of idle sockets or of TLS handshakes that never finish cannot take it or the
//! agent down: at most [`MAX_CONNECTIONS`] at once (more are closed at accept and counted), a
//! handshake must finish within [`HANDSHAKE_TIMEOUT`], a request head within
//! [`HEADER_TIMEOUT`]. The metadata API has its own listener and bounds; nothing here touches
//! them. What hyper's parser refuses is answered as JSON, like every other error
//! (`../http/parser_errors.rs`).

use crate::http::parser_errors::JsonParserErrors;
use crate::metrics::ADMIN_CONNECTIONS_REFUSED_TOTAL;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Admin connections open at once at most: a few engineers and `query` fetches, not a crowd.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Time a client has to finish the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to send a request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for downloads in progress.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown`, over TLS when `tls` is given.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    metrics::counter!(ADMIN_CONNECTIONS_REFUSED_TOTAL, "reason" => "cap").increment(0);
    metrics::counter!(ADMIN_CONNECTIONS_REFUSED_TOTAL, "reason" => "handshake").increment(0);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let tasks = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "admin API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!(ADMIN_CONNECTIONS_REFUSED_TOTAL, "reason" => "cap").increment(1);
            drop(stream);
            continue;
        };
        let (router, tls, shutdown) = (router.clone(), tls.clone(), shutdown.clone());
        tasks.spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(JsonParserErrors::new(stream, ignore), peer, router, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(JsonParserErrors::new(stream, ignore), peer, router, shutdown).await,
                        Ok(Err(error)) => {
                            metrics::counter!(ADMIN_CONNECTIONS_REFUSED_TOTAL, "reason" => "handshake").increment(1);
                            tracing::info!(target: "imds::admin", caller = %peer.ip(), %error, "admin TLS handshake failed");
                        }
                        Err(_) => {
                            metrics::counter!(ADMIN_CONNECTIONS_REFUSED_TOTAL, "reason" => "handshake").increment(1);
                            tracing::info!(target: "imds::admin", caller = %peer.ip(), "admin TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    tasks.close();
    let _ = tokio::time::timeout(DRAIN, tasks.wait()).await;
    Ok(())
}

/// The admin API keeps no per-status counter: a parser error is only answered (as JSON).
fn ignore(_status: u16) {}

/// One HTTP/1.1 connection, its caller's address given to the routes as axum's `ConnectInfo`.
async fn connection<S>(stream: S, peer: SocketAddr, router: Router, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // A request head is a path and a token: 64 KiB is plenty, and bounds each connection's buffer.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_header_size(64 * 1024)
        .max_buf_size(96 * 1024);
    let connection =
        builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN, connection).await;
        }
    }
}
