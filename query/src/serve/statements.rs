//! What a logged-in client may run, and within which bounds. datafusion-postgres parses, plans,
//! binds parameters and encodes rows (simple and extended protocols); this module adds:
//! - the statement policy (`policy.rs`, the CLI's) on every statement before it runs, as the
//!   first query hook, so DDL, DML, COPY and engine settings are refused on the plan; a simple
//!   query is planned once, by that hook, which runs the plan it checked;
//! - `SET` only for the client-side settings drivers send (the engine is shared by every
//!   session: `SET datafusion.*` would change it for all of them);
//! - a deadline per statement, over planning and every row sent (`--statement-timeout`, or the
//!   client's `statement_timeout` when shorter), failing with SQLSTATE 57014 as PostgreSQL does;
//! - a log line per statement (session, text) and per end (rows, time, or the error);
//! - errors with the SQLSTATE of their kind, taken from DataFusion's error variant.

use crate::policy::{self, NotPlanned, Refused};
use async_trait::async_trait;
use datafusion::common::{DataFusionError, ParamValues};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as ParsedStatement;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::hooks::{HookClient, QueryHook};
use datafusion_postgres::pgwire;
use datafusion_postgres::{DfSessionService, Parser};
use futures::{Sink, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, ErrorHandler};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Settings a client may change: they live in its session only. (`statement_timeout` can only
/// shorten the server's.)
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// Settings drivers send that change nothing here: answered `SET` and ignored.
const ACCEPTED_AND_IGNORED: &[&str] = &["client_encoding", "client_min_messages"];

/// Longest statement text written to the log.
const LOGGED_TEXT_BYTES: usize = 2000;

fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn refused(refusal: Refused) -> PgWireError {
    error(refusal.sqlstate(), refusal.to_string())
}

fn canceled() -> PgWireError {
    error("57014", "canceling statement due to statement timeout")
}

/// The first query hook: refuses what the CLI refuses, and every `SET` outside the client's
/// own settings, before any other hook or the planner acts on it.
#[derive(Debug)]
pub(crate) struct Guard {
    /// The server's statement timeout: planning is held to it (or the client's, when shorter).
    pub timeout: Duration,
}

impl Guard {
    /// `None`: let the next hook or the planner have it. `Some(result)`: answered here.
    fn set(statement: &Statement) -> Option<PgWireResult<Response>> {
        let Statement::Set(set) = statement else {
            return None;
        };
        let answer = Some(Ok(Response::Execution(Tag::new("SET"))));
        match set {
            Set::SingleAssignment {
                scope: None,
                hivevar: false,
                variable,
                ..
            } => {
                let name = variable.to_string().to_lowercase();
                if CLIENT_SETTINGS.contains(&name.as_str()) {
                    None
                } else if ACCEPTED_AND_IGNORED.contains(&name.as_str()) {
                    answer
                } else {
                    Some(Err(refused(Refused::ReadOnly(format!(
                        "SET {name}: only the session settings {} can be set",
                        CLIENT_SETTINGS.join(", ")
                    )))))
                }
            }
            Set::SetTimeZone {
                local: false,
                value,
            } => {
                let zone = value.to_string().trim_matches('\'').to_ascii_uppercase();
                if matches!(
                    zone.as_str(),
                    "UTC" | "ETC/UTC" | "GMT" | "Z" | "0" | "+00:00"
                ) {
                    answer
                } else {
                    Some(Err(error(
                        "0A000",
                        format!("SET TIME ZONE {zone}: this server answers in UTC only"),
                    )))
                }
            }
            _ => Some(Err(refused(Refused::ReadOnly(format!(
                "{statement}: only the session settings {} can be set",
                CLIENT_SETTINGS.join(", ")
            ))))),
        }
    }

    /// Statements the later hooks answer without planning (SHOW, transactions, cursors).
    fn answered_by_other_hooks(statement: &Statement) -> bool {
        matches!(
            statement,
            Statement::ShowVariable { .. }
                | Statement::ShowVariables { .. }
                | Statement::StartTransaction { .. }
                | Statement::Commit { .. }
                | Statement::Rollback { .. }
                | Statement::Declare { .. }
                | Statement::Fetch { .. }
                | Statement::Close { .. }
        )
    }

    /// Plans `statement` under the policy, as the CLI does, within the statement's deadline:
    /// planning runs in a task of its own, so the deadline answers 57014 on time even while the
    /// planner computes without yielding (plan size is bounded, so that task ends soon after).
    async fn plan(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &(impl ClientInfo + ?Sized),
    ) -> PgWireResult<LogicalPlan> {
        let mut state = ctx.state();
        if let Some(value) = client.metadata().get(crate::rollups::SETTING) {
            // The session's `SET logs.rollups`, on this statement's copy of the settings.
            let _ = state
                .config_mut()
                .options_mut()
                .set(crate::rollups::SETTING, value);
        }
        let statement = ParsedStatement::Statement(Box::new(statement.clone()));
        let planning = tokio::spawn(async move {
            policy::plan(&state, statement)
                .await
                .map_err(|not_planned| match not_planned {
                    NotPlanned::Refused(refusal) => refused(refusal),
                    NotPlanned::Invalid(failure) => to_pg(failure),
                })
        });
        match tokio::time::timeout(statement_timeout(self.timeout, client), planning).await {
            Ok(Ok(planned)) => planned,
            Ok(Err(failed)) => Err(error(
                "XX000",
                format!("planning the statement failed: {failed}"),
            )),
            Err(_) => Err(canceled()),
        }
    }
}

/// The statement timeout for `client`: the server's, or the client's when shorter.
fn statement_timeout(server: Duration, client: &(impl ClientInfo + ?Sized)) -> Duration {
    let client_timeout = client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|ms| ms.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis);
    client_timeout.map_or(server, |t| t.min(server))
}

