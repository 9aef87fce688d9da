//! `log_patterns(from, to, clusters, machines, levels [, limit])`: the commonest templates of the
//! lines of a range, as a table, for the logs dashboard's "Top log patterns" panel (Grafana:
//! `log_patterns($__timeFrom(), $__timeTo(), '${cluster:csv}', '${machine:csv}', '${level:csv}')`).
//! `clusters`, `machines` and `levels` are comma-separated lists, empty for all.
//!
//! On a store with pattern ids it is answered as `query patterns` is (`drilldown::FromIds`):
//! the days and hours the pattern rollups hold exactly from them, the rest raw. A machine list
//! that leaves out none of the machines with lines in the range (Grafana's "All") needs no
//! machine filter, so the rollups answer; a narrower one reads every line raw. Without pattern
//! ids every line is mined with `log_pattern()`. Columns: `lines`, `percent`, `pattern`,
//! `example`, `last_seen`. The answer (at most `limit` rows) is computed when the statement is
//! planned, within its timeout and memory limit.

use crate::drilldown::{FromIds, quoted};
use crate::rollups::{RollupSource, constant_time};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableFunctionImpl};
use datafusion::common::{DataFusionError, Result, ScalarValue, plan_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, cast, col};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use logrecord::layout::Hour;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The function's name in SQL.
pub(crate) const NAME: &str = "log_patterns";

/// Most templates answered when the call gives no limit.
const DEFAULT_LIMIT: usize = 50;

/// `log_patterns(...)`.
#[derive(Debug)]
pub(crate) struct LogPatterns;

impl TableFunctionImpl for LogPatterns {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let text = |index: usize, what: &str| -> Result<String> {
            match args.get(index) {
                Some(Expr::Literal(
                    ScalarValue::Utf8(Some(t))
                    | ScalarValue::Utf8View(Some(t))
                    | ScalarValue::LargeUtf8(Some(t)),
                    _,
                )) => Ok(t.clone()),
                _ => plan_err!(
                    "{NAME}: argument {} ({what}) must be a text constant",
                    index + 1
                ),
            }
        };
        let time = |index: usize, what: &str| -> Result<DateTime<Utc>> {
            args.get(index).and_then(constant_time).ok_or_else(|| {
                DataFusionError::Plan(format!(
                    "{NAME}: argument {} ({what}) must be a time constant, e.g. '2026-01-01T00:00:00Z'",
                    index + 1
                ))
            })
        };
        if !(5..=6).contains(&args.len()) {
            return plan_err!(
                "{NAME}(from, to, clusters, machines, levels [, limit]) takes 5 or 6 arguments, not {}",
                args.len()
            );
        }
        let (from, to) = (time(0, "from")?, time(1, "to")?);
        if from > to {
            return plan_err!("{NAME}: from is after to");
        }
        let names = |index: usize, what: &str| -> Result<Vec<String>> {
            let list = list(&text(index, what)?);
            if let Some(bad) = list.iter().find(|name| {
                !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            }) {
                return plan_err!("{NAME}: {bad:?} is not a {what} name");
            }
            Ok(list)
        };
        let levels = list(&text(4, "levels")?);
        for level in &levels {
            if !logrecord::Level::ALL.iter().any(|l| l.as_str() == level) {
                return plan_err!(
                    "{NAME}: {level:?} is not a level (ERROR, WARN, INFO, DEBUG, TRACE)"
                );
            }
        }
        let limit = match args.get(5) {
            None => DEFAULT_LIMIT,
            Some(Expr::Literal(ScalarValue::Int64(Some(n)), _)) if *n > 0 => *n as usize,
            Some(other) => {
                return plan_err!("{NAME}: the limit must be a positive number, not {other}");
            }
        };
        Ok(Arc::new(PatternsOfRange {
            from,
            to,
            clusters: names(2, "cluster")?,
            machines: names(3, "machine")?,
            levels,
            limit,
        }))
    }
}

/// A comma-separated list, empty for an empty text.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One call's table.
#[derive(Debug)]
struct PatternsOfRange {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    clusters: Vec<String>,
    machines: Vec<String>,
    levels: Vec<String>,
    limit: usize,
}

fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("lines", DataType::Int64, true),
        Field::new("percent", DataType::Float64, true),
        Field::new("pattern", DataType::Utf8, true),
        Field::new("example", DataType::Utf8, true),
        Field::new(
            "last_seen",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]))
}

