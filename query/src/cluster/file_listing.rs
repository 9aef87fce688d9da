//! The warm store's Delta table as a Ballista cluster can read it. delta-rs's scan node has no
//! Ballista codec (delta-rs 1.1), so the client resolves the table's active files from the Delta
//! snapshot itself (the log is the truth: files a compaction removed are not in it, even while
//! they are still on disk) and hands the cluster this plain listing: every file with its size
//! and its `date`/`hour`/`cluster` partition values. The scheduler turns it into a Parquet scan of
//! exactly those files (`DataSourceExec` over `PartitionedFile`s with partition values), which
//! datafusion-proto serializes to the executors natively. The listing itself crosses from client
//! to scheduler as JSON in the logical plan (`codec.rs`).

use crate::table::WARM_PARTITIONS;
use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{Result, ScalarValue};
use datafusion::datasource::TableProvider;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use logrecord::layout::Hour;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One active data file of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ListedFile {
    /// Its path in the object store (relative to the store's root, `/`-separated).
    pub(crate) path: String,
    /// Its size in bytes, as the Delta log records it (the Parquet reader finds the footer by it).
    pub(crate) size: u64,
    /// `date`, `hour` and `cluster`.
    pub(crate) partitions: [String; 3],
}

/// The active files of one version of the warm store's table, readable without delta-rs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FileListing {
    /// The object store the files are in: `s3://bucket/` or `file:///`.
    pub(crate) store: String,
    /// The table version the listing is of.
    pub(crate) version: u64,
    /// The files, in path order.
    pub(crate) files: Vec<ListedFile>,
}

impl FileListing {
    /// The active files of the version `table` (the Delta table at `url`) has loaded.
    pub(crate) async fn of_loaded(
        table: &deltalake::DeltaTable,
        url: &url::Url,
    ) -> anyhow::Result<FileListing> {
        use anyhow::Context;
        use futures::TryStreamExt;
        let version = table.version().unwrap_or_default();
        let snapshot = table.snapshot()?.snapshot().clone();
        // Paths in the log are relative to the table; the scan wants them relative to the store.
        let prefix = url.path().trim_matches('/');
        let mut files = Vec::new();
        let mut views = snapshot.file_views(table.log_store().as_ref(), None);
        while let Some(view) = views.try_next().await? {
            let relative = percent_encoding::percent_decode_str(&view.path())
                .decode_utf8_lossy()
                .into_owned();
            let (hour, cluster) = Hour::of_warm_file(&relative).with_context(|| {
                format!("{url}: data file {relative} is not under date=/hour=/cluster=")
            })?;
            let size = u64::try_from(view.size()).unwrap_or(0);
            let path = match prefix {
                "" => relative,
                prefix => format!("{prefix}/{relative}"),
            };
            files.push(ListedFile {
                path,
                size,
                partitions: [hour.date(), hour.hour(), cluster],
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let store = match url.scheme() {
            "file" => "file:///".to_owned(),
            scheme => format!("{scheme}://{}/", url.host_str().unwrap_or_default()),
        };
        Ok(FileListing {
            store,
            version,
            files,
        })
    }
}

pub(crate) fn partition_fields() -> Vec<FieldRef> {
    WARM_PARTITIONS
        .iter()
        .map(|name| Arc::new(Field::new(*name, DataType::Utf8, false)))
        .collect()
}

/// The listing as a table: the files' columns, then `date`, `hour`, `cluster`.
#[derive(Debug)]
pub(crate) struct FileListingTable {
    listing: FileListing,
    schema: SchemaRef,
}

impl FileListingTable {
    /// The table of `listing`.
    pub(crate) fn new(listing: FileListing) -> Self {
        let mut fields: Vec<FieldRef> = crate::table::warm_file_schema()
            .fields()
            .iter()
            .cloned()
            .collect();
        fields.extend(partition_fields());
        FileListingTable {
            listing,
            schema: Arc::new(Schema::new(fields)),
        }
    }

    /// What it lists.
    pub(crate) fn listing(&self) -> &FileListing {
        &self.listing
    }
}

#[async_trait]
impl TableProvider for FileListingTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if self.listing.files.is_empty() {
            // No partition to read (a statement's filters left none): one empty partition, as a
            // plan with no partitions would be a stage with no tasks.
            let schema = match projection {
                Some(columns) => Arc::new(self.schema.project(columns)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let store = ObjectStoreUrl::parse(&self.listing.store)?;
        let table_schema = TableSchema::builder(crate::table::warm_file_schema())
            .with_table_partition_cols(partition_fields())
            .build();
        let source = Arc::new(ParquetSource::new(table_schema));
        // One group per target partition, files dealt round-robin: every executor slot gets a
        // share of a full scan.
        let groups_wanted = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups_wanted];
        for (i, file) in self.listing.files.iter().enumerate() {
            let values = file
                .partitions
                .iter()
                .map(|v| ScalarValue::Utf8(Some(v.clone())))
                .collect();
            groups[i % groups_wanted].push(
                PartitionedFile::new(file.path.clone(), file.size).with_partition_values(values),
            );
        }
        let groups = groups
            .into_iter()
            .filter(|g| !g.is_empty())
            .map(FileGroup::new)
            .collect();
        let config = FileScanConfigBuilder::new(store, source)
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_files_columns_then_the_partitions() {
        let table = FileListingTable::new(FileListing {
            store: "s3://bucket/".into(),
            version: 3,
            files: Vec::new(),
        });
        let names: Vec<String> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(&names[names.len() - 3..], ["date", "hour", "cluster"]);
        assert_eq!(names.iter().filter(|n| *n == "cluster").count(), 1);
        assert_eq!(names.len(), logrecord::schema().fields().len() + 2);
    }
}
