//! `query serve`: table `logs` over the PostgreSQL wire protocol, for Grafana's PostgreSQL data
//! source, psql and any driver (simple and extended query protocols, through
//! `datafusion-postgres` and `pgwire`).
//!
//! What it guarantees:
//! - Nobody reads without the password (SCRAM-SHA-256; there is no open mode), and with a
//!   certificate every connection is TLS (`--allow-plaintext` to accept both).
//! - Nothing is changed: every statement passes the CLI's plan check (`statements.rs`).
//! - Each caller is bounded: at most `--max-connections` sessions (one more gets PostgreSQL's
//!   "too many clients", SQLSTATE 53300), a connection that has not logged in within
//!   [`LOGIN_TIMEOUT`] is dropped, a statement runs at most `--statement-timeout`, and all
//!   statements share the `--memory-limit` pool (past it, spilling or a clean 53200 error).
//! - Errors go to the client as PostgreSQL errors; the session and the server go on.
//! - Every session start, statement, end and error is logged on stderr.
//!
//! On SIGINT or SIGTERM it stops accepting and exits; statements still running are cut off
//! (clients see the connection close).

pub(crate) mod auth;
pub(crate) mod settings;
pub(crate) mod statements;

use crate::cli::ServeArgs;
use anyhow::Context;
use auth::{Login, Startup};
use datafusion::prelude::SessionContext;
use datafusion_postgres::DfSessionService;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::PgCatalogContextProvider;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{
    ConnectionManager, ErrorHandler, PgWireServerHandlers, RandomPidSecretKeyGenerator,
};
use statements::{ErrorLog, Guard, Statements};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// How long a connection may take to log in (PostgreSQL's `authentication_timeout` is 60 s;
/// a real client needs milliseconds, and a slot held by a silent one is a slot denied).
pub(crate) const LOGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections over the cap being told "too many clients" at once; past that they are closed
/// without a word, so a flood cannot grow the rejections either.
const REJECTING_AT_ONCE: usize = 16;

/// The catalog's view of roles: none beyond the one login (pg_catalog answers with no roles).
#[derive(Debug, Clone)]
struct NoRoles;

impl PgCatalogContextProvider for NoRoles {}

/// What every connection shares.
struct Shared {
    statements: Arc<Statements>,
    login: Arc<Login>,
    /// The certificate (PEM) for SCRAM channel binding, when TLS is on.
    cert_pem: Option<Vec<u8>>,
    connections: Arc<ConnectionManager>,
    /// One counter for the whole server: the session id in logs and cancel requests.
    session_ids: Arc<RandomPidSecretKeyGenerator>,
    cancel: Arc<DefaultCancelHandler>,
    require_tls: bool,
}

/// The handlers of one connection.
struct Connection {
    shared: Arc<Shared>,
    admitted: bool,
    logged_in: Arc<AtomicBool>,
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.shared.statements.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.shared.statements.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        let shared = &self.shared;
        // The certificate was checked at start-up (`run`); were it to fail now, the login
        // still works, without channel binding.
        let scram =
            auth::scram(shared.login.clone(), shared.cert_pem.as_deref()).unwrap_or_else(|error| {
                tracing::warn!("{error:#}");
                auth::scram_without_binding(shared.login.clone())
            });
        Arc::new(Startup::new(
            scram,
            shared.connections.clone(),
            shared.session_ids.clone(),
            shared.require_tls,
            self.admitted,
            self.logged_in.clone(),
        ))
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(ErrorLog)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.shared.cancel.clone()
    }
}