#[async_trait]
impl QueryHook for Guard {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // `SET logs.rollups`: this session's only (the engine is shared).
        let parsed = ParsedStatement::Statement(Box::new(statement.clone()));
        if let Some(value) = crate::rollups::setting(&parsed) {
            return Some(match value {
                Ok(value) => {
                    client
                        .metadata_mut()
                        .insert(crate::rollups::SETTING.to_owned(), value);
                    Ok(Response::Execution(Tag::new("SET")))
                }
                Err(error) => Err(self::error("22023", error.to_string())),
            });
        }
        if let Some(answer) = Self::set(statement) {
            return Some(answer);
        }
        if matches!(statement, Statement::Set(_)) || Self::answered_by_other_hooks(statement) {
            return None;
        }
        // Planned and checked here, and run here: the session service would plan the text
        // again. (Its whole text was checked by `do_query` before it was parsed.)
        let plan = match self.plan(statement, ctx, &*client).await {
            Ok(plan) => plan,
            Err(error) => return Some(Err(error)),
        };
        let frame = match ctx.execute_logical_plan(plan).await {
            Ok(frame) => frame,
            Err(failure) => return Some(Err(to_pg(failure))),
        };
        let format = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        Some(
            encode_dataframe(frame, &Format::UnifiedText, Some(format))
                .await
                .map(Response::Query),
        )
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        if let Some(Err(error)) = Self::set(statement) {
            return Some(Err(error));
        }
        if matches!(statement, Statement::Set(_)) || Self::answered_by_other_hooks(statement) {
            return None;
        }
        // The text of a prepared statement is checked here: no `do_query` saw it before.
        if let Err(refusal) = policy::check_text(&statement.to_string()) {
            return Some(Err(refused(refusal)));
        }
        Some(self.plan(statement, ctx, client).await)
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match Self::set(statement) {
            Some(Ok(answer)) => Some(Ok(answer)),
            _ => None,
        }
    }
}

