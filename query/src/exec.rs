//! Runs one statement, read-only: DDL, DML (COPY included) and SET are refused before anything
//! runs.

use anyhow::anyhow;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::SessionContext;

/// The statement's result, or why it was refused or failed.
pub async fn execute(ctx: &SessionContext, sql: &str) -> anyhow::Result<Vec<RecordBatch>> {
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
    frame
        .collect()
        .await
        .map_err(|error| anyhow!("query failed: {error}"))
}
