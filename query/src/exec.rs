//! Runs one statement, read-only: DDL, DML (COPY included) and SET are refused before anything
//! runs.

use crate::progress::ScanProgress;
use anyhow::anyhow;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

/// The statement's result, or why it was refused or failed. A long scan shows progress on stderr
/// (when it is a terminal).
pub async fn execute(
    ctx: &SessionContext,
    sql: &str,
    bytes_read: &Arc<AtomicU64>,
) -> anyhow::Result<Vec<RecordBatch>> {
    let read_only = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(sql, read_only)
        .await
        .map_err(|error| {
            let text = error.to_string();
            if text.contains("not supported")
                && (text.contains("DDL") || text.contains("DML") || text.contains("Statement"))
            {
                anyhow!(
                    "refused: query is read-only (no CREATE, DROP, INSERT, COPY or SET): {text}"
                )
            } else {
                anyhow!("SQL error: {text}")
            }
        })?;
    let _progress = ScanProgress::start(bytes_read);
    frame
        .collect()
        .await
        .map_err(|error| anyhow!("query failed: {error}"))
}
