//! The query string of a metadata request, parsed once per request by the count layer (which
//! needs the api-version and format for its labels) and validated by the handler.
//!
//! Parsing never fails: bad UTF-8 is replaced, unknown parameters are ignored (clients send
//! extras), and what is wrong is reported by [`ImdsQuery::validate`] as a 400.

use super::error::ApiError;
use crate::api_version;

/// Raw parameters of interest, as the caller sent them.
#[derive(Debug, Clone, Default)]
pub struct ImdsQuery {
    api_version: Option<String>,
    format: Option<String>,
    extended: Option<String>,
    /// The first parameter name that appeared twice.
    duplicate: Option<String>,
}

/// Response format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
        }
    }
}

/// A query that passed validation.
#[derive(Debug, Clone, Copy)]
pub struct ValidQuery {
    /// The supported api-version (checked, not otherwise used: one document serves all versions).
    pub api_version: &'static str,
    pub format: Format,
    pub extended: bool,
}

impl ImdsQuery {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut query = ImdsQuery::default();
        let mut seen: Vec<String> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if seen.iter().any(|s| *s == name) {
                query
                    .duplicate
                    .get_or_insert_with(|| name.clone().into_owned());
                continue;
            }
            seen.push(name.clone().into_owned());
            let slot = match name.as_ref() {
                "api-version" => &mut query.api_version,
                "format" => &mut query.format,
                "extended" => &mut query.extended,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        query
    }

    /// Checks the rules of the API: no duplicate, a supported api-version, a known format.
    pub fn validate(&self) -> Result<ValidQuery, ApiError> {
        let api_version = self.validate_version()?;
        let format = self.format()?;
        let extended = match self.extended.as_deref() {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(v) => return Err(ApiError::InvalidExtended(v.to_owned())),
        };
        Ok(ValidQuery {
            api_version,
            format,
            extended,
        })
    }

    /// Checks only the api-version and duplicates (`/metadata/versions` takes nothing else).
    pub fn validate_version(&self) -> Result<&'static str, ApiError> {
        if let Some(name) = &self.duplicate {
            return Err(ApiError::DuplicateParameter(name.clone()));
        }
        self.api_version
            .as_deref()
            .and_then(api_version::lookup)
            .ok_or(ApiError::InvalidApiVersion)
    }

    fn format(&self) -> Result<Format, ApiError> {
        match self.format.as_deref() {
            None | Some("json") => Ok(Format::Json),
            Some("text") => Ok(Format::Text),
            Some(other) => Err(ApiError::InvalidFormat(other.to_owned())),
        }
    }

    /// Bounded label value for metrics: a supported version, `unsupported`, or `none`.
    pub fn api_version_label(&self) -> &'static str {
        match self.api_version.as_deref() {
            None => "none",
            Some(v) => api_version::lookup(v).unwrap_or("unsupported"),
        }
    }

    /// Bounded label value for metrics: `json` (the default), `text`, or `invalid`.
    pub fn format_label(&self) -> &'static str {
        self.format().map(Format::as_str).unwrap_or("invalid")
    }

    /// The api-version as sent, for the log (bounded in length).
    pub fn api_version_raw(&self) -> Option<&str> {
        self.api_version.as_deref().map(|v| super::truncate(v, 64))
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
            (valid.api_version, valid.format, valid.extended),
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
    fn bad_utf8_and_odd_encodings_do_not_panic() {
        for raw in ["api-version=%FF%FE", "%", "&&&=", "api-version", "==&=="] {
            assert!(ImdsQuery::parse(Some(raw)).validate().is_err(), "{raw}");
        }
        let q = ImdsQuery::parse(Some("api-version=2021%2D02%2D01&extended=TRUE"));
        assert!(q.validate().unwrap().extended);
    }
}