impl PatternsOfRange {
    /// The raw lines' conditions, with or without the machine list.
    fn raw_filters(&self, machines: bool) -> String {
        let mut filters = vec![
            // Time constants, not `to_timestamp_micros()` calls: the rollups' rewrite reads the
            // range from constants only.
            format!(
                r#""timestamp" >= '{}' AND "timestamp" <= '{}'"#,
                self.from
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                self.to.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
            // Partition pruning: the dates the range touches.
            format!(
                "date >= '{}' AND date <= '{}'",
                Hour::of(self.from).date(),
                Hour::of(self.to).date()
            ),
        ];
        if !self.clusters.is_empty() {
            filters.push(format!(r#""cluster" IN ({})"#, quoted(&self.clusters)));
        }
        if machines && !self.machines.is_empty() {
            filters.push(format!(r#""machine" IN ({})"#, quoted(&self.machines)));
        }
        if !self.levels.is_empty() {
            filters.push(format!(r#""level" IN ({})"#, quoted(&self.levels)));
        }
        filters.join(" AND ")
    }

    /// Whether the machine list leaves out a machine with lines in the range (of the
    /// clusters): answered from the machines rollup where it holds the range.
    async fn leaves_out_a_machine(&self, state: &SessionState) -> Result<bool> {
        if self.machines.is_empty() {
            return Ok(false);
        }
        let sql = format!(
            r#"SELECT CAST("machine" AS VARCHAR) AS "machine", count(*) AS "n" FROM logs WHERE {} GROUP BY 1"#,
            self.raw_filters(false)
        );
        let plan = state.create_logical_plan(&sql).await?;
        let plan = match state.config().get_extension::<RollupSource>() {
            Some(source) if crate::rollups::enabled(state) => {
                crate::rollups::use_rollups(state, &source, plan).await?
            }
            _ => plan,
        };
        let ctx = SessionContext::new_with_state(state.clone());
        let kept: BTreeSet<&str> = self.machines.iter().map(String::as_str).collect();
        for batch in ctx.execute_logical_plan(plan).await?.collect().await? {
            let machines = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            if machines
                .as_string::<i32>()
                .iter()
                .any(|machine| !machine.is_some_and(|m| kept.contains(m)))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The statement that answers the call.
    async fn sql(&self, state: &SessionState) -> Result<String> {
        let ctx = SessionContext::new_with_state(state.clone());
        let held = crate::pattern_ids::held_periods(&ctx, self.from, self.to)
            .await
            .map_err(|error| DataFusionError::External(error.into()))?;
        let levels = (!self.levels.is_empty()).then(|| self.levels.clone());
        let Some(held) = held else {
            // No pattern ids: every line mined.
            return Ok(format!(
                r#"SELECT count(*) AS "lines", round(100.0 * count(*) / sum(count(*)) OVER (), 1) AS "percent", "pattern", min("message") AS "example", max("timestamp") AS "last_seen" FROM (SELECT "message", "timestamp", log_pattern("message") OVER (ORDER BY "timestamp", "machine", "seq") AS "pattern" FROM logs WHERE {} AND {}) GROUP BY "pattern" ORDER BY "lines" DESC, "pattern" LIMIT {}"#,
                self.raw_filters(true),
                crate::drilldown::HAS_PATTERN,
                self.limit
            ));
        };
        let read_raw = self.leaves_out_a_machine(state).await?;
        // The rollups know clusters by name: all of them when none is named.
        let clusters = if self.clusters.is_empty() {
            self.clusters_of(state).await?
        } else {
            self.clusters.clone()
        };
        Ok(FromIds {
            clusters: &clusters,
            levels,
            read_raw,
            raw_filters: self.raw_filters(read_raw),
            held: &held,
            limit: self.limit,
            last_seen: true,
        }
        .sql())
    }

    /// Every cluster of the pattern dictionary.
    async fn clusters_of(&self, state: &SessionState) -> Result<Vec<String>> {
        let ctx = SessionContext::new_with_state(state.clone());
        let sql = format!(
            r#"SELECT DISTINCT CAST("cluster" AS VARCHAR) FROM {}"#,
            crate::pattern_ids::DICTIONARY_TABLE
        );
        let mut clusters = Vec::new();
        for batch in ctx.sql(&sql).await?.collect().await? {
            let column = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
            clusters.extend(
                column
                    .as_string::<i32>()
                    .iter()
                    .flatten()
                    .map(str::to_owned),
            );
        }
        Ok(clusters)
    }
}

#[async_trait]
impl TableProvider for PatternsOfRange {
    fn schema(&self) -> SchemaRef {
        output_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(state) = state.as_any().downcast_ref::<SessionState>() else {
            return plan_err!("{NAME}: not in a query session");
        };
        let sql = self.sql(state).await?;
        let ctx = SessionContext::new_with_state(state.clone());
        let schema = output_schema();
        let columns: Vec<usize> = match projection {
            Some(columns) => columns.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        let frame = ctx.sql(&sql).await?.select(
            columns
                .iter()
                .map(|index| {
                    let field = schema.field(*index);
                    cast(col(field.name()), field.data_type().clone()).alias(field.name())
                })
                .collect::<Vec<Expr>>(),
        )?;
        // Answered here, at most `limit` rows: a plan handed up would be optimized a second
        // time with the statement's (DataFusion refuses to reorder joins it already planned).
        let projected = Arc::new(schema.project(&columns)?);
        let batches = frame.collect().await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            projected,
            None,
        )?)
    }
}
