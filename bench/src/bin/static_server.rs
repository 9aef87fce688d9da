//! The ceiling for the metadata API benchmark: the least an HTTP/1.1 server on this stack can do
//! per request. hyper on tokio's multi-threaded runtime (as the agent), answering every request
//! 200 with a fixed body of the given size, no routing, no headers of its own, no telemetry.
//!
//! `static_server <addr> <body-bytes>`; prints `listening <addr>` once bound.

use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::net::TcpListener;

/// Answers every HTTP request 200 with a fixed body: the ceiling of the metadata API benchmark.
#[derive(Debug, Parser)]
#[command(name = "static_server")]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1:0")]
    addr: std::net::SocketAddr,
    /// Size of the body, bytes.
    #[arg(default_value_t = 36)]
    body_bytes: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let body = Bytes::from(vec![b'x'; args.body_bytes]);
    let listener = TcpListener::bind(args.addr).await?;
    println!("listening {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_request: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(Response::new(Full::new(body))) }
            });
            // A client closing mid-request is not the benchmark's concern.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
