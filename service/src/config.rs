//! Configuration layering, the same for every binary: defaults < the `--config` TOML file <
//! environment < flags. clap reads the flags and their environment variables (a flag wins over
//! its variable); figment merges what they set over the file over the defaults and deserializes
//! the result into the binary's settings. The settings' `Default` is the one place defaults are
//! written: the merge starts from it and `--help` shows it ([`with_defaults`]).

use anyhow::{Context, anyhow};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// The settings `S` from its defaults, the TOML `file` (keys spelled as the flags, without
/// `--`; an unknown key is an error) and what the command line and environment set (`flags`,
/// serialized without the values they left unset).
pub fn layered<S>(file: Option<&Path>, flags: &impl Serialize) -> anyhow::Result<S>
where
    S: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(S::default()));
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        figment = figment.merge(Toml::string(&text));
    }
    let merged = figment.merge(Serialized::defaults(flags)).extract();
    merged.map_err(|error| match file {
        Some(path) => anyhow!("config file {}: {error}", path.display()),
        None => anyhow!("{error}"),
    })
}

/// `value` of the size or count setting `name` if it lies within `min..=max`, else an error that
/// names the setting and its bounds: a zero or absurd size is refused at start, not discovered
/// when it silently drops events or exhausts memory.
pub fn within<T>(name: &str, value: T, min: T, max: T) -> anyhow::Result<T>
where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if value < min || value > max {
        anyhow::bail!("{name} {value} is out of bounds: give a value from {min} to {max}");
    }
    Ok(value)
}

/// A clap value parser for a count from `MIN` to `MAX` (a flag with no file key).
pub fn count_within<const MIN: usize, const MAX: usize>(text: &str) -> Result<usize, String> {
    let value: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    within("the value", value, MIN, MAX).map_err(|e| e.to_string())
}

/// `command` with the help of each flag that has a default ending in `[default: <value>]`,
/// taken from `defaults` (serialized as the file would spell it).
pub fn with_defaults(mut command: clap::Command, defaults: &impl Serialize) -> clap::Command {
    let Ok(serde_json::Value::Object(values)) = serde_json::to_value(defaults) else {
        return command;
    };
    let ids: Vec<String> = command
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect();
    for id in ids {
        let shown = match values.get(&id.replace('_', "-")) {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(serde_json::Value::Null) | None => continue,
            Some(serde_json::Value::Bool(false)) => continue,
            Some(other) => other.to_string(),
        };
        command = command.mut_arg(&id, |arg| {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {shown}]"))
        });
    }
    command
}

/// Durations as the flags and the file spell them (`250ms`, `5s`, `48h`, `90days`): read with
/// humantime, written in the largest unit that divides them (humantime's own formatter writes
/// 90 days as `2months 28days 13h 30m 54s`).
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use std::time::Duration;

    /// The largest unit that divides `value` exactly.
    pub fn format(value: Duration) -> String {
        const UNITS: [(u64, &str); 4] = [
            (86_400_000, "days"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        let millis = value.as_millis() as u64;
        UNITS
            .iter()
            .find(|(unit, _)| millis > 0 && millis.is_multiple_of(*unit))
            .map_or_else(
                || format!("{millis}ms"),
                |(unit, name)| format!("{}{name}", millis / unit),
            )
    }

    /// Serializes a duration as [`format`] spells it.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format(*value))
    }

    /// Reads a humantime duration (`5s`, `1h 30m`, `90days`).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| D::Error::custom(format!("{text:?}: {e}")))
    }

    /// The same for an optional duration.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::Duration;

        /// Serializes `Some` as [`super::format`] spells it, `None` as nothing.
        pub fn serialize<S: Serializer>(
            value: &Option<Duration>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => super::serialize(value, serializer),
                None => serializer.serialize_none(),
            }
        }

        /// Reads an optional humantime duration.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(deserialize_with = "super::deserialize")] Duration);
            Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(d)| d))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Settings {
        name: String,
        #[serde(with = "duration")]
        every: Duration,
        limit: Option<u32>,
    }

    impl Default for Settings {
        fn default() -> Self {
            Settings {
                name: "default".into(),
                every: Duration::from_secs(90 * 86_400),
                limit: None,
            }
        }
    }

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
        every: Option<Duration>,
    }

    #[test]
    fn flags_beat_the_file_beats_the_defaults() {
        let none = Flags {
            name: None,
            every: None,
        };
        assert_eq!(
            layered::<Settings>(None, &none).unwrap(),
            Settings::default()
        );
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut file,
            b"name = \"file\"\nevery = \"250ms\"\nlimit = 3\n",
        )
        .unwrap();
        let flags = Flags {
            name: Some("flag".into()),
            every: None,
        };
        let settings: Settings = layered(Some(file.path()), &flags).unwrap();
        assert_eq!(
            settings,
            Settings {
                name: "flag".into(),
                every: Duration::from_millis(250),
                limit: Some(3)
            }
        );
    }

    #[test]
    fn a_bad_file_is_an_error_naming_the_file_and_the_key() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"nmae = \"typo\"\n").unwrap();
        let none = Flags {
            name: None,
            every: None,
        };
        let error = layered::<Settings>(Some(file.path()), &none)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&file.path().display().to_string()),
            "{error}"
        );
        assert!(error.contains("nmae"), "{error}");
        let mut bad = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut bad, b"every = \"soon\"\n").unwrap();
        let error = layered::<Settings>(Some(bad.path()), &none)
            .unwrap_err()
            .to_string();
        assert!(error.contains("soon"), "{error}");
    }

    #[test]
    fn durations_are_written_in_their_largest_whole_unit() {
        let cases = [
            (90 * 86_400_000, "90days"),
            (48 * 3_600_000, "2days"),
            (300_000, "5m"),
            (5_000, "5s"),
            (250, "250ms"),
            (0, "0ms"),
        ];
        for (millis, text) in cases {
            assert_eq!(duration::format(Duration::from_millis(millis)), text);
        }
    }

    #[test]
    fn help_shows_the_defaults() {
        let command = clap::Command::new("x")
            .arg(clap::Arg::new("every").long("every").help("How often."))
            .arg(clap::Arg::new("limit").long("limit").help("At most."));
        let mut command = with_defaults(command, &Settings::default());
        let help = command.render_help().to_string();
        assert!(help.contains("How often. [default: 90days]"), "{help}");
        assert!(
            help.contains("At most.\n") || help.ends_with("At most."),
            "{help}"
        );
    }
}
