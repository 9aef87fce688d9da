//! One flush -> one Delta commit: every partition's batch, with agent resends removed, written as
//! one file per `date=/hour=/cluster=` directory (rows sorted by time), committed together with
//! each Kafka partition's last offset and each machine's highest `seq` (the `warm_table` crate).
//! Dead letters go to `_dead_letters/<topic>-<partition>-<first>-<last>.jsonl` first (outside
//! the table; rewritten with the same content if the flush is retried).

use crate::batch::PartitionBatch;
use crate::metrics::DUPLICATES_DROPPED_TOTAL;
use crate::resends::Machines;
use chrono::Utc;
use deltalake::kernel::Transaction;
use deltalake::{DeltaTable, DeltaTableError};
use futures::stream::{self, StreamExt, TryStreamExt};
use logrecord::LogRecord;
use std::collections::{BTreeMap, HashMap};
use tokio::runtime::Handle;
use warm_table::WriteError;

/// Machine lookups in flight at once (each reads the table's log).
const LOOKUPS: usize = 8;

/// What the writer knows of one assigned partition.
#[derive(Debug, Default)]
struct Progress {
    /// The last offset the table holds (`None`: none).
    version: Option<i64>,
    machines: Machines,
}

/// The table and what this collector knows of its partitions' progress in it.
#[derive(Debug)]
pub(crate) struct TableWriter {
    table: DeltaTable,
    runtime: Handle,
    group: String,
    topic: String,
    partitions: HashMap<i32, Progress>,
    /// Fault injection: a pause between writing a flush's files and committing them.
    commit_delay: Option<std::time::Duration>,
}

/// A flush made ready to commit (kept as it is across retries).
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// Every row, in the table's file order.
    records: Vec<LogRecord>,
    /// Per partition: last offset and the new highest `seq` per machine.
    partitions: BTreeMap<i32, (i64, BTreeMap<String, u64>)>,
    dead_letters: Vec<(String, Vec<u8>)>,
}

/// What a commit did.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    pub appended: warm_table::Appended,
    /// The next offset to commit to Kafka per partition.
    pub next_offsets: Vec<(i32, i64)>,
}

#[derive(Debug)]
pub(crate) enum Outcome {
    Committed(Committed),
    /// Dropped: these partitions must be sought again from the table.
    Fenced {
        reason: String,
        partitions: Vec<i32>,
    },
}

impl TableWriter {
    pub(crate) fn new(table: DeltaTable, runtime: Handle, group: &str, topic: &str) -> Self {
        TableWriter {
            table,
            runtime,
            group: group.to_owned(),
            topic: topic.to_owned(),
            partitions: HashMap::new(),
            commit_delay: None,
        }
    }

    /// Holds every commit `delay` after its files are written (fault tests).
    pub(crate) fn with_commit_delay(mut self, delay: Option<std::time::Duration>) -> Self {
        self.commit_delay = delay;
        self
    }

    /// A partition (re)assigned: what was known of it may be stale.
    pub(crate) fn assigned(&mut self, partition: i32, version: Option<i64>) {
        self.partitions.insert(
            partition,
            Progress {
                version,
                machines: Machines::default(),
            },
        );
    }

    /// Looks up what the table holds for the batches' machines, removes resends, and merges the
    /// batches into one sorted flush. Nothing is taken from `batches` unless it succeeds.
    pub(crate) fn prepare(
        &mut self,
        batches: &mut [PartitionBatch],
    ) -> Result<Prepared, WriteError> {
        let runtime = self.runtime.clone();
        runtime.block_on(self.look_up_machines(batches))?;
        Ok(self.merge(batches))
    }

    /// Writes and commits a prepared flush (again after an error: files of a failed try are
    /// never referenced by the log, and VACUUM removes them).
    pub(crate) fn commit(&mut self, prepared: &Prepared) -> Result<Outcome, WriteError> {
        let runtime = self.runtime.clone();
        let outcome = runtime.block_on(self.append(prepared))?;
        if let Outcome::Fenced { partitions, .. } = &outcome {
            for partition in partitions {
                self.partitions.remove(partition);
            }
        }
        Ok(outcome)
    }

