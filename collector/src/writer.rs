//! The write stage on a thread of its own, so decoding the next batch overlaps writing this one
//! (on two cores, that is most of the collector's throughput).
//!
//! One thread writes every batch, in the order they were handed over, so each partition's batches
//! commit in offset order. A write that fails is retried until it succeeds (nothing is dropped:
//! until then its offsets are neither in the stored state nor committed). The queue is short, so a
//! store that cannot keep up slows consumption down instead of growing memory.
//! [`WriterHandle::wait_idle`] lets a rebalance wait until no write of a revoked partition is in
//! flight: a collector never writes for a partition it no longer owns.

use crate::batch::PartitionBatch;
use crate::metrics::{
    FILES_WRITTEN_TOTAL, FLUSH_DURATION_SECONDS, FLUSH_ERRORS_TOTAL, WRITTEN_BYTES_TOTAL,
    WRITTEN_ROWS_TOTAL,
};
use crate::to_parquet::Store;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Batches queued behind the one being written.
const QUEUE: usize = 2;
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// At shutdown, a batch that keeps failing is left in Kafka (uncommitted) after this many tries.
const SHUTDOWN_TRIES: u32 = 3;

/// Called after a batch is durable: commits `next_offset` of `partition` to Kafka.
pub type OnCommitted = Box<dyn Fn(i32, i64) + Send>;

/// Counts batches handed over and not yet written; shared with the rebalance callback.
#[derive(Debug, Default, Clone)]
pub struct WriterHandle(Arc<(Mutex<usize>, Condvar)>);

impl WriterHandle {
    /// Blocks until every batch handed over so far is written (or given up at shutdown).
    pub fn wait_idle(&self) {
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
pub struct Writer {
    queue: Option<SyncSender<PartitionBatch>>,
    thread: Option<std::thread::JoinHandle<()>>,
    handle: WriterHandle,
    stopping: Arc<AtomicBool>,
}

impl Writer {
    pub fn start(
        store: Store,
        handle: WriterHandle,
        on_committed: OnCommitted,
    ) -> std::io::Result<Writer> {
        let (queue, batches) = sync_channel::<PartitionBatch>(QUEUE);
        let in_flight = handle.clone();
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let thread = std::thread::Builder::new()
            .name("collector-writer".into())
            .spawn(move || {
                for mut batch in batches {
                    write_until_done(&store, &mut batch, &on_committed, &stop);
                    in_flight.add(-1);
                }
            })?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            handle,
            stopping,
        })
    }

    /// Hands a batch over; blocks while the queue is full.
    pub fn submit(&self, batch: PartitionBatch) {
        self.handle.add(1);
        if let Some(queue) = &self.queue
            && queue.send(batch).is_err()
        {
            // The thread is gone (it only ends after the queue closes): nothing to wait for.
            self.handle.add(-1);
        }
    }

    /// Writes what is queued, then stops the thread.
    pub fn finish(mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.queue.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_until_done(
    store: &Store,
    batch: &mut PartitionBatch,
    on_committed: &OnCommitted,
    stopping: &AtomicBool,
) {
    let Some((first, last)) = batch.offsets else {
        return;
    };
    let partition = batch.partition;
    let mut tries = 0u32;
    loop {
        let started = Instant::now();
        match store.flush(batch) {
            Ok(flushed) => {
                metrics::histogram!(FLUSH_DURATION_SECONDS).record(started.elapsed().as_secs_f64());
                metrics::counter!(WRITTEN_ROWS_TOTAL).increment(flushed.rows as u64);
                metrics::counter!(FILES_WRITTEN_TOTAL).increment(flushed.files as u64);
                metrics::counter!(WRITTEN_BYTES_TOTAL).increment(flushed.bytes);
                tracing::debug!(
                    partition,
                    first,
                    last,
                    rows = flushed.rows,
                    files = flushed.files,
                    "batch written"
                );
                on_committed(partition, last + 1);
                return;
            }
            Err(error) => {
                tries += 1;
                metrics::counter!(FLUSH_ERRORS_TOTAL).increment(1);
                tracing::error!(partition, first, last, tries, error = %format!("{error:#}"), "writing a batch failed; retrying");
                if tries >= SHUTDOWN_TRIES && stopping.load(Ordering::SeqCst) {
                    tracing::error!(
                        partition,
                        first,
                        last,
                        "giving up at shutdown; the batch stays in Kafka, uncommitted"
                    );
                    return;
                }
                std::thread::sleep(RETRY_AFTER);
            }
        }
    }
}
