//! Output: an aligned table, CSV with a header, JSON lines, or a Parquet file. Timestamps are
//! RFC 3339 in UTC in every text format.
//!
//! CSV, JSON lines and Parquet are written batch by batch as the statement produces them, so an
//! export of months holds one batch in memory, not the whole result. The table needs every row to
//! size its columns: it takes at most [`MAX_TABLE_ROWS`], and a larger result is an error that
//! says how to get it (a LIMIT, or a streaming format).

use crate::cli::Format;
use anyhow::{Context, bail};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use std::io::Write;
use std::path::Path;

/// Rows an aligned table holds at most.
pub(crate) const MAX_TABLE_ROWS: usize = 100_000;

/// Standard output or a file, remembering whether its reader went away (`query ... | head`):
/// the writers above it only say "Broken pipe" in their own error text.
struct Output {
    inner: Box<dyn Write>,
    reader_gone: bool,
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).inspect_err(|e| self.note(e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush().inspect_err(|e| self.note(e))
    }
}

impl Output {
    fn note(&mut self, error: &std::io::Error) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            self.reader_gone = true;
        }
    }
}

/// Writes the rows of `stream` as they come; returns how many were written. A reader that goes
/// away early (`| head`) ends the output without an error.
pub(crate) async fn write(
    stream: SendableRecordBatchStream,
    format: Format,
    output: Option<&Path>,
) -> anyhow::Result<usize> {
    // A statement without columns (a SET) prints nothing.
    if stream.schema().fields().is_empty() {
        return Ok(0);
    }
    let inner: Box<dyn Write> = match (format, output) {
        (Format::Parquet, _) => Box::new(std::io::sink()),
        (_, Some(path)) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        (_, None) => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut out = Output {
        inner,
        reader_gone: false,
    };
    match write_to(stream, format, output, &mut out).await {
        Err(_) if out.reader_gone => Ok(0),
        other => other,
    }
}

async fn write_to(
    mut stream: SendableRecordBatchStream,
    format: Format,
    output: Option<&Path>,
    out: &mut Output,
) -> anyhow::Result<usize> {
    let next = |batch: Option<datafusion::error::Result<RecordBatch>>| {
        batch.map(|b| b.map_err(|error| anyhow::anyhow!("query failed: {error}")))
    };
    let mut rows = 0;
    if format == Format::Parquet {
        let Some(path) = output else {
            bail!("--format parquet needs --output FILE")
        };
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, stream.schema(), None)?;
        while let Some(batch) = next(stream.next().await) {
            let batch = batch?;
            rows += batch.num_rows();
            writer.write(&batch)?;
        }
        writer.close()?;
        return Ok(rows);
    }
    match format {
        Format::Table => {
            let mut batches = Vec::new();
            while let Some(batch) = next(stream.next().await) {
                let batch = batch?;
                rows += batch.num_rows();
                if rows > MAX_TABLE_ROWS {
                    bail!(
                        "the result has more than {MAX_TABLE_ROWS} rows, too many for a table: add a LIMIT, or use --format csv, json or parquet, which stream any number of rows"
                    );
                }
                batches.push(batch);
            }
            if batches.is_empty() {
                batches.push(RecordBatch::new_empty(stream.schema()));
            }
            writeln!(
                out,
                "{}",
                arrow::util::pretty::pretty_format_batches(&batches)?
            )?;
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            let mut any = false;
            while let Some(batch) = next(stream.next().await) {
                let batch = batch?;
                rows += batch.num_rows();
                writer.write(&batch)?;
                any = true;
            }
            if !any {
                // The header alone, as for any empty result.
                writer.write(&RecordBatch::new_empty(stream.schema()))?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            while let Some(batch) = next(stream.next().await) {
                let batch = batch?;
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            writer.finish()?;
        }
        Format::Parquet => {}
    }
    out.flush()?;
    Ok(rows)
}
