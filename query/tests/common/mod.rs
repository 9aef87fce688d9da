//! Helpers shared by `query`'s integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::process::Output;

/// The standard output of a `query` run that must have succeeded.
pub fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "query failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}
