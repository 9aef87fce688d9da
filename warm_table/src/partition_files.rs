//! Records -> the table's data files: one file per `date=/hour=/cluster=` directory, rows sorted
//! by time within it (file skipping by `timestamp` statistics then reads few files). The only
//! grouper: the collector, test fixtures and benchmarks all write through it.

use crate::schema::to_file_batch;
use logrecord::LogRecord;
use logrecord::layout::Hour;
use std::cmp::Ordering;

/// Rows for one partition directory.
#[derive(Debug, Clone)]
pub struct PartitionFile {
    /// The partition's `date` value, `YYYY-MM-DD`.
    pub date: String,
    /// The partition's `hour` value, `HH`.
    pub hour: String,
    /// The partition's `cluster` value.
    pub cluster: String,
    /// The rows, in the table's file schema.
    pub batch: arrow::array::RecordBatch,
}

/// The order of rows in the table: by directory (UTC hour, cluster), then time, machine, `seq`.
pub fn file_order(a: &LogRecord, b: &LogRecord) -> Ordering {
    (hour_of(a), &a.cluster, a.timestamp, &a.machine, a.seq).cmp(&(
        hour_of(b),
        &b.cluster,
        b.timestamp,
        &b.machine,
        b.seq,
    ))
}

/// One partition directory's rows, in [`file_order`].
#[derive(Debug)]
pub struct Directory<'a> {
    /// The directory's hour (`date=`, `hour=`).
    pub hour: Hour,
    /// Its `cluster=`.
    pub cluster: &'a str,
    /// Its rows.
    pub records: &'a [LogRecord],
}

/// Sorts `records` into [`file_order`] (a linear check when they already are).
pub fn sort_into_file_order(records: &mut [LogRecord]) {
    if !records.is_sorted_by(|a, b| file_order(a, b) != Ordering::Greater) {
        records.sort_unstable_by(file_order);
    }
}

/// Splits records in [`file_order`] by directory (records in another order split into more
/// runs, one file each: still correct, only more files).
pub fn directories(sorted: &[LogRecord]) -> Vec<Directory<'_>> {
    let mut directories = Vec::new();
    let mut rest = sorted;
    while let Some(head) = rest.first() {
        let len = rest
            .iter()
            .take_while(|r| hour_of(r) == hour_of(head) && r.cluster == head.cluster)
            .count();
        let (run, tail) = rest.split_at(len);
        directories.push(Directory {
            hour: Hour::of(head.timestamp),
            cluster: &head.cluster,
            records: run,
        });
        rest = tail;
    }
    directories
}

impl Directory<'_> {
    /// The directory's rows as a data file to append.
    pub fn to_file(&self) -> anyhow::Result<PartitionFile> {
        Ok(PartitionFile {
            date: self.hour.date(),
            hour: self.hour.hour(),
            cluster: self.cluster.to_owned(),
            batch: to_file_batch(self.records)?,
        })
    }
}

/// Sorts `records` into [`file_order`] and makes one file of each directory's rows.
pub fn partition_files(records: &mut [LogRecord]) -> anyhow::Result<Vec<PartitionFile>> {
    sort_into_file_order(records);
    directories(records)
        .iter()
        .map(Directory::to_file)
        .collect()
}

/// The UTC hour of a record, as hours since the epoch: the time part of its directory.
fn hour_of(record: &LogRecord) -> i64 {
    record.timestamp.timestamp().div_euclid(3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, time: &str, cluster: &str) -> LogRecord {
        let line = format!(
            r#"{{"seq":{seq},"id":"01930000-0000-7000-8000-{seq:012}","timestamp":"{time}","level":"INFO","target":"t","message":"m","cluster":"{cluster}","machine":"host-1"}}"#
        );
        LogRecord::from_json_line(&line).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn one_time_sorted_file_per_hour_and_cluster() {
        let mut records = vec![
            record(1, "2026-01-01T01:10:00Z", "west"),
            record(2, "2026-01-01T00:30:00Z", "east"),
            record(3, "2026-01-01T00:10:00Z", "east"),
            record(4, "2026-01-01T01:05:00Z", "west"),
            record(5, "2026-01-01T00:20:00Z", "west"),
        ];
        let files = partition_files(&mut records).unwrap_or_else(|e| panic!("{e}"));
        let seen: Vec<(String, String, String, Vec<u64>)> = files
            .iter()
            .map(|file| {
                let rows = crate::to_records(&file.batch).unwrap_or_default();
                let seqs = rows.iter().map(|r| r.seq).collect();
                (
                    file.date.clone(),
                    file.hour.clone(),
                    file.cluster.clone(),
                    seqs,
                )
            })
            .collect();
        let expected = [
            ("2026-01-01", "00", "east", vec![3, 2]),
            ("2026-01-01", "00", "west", vec![5]),
            ("2026-01-01", "01", "west", vec![4, 1]),
        ];
        let expected: Vec<(String, String, String, Vec<u64>)> = expected
            .into_iter()
            .map(|(d, h, c, s)| (d.to_owned(), h.to_owned(), c.to_owned(), s))
            .collect();
        assert_eq!(seen, expected);
        assert!(partition_files(&mut []).unwrap_or_default().is_empty());
    }
}
