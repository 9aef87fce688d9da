//! The queue between the threads that log and the one that writes the local log: bounded, never
//! blocking a sender (a full queue drops the line and counts it), and drained in batches.
//!
//! Each thread that logs appends its lines to a buffer of its own (a shard), which the writer
//! thread swaps out for an empty one every [`BATCH_INTERVAL`]. Lines of one thread stay in their
//! order; the writer stamps `seq` in the order it writes. Why shards: with one shared channel,
//! every request event was an allocation freed on the writer's core, and both workers and the
//! writer wrote the channel's indexes, whose cache lines then moved between cores on every line
//! (BENCHMARKS.md); a shard's lock is only ever contended by the writer's swap.
//!
//! Written here rather than with `tracing-appender`'s non-blocking writer, whose worker blocks on
//! its channel and so is woken for nearly every line under load. This writer sleeps between
//! drains while lines keep coming, and blocks only when it found every shard empty; the sender
//! that then adds a line wakes it. A line reaches the file within about [`BATCH_INTERVAL`].
//!
//! The bound is one for the whole process: a shard takes room for lines from a shared budget in
//! chunks of up to [`CHUNK_LINES`] (one atomic operation per chunk, not per line), and the writer
//! gives room back when it has written a batch, along with whatever a shard had taken and not
//! used. However many threads log, at most `capacity` lines wait in memory.
//!
//! Lines are counted by level in their shard too, and the writer hands each batch's counts to
//! its `count` callback (`agent_log_events_total`): a counter shared by the logging threads was
//! one more cache line moving between cores per request (BENCHMARKS.md). A line a full queue
//! drops is not counted here; the sender counts it (`send_with` says so).

use crossbeam_channel::{Receiver, Sender};
use logrecord::Level;
use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

/// Longest a line waits in its shard while lines keep arriving. Each drain wakes the writer on
/// a core the workers are using; at 5 ms, telemetry cost the agent 10-11% of its peak, at 20 ms
/// about 9.5% (1 ms: 11.5%, 50 ms: 9%; BENCHMARKS.md). 20 ms keeps a line's way to the file far
/// below the warm path's seconds.
pub(crate) const BATCH_INTERVAL: Duration = Duration::from_millis(20);

/// Room for lines a shard takes from the shared budget at once.
const CHUNK_LINES: usize = 256;

/// The sending side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub(crate) struct LogQueue {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// The shard of every thread that has logged through this queue.
    shards: Mutex<Vec<Arc<Mutex<Shard>>>>,
    /// Room for lines not yet taken by a shard: lines waiting in memory, queued or being written,
    /// plus room shards hold, never exceed the queue's capacity.
    room: AtomicUsize,
    dropped: AtomicU64,
    /// Set by the writer before it blocks; the sender that finds it set wakes the writer.
    writer_idle: AtomicBool,
    wake: Sender<()>,
    /// The writer has made its last drain: lines sent from now on are lost, and counted.
    closed: AtomicBool,
}

/// Whole lines, back to back, and where each ends (so the writer need not look for newlines).
#[derive(Debug, Default)]
struct Shard {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Lines by level (`Level as usize`).
    levels: [u64; Level::ALL.len()],
    /// Room taken from the budget and not used yet.
    room: usize,
}

/// What the writer calls with each batch's line count of a level.
pub(crate) type CountLines = Box<dyn Fn(Level, u64) + Send>;

/// A thread's shard of each queue it has logged through (one, but for tests).
type ThreadShards = Vec<(Weak<Shared>, Arc<Mutex<Shard>>)>;

thread_local! {
    static SHARDS: RefCell<ThreadShards> = RefCell::default();
}