/// A DataFusion error as the PostgreSQL error of its kind (decided on the variant).
pub(crate) fn to_pg(failure: DataFusionError) -> PgWireError {
    // A reader's panic on a damaged file: the file and the damage, as PostgreSQL's data_corrupted.
    if let Some(damage) = crate::table::damaged::explain(&failure.to_string()) {
        return error(
            "XX001",
            service::text::bounded(&damage, ERROR_MESSAGE_BYTES),
        );
    }
    let code = match failure.find_root() {
        DataFusionError::SQL(..) => "42601",            // syntax_error
        DataFusionError::SchemaError(..) => "42703",    // undefined_column
        DataFusionError::Plan(..) => "42000",           // syntax_error_or_access_rule_violation
        DataFusionError::NotImplemented(..) => "0A000", // feature_not_supported
        DataFusionError::ResourcesExhausted(..) => "53200", // out_of_memory
        DataFusionError::Execution(..) => "22023",      // invalid_parameter_value
        _ => "XX000",
    };
    error(
        code,
        service::text::bounded(&failure.to_string(), ERROR_MESSAGE_BYTES),
    )
}

/// A reader's failure on a damaged file (a panic or an error that does not name its file) as
/// the damaged file and why, SQLSTATE XX001 (data_corrupted); any other error as it is.
async fn damaged_file(failure: PgWireError) -> PgWireError {
    match crate::table::damaged::diagnose(&failure.to_string()).await {
        Some(damage) => error(
            "XX001",
            service::text::bounded(&damage, ERROR_MESSAGE_BYTES),
        ),
        None => failure,
    }
}

/// Longest error message sent to a client.
const ERROR_MESSAGE_BYTES: usize = 4096;

/// Logs every error sent to a client, and gives DataFusion's errors their SQLSTATE.
#[derive(Debug)]
pub(crate) struct ErrorLog;

impl ErrorHandler for ErrorLog {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::ApiError(inner) = error
            && inner.is::<ParserError>()
        {
            *error = PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "42601".into(), // syntax_error
                inner.to_string(),
            )));
        }
        let from_datafusion =
            matches!(error, PgWireError::ApiError(inner) if inner.is::<DataFusionError>());
        if from_datafusion
            && let PgWireError::ApiError(inner) =
                std::mem::replace(error, PgWireError::InvalidSASLState)
        {
            *error = match inner.downcast::<DataFusionError>() {
                Ok(datafusion) => to_pg(*datafusion),
                Err(other) => PgWireError::ApiError(other),
            };
        }
        log_error(client, error);
    }
}

fn log_error(client: &impl ClientInfo, error: &PgWireError) {
    let session = client.pid_and_secret_key().0;
    let peer = client.socket_addr();
    match error {
        PgWireError::UserError(info) => tracing::info!(
            session,
            %peer,
            severity = %info.severity,
            code = %info.code,
            "error: {}",
            info.message
        ),
        other => tracing::info!(session, %peer, "error: {other}"),
    }
}

/// The session service within bounds: each statement logged, and held to its deadline.
pub(crate) struct Statements {
    pub inner: Arc<DfSessionService>,
    /// Where statements' rows are computed: a runtime apart from the one serving connections,
    /// so that operators computing without yielding cannot delay logins, other sessions'
    /// rows or the deadline that cancels them.
    pub compute: tokio::runtime::Handle,
    /// The longest a statement may run (`--statement-timeout`).
    pub timeout: Duration,
}

