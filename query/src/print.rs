//! Output: an aligned table, CSV with a header, JSON lines, or a Parquet file. Timestamps are
//! RFC 3339 in UTC in every text format.

use crate::cli::Format;
use anyhow::bail;
use datafusion::arrow::record_batch::RecordBatch;
use std::io::Write;
use std::path::Path;

pub fn write(batches: &[RecordBatch], format: Format, output: Option<&Path>) -> anyhow::Result<()> {
    if format == Format::Parquet {
        let Some(path) = output else {
            bail!("--format parquet needs --output FILE")
        };
        let schema = batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| std::sync::Arc::new(arrow::datatypes::Schema::empty()));
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path)?, schema, None)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.close()?;
        return Ok(());
    }
    let mut out: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match format {
        Format::Table => writeln!(
            out,
            "{}",
            arrow::util::pretty::pretty_format_batches(batches)?
        )?,
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            for batch in batches {
                writer.write(batch)?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
            writer.write_batches(&batches.iter().collect::<Vec<_>>())?;
            writer.finish()?;
        }
        Format::Parquet => {}
    }
    out.flush()?;
    Ok(())
}
