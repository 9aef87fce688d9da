//! The project's Ballista scheduler and executor (`query-scheduler`, `query-executor`):
//! Ballista's own processes, configured the way its custom scheduler/executor examples show, with
//! what `query --cluster` plans need on every process: the project's functions (`uuid_text` in
//! the `logs` view, `log_pattern`), its logical codec (the warm store reaches the cluster as a
//! listing of its active files), and object stores for `s3://` from the usual `AWS_*` variables.
#![warn(missing_docs, unreachable_pub)]

use ballista_core::object_store::{runtime_env_with_s3_support, session_config_with_s3_support};
use ballista_core::registry::BallistaFunctionRegistry;
use datafusion::execution::registry::FunctionRegistry;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;
use std::sync::Arc;

/// Ballista's function registry plus the project's functions (what executors decode plans with).
pub fn function_registry() -> BallistaFunctionRegistry {
    let mut registry = BallistaFunctionRegistry::default();
    for function in query::cluster::scalar_functions() {
        registry
            .scalar_functions
            .insert(function.name().to_owned(), function);
    }
    for function in query::cluster::window_functions() {
        registry
            .window_functions
            .insert(function.name().to_owned(), function);
    }
    registry
}

/// The session configuration every process starts from: Ballista's, with S3 settings.
pub fn session_config() -> SessionConfig {
    session_config_with_s3_support()
}

/// The scheduler's session for a client's configuration: object stores for `s3://` (the
/// `AWS_*` variables) and the project's functions, so the plans it is sent decode and plan.
pub fn scheduler_session(config: SessionConfig) -> datafusion::common::Result<SessionState> {
    let runtime = runtime_env_with_s3_support(&config)?;
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    for function in query::cluster::scalar_functions() {
        state.register_udf(function)?;
    }
    for function in query::cluster::window_functions() {
        state.register_udwf(function)?;
    }
    Ok(state)
}

/// The logical codec of every process.
pub fn logical_codec() -> Arc<query::cluster::LogsCodec> {
    Arc::new(query::cluster::LogsCodec::default())
}
