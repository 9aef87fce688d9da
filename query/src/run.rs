//! Runs one statement through the policy (`policy.rs`) and returns its rows as a stream: they are
//! printed as they come. A long scan shows progress on stderr (when it is a terminal).

use crate::output::progress::ScanProgress;
use crate::policy;
use anyhow::anyhow;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::SessionContext;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// A running statement: its rows as they come, and the progress display kept alive with it.
pub(crate) struct Running {
    pub rows: SendableRecordBatchStream,
    _progress: ScanProgress,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").finish_non_exhaustive()
    }
}

/// Checks, plans and starts the statement, or says why it was refused or failed.
pub(crate) async fn execute(
    ctx: &SessionContext,
    sql: &str,
    bytes_read: &Arc<AtomicU64>,
) -> anyhow::Result<Running> {
    policy::check_text(sql)?;
    crate::table::damaged::statement_started();
    let state = ctx.state();
    let statement = state
        .sql_to_statement(sql, &state.config().options().sql_parser.dialect)
        .map_err(|error| anyhow!("SQL error: {error}"))?;
    if let Some(setting) = crate::rollups::setting(&statement) {
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .set(crate::rollups::SETTING, &setting?)?;
        let nothing = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            futures::stream::empty(),
        );
        return Ok(Running {
            rows: Box::pin(nothing),
            _progress: ScanProgress::start(bytes_read),
        });
    }
    let plan = policy::plan(&state, statement).await?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|error| anyhow!("SQL error: {error}"))?;
    let progress = ScanProgress::start(bytes_read);
    let rows = frame
        .execute_stream()
        .await
        .map_err(|error| anyhow!("query failed: {error}"))?;
    Ok(Running {
        rows,
        _progress: progress,
    })
}
