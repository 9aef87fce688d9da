//! Pattern ids in `query` (`warm_table::rollup::patterns`): the template dictionary as the
//! table `logs_patterns`, `pattern_id(cluster, message)` (the id of the dictionary's template
//! that covers a line, as compaction gives it, or null), and the hours `query patterns` reads
//! from `logs_hourly_by_pattern` instead of mining raw rows.
//!
//! `pattern_id()` holds the dictionary as it was when the session opened (`query serve`: when
//! it started); a template mined since gives null, and `query patterns` mines such lines
//! itself.

use crate::rollups::RollupSource;
use crate::table::latest_delta::{Files, LatestDelta};
use anyhow::Context;
use chrono::{DateTime, Utc};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Builder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use patterns::{Dictionary, PatternId, Settings};
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use warm_table::rollup::patterns::{BY_PATTERN, DAILY_BY_PATTERN};

/// The dictionary's table name in SQL.
pub(crate) const DICTIONARY_TABLE: &str = "logs_patterns";

/// Registers `logs_patterns` and `pattern_id()` when the warm table at `warm` has a dictionary.
pub(crate) async fn register(
    ctx: &SessionContext,
    warm: &url::Url,
    files: Files,
) -> anyhow::Result<()> {
    let Some(table) = warm_table::rollup::patterns::open_dictionary(warm).await? else {
        return Ok(());
    };
    let location = table.table_url().clone();
    let provider = LatestDelta::open(table, &["cluster"], files)
        .await
        .with_context(|| format!("{location}: opening the pattern dictionary"))?;
    ctx.register_table(DICTIONARY_TABLE, Arc::new(provider))?;
    let batches = ctx
        .sql(&format!(
            r#"SELECT CAST("cluster" AS VARCHAR), "pattern_id", CAST("template" AS VARCHAR) FROM {DICTIONARY_TABLE}"#
        ))
        .await?
        .collect()
        .await
        .context("reading the pattern dictionary")?;
    let mut dictionaries: BTreeMap<String, Dictionary> = BTreeMap::new();
    for batch in &batches {
        let text = |index: usize| cast(batch.column(index), &DataType::Utf8);
        let (clusters, templates) = (text(0)?, text(2)?);
        let (clusters, templates) = (clusters.as_string::<i32>(), templates.as_string::<i32>());
        let ids = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            dictionaries
                .entry(clusters.value(row).to_owned())
                .or_insert_with(|| Dictionary::new(Settings::for_logs()))
                .insert(ids.value(row), templates.value(row));
        }
    }
    ctx.register_udf(ScalarUDF::from(PatternIdOf {
        dictionaries: Arc::new(dictionaries),
        signature: Signature::string(2, Volatility::Stable),
    }));
    Ok(())
}

/// The periods of a range whose pattern lines are counted in the rollups: days the daily
/// rollup holds exactly, and hours the hourly one does outside those days.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(crate) days: Vec<DateTime<Utc>>,
    pub(crate) hours: Vec<DateTime<Utc>>,
    /// Whether the warm table has rows in an hour of the range outside those days and hours.
    pub(crate) rows_outside: bool,
}

/// The days and hours wholly within `[from, to]` that `logs_daily_by_pattern` and
/// `logs_hourly_by_pattern` hold exactly (their rows add up to the warm table's for the
/// period); none when the rollups are off or not there, `None` without a dictionary.
pub(crate) async fn held_periods(
    ctx: &SessionContext,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> anyhow::Result<Option<Held>> {
    let state = ctx.state();
    let Some(source) = state.config().get_extension::<RollupSource>() else {
        return Ok(None);
    };
    if !ctx.table_exist(DICTIONARY_TABLE)? {
        return Ok(None);
    }
    let built = |name: &str| {
        source
            .rollups
            .iter()
            .find(|rollup| rollup.name == name)
            .copied()
    };
    let (Some(hourly), true) = (built(BY_PATTERN), crate::rollups::enabled(&state)) else {
        return Ok(Some(Held::default()));
    };
    let raw = warm_table::rollup::raw_hour_rows(&source.warm).await?;
    let range = (Some(from), Some(to));
    let days = match built(DAILY_BY_PATTERN) {
        Some(daily) => {
            crate::rollups::held_periods(&state, &daily, &raw, range.0, range.1, &[]).await?
        }
        None => Vec::new(),
    };
    let hours: Vec<DateTime<Utc>> =
        crate::rollups::held_periods(&state, &hourly, &raw, range.0, range.1, &days)
            .await?
            .into_iter()
            .filter(|hour| {
                days.binary_search(&crate::rollups::day_start(*hour))
                    .is_err()
            })
            .collect();
    let covered = |hour: &DateTime<Utc>| {
        hours.contains(hour)
            || days
                .binary_search(&crate::rollups::day_start(*hour))
                .is_ok()
    };
    let rows_outside = raw.iter().any(|(hour, rows)| {
        *rows > 0 && *hour + chrono::Duration::hours(1) > from && *hour <= to && !covered(hour)
    });
    Ok(Some(Held {
        days,
        hours,
        rows_outside,
    }))
}

/// `pattern_id(cluster, message)`.
#[derive(Debug)]
struct PatternIdOf {
    dictionaries: Arc<BTreeMap<String, Dictionary>>,
    signature: Signature,
}

// One instance per session: equal when it is the same dictionary.
impl PartialEq for PatternIdOf {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.dictionaries, &other.dictionaries)
    }
}

impl Eq for PatternIdOf {}

impl Hash for PatternIdOf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.dictionaries).hash(state);
    }
}

impl ScalarUDFImpl for PatternIdOf {
    fn name(&self) -> &str {
        "pattern_id"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = |array: &ArrayRef| cast(array, &DataType::Utf8);
        let (clusters, messages) = (text(&arrays[0])?, text(&arrays[1])?);
        let (clusters, messages) = (clusters.as_string::<i32>(), messages.as_string::<i32>());
        let mut ids = Int64Builder::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let id: Option<PatternId> = (clusters.is_valid(row) && messages.is_valid(row))
                .then(|| self.dictionaries.get(clusters.value(row)))
                .flatten()
                .and_then(|dictionary| dictionary.id_of(messages.value(row)));
            ids.append_option(id);
        }
        Ok(ColumnarValue::Array(Arc::new(ids.finish())))
    }
}
