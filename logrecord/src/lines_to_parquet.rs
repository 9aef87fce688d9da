//! A file of JSON lines (the agent's hourly log) to one Parquet file of the record schema, on
//! several threads: one reads blocks of [`ROW_GROUP_ROWS`] lines, `workers` threads each parse a
//! block straight into Arrow columns ([`RecordRef`], no per-field allocation), sort it by time and
//! encode and compress it as a row group, and the calling thread appends the row groups to the
//! file in input order. Memory stays at a few blocks whatever the file's size.
//!
//! Lines that are not records (a line cut short by a crash, a corrupt one) are skipped and
//! counted. The file is staged ([`StagedFile`]): verified and fsynced under a hidden name, made
//! visible by its caller.

use crate::arrow_schema::BatchBuilder;
use crate::json_line::RecordRef;
use crate::parquet_file::{
    EncodedRowGroup, ROW_GROUP_ROWS, RowGroupEncoder, StagedFile, StagingWriter, WriteError,
};
use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{TimestampMicrosecondType, UInt64Type};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

/// What a conversion read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinesRead {
    /// Records written.
    pub rows: usize,
    /// Non-empty lines that were not records.
    pub skipped: u64,
}

/// Converts `input` into a staged Parquet file for `target`, parsing and encoding on `workers`
/// threads (at least one).
pub fn stage(
    input: impl Read + Send,
    target: &Path,
    workers: usize,
) -> Result<(StagedFile, LinesRead), WriteError> {
    stage_in_blocks(input, target, workers, ROW_GROUP_ROWS)
}

fn stage_in_blocks(
    input: impl Read + Send,
    target: &Path,
    workers: usize,
    block_lines: usize,
) -> Result<(StagedFile, LinesRead), WriteError> {
    let mut writer = StagingWriter::create(target)?;
    let encoder = writer.encoder();
    let workers = workers.max(1);
    let (block_tx, block_rx) = sync_channel::<(usize, Vec<u8>)>(workers);
    let (done_tx, done_rx) = sync_channel(workers);
    // Blocks go back to the reader to be filled again: tens of MB each, allocating them afresh
    // costs the kernel's page zeroing.
    let (spare_tx, spare_rx) = sync_channel(workers * 2);
    // Shared by the workers only: when they are gone, the reader's next send fails and it stops.
    let block_rx = Arc::new(Mutex::new(block_rx));
    let skipped = std::thread::scope(|scope| -> Result<u64, WriteError> {
        let reader = scope.spawn(move || read_blocks(input, block_lines, block_tx, spare_rx));
        for _ in 0..workers {
            let (blocks, done, spare) = (block_rx.clone(), done_tx.clone(), spare_tx.clone());
            let encoder = &encoder;
            scope.spawn(move || convert_blocks(&blocks, &done, &spare, encoder));
        }
        drop((block_rx, done_tx, spare_tx));
        let skipped = append_in_order(&mut writer, done_rx)?;
        reader
            .join()
            .map_err(|_| std::io::Error::other("the reading thread panicked"))
            .and_then(|read| read)
            .map_err(|source| WriteError::Io {
                path: target.to_owned(),
                source,
            })?;
        Ok(skipped)
    })?;
    let staged = writer.finish()?;
    let rows = staged.rows();
    Ok((staged, LinesRead { rows, skipped }))
}

/// A block's row group and the lines it skipped, or why it failed.
type Converted = Result<(EncodedRowGroup, u64), WriteError>;

/// Appends the workers' row groups in block order; stops at the first failure.
fn append_in_order(
    writer: &mut StagingWriter,
    done: Receiver<(usize, Converted)>,
) -> Result<u64, WriteError> {
    let (mut next, mut waiting, mut skipped) = (0, BTreeMap::new(), 0);
    for (index, converted) in done {
        waiting.insert(index, converted);
        while let Some(converted) = waiting.remove(&next) {
            let (group, block_skipped) = converted?;
            writer.append(group)?;
            skipped += block_skipped;
            next += 1;
        }
    }
    Ok(skipped)
}

/// Reads whole lines into numbered blocks of `block_lines` lines.
fn read_blocks(
    input: impl Read,
    block_lines: usize,
    blocks: SyncSender<(usize, Vec<u8>)>,
    spare: Receiver<Vec<u8>>,
) -> std::io::Result<()> {
    let mut input = BufReader::with_capacity(1 << 20, input);
    for index in 0.. {
        let mut block = spare.try_recv().unwrap_or_default();
        block.clear();
        let mut lines = 0;
        while lines < block_lines && input.read_until(b'\n', &mut block)? > 0 {
            lines += 1;
        }
        if lines == 0 || blocks.send((index, block)).is_err() {
            break;
        }
    }
    Ok(())
}

