//! The write stage on a thread of its own, so decoding the next batches overlaps writing these
//! (on two cores, that is most of the collector's throughput).
//!
//! One thread takes jobs in the order they were handed over: a partition assigned (with the
//! version the table holds for it), or a flush of every partition's batch, written as one Delta
//! commit (`to_delta.rs`). A commit that fails for a reason that can pass (network, throttling,
//! a full disk) is retried with the project's back-off until it succeeds (nothing is dropped:
//! until then its offsets are neither in the table nor committed to Kafka). A failure that
//! retrying cannot cure (the store refuses this collector's credentials or permissions, or the
//! table is not one it can write: not a Delta table, another schema, a feature it lacks) stops
//! the collector with that error instead of retrying forever: the batch stays in Kafka,
//! uncommitted, for the collector restarted once the store is fixed. A commit that is
//! fenced (another collector stored one of its partitions meanwhile) is dropped, and those
//! partitions are handed back to the consumer to seek again from what the table holds. The queue
//! is short, so a store that cannot keep up slows consumption down instead of growing memory.
//! [`WriterHandle::wait_idle`] lets a rebalance wait until no write of a revoked partition is in
//! flight.

use crate::batch::PartitionBatch;
use crate::metrics::{
    CHECKPOINTS_TOTAL, COMMIT_RETRIES_TOTAL, COMMITS_TOTAL, FENCED_TOTAL, FILES_WRITTEN_TOTAL,
    FLUSH_DURATION_SECONDS, FLUSH_ERRORS_TOTAL, WRITTEN_BYTES_TOTAL, WRITTEN_ROWS_TOTAL,
};
use crate::to_delta::{Committed, Outcome, TableWriter};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use warm_table::WriteError;

/// Jobs queued behind the one being written.
const QUEUE: usize = 2;
/// Back-off between tries of a failed write (`service::retry`).
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(15);
/// At shutdown, a flush that keeps failing is left in Kafka (uncommitted) after this many tries.
const SHUTDOWN_TRIES: u32 = 3;

/// What the writer is told to do.
#[derive(Debug)]
pub(crate) enum Job {
    /// The partition was (re)assigned; the table holds its offsets up to `version`.
    Assigned {
        partition: i32,
        version: Option<i64>,
    },
    /// Every partition's batch, committed together.
    Flush(Vec<PartitionBatch>),
}

/// Called after a commit: commits `next_offset` of `partition` to Kafka.
pub(crate) type OnCommitted = Box<dyn Fn(i32, i64) + Send>;
/// Called after a fenced commit with its partitions: they must be sought again.
pub(crate) type OnFenced = Box<dyn Fn(Vec<i32>) + Send>;

/// Counts jobs handed over and not yet done; shared with the rebalance callback.
#[derive(Debug, Default, Clone)]
pub(crate) struct WriterHandle(Arc<(Mutex<usize>, Condvar)>);

impl WriterHandle {
    /// Blocks until every job handed over so far is done (or given up at shutdown).
    pub(crate) fn wait_idle(&self) {
        let (count, idle) = &*self.0;
        if let Ok(guard) = count.lock() {
            drop(idle.wait_while(guard, |n| *n > 0));
        }
    }

    fn add(&self, delta: isize) {
        let (count, idle) = &*self.0;
        if let Ok(mut n) = count.lock() {
            *n = n.saturating_add_signed(delta);
            if *n == 0 {
                idle.notify_all();
            }
        }
    }
}

/// The writer thread and the queue to it.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: Option<SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    handle: WriterHandle,
    stopping: Arc<AtomicBool>,
    /// The permanent failure that stopped writing, if one did.
    failed: Arc<Mutex<Option<anyhow::Error>>>,
}

