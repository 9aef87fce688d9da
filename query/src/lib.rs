//! `query`: DataFusion SQL over the warm store and the cold-path Parquet files, read-only.
//!
//! | stage | file |
//! |---|---|
//! | sources -> table `logs` with partition columns | `tables.rs` (data files only: `visible_files.rs`) |
//! | statement -> result (read-only) | `exec.rs` |
//! | result -> table, CSV, JSON lines, Parquet | `print.rs` |
//! | `query logs` drill-down -> SQL | `drilldown.rs` |

pub mod cli;
pub mod drilldown;
pub mod exec;
pub mod print;
pub mod tables;
pub mod visible_files;

use anyhow::bail;
use cli::{Cli, Command};
use datafusion::prelude::{SessionConfig, SessionContext};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let sql = match (&cli.command, &cli.sql) {
        (Some(Command::Logs(args)), None) => drilldown::sql(args, chrono::Utc::now())?,
        (None, Some(sql)) => sql.clone(),
        (Some(_), Some(_)) => bail!("give either a SQL statement or a subcommand, not both"),
        (None, None) => bail!(
            "no SQL statement given (the interactive prompt is not built yet): query 'SELECT ...'"
        ),
    };
    let sources = if cli.data.is_empty() {
        vec!["data/warm".to_owned()]
    } else {
        cli.data.clone()
    };
    let ctx = SessionContext::new_with_config(SessionConfig::new().with_information_schema(true));
    tables::register(&ctx, &sources).await?;
    let batches = exec::execute(&ctx, &sql).await?;
    print::write(&batches, cli.format, cli.output.as_deref())
}