/// A panic cannot leave a shard half-written (lines are written whole before their end is
/// recorded), so a poisoned lock still holds whole lines.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LogQueue {
    /// Queues the line `write` appends (one whole line, newline included) and counts it under
    /// `level`; `false` when the queue was full and dropped it (counted as dropped, not under its
    /// level).
    #[must_use]
    pub(crate) fn send_with(&self, level: Level, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let queued = SHARDS.with(|shards| {
            // Only a line written while this thread writes one would find this borrowed;
            // nothing logs from inside `write`.
            let Ok(mut shards) = shards.try_borrow_mut() else {
                return false;
            };
            let mut shard = lock(self.shard_of_this_thread(&mut shards));
            // Checked under the shard's lock, which the writer's last drain takes after closing.
            if self.shared.closed.load(Ordering::Acquire) {
                return false;
            }
            if shard.room == 0 {
                shard.room = self.shared.take_room();
                if shard.room == 0 {
                    return false;
                }
            }
            shard.room -= 1;
            write(&mut shard.bytes);
            let end = shard.bytes.len();
            shard.ends.push(end);
            shard.levels[level as usize] += 1;
            true
        });
        if !queued {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        // SeqCst pairs with the writer's: it either sees this line when it looks again after
        // saying it is idle, or this sender sees it idle and wakes it.
        if self.shared.writer_idle.load(Ordering::SeqCst)
            && self.shared.writer_idle.swap(false, Ordering::SeqCst)
        {
            let _ = self.shared.wake.try_send(());
        }
        true
    }

    fn shard_of_this_thread<'a>(&self, shards: &'a mut ThreadShards) -> &'a Mutex<Shard> {
        let this = Arc::as_ptr(&self.shared);
        // A `Weak` keeps its queue's address from being reused, so the match is exact.
        let at = match shards.iter().position(|(queue, _)| queue.as_ptr() == this) {
            Some(at) => at,
            None => {
                shards.retain(|(queue, _)| queue.strong_count() > 0);
                let shard = Arc::new(Mutex::new(Shard::default()));
                lock(&self.shared.shards).push(Arc::clone(&shard));
                shards.push((Arc::downgrade(&self.shared), shard));
                shards.len() - 1
            }
        };
        &shards[at].1
    }

    /// Lines dropped because the queue was full (or the writer had stopped).
    pub(crate) fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Shared {
    /// Room for up to [`CHUNK_LINES`] lines from the budget; 0 when it has none.
    fn take_room(&self) -> usize {
        self.room
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |room| {
                (room > 0).then(|| room - room.min(CHUNK_LINES))
            })
            .map_or(0, |room| room.min(CHUNK_LINES))
    }

    fn give_room(&self, lines: usize) {
        if lines > 0 {
            self.room.fetch_add(lines, Ordering::AcqRel);
        }
    }
}

