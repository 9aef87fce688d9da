//! The metadata API's connections, bounded: a cap on open connections, a header-read timeout and
//! an idle timeout, so that callers that open connections and send nothing (or a byte a minute)
//! cannot take the port from the others. Measured before this existed: with `ulimit -n 1024`,
//! 1,100 idle connections made every request time out, and slowloris connections were held for
//! as long as their senders liked.
//!
//! - **Cap** (`--max-connections`, lowered to fit the open-file limit): a new connection at the cap
//!   closes the connection that has waited longest for a request (idle, or still sending its
//!   head), as nginx reuses keep-alive connections when out of them; a busy one (a request being
//!   answered) is never closed. Only when every connection is busy is the new one refused.
//! - **Idle timeout** (`--idle-timeout`): a connection with no request byte for that long closes.
//! - **Header-read timeout** (`--header-read-timeout`): from a request's first byte, its whole head
//!   must arrive within that time.
//!
//! hyper's own answers to requests it cannot parse are rewritten as JSON (`parser_errors.rs`).

use super::MetadataApi;
use super::parser_errors::JsonParserErrors;
use crate::metrics::{CONNECTIONS_CLOSED_TOTAL, OPEN_CONNECTIONS};
use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds on the metadata API's connections.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// Open connections at most (already lowered to what the open-file limit allows).
    pub max_connections: usize,
    /// Time a caller has to send a whole request head.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request.
    pub idle_timeout: Duration,
}

/// Waiting for a request's first byte.
const IDLE: u8 = 0;
/// A request's head is arriving.
const READING_HEAD: u8 = 1;
/// A request is being answered.
const BUSY: u8 = 2;

/// One open connection, as the cap and the timeouts see it.
#[derive(Debug)]
struct Conn {
    state: AtomicU8,
    /// When the state last changed, in milliseconds since the registry's epoch.
    since_ms: AtomicU64,
    close: CancellationToken,
}

/// The open connections.
#[derive(Debug)]
struct Registry {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    epoch: Instant,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn set(&self, conn: &Conn, state: u8) {
        conn.since_ms.store(self.now_ms(), Ordering::Relaxed);
        conn.state.store(state, Ordering::Relaxed);
    }

    fn len(&self) -> usize {
        self.conns.lock().map_or(0, |c| c.len())
    }