impl std::fmt::Debug for Statements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Statements")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Statements {
    /// `start` polled with the statements' runtime entered (see [`OnCompute`]).
    fn on_compute<'a, T>(&self, start: impl Future<Output = T> + Send + 'a) -> OnCompute<'a, T> {
        OnCompute {
            compute: self.compute.clone(),
            start: Box::pin(start),
        }
    }

    /// The statement's deadline: the server's timeout, or the client's when shorter.
    fn deadline(&self, client: &impl ClientInfo) -> Instant {
        Instant::now() + statement_timeout(self.timeout, client)
    }

    /// `response` with its rows held to `deadline`, counted and logged at their end. The rows
    /// are produced by a task of their own, so the deadline fires on time even while an
    /// operator computes without yielding; the task is aborted when the client's stream ends
    /// early (deadline, error, client gone).
    fn bounded(
        &self,
        response: Response,
        deadline: Instant,
        session: i32,
        started: Instant,
    ) -> Response {
        let Response::Query(mut query) = response else {
            return response;
        };
        let mut rows = std::mem::replace(&mut query.data_rows, Box::pin(futures::stream::empty()));
        let (sender, receiver) = tokio::sync::mpsc::channel(ROWS_IN_FLIGHT);
        let producer = self.compute.spawn(async move {
            while let Some(row) = rows.next().await {
                if sender.send(row).await.is_err() {
                    return;
                }
            }
        });
        let state = (receiver, AbortOnDrop(producer), 0u64, false);
        let stream =
            futures::stream::unfold(state, move |(mut rows, task, sent, done)| async move {
                if done {
                    return None;
                }
                match tokio::time::timeout_at(deadline, rows.recv()).await {
                    Ok(Some(Ok(row))) => Some((Ok(row), (rows, task, sent + 1, false))),
                    Ok(Some(Err(error))) => {
                        Some((Err(damaged_file(error).await), (rows, task, sent, true)))
                    }
                    Ok(None) => {
                        tracing::info!(
                            session,
                            rows = sent,
                            ms = started.elapsed().as_millis() as u64,
                            "statement done"
                        );
                        None
                    }
                    Err(_) => Some((Err(canceled()), (rows, task, sent, true))),
                }
            });
        query.data_rows = Box::pin(stream);
        Response::Query(query)
    }
}

/// A statement's start (planning, and `execute`, where DataFusion spawns a task per input
/// partition of a merge) polled with the statements' runtime entered: the tasks it spawns run
/// there. Spawned on the runtime serving connections, a join computing without yielding held
/// its workers, and the deadline that cancels the statement fired seconds late (6.8 s for a
/// 2 s timeout in a debug build).
struct OnCompute<'a, T> {
    compute: tokio::runtime::Handle,
    start: Pin<Box<dyn Future<Output = T> + Send + 'a>>,
}

impl<T> Future for OnCompute<'_, T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let _entered = self.compute.enter();
        self.start.as_mut().poll(cx)
    }
}

/// Rows encoded ahead of the client: enough to keep the socket busy, few enough to hold little.
const ROWS_IN_FLIGHT: usize = 256;

/// Aborts the row producer when the client's side of the stream is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn log_statement(client: &impl ClientInfo, text: &str) -> (i32, Instant) {
    let session = client.pid_and_secret_key().0;
    let mut end = text.len().min(LOGGED_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = if end < text.len() { " [...]" } else { "" };
    tracing::info!(session, "statement: {}{cut}", &text[..end]);
    (session, Instant::now())
}

#[async_trait]
impl SimpleQueryHandler for Statements {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (session, started) = log_statement(client, query);
        policy::check_text(query).map_err(refused)?;
        crate::table::damaged::statement_started();
        let deadline = self.deadline(client);
        let responses = tokio::time::timeout_at(
            deadline,
            self.on_compute(SimpleQueryHandler::do_query(
                self.inner.as_ref(),
                client,
                query,
            )),
        )
        .await
        .map_err(|_| canceled())??;
        Ok(responses
            .into_iter()
            .map(|response| self.bounded(response, deadline, session, started))
            .collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Statements {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.inner.query_parser()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (session, started) = log_statement(client, &portal.statement.statement.0);
        crate::table::damaged::statement_started();
        let deadline = self.deadline(client);
        let response = tokio::time::timeout_at(
            deadline,
            self.on_compute(ExtendedQueryHandler::do_query(
                self.inner.as_ref(),
                client,
                portal,
                max_rows,
            )),
        )
        .await
        .map_err(|_| canceled())??;
        Ok(self.bounded(response, deadline, session, started))
    }
}
