//! The query string of a metadata request, parsed once per request by the count layer (which
//! needs the api-version and format for its labels) and validated by the handler.
//!
//! Parsing never fails: bad UTF-8 is replaced, unknown parameters are ignored (clients send
//! extras), and what is wrong is reported by [`ImdsQuery::validate`] as a 400.
//!
//! Cost is linear and bounded: parsing stops after [`MAX_PARAMETERS`] parameters (a 65 KB query of
//! 13,789 names was a quarter second of CPU with a quadratic duplicate check, before the rate
//! limiter), and the duplicate check over at most that many names is a short scan.

use super::error::ApiError;
use crate::api_version;
use std::time::Duration;

/// Query parameters read at most; a request with more is refused (Azure's clients send 2-3).
pub(crate) const MAX_PARAMETERS: usize = 32;

/// Raw parameters of interest, as the caller sent them. The api-version and format every request
/// carries are resolved while parsing, so the common request copies no text (the count layer
/// parses every request; BENCHMARKS.md).
#[derive(Debug, Clone, Default)]
pub(crate) struct ImdsQuery {
    api_version: Option<Sent<usize>>,
    format: Option<Sent<Format>>,
    extended: Option<String>,
    wait_for_change: Option<String>,
    last_etag: Option<String>,
    timeout_sec: Option<String>,
    /// The first parameter name that appeared twice.
    duplicate: Option<String>,
    /// More than [`MAX_PARAMETERS`] parameters were sent.
    too_many: bool,
}

/// A parameter's value: one the agent knows (a supported api-version by its position in
/// [`api_version::SUPPORTED`], a format), or what was sent instead.
#[derive(Debug, Clone)]
enum Sent<T> {
    Known(T),
    Other(String),
}

/// A `wait-for-change=true` request: hold it until the caller's document is not `last_etag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WaitForChange {
    /// The version the caller has (quotes optional); `None`: the version current on arrival.
    pub last_etag: Option<String>,
    /// The caller's `timeout-sec` (capped by the agent's `--max-wait`).
    pub timeout: Option<Duration>,
}

/// Response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Text,
}

impl Format {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
        }
    }
}

/// A query that passed validation.
#[derive(Debug, Clone)]
pub(crate) struct ValidQuery {
    /// The api-version's position in [`api_version::SUPPORTED`]: which fields the answer has.
    pub version_index: usize,
    pub format: Format,
    pub extended: bool,
    pub wait_for_change: Option<WaitForChange>,
}

