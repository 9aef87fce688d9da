//! Configuration layering, the same for every binary: defaults < the `--config` TOML file <
//! environment < flags. Each setting is declared once, as a field of the binary's settings
//! struct deriving both `clap::Args` and serde: its doc comment is the help, `#[arg(long, env,
//! default_value)]` gives the flag, its variable and the default `--help` shows, the field's
//! kebab-case name is the file key, its type the parsed value. clap reads the flags, their
//! variables and the defaults; figment merges what the command line and environment set over the
//! file over the defaults ([`layered`]) and deserializes the result into the same struct, which
//! the binary then validates.

use anyhow::{Context, anyhow};
use clap::parser::ValueSource;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// The settings `S` layered: `parsed` is what clap made of `matches` (defaults filled in), the
/// TOML `file` (keys spelled as the flags, without `--`; an unknown key is an error) lies over
/// its defaults, and what the command line and environment set lies over the file.
pub fn layered<S>(matches: &clap::ArgMatches, file: Option<&Path>, parsed: &S) -> anyhow::Result<S>
where
    S: Serialize + DeserializeOwned,
{
    let serde_json::Value::Object(values) =
        serde_json::to_value(parsed).context("serializing the settings")?
    else {
        anyhow::bail!("the settings are not a struct");
    };
    let known: Vec<String> = values.keys().cloned().collect();
    let (mut defaults, mut given) = (serde_json::Map::new(), serde_json::Map::new());
    for (key, value) in values {
        if value.is_null() {
            continue;
        }
        let id = key.replace('-', "_");
        let source = matches
            .ids()
            .any(|known| known.as_str() == id)
            .then(|| matches.value_source(&id))
            .flatten();
        match source {
            Some(ValueSource::CommandLine | ValueSource::EnvVariable) => given.insert(key, value),
            _ => defaults.insert(key, value),
        };
    }
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        refuse_unknown_keys(&text, &known)
            .map_err(|error| anyhow!("config file {}: {error:#}", path.display()))?;
        figment = figment.merge(Toml::string(&text));
    }
    let merged = figment.merge(Serialized::defaults(given)).extract();
    merged.map_err(|error| match file {
        Some(path) => anyhow!("config file {}: {error}", path.display()),
        None => anyhow!("{error}"),
    })
}

/// An error naming the first key of the TOML `text` that is not a setting (a typo would
/// otherwise be ignored silently). Checked here rather than by serde's `deny_unknown_fields`,
/// which does not work with the `flatten` that keeps each component's settings beside it.
fn refuse_unknown_keys(text: &str, known: &[String]) -> anyhow::Result<()> {
    let keys: serde_json::Map<String, serde_json::Value> = Figment::from(Toml::string(text))
        .extract()
        .map_err(|error| anyhow!("{error}"))?;
    if let Some(unknown) = keys.keys().find(|key| !known.contains(key)) {
        anyhow::bail!(
            "unknown field `{unknown}`, expected one of {}",
            known.join(", ")
        );
    }
    Ok(())
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
    use clap::{CommandFactory, FromArgMatches};
    use std::time::Duration;

    /// A binary's settings, each declared once.
    #[derive(Debug, PartialEq, clap::Parser, Serialize, serde::Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Settings {
        /// Who.
        #[arg(long, env = "CONFIG_TEST_NAME", default_value = "default")]
        name: String,
        /// How often.
        #[arg(long, env = "CONFIG_TEST_EVERY", default_value = "90days", value_parser = humantime::parse_duration)]
        #[serde(with = "duration")]
        every: Duration,
        /// At most.
        #[arg(long, env = "CONFIG_TEST_LIMIT")]
        limit: Option<u32>,
    }

    fn layer(args: &[&str], file: Option<&str>) -> anyhow::Result<Settings> {
        let matches = Settings::command().try_get_matches_from(args)?;
        let parsed = Settings::from_arg_matches(&matches)?;
        let mut toml = tempfile::NamedTempFile::new().unwrap();
        if let Some(text) = file {
            std::io::Write::write_all(&mut toml, text.as_bytes()).unwrap();
        }
        layered(&matches, file.map(|_| toml.path()), &parsed)
    }

    #[test]
    fn flags_beat_the_file_beats_the_defaults() {
        assert_eq!(
            layer(&["x"], None).unwrap(),
            Settings {
                name: "default".into(),
                every: Duration::from_secs(90 * 86_400),
                limit: None
            }
        );
        let file = "name = \"file\"\nevery = \"250ms\"\nlimit = 3\n";
        assert_eq!(
            layer(&["x", "--name", "flag"], Some(file)).unwrap(),
            Settings {
                name: "flag".into(),
                every: Duration::from_millis(250),
                limit: Some(3)
            }
        );
        assert_eq!(
            layer(&["x", "--limit", "4"], Some("limit = 3\n"))
                .unwrap()
                .limit,
            Some(4)
        );
    }

    #[test]
    fn a_bad_file_is_an_error_naming_the_file_and_the_key() {
        let error = layer(&["x"], Some("nmae = \"typo\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("config file") && error.contains("nmae"),
            "{error}"
        );
        let error = layer(&["x"], Some("every = \"soon\"\n"))
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
    fn help_shows_the_defaults_and_variables() {
        let help = Settings::command().render_help().to_string();
        assert!(help.contains("How often"), "{help}");
        assert!(help.contains("[default: 90days]"), "{help}");
        assert!(help.contains("[env: CONFIG_TEST_LIMIT="), "{help}");
    }
}