    /// Closes the connection that has waited longest without a request in progress.
    fn evict_longest_waiting(&self) -> bool {
        let Ok(mut conns) = self.conns.lock() else {
            return false;
        };
        let oldest = conns
            .iter()
            .filter(|(_, c)| c.state.load(Ordering::Relaxed) != BUSY)
            .min_by_key(|(_, c)| c.since_ms.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        match oldest.and_then(|id| conns.remove(&id)) {
            Some(conn) => {
                conn.close.cancel();
                true
            }
            None => false,
        }
    }

    /// Closes connections past their idle or header-read deadline.
    fn expire(&self, limits: &ConnectionLimits) {
        let now = self.now_ms();
        let Ok(mut conns) = self.conns.lock() else {
            return;
        };
        conns.retain(|_, conn| {
            let waited =
                Duration::from_millis(now - conn.since_ms.load(Ordering::Relaxed).min(now));
            let reason = match conn.state.load(Ordering::Relaxed) {
                IDLE if waited >= limits.idle_timeout => "idle_timeout",
                READING_HEAD if waited >= limits.header_read_timeout => "header_timeout",
                _ => return true,
            };
            metrics::counter!(CONNECTIONS_CLOSED_TOTAL, "reason" => reason).increment(1);
            conn.close.cancel();
            false
        });
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown`, then lets the requests in
/// progress finish (the caller bounds that wait).
pub(crate) async fn serve(
    listener: TcpListener,
    app: MetadataApi,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    // Shared by the connections: a request clones one `Arc`, not the API's parts.
    let app = Arc::new(app);
    let registry = Arc::new(Registry {
        conns: Mutex::new(HashMap::new()),
        epoch: Instant::now(),
    });
    let tasks = TaskTracker::new();
    let reaper = {
        let registry = Arc::clone(&registry);
        let shutdown = shutdown.clone();
        let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            while tokio::select! { () = shutdown.cancelled() => false, _ = interval.tick() => true }
            {
                registry.expire(&limits);
                metrics::gauge!(OPEN_CONNECTIONS).set(registry.len() as f64);
            }
        })
    };
    let mut next_id = 0u64;
    loop {
        let (stream, addr) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset before accept: not fatal.
                    tracing::warn!(%error, "accepting a metadata API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if registry.len() >= limits.max_connections {
            if registry.evict_longest_waiting() {
                metrics::counter!(CONNECTIONS_CLOSED_TOTAL, "reason" => "evicted").increment(1);
            } else {
                metrics::counter!(CONNECTIONS_CLOSED_TOTAL, "reason" => "refused").increment(1);
                drop(stream);
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let conn = Arc::new(Conn {
            state: AtomicU8::new(IDLE),
            since_ms: AtomicU64::new(registry.now_ms()),
            close: shutdown.child_token(),
        });
        if let Ok(mut conns) = registry.conns.lock() {
            conns.insert(next_id, Arc::clone(&conn));
        }
        tasks.spawn(serve_connection(
            stream,
            addr,
            Arc::clone(&app),
            Arc::clone(&registry),
            next_id,
            conn,
            shutdown.clone(),
        ));
    }
    drop(listener);
    tasks.close();
    tasks.wait().await;
    reaper.abort();
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    addr: SocketAddr,
    app: Arc<MetadataApi>,
    registry: Arc<Registry>,
    id: u64,
    conn: Arc<Conn>,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(Watched {
        inner: JsonParserErrors::new(stream, count_parser_error),
        conn: Arc::clone(&conn),
        registry: Arc::clone(&registry),
    });
    let service = {
        let conn = Arc::clone(&conn);
        let registry = Arc::clone(&registry);
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            registry.set(&conn, BUSY);
            request.extensions_mut().insert(ConnectInfo(addr));
            let app = Arc::clone(&app);
            let conn = Arc::clone(&conn);
            let registry = Arc::clone(&registry);
            async move {
                let response = app.answer(request.map(axum::body::Body::new)).await;
                registry.set(&conn, IDLE);
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // No timer for hyper: the deadlines are the reaper's (above). hyper's own header timer would
    // be armed and reset on every request, in the request path, for nothing.
    builder
        // A request head of at most 80 KiB (room for a URI of hyper's 64 KiB maximum, a longer
        // one being its 414; past 80 KiB its 431), at most 64 headers, at most 96 KiB buffered.
        .max_header_size(80 * 1024)
        .max_headers(64)
        .max_buf_size(96 * 1024);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    // One cancellation future per connection (each poll of one takes a lock): the connection's
    // token is a child of the shutdown token.
    tokio::select! {
        _ = connection.as_mut() => {}
        () = conn.close.cancelled() => {
            if shutdown.is_cancelled() {
                // Shutdown: idle connections close, requests in progress finish (`run` bounds
                // the wait with its shutdown deadline).
                connection.as_mut().graceful_shutdown();
                let _ = connection.as_mut().await;
            }
            // Otherwise evicted or past a deadline: dropping the connection closes the socket.
        }
    }
    if let Ok(mut conns) = registry.conns.lock() {
        conns.remove(&id);
    }
}

/// The socket, watched: a first byte while idle starts the header-read clock (hyper's bodyless
/// error answers are replaced by JSON ones by the wrapper inside).
struct Watched {
    inner: JsonParserErrors<TcpStream>,
    conn: Arc<Conn>,
    registry: Arc<Registry>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.conn.state.load(Ordering::Relaxed) == IDLE {
            self.registry.set(&self.conn, READING_HEAD);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts a parser error answered with JSON like any other answer.
fn count_parser_error(status: u16) {
    super::request_metrics::count_response(("other", "none", "json", status));
}