    async fn look_up_machines(&mut self, batches: &[PartitionBatch]) -> Result<(), WriteError> {
        for batch in batches {
            let progress = self.partitions.entry(batch.partition).or_default();
            let unknown: Vec<String> = progress
                .machines
                .unknown(&batch.records)
                .into_iter()
                .map(str::to_owned)
                .collect();
            let table = &self.table;
            let (group, topic) = (&self.group, &self.topic);
            let found: Vec<(String, Option<i64>)> = stream::iter(unknown)
                .map(|machine| async move {
                    let app_id = warm_table::machine_app_id(group, topic, &machine);
                    let stored = warm_table::stored_version(table, &app_id).await?;
                    Ok::<_, DeltaTableError>((machine, stored))
                })
                .buffer_unordered(LOOKUPS)
                .try_collect()
                .await
                .map_err(|e| WriteError::new("looking up machines' stored seq", e))?;
            for (machine, stored) in found {
                progress
                    .machines
                    .learn(&machine, stored.map(|v| v.max(0) as u64));
            }
        }
        Ok(())
    }

    fn merge(&mut self, batches: &mut [PartitionBatch]) -> Prepared {
        let mut prepared = Prepared::default();
        let mut records = Vec::new();
        for batch in batches.iter_mut() {
            let Some((first, last)) = batch.offsets else {
                continue;
            };
            let progress = self.partitions.entry(batch.partition).or_default();
            let (highs, dropped) = progress.machines.drop_repeats(&mut batch.records);
            metrics::counter!(DUPLICATES_DROPPED_TOTAL).increment(dropped as u64);
            prepared.partitions.insert(batch.partition, (last, highs));
            if !batch.dead_letters.is_empty() {
                let name = format!("{}-{}-{first:020}-{last:020}", self.topic, batch.partition);
                prepared
                    .dead_letters
                    .push((name, dead_letter_lines(&self.topic, batch)));
            }
            records.append(&mut batch.records);
        }
        warm_table::sort_into_file_order(&mut records);
        prepared.records = records;
        prepared
    }

    async fn append(&mut self, prepared: &Prepared) -> Result<Outcome, WriteError> {
        for (name, lines) in &prepared.dead_letters {
            warm_table::put_dead_letters(&self.table, name, lines.clone()).await?;
        }
        let mut transactions = Vec::new();
        let mut expected = Vec::new();
        let now = Utc::now().timestamp_millis();
        for (partition, (last, highs)) in &prepared.partitions {
            let app_id = warm_table::partition_app_id(&self.group, &self.topic, *partition);
            let version = self.partitions.get(partition).and_then(|p| p.version);
            expected.push((app_id.clone(), version));
            transactions.push(Transaction::new_with_last_update(app_id, *last, Some(now)));
            for (machine, seq) in highs {
                transactions.push(Transaction::new_with_last_update(
                    warm_table::machine_app_id(&self.group, &self.topic, machine),
                    *seq as i64,
                    Some(now),
                ));
            }
        }
        let partitions: Vec<i32> = prepared.partitions.keys().copied().collect();
        let delay = self.commit_delay;
        let pause = async move {
            if let Some(delay) = delay {
                tracing::warn!(?delay, "holding the commit (fault injection)");
                tokio::time::sleep(delay).await;
            }
        };
        let files = warm_table::directories(&prepared.records)
            .iter()
            .map(warm_table::Directory::to_file)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| {
                let error = DeltaTableError::Generic(format!("{e:#}"));
                WriteError::new("making the data files", error)
            })?;
        match warm_table::append(&mut self.table, files, transactions, &expected, pause).await {
            Ok(appended) => {
                let mut next_offsets = Vec::new();
                for (partition, (last, highs)) in &prepared.partitions {
                    let progress = self.partitions.entry(*partition).or_default();
                    progress.version = Some(*last);
                    progress.machines.stored(highs);
                    next_offsets.push((*partition, last + 1));
                }
                Ok(Outcome::Committed(Committed {
                    appended,
                    next_offsets,
                }))
            }
            Err(WriteError::Fenced(reason)) => Ok(Outcome::Fenced { reason, partitions }),
            Err(error) => Err(error),
        }
    }
}

fn dead_letter_lines(topic: &str, batch: &PartitionBatch) -> Vec<u8> {
    let mut lines = String::new();
    for dead in &batch.dead_letters {
        let line = serde_json::json!({ "topic": topic, "partition": dead.partition, "offset": dead.offset, "reason": dead.reason, "detail": dead.detail, "payload": dead.payload });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    lines.into_bytes()
}
