//! How a plan over the warm store crosses from `query` to the Ballista scheduler: Ballista's own
//! logical codec for everything, plus the one table provider it cannot know, the
//! [`FileListingTable`] (encoded as its listing, JSON behind a tag). The client, the project's
//! scheduler and its executors all install this codec.

use super::file_listing::{FileListing, FileListingTable};
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{DataFusionError, Result, TableReference};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use std::sync::Arc;

/// Marks an encoded [`FileListingTable`] (anything else is Ballista's).
const TAG: &[u8] = b"imds-file-listing/1:";

/// The logical codec of the project's cluster.
#[derive(Debug, Default)]
pub struct LogsCodec {
    ballista: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LogsCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let Some(json) = buf.strip_prefix(TAG) else {
            return self
                .ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx);
        };
        let listing: FileListing = serde_json::from_slice(json).map_err(|e| {
            DataFusionError::Internal(format!("decoding the file listing of {table_ref}: {e}"))
        })?;
        Ok(Arc::new(FileListingTable::new(listing)))
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(table) = node.downcast_ref::<FileListingTable>() else {
            return self
                .ballista
                .try_encode_table_provider(table_ref, node, buf);
        };
        buf.extend_from_slice(TAG);
        serde_json::to_writer(&mut *buf, table.listing()).map_err(|e| {
            DataFusionError::Internal(format!("encoding the file listing of {table_ref}: {e}"))
        })
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::file_listing::ListedFile;

    #[test]
    fn a_file_listing_crosses_whole() {
        let listing = FileListing {
            store: "s3://fleet/".into(),
            version: 12,
            files: vec![ListedFile {
                path: "warm/date=2026-03-01/hour=07/cluster=east/part-1.parquet".into(),
                size: 4096,
                partitions: ["2026-03-01".into(), "07".into(), "east".into()],
            }],
        };
        let table: Arc<dyn TableProvider> = Arc::new(FileListingTable::new(listing.clone()));
        let codec = LogsCodec::default();
        let mut buf = Vec::new();
        let name = TableReference::bare("logs_files");
        codec
            .try_encode_table_provider(&name, Arc::clone(&table), &mut buf)
            .unwrap();
        let ctx = TaskContext::default();
        let decoded = codec
            .try_decode_table_provider(&buf, &name, table.schema(), &ctx)
            .unwrap();
        let decoded = decoded.downcast_ref::<FileListingTable>().unwrap();
        assert_eq!(decoded.listing(), &listing);
        assert_eq!(decoded.schema(), table.schema());
    }
}
