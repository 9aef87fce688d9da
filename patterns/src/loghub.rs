//! The labelled Loghub 2k samples (`../shared/loghub_2k`) the miner is judged on: each
//! dataset's `Content` column and true event ids from its structured CSV, and the settings the
//! Drain authors benchmarked with (`settings.json`). Read, never copied into the repository.

use crate::{Masks, Settings};
use std::path::{Path, PathBuf};

/// One dataset: 2,000 lines' contents, their true events, and the authors' settings.
#[derive(Debug)]
pub struct Dataset {
    /// The system's name (HDFS, Apache, ...).
    pub name: String,
    /// The lines' contents (the header fields removed).
    pub contents: Vec<String>,
    /// Each line's labelled event id.
    pub events: Vec<String>,
    /// The settings the published benchmark used for it.
    pub settings: Settings,
}

/// Where the samples are: `$LOGHUB_2K`, else `shared/loghub_2k` beside the repository.
pub fn default_dir() -> PathBuf {
    std::env::var_os("LOGHUB_2K")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/loghub_2k"))
}

/// Every dataset of `settings.json`, in its order.
pub fn load(dir: &Path) -> Result<Vec<Dataset>, String> {
    let settings_path = dir.join("settings.json");
    let text = std::fs::read_to_string(&settings_path).map_err(|error| {
        format!(
            "cannot read {}: {error} (the Loghub 2k samples live in ../shared/loghub_2k beside \
             the repository, or set LOGHUB_2K)",
            settings_path.display()
        )
    })?;
    let all: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|error| format!("{}: {error}", settings_path.display()))?;
    all.iter()
        .map(|(name, setting)| dataset(dir, name, setting))
        .collect()
}

fn dataset(dir: &Path, name: &str, setting: &serde_json::Value) -> Result<Dataset, String> {
    let invalid = || format!("settings.json: dataset {name} lacks regex, st or depth");
    let regexes: Vec<&str> = setting["regex"]
        .as_array()
        .ok_or_else(invalid)?
        .iter()
        .map(|regex| regex.as_str().ok_or_else(invalid))
        .collect::<Result<_, _>>()?;
    let settings = Settings {
        depth: setting["depth"].as_u64().ok_or_else(invalid)? as usize,
        similarity: setting["st"].as_f64().ok_or_else(invalid)?,
        max_children: 100,
        max_clusters: usize::MAX,
        masks: Masks::new(&regexes).map_err(|error| format!("{name}: {error}"))?,
    };
    let path = dir.join(name).join(format!("{name}_2k.log_structured.csv"));
    let mut reader =
        csv::Reader::from_path(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    let headers = reader
        .headers()
        .map_err(|error| format!("{}: {error}", path.display()))?;
    let column = |wanted: &str| {
        headers
            .iter()
            .position(|header| header == wanted)
            .ok_or_else(|| format!("{}: no {wanted} column", path.display()))
    };
    let (content, event) = (column("Content")?, column("EventId")?);
    let (mut contents, mut events) = (Vec::new(), Vec::new());
    for record in reader.records() {
        let record = record.map_err(|error| format!("{}: {error}", path.display()))?;
        contents.push(record[content].to_string());
        events.push(record[event].to_string());
    }
    Ok(Dataset {
        name: name.to_string(),
        contents,
        events,
        settings,
    })
}

impl Dataset {
    /// Mines the contents in order with the dataset's settings; each line's final template.
    pub fn templates(&self) -> Vec<std::sync::Arc<str>> {
        crate::final_patterns(
            self.settings.clone(),
            self.contents.iter().map(|line| Some(line.as_str())),
        )
        .into_iter()
        .flatten()
        .collect()
    }
}
