//! Variables masked before mining: each regular expression's matches become `<*>`, applied in
//! order, like Drain's preprocessing step (and Drain3's masking with `mask_with = "*"`).

use crate::WILDCARD;
use regex::{NoExpand, Regex, bytes};
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

/// Ordered regular expressions whose matches are variables. Clones share the compiled
/// expressions and their search caches.
#[derive(Debug, Clone, Default)]
pub struct Masks {
    expressions: Arc<[Mask]>,
}

/// One expression, compiled twice: as written, and without Unicode for ASCII lines (most
/// lines). On an ASCII line both match exactly the same text (`\d`, `\w`, `\s`, `\b` and case
/// folding differ only on other characters), and the ASCII automaton is smaller and faster:
/// masking is most of the miner's time.
#[derive(Debug)]
struct Mask {
    unicode: Regex,
    /// `None` when the expression needs Unicode (e.g. `\p{L}`).
    ascii: Option<bytes::Regex>,
}

impl Mask {
    fn new(expression: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            unicode: Regex::new(expression)?,
            ascii: bytes::RegexBuilder::new(expression)
                .unicode(false)
                .build()
                .ok(),
        })
    }

    /// `text` with this mask's matches replaced, or `None` when nothing matched.
    fn replace(&self, text: &str) -> Option<String> {
        let Some(ascii) = self.ascii.as_ref().filter(|_| text.is_ascii()) else {
            return match self.unicode.replace_all(text, NoExpand(WILDCARD)) {
                Cow::Borrowed(_) => None,
                Cow::Owned(replaced) => Some(replaced),
            };
        };
        let mut out: Option<String> = None;
        let mut copied = 0;
        for found in ascii.find_iter(text.as_bytes()) {
            // ASCII text: every byte offset is a character boundary.
            let out = out.get_or_insert_with(|| String::with_capacity(text.len()));
            out.push_str(&text[copied..found.start()]);
            out.push_str(WILDCARD);
            copied = found.end();
        }
        let mut out = out?;
        out.push_str(&text[copied..]);
        Some(out)
    }
}

static FOR_LOGS: LazyLock<Masks> =
    LazyLock::new(|| Masks::new(DEFAULT).expect("built-in masks compile"));

/// Variables in this project's own log lines and the usual third-party ones: ids, addresses,
/// hex, numbers (with a unit), durations. Numbers inside words (`v2`, `blk_12`) stay: the tree
/// already treats tokens with digits as variables when routing.
const DEFAULT: &[&str] = &[
    // UUIDs (request ids, vmIds).
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
    // IPv4 with an optional port.
    r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b",
    // IPv6, `::` allowed (at least three groups, so 12:30 is left to the number mask).
    r"\b[0-9a-fA-F]{1,4}(?::{1,2}[0-9a-fA-F]{1,4}){2,7}\b",
    // Hex: 0x-prefixed, or a long run with at least one digit (hashes, etags).
    r"\b0[xX][0-9a-fA-F]+\b",
    r"\b[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]{6,}\b|\b[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*[0-9][0-9a-fA-F]{6,}\b",
    // Numbers: decimal, with an optional unit (12ms, 3.5s, 10KB, 99%).
    r"\b\d+(?:\.\d+)?(?:[a-zA-Z]{1,3}\b|%|\b)",
];

impl Masks {
    /// Compiles the expressions; an invalid one is an error naming it.
    pub fn new<S: AsRef<str>>(expressions: &[S]) -> Result<Self, regex::Error> {
        let expressions = expressions
            .iter()
            .map(|expression| Mask::new(expression.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(Self { expressions })
    }

    /// The masks `log_pattern()` uses on stored logs.
    pub fn for_logs() -> Self {
        FOR_LOGS.clone()
    }

    /// `line` with every variable replaced by `<*>`.
    pub fn apply<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let mut masked = Cow::Borrowed(line);
        for mask in self.expressions.iter() {
            if let Some(text) = mask.replace(&masked) {
                masked = Cow::Owned(text);
            }
        }
        masked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_in_order_and_leaves_clean_lines_borrowed() {
        let masks = Masks::new(&[r"blk_-?\d+", r"(\d+\.){3}\d+(:\d+)?"]).unwrap();
        assert_eq!(
            masks.apply("Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106"),
            "Receiving block <*> src: /<*>"
        );
        assert!(matches!(masks.apply("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn ascii_and_unicode_lines_mask_alike() {
        let masks = Masks::new(&[r"\b\w+=\d+\b", r"(?i)id\s\S+", r"\p{Lu}\d"]).unwrap();
        assert_eq!(masks.apply("a x=12 ID 7f B9"), "a <*> <*> <*>");
        assert_eq!(masks.apply("ä x=12 ID 7f B9"), "ä <*> <*> <*>");
        // Unicode digits are digits to `\d` on non-ASCII lines, as in Python.
        assert_eq!(masks.apply("x=١٢"), "<*>");
    }

    #[test]
    fn invalid_expression_is_an_error() {
        assert!(Masks::new(&["(unclosed"]).is_err());
    }

    #[test]
    fn default_masks_cover_ids_addresses_and_numbers() {
        let masks = Masks::for_logs();
        assert_eq!(
            masks.apply(
                "request 4fa4fc1c-9a53-4b8e-a3b4-3c1d2e5f6a7b from 10.0.0.4:5501 took 12ms status=404"
            ),
            "request <*> from <*> took <*> status=<*>"
        );
        assert_eq!(
            masks.apply("etag 9f86d081884c7d65 at 0x7ffd12 fe80::1:2:3 v2 blk_12 -3.5"),
            "etag <*> at <*> <*> v2 blk_12 -<*>"
        );
        assert_eq!(masks.apply("at 12:30 (40%)"), "at <*>:<*> (<*>)");
    }
}
