//! Log access from a dev box: an admin listener (`--admin-listen`), never the metadata port (VMs
//! must not read host logs), over HTTPS (`tls.rs`; plain HTTP only on loopback) with bounded
//! connections (`serve.rs`), that requires `Authorization: Bearer <token>` of the right scope
//! (`auth.rs`: the logs token lists and serves this host's raw hourly logs and their Parquet
//! files; the fault token switches fault injection, `GET|PUT|DELETE /fault`, see `../http/fault.rs`).
//!
//! Paths are never built from what the client sends: the agent enumerates its own files and serves
//! one only if the requested name is exactly one of them, so traversal (`..`, encoded or not,
//! absolute paths) finds nothing. Only regular files reached without a symbolic link are listed,
//! and a file is opened without following links and checked again on the open handle: a link
//! named like an hourly log (to `/etc/shadow`, say) is neither listed nor served; nor is a hard
//! link, or a file another user owns. Downloads honour `Range` (`ranges.rs`), so a cut one
//! resumes where it stopped. Every access,
//! allowed or refused, is logged (target `imds::admin`).

mod auth;
mod ranges;
mod serve;
mod tls;

pub(crate) use auth::AdminTokens;
pub(crate) use serve::serve;
pub(crate) use tls::acceptor as tls_acceptor;

use crate::http::fault::{FaultSpec, Faults};
use crate::logs::local_files;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use logrecord::layout::{self, Offered};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest request body the admin API reads.
const MAX_BODY_BYTES: usize = 16 * 1024;

/// What the admin listener serves, and to whom.
#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    pub gate: Arc<auth::Gate>,
    pub data_dir: PathBuf,
    pub faults: Arc<Faults>,
}

/// One file offered for download: its listing entry (the contract `query` reads) and where it is.
#[derive(Debug, Clone)]
pub(crate) struct OfferedFile {
    pub entry: Offered,
    path: PathBuf,
}

pub(crate) fn router(state: AdminState) -> Router {
    Router::new()
        .route("/logs", get(list))
        .route("/logs/{*name}", get(fetch))
        .route(
            "/fault",
            get(show_fault)
                .put(set_fault)
                .delete(clear_fault)
                .fallback(|| async {
                    error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "method not allowed: /fault takes GET, PUT or DELETE",
                    )
                }),
        )
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not found: the admin API has /logs, /logs/<name> and /fault",
            )
        })
        // A fault setting is a few dozen bytes.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
}

impl AdminState {
    /// The admin API's state: who may do what, where the files are, the fault switch.
    pub(crate) fn new(tokens: AdminTokens, data_dir: PathBuf, faults: Arc<Faults>) -> Self {
        AdminState {
            gate: Arc::new(auth::Gate::new(tokens)),
            data_dir,
            faults,
        }
    }
}

/// Bearer token and scope check, the brake on failed attempts, and the access log.
async fn authorize(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    let caller = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    let path = crate::http::truncate(request.uri().path(), 512).to_owned();
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let scope = auth::Scope::of_path(request.uri().path());
    let response = match state.gate.check(caller, presented, scope) {
        Ok(()) => next.run(request).await,
        Err(auth::Refusal::Missing) => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "missing bearer token: send Authorization: Bearer <admin token>",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
        Err(auth::Refusal::Wrong) => error(StatusCode::FORBIDDEN, "wrong bearer token"),
        Err(auth::Refusal::OutOfScope) => error(
            StatusCode::FORBIDDEN,
            match scope {
                auth::Scope::Fault => {
                    "this token reads logs; /fault needs the fault token (--admin-fault-token-file)"
                }
                auth::Scope::Logs => "this token switches faults; /logs needs the logs token",
            },
        ),
        Err(auth::Refusal::Throttled(wait)) => {
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "too many failed attempts from this address: {} within {} s; try again later",
                    auth::MAX_FAILURES,
                    auth::FAILURE_WINDOW.as_secs()
                ),
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(wait.as_secs().max(1)),
            );
            response
        }
    };
    let mut response = response;
    response.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static(crate::http::count::SERVER),
    );
    tracing::info!(target: "imds::admin", %caller, path = %path, status = response.status().as_u16(), "admin access");
    response
}

async fn list(State(state): State<AdminState>) -> Response {
    let files: Vec<Offered> = offered(&state.data_dir)
        .into_iter()
        .map(|file| file.entry)
        .collect();
    let body = json!({ "files": files });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body.to_string(),
    )
        .into_response()
}

