//! Helpers shared by `query`'s integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

/// Runs `query --data <root> <args>` to its end.
pub fn query(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_query"))
        .arg("--data")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

/// The standard output of a `query` run that must have succeeded.
pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}