impl ImdsQuery {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        let mut query = ImdsQuery::default();
        let mut distinct = 0;
        // Names other than those read, kept to find their duplicates (clients rarely send any).
        let mut others: Vec<std::borrow::Cow<'_, str>> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if distinct == MAX_PARAMETERS {
                query.too_many = true;
                break;
            }
            let first = match name.as_ref() {
                "api-version" => first(&mut query.api_version, || {
                    match api_version::index_of(&value) {
                        Some(index) => Sent::Known(index),
                        None => Sent::Other(value.into_owned()),
                    }
                }),
                "format" => first(&mut query.format, || match value.as_ref() {
                    "json" => Sent::Known(Format::Json),
                    "text" => Sent::Known(Format::Text),
                    _ => Sent::Other(value.into_owned()),
                }),
                "extended" => first(&mut query.extended, || value.into_owned()),
                "wait-for-change" => first(&mut query.wait_for_change, || value.into_owned()),
                "last-etag" => first(&mut query.last_etag, || value.into_owned()),
                "timeout-sec" => first(&mut query.timeout_sec, || value.into_owned()),
                _ if others.contains(&name) => false,
                _ => {
                    others.push(name.clone());
                    true
                }
            };
            if first {
                distinct += 1;
            } else {
                query.duplicate.get_or_insert_with(|| name.into_owned());
            }
        }
        query
    }

    /// Checks the rules of the API: no duplicate, a supported api-version, a known format.
    pub(crate) fn validate(&self) -> Result<ValidQuery, ApiError> {
        let version_index = self.version_index()?;
        let format = self.format()?;
        let extended = boolean(self.extended.as_deref(), "extended")?;
        let wait_for_change = match boolean(self.wait_for_change.as_deref(), "wait-for-change")? {
            false => None,
            true => Some(WaitForChange {
                last_etag: self.last_etag.clone(),
                timeout: match self.timeout_sec.as_deref() {
                    None => None,
                    Some(v) => Some(Duration::from_secs(v.parse::<u32>().map_err(|_| {
                        ApiError::InvalidParameter {
                            name: "timeout-sec",
                            value: super::truncate(v, 64).to_owned(),
                            expected: "a whole number of seconds",
                        }
                    })? as u64)),
                },
            }),
        };
        Ok(ValidQuery {
            version_index,
            format,
            extended,
            wait_for_change,
        })
    }

    /// Checks only the api-version and duplicates (`/metadata/versions` takes nothing else).
    pub(crate) fn validate_version(&self) -> Result<&'static str, ApiError> {
        self.version_index().map(|i| api_version::SUPPORTED[i])
    }

    /// The api-version's position in [`api_version::SUPPORTED`], after the parameter checks.
    fn version_index(&self) -> Result<usize, ApiError> {
        if self.too_many {
            return Err(ApiError::TooManyParameters(MAX_PARAMETERS));
        }
        if let Some(name) = &self.duplicate {
            return Err(ApiError::DuplicateParameter(name.clone()));
        }
        match self.api_version {
            Some(Sent::Known(index)) => Ok(index),
            _ => Err(ApiError::InvalidApiVersion),
        }
    }

    /// `wait-for-change=true`: the request may be held (the count layer keeps held requests out
    /// of the latency histogram, which the latency alerts read).
    pub(crate) fn waits_for_change(&self) -> bool {
        self.wait_for_change
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn format(&self) -> Result<Format, ApiError> {
        match &self.format {
            None => Ok(Format::Json),
            Some(Sent::Known(format)) => Ok(*format),
            Some(Sent::Other(other)) => Err(ApiError::InvalidFormat(other.clone())),
        }
    }

    /// Bounded label value for metrics: a supported version, `unsupported`, or `none`.
    pub(crate) fn api_version_label(&self) -> &'static str {
        match self.api_version {
            None => "none",
            Some(Sent::Known(index)) => api_version::SUPPORTED[index],
            Some(Sent::Other(_)) => "unsupported",
        }
    }

    /// Bounded label value for metrics: `json` (the default), `text`, or `invalid`.
    pub(crate) fn format_label(&self) -> &'static str {
        match self.format {
            None => Format::Json.as_str(),
            Some(Sent::Known(format)) => format.as_str(),
            Some(Sent::Other(_)) => "invalid",
        }
    }

    /// The api-version as sent, for the log (bounded in length); a supported one is not copied.
    pub(crate) fn api_version_raw(&self) -> Option<std::borrow::Cow<'static, str>> {
        match &self.api_version {
            None => None,
            Some(Sent::Known(index)) => Some(api_version::SUPPORTED[*index].into()),
            Some(Sent::Other(sent)) => Some(super::truncate(sent, 64).to_owned().into()),
        }
    }
}

/// Puts the value `make` gives in an empty `slot`; `false` (a duplicate) when it held one.
fn first<T>(slot: &mut Option<T>, make: impl FnOnce() -> T) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(make());
    true
}

