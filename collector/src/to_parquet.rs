//! Writing a partition's batch into the warm store, durably and all-or-nothing.
//!
//! Layout (hive partitions, time first so "cluster X, last 15 minutes" opens few directories):
//! `<out>/date=YYYY-MM-DD/hour=HH/cluster=<cluster>/<topic>-<partition>-<first>-<last>.parquet`,
//! machine a column, rows sorted by time, zstd. The name says which offsets the file holds.
//! Dead letters go to `<out>/_collector/dead_letter/<topic>-<partition>-<first>-<last>.jsonl`.
//! Order: stage every file (hidden temporary names, verified, fsynced), store the intent, rename
//! them into place, store the partition's new state (the commit point); see `state.rs`.

use crate::batch::PartitionBatch;
use crate::state::{Intent, PartitionState, StatePaths, write_atomically};
use chrono::{Datelike, Timelike};
use logrecord::LogRecord;
use std::path::PathBuf;

/// What one write added to the store.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Flushed {
    pub rows: usize,
    pub files: usize,
    pub bytes: u64,
    pub dead_letters: usize,
}

/// The warm store of one topic.
#[derive(Debug, Clone)]
pub struct Store {
    pub out: PathBuf,
    pub topic: String,
}

/// The hive directory of a record, relative to the store root.
pub fn partition_dir(record: &LogRecord) -> PathBuf {
    let ts = record.timestamp;
    PathBuf::from(format!(
        "date={:04}-{:02}-{:02}",
        ts.year(),
        ts.month(),
        ts.day()
    ))
    .join(format!("hour={:02}", ts.hour()))
    .join(format!("cluster={}", record.cluster))
}

/// The UTC hour of a record, as hours since the epoch: the time part of its partition.
fn hour_of(record: &LogRecord) -> i64 {
    record.timestamp.timestamp().div_euclid(3600)
}

impl Store {
    pub fn state_paths(&self, partition: i32) -> StatePaths {
        StatePaths::new(&self.out, &self.topic, partition)
    }

    /// Writes `batch` and commits it; on success the batch starts over from the new state.
    pub fn flush(&self, batch: &mut PartitionBatch) -> anyhow::Result<Flushed> {
        let Some((first, last)) = batch.offsets else {
            return Ok(Flushed::default());
        };
        let name = format!("{}-{}-{first:020}-{last:020}", self.topic, batch.partition);
        // Group in place (a failed write leaves the batch whole for the retry), already in the
        // order each file wants: partition (hour, cluster), then time.
        batch.records.sort_unstable_by(|a, b| {
            (hour_of(a), &a.cluster, a.timestamp, &a.machine, a.seq).cmp(&(
                hour_of(b),
                &b.cluster,
                b.timestamp,
                &b.machine,
                b.seq,
            ))
        });
        let mut staged = Vec::new();
        let mut rest = batch.records.as_mut_slice();
        while let Some(head) = rest.first() {
            let key = (hour_of(head), head.cluster.clone());
            let len = rest
                .iter()
                .take_while(|r| hour_of(r) == key.0 && r.cluster == key.1)
                .count();
            let (group, tail) = rest.split_at_mut(len);
            let path = self
                .out
                .join(partition_dir(&group[0]))
                .join(format!("{name}.parquet"));
            staged.push(logrecord::parquet_file::stage(&path, group)?);
            rest = tail;
        }
        let dead_letter_path = (!batch.dead_letters.is_empty()).then(|| {
            self.out
                .join("_collector")
                .join("dead_letter")
                .join(format!("{name}.jsonl"))
        });

        let mut files: Vec<PathBuf> = staged.iter().map(|s| s.path().to_owned()).collect();
        files.extend(dead_letter_path.clone());
        let paths = self.state_paths(batch.partition);
        paths.store_intent(&Intent {
            first_offset: first,
            files,
        })?;

        let mut flushed = Flushed {
            dead_letters: batch.dead_letters.len(),
            ..Flushed::default()
        };
        for file in staged {
            let written = file.publish()?;
            flushed.rows += written.rows;
            flushed.bytes += written.bytes;
            flushed.files += 1;
        }
        if let Some(path) = dead_letter_path {
            let mut lines = Vec::new();
            for dead in &batch.dead_letters {
                serde_json::to_writer(
                    &mut lines,
                    &serde_json::json!({ "topic": self.topic, "partition": dead.partition, "offset": dead.offset, "reason": dead.reason, "detail": dead.detail, "payload": dead.payload }),
                )?;
                lines.push(b'\n');
            }
            write_atomically(&path, &lines)?;
        }
        let state = PartitionState {
            next_offset: last + 1,
            high_water: batch.high_water.clone(),
        };
        paths.commit(&state)?;
        batch.committed(state);
        Ok(flushed)
    }
}
