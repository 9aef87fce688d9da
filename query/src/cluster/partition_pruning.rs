//! A statement's partition filters applied to the listing in the client, before it is sent: a
//! one-machine one-hour lookup sends the scheduler that hour's files, not the months of files of
//! the whole table (every one of them in the plan, every one a task to plan and an executor to
//! open it). The filters are those DataFusion pushed into the scan of `logs` because they use
//! only `date`, `hour` and `cluster` ([`partition_filter`]); each is evaluated once per file on its
//! partition values. A file is dropped only when a filter is false (or null) for its values,
//! which are the same for every row of the file, so no row the statement reads is dropped. The
//! filters stay in the plan and run on the cluster as well.

use super::file_listing::{FileListing, partition_fields};
use crate::table::WARM_PARTITIONS;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::datatypes::Schema;
use datafusion::common::{DFSchema, DataFusionError, Result, TableReference};
use datafusion::logical_expr::Expr;
use datafusion::logical_expr::execution_props::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::physical_expr::create_physical_expr;
use std::sync::Arc;

/// Whether `filter` reads only partition columns (so it can be decided per file).
pub(crate) fn partition_filter(filter: &Expr) -> bool {
    filter
        .column_refs()
        .iter()
        .all(|column| WARM_PARTITIONS.contains(&column.name.as_str()))
}

/// The files of `listing` for which every one of `filters` (over the columns of the scan named
/// `table`) can hold; filters on other columns are ignored here.
pub(crate) fn pruned(
    listing: &FileListing,
    table: &TableReference,
    filters: &[Expr],
) -> Result<FileListing> {
    let schema = Schema::new(partition_fields());
    let columns: Vec<ArrayRef> = (0..WARM_PARTITIONS.len())
        .map(|i| {
            let values = listing.files.iter().map(|f| f.partitions[i].as_str());
            Arc::new(StringArray::from_iter_values(values)) as ArrayRef
        })
        .collect();
    let partitions = RecordBatch::try_new(Arc::new(schema.clone()), columns)?;
    let qualified = DFSchema::try_from_qualified_schema(table.clone(), &schema)?;
    let mut keep = vec![true; listing.files.len()];
    for filter in filters.iter().filter(|f| partition_filter(f)) {
        let decide = create_physical_expr(
            filter,
            &qualified,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )?;
        let decided = decide
            .evaluate(&partitions)?
            .into_array(partitions.num_rows())?;
        let decided = decided.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Internal(format!("partition filter {filter} is not a predicate"))
        })?;
        for (i, kept) in keep.iter_mut().enumerate() {
            *kept &= decided.is_valid(i) && decided.value(i);
        }
    }
    let files = listing
        .files
        .iter()
        .zip(keep)
        .filter(|(_, kept)| *kept)
        .map(|(file, _)| file.clone())
        .collect();
    Ok(FileListing {
        store: listing.store.clone(),
        version: listing.version,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::file_listing::ListedFile;
    use datafusion::prelude::{col, lit};

    fn listing() -> FileListing {
        let file = |date: &str, hour: &str, cluster: &str| ListedFile {
            path: format!("warm/date={date}/hour={hour}/cluster={cluster}/part.parquet"),
            size: 1,
            partitions: [date.into(), hour.into(), cluster.into()],
        };
        FileListing {
            store: "s3://fleet/".into(),
            version: 7,
            files: vec![
                file("2026-03-01", "00", "east"),
                file("2026-03-01", "01", "east"),
                file("2026-03-01", "01", "west"),
                file("2026-03-02", "01", "east"),
            ],
        }
    }

    fn paths(listing: &FileListing) -> Vec<&str> {
        listing.files.iter().map(|f| f.path.as_str()).collect()
    }

    #[test]
    fn only_the_files_whose_partitions_pass_every_filter_are_kept() {
        let logs = TableReference::bare("logs");
        let one_hour = [
            col("date").eq(lit("2026-03-01")),
            col("hour").eq(lit("01")),
            col("cluster").eq(lit("east")),
        ];
        let kept = pruned(&listing(), &logs, &one_hour).unwrap();
        assert_eq!(
            paths(&kept),
            ["warm/date=2026-03-01/hour=01/cluster=east/part.parquet"]
        );
        assert_eq!(kept.version, 7);
        let range = [col("date")
            .gt_eq(lit("2026-03-01"))
            .and(col("hour").not_eq(lit("00")))];
        assert_eq!(pruned(&listing(), &logs, &range).unwrap().files.len(), 3);
        // A filter on another column cannot be decided per file: every file stays.
        let machine = [col("machine").eq(lit("m1"))];
        assert!(!partition_filter(&machine[0]));
        assert_eq!(pruned(&listing(), &logs, &machine).unwrap(), listing());
        // Nothing passes: nothing is sent.
        let none = [col("cluster").eq(lit("north"))];
        assert!(pruned(&listing(), &logs, &none).unwrap().files.is_empty());
    }
}