async fn fetch(State(state): State<AdminState>, request: Request) -> Response {
    let name = request
        .uri()
        .path()
        .strip_prefix("/logs/")
        .unwrap_or_default();
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    let Some(file) = offered(&state.data_dir)
        .into_iter()
        .find(|f| f.entry.name == name)
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("no such log file: {}", crate::http::truncate(&name, 256)),
        );
    };
    // Removed by retention between the listing and the open, or replaced by something that is
    // not the agent's own file: not found either way (the reason goes to the access log).
    let (handle, meta) = match open_own_file(&file.path) {
        Ok(opened) => opened,
        Err(reason) => {
            tracing::info!(target: "imds::admin", file = %file.entry.name, %reason, "admin file refused");
            return error(
                StatusCode::NOT_FOUND,
                &format!("no such log file: {}", file.entry.name),
            );
        }
    };
    let content_type = if file.entry.kind == "raw" {
        "application/x-ndjson"
    } else {
        "application/vnd.apache.parquet"
    };
    ranges::serve_file(handle, &meta, content_type, request.headers()).await
}

async fn show_fault(State(state): State<AdminState>) -> Response {
    fault_response(state.faults.current())
}

/// `PUT /fault` with `{"latency_ms": N, "error_ratio": R}` (either may be left out: 0).
async fn set_fault(
    State(state): State<AdminState>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // Over the body limit (or a body that failed to arrive): the same JSON error shape as
    // everything else, not axum's plain-text rejection.
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                rejection.status(),
                &format!("invalid fault request: {}", rejection.body_text()),
            );
        }
    };
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid fault: {e}; send {{\"latency_ms\": 200, \"error_ratio\": 0.5}}"),
            );
        }
    };
    if let Err(message) = spec.validate() {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("invalid fault: {message}"),
        );
    }
    state.faults.set(spec);
    fault_response(spec)
}

async fn clear_fault(State(state): State<AdminState>) -> Response {
    state.faults.set(FaultSpec::default());
    fault_response(FaultSpec::default())
}

fn fault_response(spec: FaultSpec) -> Response {
    let body = json!({
        "latency_ms": spec.latency_ms,
        "error_ratio": spec.error_ratio,
        "active": !spec.is_off(),
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// Opens one of the agent's own files for reading: without following a link in its last
/// component, and only if the opened handle is a regular file with one link, owned by the
/// agent's user. Checked on the handle, so nothing swapped in after the listing is served, and a
/// hard link to a file outside the log directory (made by someone who can write there) is not.
fn open_own_file(path: &Path) -> std::io::Result<(std::fs::File, std::fs::Metadata)> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if let Some(why) = not_own_file(&meta) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, why));
    }
    Ok((file, meta))
}

/// Why a file is not one the agent wrote and may serve, if it is not.
fn not_own_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        Some("not a regular file")
    } else if meta.nlink() != 1 {
        Some("a file with more than one link (a hard link)")
    } else if meta.uid() != rustix::process::geteuid().as_raw() {
        Some("not owned by the agent's user")
    } else {
        None
    }
}

/// The size of `path` if it is one of the agent's own files (see [`not_own_file`]) reached from
/// `data_dir` through real directories only: no component below `data_dir` is a symbolic link.
fn plain_file_size(data_dir: &Path, path: &Path) -> Option<u64> {
    let relative = path.strip_prefix(data_dir).ok()?;
    let mut at = data_dir.to_owned();
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        at.push(component);
        let meta = std::fs::symlink_metadata(&at).ok()?;
        let wanted = if components.peek().is_some() {
            meta.is_dir()
        } else {
            not_own_file(&meta).is_none()
        };
        if !wanted {
            return None;
        }
    }
    Some(std::fs::symlink_metadata(path).ok()?.len())
}

/// The files this host offers: its hourly raw logs and its Parquet files.
pub(crate) fn offered(data_dir: &Path) -> Vec<OfferedFile> {
    let mut files = Vec::new();
    let logs = data_dir.join(layout::RAW_DIR);
    for file in local_files::list(&logs).unwrap_or_default() {
        let Some(bytes) = plain_file_size(data_dir, &file.path) else {
            continue;
        };
        files.push(OfferedFile {
            entry: Offered {
                name: format!("{}/{}", layout::RAW_DIR, file.name),
                kind: "raw".to_owned(),
                bytes,
            },
            path: file.path,
        });
    }
    let parquet = data_dir.join(layout::PARQUET_DIR);
    for path in logrecord::parquet_file::list(&parquet) {
        let Ok(relative) = path.strip_prefix(data_dir) else {
            continue;
        };
        let Some(bytes) = plain_file_size(data_dir, &path) else {
            continue;
        };
        files.push(OfferedFile {
            entry: Offered {
                name: relative.to_string_lossy().into_owned(),
                kind: "parquet".to_owned(),
                bytes,
            },
            path,
        });
    }
    files
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({ "error": message }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