impl Writer {
    /// Starts the thread. A permanent write failure cancels `shutdown` (the collector stops) and
    /// is returned by [`Writer::finish`].
    pub(crate) fn start(
        mut table: TableWriter,
        handle: WriterHandle,
        on_committed: OnCommitted,
        on_fenced: OnFenced,
        shutdown: CancellationToken,
    ) -> std::io::Result<Writer> {
        let (queue, jobs) = sync_channel::<Job>(QUEUE);
        let in_flight = handle.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let failed = Arc::new(Mutex::new(None));
        let failure = Arc::clone(&failed);
        let thread = std::thread::Builder::new()
            .name("collector-writer".into())
            .spawn(move || {
                for job in jobs {
                    let given_up = failure.lock().map_or(true, |f| f.is_some());
                    match job {
                        Job::Assigned { partition, version } => table.assigned(partition, version),
                        // Once the store refused for good, later flushes stay in Kafka too.
                        Job::Flush(_) if given_up => {}
                        Job::Flush(mut batches) => {
                            let written = write_until_done(
                                &mut table,
                                &mut batches,
                                &on_committed,
                                &on_fenced,
                                &stop,
                            );
                            if let Err(error) = written {
                                tracing::error!(error = %format!("{error:#}"), "the store refuses this write for good; stopping: the batch stays in Kafka, uncommitted, until a collector writes it");
                                if let Ok(mut failed) = failure.lock() {
                                    *failed = Some(error);
                                }
                                shutdown.cancel();
                            }
                        }
                    }
                    in_flight.add(-1);
                }
            })?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            handle,
            stopping,
            failed,
        })
    }

    /// Hands a job over; blocks while the queue is full.
    pub(crate) fn submit(&self, job: Job) {
        self.handle.add(1);
        if let Some(queue) = &self.queue
            && queue.send(job).is_err()
        {
            // The thread is gone (it only ends after the queue closes): nothing to wait for.
            self.handle.add(-1);
        }
    }

    /// Blocks until every job handed over so far is done.
    pub(crate) fn wait_idle(&self) {
        self.handle.wait_idle();
    }

    /// Writes what is queued, then stops the thread; the permanent failure that stopped
    /// writing, if one did.
    pub(crate) fn finish(mut self) -> anyhow::Result<()> {
        self.stopping.store(true, Ordering::SeqCst);
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        match self.failed.lock().map(|mut failed| failed.take()) {
            Ok(Some(error)) => Err(error),
            _ => Ok(()),
        }
    }
}

fn write_until_done(
    table: &mut TableWriter,
    batches: &mut [PartitionBatch],
    on_committed: &OnCommitted,
    on_fenced: &OnFenced,
    stopping: &AtomicBool,
) -> anyhow::Result<()> {
    let mut tries = 0u32;
    let mut backoff = service::retry::backoff(FIRST_RETRY, MAX_RETRY);
    let mut prepared = None;
    loop {
        let started = Instant::now();
        let result = match &prepared {
            Some(ready) => table.commit(ready),
            None => match table.prepare(batches) {
                Ok(ready) => {
                    prepared = Some(ready);
                    continue;
                }
                Err(error) => Err(error),
            },
        };
        match result {
            Ok(Outcome::Committed(Committed {
                appended: done,
                next_offsets,
            })) => {
                metrics::histogram!(FLUSH_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::counter!(COMMITS_TOTAL).increment(1);
                metrics::counter!(COMMIT_RETRIES_TOTAL).increment(done.retries);
                metrics::counter!(CHECKPOINTS_TOTAL).increment(u64::from(done.checkpoint));
                metrics::counter!(WRITTEN_ROWS_TOTAL).increment(done.rows as u64);
                metrics::counter!(FILES_WRITTEN_TOTAL).increment(done.files as u64);
                metrics::counter!(WRITTEN_BYTES_TOTAL).increment(done.bytes);
                tracing::debug!(
                    version = done.version,
                    rows = done.rows,
                    files = done.files,
                    "flush committed"
                );
                for (partition, next_offset) in next_offsets {
                    on_committed(partition, next_offset);
                }
                return Ok(());
            }
            Ok(Outcome::Fenced { reason, partitions }) => {
                metrics::counter!(FENCED_TOTAL).increment(1);
                tracing::warn!(%reason, ?partitions, "another collector stored these partitions meanwhile: the flush is dropped and they are sought again from the table");
                on_fenced(partitions);
                return Ok(());
            }
            Err(error @ WriteError::Refused { .. }) => {
                metrics::counter!(FLUSH_ERRORS_TOTAL).increment(1);
                return Err(error.into());
            }
            Err(error) => {
                tries += 1;
                metrics::counter!(FLUSH_ERRORS_TOTAL).increment(1);
                let error = anyhow::Error::new(error);
                let wait = backoff.next().unwrap_or(MAX_RETRY);
                tracing::error!(tries, retry_in_ms = wait.as_millis() as u64, error = %format!("{error:#}"), "writing a flush failed; retrying");
                if tries >= SHUTDOWN_TRIES && stopping.load(Ordering::SeqCst) {
                    tracing::error!("giving up at shutdown; the flush stays in Kafka, uncommitted");
                    return Ok(());
                }
                std::thread::sleep(wait);
            }
        }
    }
}
