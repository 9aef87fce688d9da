//! Checks a warm store against the agents that fed it: every INFO-and-above event before each
//! agent's shipper checkpoint must be in the store exactly once, field for field, and nothing else.
//!
//! `warm_verify --store DIR|s3://BUCKET/PREFIX AGENT_DATA_DIR...` (the Delta table's current
//! version); prints one JSON line; exits 1 on any loss or repeat.

use clap::Parser;
use logrecord::{Level, LogRecord, Uuid};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Checks the warm store against the agents that fed it; exit 1 on any loss or repeat.
#[derive(Debug, Parser)]
#[command(name = "warm_verify")]
struct Args {
    /// The table: a directory or s3://BUCKET/PREFIX.
    #[arg(long)]
    store: String,
    /// The agents' data directories.
    #[arg(required = true)]
    agents: Vec<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let Args { store, agents } = Args::parse();
    let mut expected: HashMap<Uuid, LogRecord> = HashMap::new();
    for agent in &agents {
        for record in shipped_events(agent)? {
            expected.insert(record.id, record);
        }
    }
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    let (mut stored, mut unequal, mut extra) = (0usize, 0usize, 0usize);
    warm_table::register_storage();
    let url = warm_table::location(&store)?;
    let rows =
        tokio::runtime::Runtime::new()?.block_on(async { warm_table::read_records(&url).await })?;
    {
        for row in rows {
            stored += 1;
            *seen.entry(row.id).or_default() += 1;
            match expected.get(&row.id) {
                Some(event) if *event != row => unequal += 1,
                Some(_) => {}
                None => extra += 1,
            }
        }
    }
    let missing = expected.keys().filter(|id| !seen.contains_key(*id)).count();
    let duplicated: usize = seen.values().filter(|n| **n > 1).map(|n| n - 1).sum();
    println!(
        "{}",
        serde_json::json!({"expected": expected.len(), "stored": stored, "missing": missing, "duplicated": duplicated, "unequal": unequal, "extra": extra})
    );
    if missing + duplicated + unequal + extra > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// INFO+ events of an agent's local log before its shipper checkpoint.
fn shipped_events(data_dir: &Path) -> anyhow::Result<Vec<LogRecord>> {
    let checkpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("shipper/checkpoint.json"))?)?;
    let (cp_file, cp_offset) = (
        checkpoint["file"].as_str().unwrap_or_default().to_owned(),
        checkpoint["offset"].as_u64().unwrap_or(0),
    );
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("logs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut events = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name > cp_file {
            break;
        }
        let bytes = std::fs::read(&file)?;
        let mut offset = 0u64;
        for line in bytes
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| l.ends_with(b"\n"))
        {
            offset += line.len() as u64;
            if name == cp_file && offset > cp_offset {
                break;
            }
            if let Ok(record) = std::str::from_utf8(line)
                .map_err(anyhow::Error::from)
                .and_then(|l| Ok(LogRecord::from_json_line(l)?))
                && record.level >= Level::Info
            {
                events.push(record);
            }
        }
    }
    Ok(events)
}