fn convert_blocks(
    blocks: &Mutex<Receiver<(usize, Vec<u8>)>>,
    done: &SyncSender<(usize, Converted)>,
    spare: &SyncSender<Vec<u8>>,
    encoder: &RowGroupEncoder,
) {
    loop {
        let next = match blocks.lock() {
            Ok(blocks) => blocks.recv(),
            Err(_) => return,
        };
        let Ok((index, block)) = next else { return };
        let converted = convert_block(&block, encoder);
        let _ = spare.try_send(block);
        if done.send((index, converted)).is_err() {
            return;
        }
    }
}

fn convert_block(block: &[u8], encoder: &RowGroupEncoder) -> Converted {
    let mut builder = BatchBuilder::with_capacity(ROW_GROUP_ROWS);
    let mut skipped = 0;
    for line in block.split(|&b| b == b'\n') {
        if line.is_empty() {
            continue;
        }
        match std::str::from_utf8(line).ok().map(RecordRef::parse) {
            Some(Ok(record)) => builder.append(&record),
            _ => skipped += 1,
        }
    }
    let batch = sorted_by_time(builder.finish()?)?;
    Ok((encoder.encode(&batch)?, skipped))
}

/// The batch in (timestamp, machine, seq) order; a log file is nearly sorted already (events
/// are stamped on many threads, written by one), so the check usually saves the sort.
fn sorted_by_time(batch: RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let column = |name| batch.column_by_name(name).cloned();
    let (Some(timestamp), Some(machine), Some(seq)) =
        (column("timestamp"), column("machine"), column("seq"))
    else {
        return Ok(batch);
    };
    let timestamp = timestamp.as_primitive::<TimestampMicrosecondType>();
    let (machine, seq) = (machine.as_string::<i32>(), seq.as_primitive::<UInt64Type>());
    let key = |row: usize| (timestamp.value(row), machine.value(row), seq.value(row));
    if (1..batch.num_rows()).all(|row| key(row - 1) <= key(row)) {
        return Ok(batch);
    }
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_unstable_by(|&a, &b| key(a as usize).cmp(&key(b as usize)));
    arrow::compute::take_record_batch(&batch, &UInt32Array::from(order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogRecord;
    use crate::parquet_file::read;

    fn line(seq: u64, second: u32) -> String {
        let mut record = crate::tests::request_record();
        record.seq = seq;
        record.id = crate::Uuid::from_u128(u128::from(seq));
        record.timestamp =
            chrono::DateTime::parse_from_rfc3339(&format!("2024-02-29T23:59:{second:02}.000001Z"))
                .unwrap()
                .to_utc();
        if seq.is_multiple_of(5) {
            record.request_id = None;
            record.message = "escaped \"quote\" and \u{e9}".into();
            record.fields =
                Some(serde_json::from_str(r#"{"error":"disk full","n":[1,2]}"#).unwrap());
        }
        record.to_json_line()
    }

    #[test]
    fn every_valid_line_becomes_one_row_in_time_order_across_blocks_and_workers() {
        let mut input = String::new();
        let mut expected = Vec::new();
        for seq in 0..100u64 {
            // Out of order within and across blocks; every seventh line is not a record.
            let text = line(seq, (seq * 37 % 60) as u32);
            expected.push(LogRecord::from_json_line(&text).unwrap());
            input.push_str(&text);
            if seq.is_multiple_of(7) {
                input.push_str("{\"seq\":1,\"cut short\n");
            }
            if seq.is_multiple_of(11) {
                input.push('\n');
            }
        }
        input.push_str("{\"seq\":2,\"id\":\"last line, no newline");
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.parquet");

        let (staged, read_back) = stage_in_blocks(input.as_bytes(), &target, 3, 9).unwrap();
        assert_eq!(
            read_back,
            LinesRead {
                rows: 100,
                skipped: 16
            }
        );
        let written = staged.publish().unwrap();
        assert_eq!(written.rows, 100);

        let rows = read(&target).unwrap();
        // Sorted within each row group of 9 input lines; the whole file holds every record once.
        let mut all = rows.clone();
        all.sort_by_key(|r| r.seq);
        assert_eq!(all, expected);
        let file = std::fs::File::open(&target).unwrap();
        let metadata = parquet::file::reader::SerializedFileReader::new(file).unwrap();
        use parquet::file::reader::FileReader;
        let mut start = 0;
        for group in metadata.metadata().row_groups() {
            let end = start + group.num_rows() as usize;
            let times: Vec<_> = rows[start..end].iter().map(|r| r.timestamp).collect();
            assert!(
                times.is_sorted(),
                "row group {start}..{end} not in time order"
            );
            start = end;
        }
        assert_eq!(start, 100);
    }

    /// An input that fails after some lines.
    struct Failing(std::io::Cursor<Vec<u8>>);

    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::other("disk went away")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn a_read_error_fails_the_conversion_and_leaves_no_file() {
        let input: String = (0..50).map(|seq| line(seq, 1)).collect();
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.parquet");
        let error = stage_in_blocks(
            Failing(std::io::Cursor::new(input.into_bytes())),
            &target,
            2,
            9,
        )
        .unwrap_err();
        assert!(error.to_string().contains("disk went away"), "{error}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