/// Serves `ctx` (with table `logs` registered) until SIGINT or SIGTERM.
pub(crate) async fn run(ctx: SessionContext, args: &ServeArgs) -> anyhow::Result<()> {
    let login = Arc::new(Login::load(&args.user, args.password_file.as_deref())?);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(auth::tls_acceptor(cert, key)?),
        _ => None,
    };
    let cert_pem = tls.as_ref().map(|(_, pem)| pem.clone());
    auth::scram(login.clone(), cert_pem.as_deref())?;
    setup_pg_catalog(&ctx, "datafusion", NoRoles)
        .map_err(|error| anyhow::anyhow!("setting up pg_catalog: {error}"))?;
    ctx.register_udf(settings::current_setting(args.statement_timeout));
    let hooks: Vec<Arc<dyn QueryHook>> = vec![
        Arc::new(Guard {
            timeout: args.statement_timeout,
        }),
        Arc::new(CursorStatementHook),
        Arc::new(SetShowHook),
        Arc::new(TransactionStatementHook),
    ];
    let inner = Arc::new(DfSessionService::new_with_hooks(Arc::new(ctx), hooks));
    let compute = tokio::runtime::Builder::new_multi_thread()
        .thread_name("statements")
        .thread_stack_size(crate::WORKER_STACK_BYTES)
        .enable_all()
        .build()
        .context("starting the statements' runtime")?;
    let connections = Arc::new(ConnectionManager::new());
    let shared = Arc::new(Shared {
        statements: Arc::new(Statements {
            inner,
            compute: compute.handle().clone(),
            timeout: args.statement_timeout,
        }),
        login,
        cert_pem,
        cancel: Arc::new(DefaultCancelHandler::new(connections.clone())),
        connections,
        session_ids: Arc::new(RandomPidSecretKeyGenerator::default()),
        require_tls: tls.is_some() && !args.allow_plaintext,
    });
    let acceptor = tls.map(|(acceptor, _)| acceptor);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("--listen {}", args.listen))?;
    tracing::info!(
        address = %listener.local_addr()?,
        user = %args.user,
        tls = acceptor.is_some(),
        tls_required = shared.require_tls,
        max_connections = args.max_connections,
        statement_timeout = ?args.statement_timeout,
        "serving table logs over the PostgreSQL protocol"
    );
    let served = accept(listener, shared, acceptor, args.max_connections).await;
    compute.shutdown_background();
    served
}

async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    acceptor: Option<TlsAcceptor>,
    max_connections: usize,
) -> anyhow::Result<()> {
    let sessions = Arc::new(Semaphore::new(max_connections));
    let rejecting = Arc::new(Semaphore::new(REJECTING_AT_ONCE));
    let signalled = service::shutdown::signalled();
    tokio::pin!(signalled);
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    tracing::warn!("accepting a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut signalled => break,
        };
        let (admitted, permit) = match sessions.clone().try_acquire_owned() {
            Ok(permit) => (true, permit),
            Err(_) => match rejecting.clone().try_acquire_owned() {
                Ok(permit) => {
                    tracing::warn!(%peer, max_connections, "refusing a connection: at the connection cap");
                    (false, permit)
                }
                Err(_) => {
                    tracing::warn!(%peer, "closed a connection: at the connection cap");
                    continue;
                }
            },
        };
        let logged_in = Arc::new(AtomicBool::new(false));
        let handlers = Arc::new(Connection {
            shared: shared.clone(),
            admitted,
            logged_in: logged_in.clone(),
        });
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let login_deadline = async {
                tokio::time::sleep(LOGIN_TIMEOUT).await;
                if logged_in.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                ended = pgwire::tokio::process_socket(socket, acceptor, handlers) => {
                    if let Err(error) = ended {
                        tracing::info!(%peer, "connection failed: {error}");
                    }
                }
                _ = login_deadline => {
                    tracing::info!(%peer, "closed a connection that did not log in within {LOGIN_TIMEOUT:?}");
                }
            }
            if logged_in.load(Ordering::SeqCst) {
                tracing::info!(%peer, "session ended");
            }
        });
    }
    tracing::info!("stopping: no new connections; running statements are cut off");
    Ok(())
}

/// The server's log on stderr (`RUST_LOG` to change what is shown; the libraries' own
/// `log` records are included).
pub(crate) fn init_log() {
    service::console_log::init(
        "info,pgwire=warn,datafusion_postgres=warn,buoyant_kernel=warn,deltalake=warn,deltalake_core=warn",
    );
}