/// `true`/`false` in any case, absent = false; anything else names the parameter in a 400.
fn boolean(value: Option<&str>, name: &'static str) -> Result<bool, ApiError> {
    match value {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) if name == "extended" => Err(ApiError::InvalidExtended(v.to_owned())),
        Some(v) => Err(ApiError::InvalidParameter {
            name,
            value: super::truncate(v, 64).to_owned(),
            expected: "true or false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates_a_normal_query() {
        let q = ImdsQuery::parse(Some("api-version=2021-02-01&format=text&foo=bar"));
        let valid = q.validate().unwrap();
        assert_eq!(
            (
                api_version::SUPPORTED[valid.version_index],
                valid.format,
                valid.extended
            ),
            ("2021-02-01", Format::Text, false)
        );
        assert_eq!(
            (q.api_version_label(), q.format_label()),
            ("2021-02-01", "text")
        );
    }

    #[test]
    fn duplicates_unknown_versions_and_formats_are_refused() {
        let dup = ImdsQuery::parse(Some("api-version=2021-02-01&format=json&format=json"));
        assert!(matches!(dup.validate(), Err(ApiError::DuplicateParameter(n)) if n == "format"));
        let bad = ImdsQuery::parse(Some("api-version=2016-01-01"));
        assert!(matches!(bad.validate(), Err(ApiError::InvalidApiVersion)));
        assert_eq!(bad.api_version_label(), "unsupported");
        let none = ImdsQuery::parse(None);
        assert!(matches!(none.validate(), Err(ApiError::InvalidApiVersion)));
        assert_eq!(none.api_version_label(), "none");
        let xml = ImdsQuery::parse(Some("api-version=2021-02-01&format=xml"));
        assert!(matches!(xml.validate(), Err(ApiError::InvalidFormat(f)) if f == "xml"));
        assert_eq!(xml.format_label(), "invalid");
        let ext = ImdsQuery::parse(Some("api-version=2021-02-01&extended=maybe"));
        assert!(matches!(ext.validate(), Err(ApiError::InvalidExtended(_))));
    }

    #[test]
    fn a_duplicate_is_named_the_first_value_stays_and_the_sent_version_is_kept_for_the_log() {
        let unknown = ImdsQuery::parse(Some("foo=1&api-version=2021-02-01&foo=2"));
        assert!(matches!(unknown.validate(), Err(ApiError::DuplicateParameter(n)) if n == "foo"));
        let twice = ImdsQuery::parse(Some("api-version=2021-02-01&api-version=bogus&format=text"));
        assert!(
            matches!(twice.validate(), Err(ApiError::DuplicateParameter(n)) if n == "api-version")
        );
        assert_eq!(
            (twice.api_version_label(), twice.format_label()),
            ("2021-02-01", "text")
        );
        // A supported version is logged as sent without a copy; anything else up to 64 bytes.
        let supported = ImdsQuery::parse(Some("api-version=2021%2D02%2D01")).api_version_raw();
        assert!(matches!(
            supported,
            Some(std::borrow::Cow::Borrowed("2021-02-01"))
        ));
        let long = ImdsQuery::parse(Some(&format!("api-version={}", "x".repeat(100))));
        assert_eq!(long.api_version_raw().as_deref(), Some(&*"x".repeat(64)));
        assert_eq!(
            ImdsQuery::parse(Some("format=text")).api_version_raw(),
            None
        );
    }

    #[test]
    fn parameters_past_the_cap_are_refused_without_reading_them() {
        let at_cap: String = (0..MAX_PARAMETERS - 1)
            .map(|i| format!("p{i}=x&"))
            .collect::<String>()
            + "api-version=2021-02-01";
        assert!(ImdsQuery::parse(Some(&at_cap)).validate().is_ok());
        let huge: String = (0..13_789).map(|i| format!("n{i}=&")).collect();
        let started = std::time::Instant::now();
        let q = ImdsQuery::parse(Some(&format!("{huge}api-version=2021-02-01")));
        assert!(matches!(q.validate(), Err(ApiError::TooManyParameters(_))));
        // Stopped at the cap: microseconds, not the quarter second the quadratic check took.
        assert!(started.elapsed() < std::time::Duration::from_millis(20));
    }

    #[test]
    fn wait_for_change_takes_an_etag_and_a_timeout() {
        let q = ImdsQuery::parse(Some(
            "api-version=2021-02-01&wait-for-change=true&last-etag=%22ab%22&timeout-sec=30",
        ));
        assert_eq!(
            q.validate().unwrap().wait_for_change,
            Some(WaitForChange {
                last_etag: Some("\"ab\"".into()),
                timeout: Some(Duration::from_secs(30))
            })
        );
        assert!(q.waits_for_change());
        let bad = ImdsQuery::parse(Some(
            "api-version=2021-02-01&wait-for-change=true&timeout-sec=-1",
        ));
        assert!(matches!(
            bad.validate(),
            Err(ApiError::InvalidParameter {
                name: "timeout-sec",
                ..
            })
        ));
        let off = ImdsQuery::parse(Some("api-version=2021-02-01&wait-for-change=false"));
        assert_eq!(off.validate().unwrap().wait_for_change, None);
        let odd = ImdsQuery::parse(Some("api-version=2021-02-01&wait-for-change=soon"));
        assert!(matches!(
            odd.validate(),
            Err(ApiError::InvalidParameter {
                name: "wait-for-change",
                ..
            })
        ));
    }

    #[test]
    fn bad_utf8_and_odd_encodings_do_not_panic() {
        for raw in ["api-version=%FF%FE", "%", "&&&=", "api-version", "==&=="] {
            assert!(ImdsQuery::parse(Some(raw)).validate().is_err(), "{raw}");
        }
        let q = ImdsQuery::parse(Some("api-version=2021%2D02%2D01&extended=TRUE"));
        assert!(q.validate().unwrap().extended);
    }
}
