//! Progress of a long scan on stderr, when stderr is a terminal: after a second, a spinner with the
//! time so far and the Parquet bytes read (counted by the store, `visible_files.rs`). Never on a
//! pipe or a file, so scripted output stays clean.

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Shown while alive; cleared on drop.
#[derive(Debug)]
pub(crate) struct ScanProgress {
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ScanProgress {
    pub(crate) fn start(bytes_read: &Arc<AtomicU64>) -> ScanProgress {
        if !std::io::stderr().is_terminal() {
            return ScanProgress { task: None };
        }
        let bytes_read = Arc::clone(bytes_read);
        let start = bytes_read.load(Ordering::Relaxed);
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} scanning {elapsed} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let _clear = ClearOnDrop(bar.clone());
            loop {
                let read = bytes_read.load(Ordering::Relaxed).saturating_sub(start);
                bar.set_message(format!("{} of Parquet read", HumanBytes(read)));
                bar.tick();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        ScanProgress { task: Some(task) }
    }
}

impl Drop for ScanProgress {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Clears the spinner line when the task is aborted.
struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
