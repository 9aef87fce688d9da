//! Severity of a log record, ordered from most verbose to most severe.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Severity, written upper-case on the wire and in storage (`"INFO"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// The most verbose: step by step.
    Trace,
    /// Detail for developers (cold path only).
    Debug,
    /// Normal operation: every request.
    Info,
    /// Something unexpected that did not fail a request.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    /// All levels, most verbose first.
    pub const ALL: [Level; 5] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
    ];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// Whether the warm path ships this level (INFO and above).
    pub fn is_warm(self) -> bool {
        self >= Level::Info
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Level {
    type Err = String;

    /// Case-insensitive, so `--level warn` and `WARN` both work.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown level {s:?}: use trace, debug, info, warn or error"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_order_and_parse() {
        assert!(Level::Debug < Level::Info && Level::Warn < Level::Error);
        assert!(!Level::Debug.is_warm() && Level::Info.is_warm());
        assert_eq!("warn".parse::<Level>().unwrap(), Level::Warn);
        assert!("verbose".parse::<Level>().is_err());
    }
}
