//! The queue between the threads that log and the one that writes the local log: bounded, never
//! blocking a sender (a full queue drops the line and counts it), and drained in batches.
//!
//! Written here rather than with `tracing-appender`'s non-blocking writer, whose worker blocks on
//! the channel and so is woken for nearly every line under load: a futex wake and a context
//! switch per request, the largest single cost of the request path's telemetry in a profile
//! (BENCHMARKS.md). This writer sleeps [`BATCH_INTERVAL`] between drains while lines keep coming,
//! so senders find no one to wake, and blocks only when the queue was found empty. A line reaches
//! the file within about that interval.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Longest a line waits in the queue while lines keep arriving.
pub(crate) const BATCH_INTERVAL: Duration = Duration::from_millis(5);

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub(crate) struct LogQueue {
    tx: Sender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl LogQueue {
    /// Queues one line; a full queue drops it and counts it.
    pub(crate) fn send(&self, line: Vec<u8>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped because the queue was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writing thread: dropping this writes what is queued, flushes, and joins it.
#[derive(Debug)]
pub(crate) struct WriterGuard {
    stop: Arc<AtomicBool>,
    wake: Sender<Vec<u8>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // An empty line wakes a writer blocked on an empty queue; it is not written.
        let _ = self.wake.try_send(Vec::new());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the writer thread over `out` with room for `capacity` lines.
pub(crate) fn start<W: Write + Send + 'static>(
    out: W,
    capacity: usize,
) -> std::io::Result<(LogQueue, WriterGuard)> {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("agent-log-writer".into())
            .spawn(move || write_until_stopped(out, &rx, &stop))?
    };
    Ok((
        LogQueue {
            tx: tx.clone(),
            dropped: Arc::new(AtomicU64::new(0)),
        },
        WriterGuard {
            stop,
            wake: tx,
            thread: Some(thread),
        },
    ))
}

fn write_until_stopped<W: Write>(mut out: W, rx: &Receiver<Vec<u8>>, stop: &AtomicBool) {
    loop {
        let mut any = false;
        for line in rx.try_iter() {
            any |= !line.is_empty();
            // Write errors are the writer's to count (a full disk); nothing to do here.
            let _ = out.write_all(&line);
        }
        let _ = out.flush();
        if stop.load(Ordering::Acquire) {
            for line in rx.try_iter() {
                let _ = out.write_all(&line);
            }
            let _ = out.flush();
            return;
        }
        if any {
            std::thread::sleep(BATCH_INTERVAL);
        } else {
            // Idle: block until the next line (or the stop's wake-up) instead of polling.
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(line) => {
                    let _ = out.write_all(&line);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_written_in_order_and_a_full_queue_drops_and_counts() {
        let out = Shared::default();
        let (queue, guard) = start(out.clone(), 1000).unwrap();
        for i in 0..500 {
            queue.send(format!("{i}\n").into_bytes());
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..500).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(queue.dropped(), 0);

        // A queue of one that nobody drains fast enough drops the rest, counted.
        let (tx, _rx) = crossbeam_channel::bounded(1);
        let full = LogQueue {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..3 {
            full.send(b"x\n".to_vec());
        }
        assert_eq!(full.dropped(), 2);
    }
}