/// The writing thread: dropping this writes what is queued, flushes, and joins it.
#[derive(Debug)]
pub(crate) struct WriterGuard {
    stop: Arc<AtomicBool>,
    wake: Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.wake.try_send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the writer thread over `out`, with room for `capacity` lines waiting in memory across
/// all logging threads; the writer reports the lines of each batch by level to `count`.
pub(crate) fn start<W: Write + Send + 'static>(
    out: W,
    capacity: usize,
    count: CountLines,
) -> std::io::Result<(LogQueue, WriterGuard)> {
    let (wake, woken) = crossbeam_channel::bounded(1);
    let shared = Arc::new(Shared {
        shards: Mutex::new(Vec::new()),
        room: AtomicUsize::new(capacity.max(1)),
        dropped: AtomicU64::new(0),
        writer_idle: AtomicBool::new(false),
        wake: wake.clone(),
        closed: AtomicBool::new(false),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = Arc::clone(&stop);
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("agent-log-writer".into())
            .spawn(move || write_until_stopped(out, &shared, &woken, &stop, &count))?
    };
    Ok((
        LogQueue { shared },
        WriterGuard {
            stop,
            wake,
            thread: Some(thread),
        },
    ))
}

fn write_until_stopped<W: Write>(
    mut out: W,
    shared: &Shared,
    woken: &Receiver<()>,
    stop: &AtomicBool,
    count: &CountLines,
) {
    let mut batch = Shard::default();
    let mut drain_all = |out: &mut W| drain(out, shared, &mut batch, count);
    loop {
        if stop.load(Ordering::Acquire) {
            shared.closed.store(true, Ordering::Release);
            drain_all(&mut out);
            let _ = out.flush();
            return;
        }
        if drain_all(&mut out) {
            let _ = out.flush();
            std::thread::sleep(BATCH_INTERVAL);
            continue;
        }
        // Idle: say so, look once more (a line may have come just before), then block until a
        // sender or the stop wakes this thread.
        shared.writer_idle.store(true, Ordering::SeqCst);
        if drain_all(&mut out) {
            shared.writer_idle.store(false, Ordering::SeqCst);
            let _ = out.flush();
            continue;
        }
        let _ = woken.recv_timeout(Duration::from_secs(1));
        shared.writer_idle.store(false, Ordering::SeqCst);
    }
}

/// Writes every shard's lines, one `write_all` per line, and counts them; `true` if there were
/// any. `batch` is the spare shard swapped with each shard in turn, so draining allocates nothing.
fn drain<W: Write>(out: &mut W, shared: &Shared, batch: &mut Shard, count: &CountLines) -> bool {
    let shards: Vec<Arc<Mutex<Shard>>> = {
        let mut shards = lock(&shared.shards);
        // A shard only the registry holds belongs to a thread that has ended: its room goes back.
        // A live thread's shard is not locked here: the loop below takes its lock anyway.
        shards.retain(|shard| {
            if Arc::strong_count(shard) > 1 {
                return true;
            }
            let mut ended = lock(shard);
            if !ended.ends.is_empty() {
                return true;
            }
            shared.give_room(std::mem::take(&mut ended.room));
            false
        });
        shards.clone()
    };
    let mut any = false;
    for shard in shards {
        {
            let mut shard = lock(&shard);
            // Room taken and not used goes back each batch: a thread that stops logging keeps
            // none, and a busy one takes a chunk again with its next line.
            shared.give_room(std::mem::take(&mut shard.room));
            if shard.ends.is_empty() {
                continue;
            }
            std::mem::swap(&mut *shard, batch);
        }
        any = true;
        for level in Level::ALL {
            let lines = std::mem::take(&mut batch.levels[level as usize]);
            if lines > 0 {
                count(level, lines);
            }
        }
        let mut start = 0;
        for &end in &batch.ends {
            // Write errors are the writer's to count (a full disk); nothing to do here.
            let _ = out.write_all(&batch.bytes[start..end]);
            start = end;
        }
        shared.give_room(batch.ends.len());
        batch.bytes.clear();
        batch.ends.clear();
    }
    any
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A count callback and the lines it was told of, by level.
    fn counter() -> (CountLines, Arc<Mutex<[u64; 5]>>) {
        let counted = Arc::new(Mutex::new([0u64; 5]));
        let into = Arc::clone(&counted);
        let count: CountLines = Box::new(move |level, lines| {
            into.lock().unwrap()[level as usize] += lines;
        });
        (count, counted)
    }

    /// Output whose writes wait until the gate is opened.
    #[derive(Clone, Default)]
    struct Gated {
        out: Shared,
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    }

    impl Gated {
        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut open = self.open.0.lock().unwrap();
            while !*open {
                open = self.open.1.wait(open).unwrap();
            }
            drop(open);
            self.out.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line(text: String) -> impl FnOnce(&mut Vec<u8>) {
        move |out: &mut Vec<u8>| out.extend_from_slice(text.as_bytes())
    }

    #[test]
    fn lines_are_written_in_order_and_a_full_queue_drops_and_counts() {
        let out = Shared::default();
        let (count, counted) = counter();
        let (queue, guard) = start(out.clone(), 1000, count).unwrap();
        for i in 0..500 {
            let level = if i % 5 == 0 { Level::Warn } else { Level::Info };
            assert!(queue.send_with(level, line(format!("{i}\n"))));
        }
        drop(guard);
        assert_eq!(*counted.lock().unwrap(), [0, 0, 400, 100, 0]);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..500).map(|i| format!("{i}\n")).collect();
        assert_eq!(text, expected);
        assert_eq!(queue.dropped(), 0);
        // The writer has stopped: a line now is lost, and counted as dropped.
        assert!(!queue.send_with(Level::Info, line("late\n".into())));
        assert_eq!(queue.dropped(), 1);
        assert_eq!(*counted.lock().unwrap(), [0, 0, 400, 100, 0]);

        // A queue of one line, sent to faster than the writer drains it, drops the rest.
        let out = Shared::default();
        let (count, counted) = counter();
        let (small, guard) = start(out.clone(), 1, count).unwrap();
        let mut refused = 0;
        for i in 0..100 {
            refused += u64::from(!small.send_with(Level::Info, line(format!("{i}\n"))));
        }
        drop(guard);
        let written = out
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
        assert!(small.dropped() > 0);
        assert_eq!(small.dropped(), refused);
        assert_eq!(
            written + small.dropped(),
            100,
            "every line written or counted"
        );
        assert_eq!(counted.lock().unwrap()[2], written, "written lines counted");
    }

    #[test]
    fn at_most_capacity_lines_wait_in_memory_however_many_threads_log() {
        // The writer is stuck on its first write (a stalled disk) while 8 threads log 1000 lines
        // each into a queue of 1000: the bound is the process's, not each thread's.
        let gated = Gated::default();
        let (count, counted) = counter();
        let (queue, guard) = start(gated.clone(), 1000, count).unwrap();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|i| queue.send_with(Level::Info, line(format!("{t} {i}\n"))))
                        .count() as u64
                })
            })
            .collect();
        let accepted: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(
            accepted <= 1000,
            "{accepted} lines waiting in a queue of 1000"
        );
        assert!(accepted >= 256, "{accepted}: the first chunk at least");
        assert_eq!(
            accepted + queue.dropped(),
            8000,
            "every line queued or dropped"
        );

        // Once the disk moves again, every accepted line is written, and room comes back.
        gated.open();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while counted.lock().unwrap()[2] < accepted {
            assert!(std::time::Instant::now() < deadline, "lines not written");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(BATCH_INTERVAL * 4);
        assert!(queue.send_with(Level::Info, line("after\n".into())));
        drop(guard);
        let written = gated
            .out
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        assert_eq!(written as u64, accepted + 1);
    }

    #[test]
    fn lines_of_many_threads_all_arrive_each_thread_in_order_and_an_idle_writer_wakes() {
        let out = Shared::default();
        let (count, counted) = counter();
        let (queue, guard) = start(out.clone(), 100_000, count).unwrap();
        // Let the writer find nothing and block first: the first lines must wake it.
        std::thread::sleep(Duration::from_millis(50));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        let _ = queue.send_with(Level::Info, line(format!("{t} {i}\n")));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // Written without the stop's help: within the batch interval, not the idle timeout.
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while out
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            < 20_000
        {
            assert!(
                std::time::Instant::now() < deadline,
                "lines not written in time"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut next = [0u32; 4];
        for row in text.lines() {
            let (t, i) = row.split_once(' ').unwrap();
            let (t, i): (usize, u32) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines in order");
            next[t] += 1;
        }
        assert_eq!(next, [5000; 4]);
        assert_eq!(queue.dropped(), 0);
        assert_eq!(counted.lock().unwrap()[2], 20_000);
        assert_eq!(
            lock(&queue.shared.shards).len(),
            0,
            "the shards of threads that ended are let go once drained"
        );
    }
}
