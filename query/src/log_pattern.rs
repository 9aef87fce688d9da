//! `log_pattern(message) OVER (...)`: each line's template ("pattern"), mined by the `patterns`
//! crate's Drain-style miner over the rows of its window partition, in the window's order.
//!
//! A window function, not a scalar one: a line's template depends on the other lines (which
//! positions vary among lines of the same shape), so it is known only once the partition has
//! been read, and SQL says which lines count together with `OVER`. Every row of a partition
//! gets its template's final form, so `GROUP BY` over the result groups each template once:
//!
//! ```sql
//! SELECT pattern, count(*) FROM (
//!   SELECT log_pattern(message) OVER (ORDER BY "timestamp", machine, seq) AS pattern FROM logs
//!   WHERE cluster = 'c1') GROUP BY pattern ORDER BY 2 DESC
//! ```
//!
//! `PARTITION BY cluster` mines each cluster apart; an `ORDER BY` that is total makes the result
//! the same on every run (mining depends on the order lines arrive in). Bounded by the miner's
//! limits (`patterns` crate: tokens per line, templates); the partition's rows themselves are
//! held by DataFusion's window operator within the statement's memory limit.

use datafusion::arrow::array::{ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::Result;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    PartitionEvaluator, Signature, Volatility, WindowUDF, WindowUDFImpl,
};
use patterns::{Settings, final_patterns};
use std::sync::Arc;

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct LogPattern {
    signature: Signature,
}

/// The function, to register on a session.
pub(crate) fn udwf() -> WindowUDF {
    WindowUDF::new_from_impl(LogPattern {
        signature: Signature::string(1, Volatility::Immutable),
    })
}

impl WindowUDFImpl for LogPattern {
    fn name(&self) -> &str {
        "log_pattern"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(WholePartition))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            DataType::Utf8,
            true,
        )))
    }
}

/// Mines the whole partition, then answers every row with its template's final form.
#[derive(Debug)]
struct WholePartition;

impl PartitionEvaluator for WholePartition {
    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let messages = cast(&values[0], &DataType::Utf8)?;
        let patterns = final_patterns(Settings::for_logs(), messages.as_string::<i32>());
        let mut out = StringBuilder::with_capacity(num_rows, num_rows * 32);
        for pattern in patterns {
            out.append_option(pattern);
        }
        Ok(Arc::new(out.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray};

    #[test]
    fn every_row_gets_its_final_template_and_nulls_stay_null() {
        let messages: ArrayRef = Arc::new(StringArray::from(vec![
            Some("user alice logged in"),
            None,
            Some("user bob logged in"),
            Some("disk full on /dev/sda1"),
        ]));
        let patterns = WholePartition.evaluate_all(&[messages], 4).unwrap();
        let patterns = patterns.as_string::<i32>();
        assert_eq!(patterns.value(0), "user <*> logged in");
        assert!(patterns.is_null(1));
        assert_eq!(patterns.value(2), "user <*> logged in");
        assert_eq!(patterns.value(3), "disk full on /dev/sda1");
    }
}
