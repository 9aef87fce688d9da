//! Damaged files never reach a user as a panic. The Parquet and Arrow readers panic on some
//! damaged input (about 1 in 800 files with one byte changed: a crafted Arrow schema in the
//! footer, a bit width past 64 in a data page); DataFusion catches a panic in its tasks and
//! reports "task panicked", which names neither the file nor the damage.
//!
//! - The footer is decoded and checked before any reader sees it (`visible_files.rs`), its Arrow
//!   schema decoded under [`catch`]: a damaged footer is an error naming the file.
//! - Data pages are decoded inside DataFusion's tasks. Every read of a Parquet file notes, on the
//!   reading thread, which file it read ([`reading`]); the panic hook records the panic with the
//!   file its thread read last, and [`explain`] turns the "task panicked" error into one that
//!   names that file and the reader's message.
//!
//! - A reader's error (not a panic) on a damaged page does not name its file either: the files a
//!   statement read are noted ([`note_read`]), and when it fails with such an error [`diagnose`]
//!   decodes them one by one to find the damaged one (only on that failure, and at most
//!   [`MAX_NOTED_FILES`] of them).
//!
//! The hook prints nothing (the error carries the message) unless `QUERY_PANIC_BACKTRACE=1`
//! asks for the default report with its backtrace (for a bug report).

use std::cell::{Cell, RefCell};
use std::sync::{Mutex, Once};

thread_local! {
    /// The Parquet file this thread read last.
    static READING: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Set while [`catch`] runs: its panic is expected and reported by it.
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// A panic as recorded by the hook.
#[derive(Debug, Clone)]
struct Recorded {
    file: Option<String>,
    message: String,
}

static LAST_PANIC: Mutex<Option<Recorded>> = Mutex::new(None);

/// Files noted per statement at most (a diagnosis re-reads them).
pub const MAX_NOTED_FILES: usize = 10_000;

/// The Parquet files read since the statement started, with the store they were read from.
type Noted = (
    std::collections::HashSet<String>,
    Vec<(
        std::sync::Arc<dyn object_store::ObjectStore>,
        object_store::path::Path,
    )>,
);
static NOTED: Mutex<Option<Noted>> = Mutex::new(None);

/// A statement starts: the files noted for the last one are forgotten.
pub(crate) fn statement_started() {
    if let Ok(mut noted) = NOTED.lock() {
        *noted = None;
    }
}

/// Notes that `location` of `store` was read by the running statement.
pub(crate) fn note_read(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    location: &object_store::path::Path,
) {
    let Ok(mut noted) = NOTED.lock() else {
        return;
    };
    let (seen, files) = noted.get_or_insert_with(Default::default);
    if files.len() < MAX_NOTED_FILES && seen.insert(location.to_string()) {
        files.push((store.clone(), location.clone()));
    }
}

/// Whether an error reads like a reader's failure on damaged data.
fn decoding_failure(error_text: &str) -> bool {
    [
        "Parquet error",
        "Parquet argument error",
        "Data corruption",
        "panicked",
        "Arrow error",
    ]
    .iter()
    .any(|sign| error_text.contains(sign))
}

/// For a statement that failed with a reader's error, the first file it read that does not
/// decode, and why; `None` if the error is another kind or every file decodes.
pub async fn diagnose(error_text: &str) -> Option<String> {
    if let Some(explained) = explain(error_text)
        && !explained.starts_with("internal error")
    {
        return Some(explained);
    }
    if !decoding_failure(error_text) {
        return None;
    }
    let files = NOTED.lock().ok()?.take()?.1;
    // An error that names a file it read already says which one.
    if files
        .iter()
        .any(|(_, location)| error_text.contains(location.as_ref()))
    {
        return None;
    }
    for (store, location) in files {
        let Ok(bytes) = object_store::ObjectStoreExt::get(store.as_ref(), &location)
            .await
            .ok()?
            .bytes()
            .await
        else {
            continue;
        };
        let checked =
            tokio::task::spawn_blocking(move || catch(|| decodes(bytes)).unwrap_or_else(Err))
                .await
                .ok()?;
        if let Err(why) = checked {
            return Some(format!(
                "{location}: the file is damaged: {}",
                service::text::bounded(&why, MESSAGE_BYTES)
            ));
        }
    }
    None
}

/// Decodes every row of a Parquet file's bytes.
fn decodes(bytes: bytes::Bytes) -> Result<(), String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.build())
        .map_err(|error| error.to_string())?;
    for batch in reader {
        batch.map_err(|error| error.to_string())?;
    }
    Ok(())
}
static HOOK: Once = Once::new();

/// Longest panic message kept (a message can quote the damaged input).
const MESSAGE_BYTES: usize = 512;

/// Installs the panic hook (once).
pub fn install_panic_hook() {
    HOOK.call_once(|| {
        let verbose = std::env::var_os("QUERY_PANIC_BACKTRACE").is_some_and(|v| v == "1");
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_owned());
            let at = info
                .location()
                .map(|l| format!(" (at {}:{})", l.file(), l.line()))
                .unwrap_or_default();
            let recorded = Recorded {
                file: READING.with(|r| r.borrow().clone()),
                message: service::text::bounded(&format!("{payload}{at}"), MESSAGE_BYTES),
            };
            if let Ok(mut last) = LAST_PANIC.lock() {
                *last = Some(recorded);
            }
            if verbose && !CATCHING.with(Cell::get) {
                default(info);
            }
        }));
    });
}

/// Notes that this thread is reading (and about to decode) `file`.
pub(crate) fn reading(file: &str) {
    READING.with(|r| {
        let mut r = r.borrow_mut();
        if r.as_deref() != Some(file) {
            *r = Some(file.to_owned());
        }
    });
}

/// Runs `f`, its panic (a reader's, on damaged input) returned as its message.
pub(crate) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_panic_hook();
    CATCHING.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    result.map_err(|_| {
        LAST_PANIC
            .lock()
            .ok()
            .and_then(|last| last.clone())
            .map_or_else(|| "the reader panicked".to_owned(), |r| r.message)
    })
}

/// For an error that is a caught panic ("task ... panicked"), what the last panic says: the file
/// being read and the reader's message. `None` for any other error.
pub fn explain(error_text: &str) -> Option<String> {
    if !error_text.contains("panicked") {
        return None;
    }
    let last = LAST_PANIC.lock().ok().and_then(|last| last.clone())?;
    Some(match last.file {
        Some(file) => format!(
            "{file}: the file is damaged: the Parquet reader failed on it ({})",
            last.message
        ),
        None => format!(
            "internal error (a bug in query or a library it uses): {}",
            last.message
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_panic_is_its_message_and_names_the_file_read() {
        reading("store/date=2026-01-01/hour=00/m.parquet");
        let caught = catch(|| -> u8 { panic!("bit width 70 not supported") });
        let message = caught.unwrap_err();
        assert!(
            message.starts_with("bit width 70 not supported (at "),
            "{message}"
        );
        let explained = explain("Join Error: task 7 panicked with message ...").unwrap();
        assert!(
            explained.starts_with(
                "store/date=2026-01-01/hour=00/m.parquet: the file is damaged: the Parquet reader failed on it (bit width 70"
            ),
            "{explained}"
        );
        assert_eq!(explain("Resources exhausted"), None);
        assert_eq!(catch(|| 5), Ok(5));
    }
}
