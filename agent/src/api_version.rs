//! The api-versions the metadata API accepts: Azure IMDS's published list, oldest first.
//! A version outside this list is refused with 400, as Azure does; metrics fold it into one
//! `unsupported` label value so a caller cannot grow label cardinality.

/// Supported versions, oldest first: exactly the "Supported API versions" list of Azure's IMDS
/// documentation (learn.microsoft.com, azure/virtual-machines/instance-metadata-service, section
/// Versioning), 35 versions from 2017-03-01 to 2025-04-07. Keep it equal to that list: clients pick
/// a version from it (cloud-init asks for 2021-08-01) and fall back, losing data, when refused.
pub const SUPPORTED: &[&str] = &[
    "2017-03-01",
    "2017-04-02",
    "2017-08-01",
    "2017-10-01",
    "2017-12-01",
    "2018-02-01",
    "2018-04-02",
    "2018-10-01",
    "2019-02-01",
    "2019-03-11",
    "2019-04-30",
    "2019-06-01",
    "2019-06-04",
    "2019-08-01",
    "2019-08-15",
    "2019-11-01",
    "2020-06-01",
    "2020-07-15",
    "2020-09-01",
    "2020-10-01",
    "2020-12-01",
    "2021-01-01",
    "2021-02-01",
    "2021-03-01",
    "2021-05-01",
    "2021-08-01",
    "2021-10-01",
    "2021-11-01",
    "2021-11-15",
    "2021-12-13",
    "2023-07-01",
    "2023-11-15",
    "2024-03-15",
    "2024-07-17",
    "2025-04-07",
];

/// The position of `requested` in [`SUPPORTED`] (versions are ISO dates, so the list is sorted).
pub fn index_of(requested: &str) -> Option<usize> {
    SUPPORTED.binary_search(&requested).ok()
}

/// The `n` newest versions, newest first (the `newest-versions` of an api-version error).
pub fn newest(n: usize) -> Vec<&'static str> {
    SUPPORTED.iter().rev().take(n).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_is_sorted_unique_and_spans_the_published_range() {
        assert!(SUPPORTED.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(SUPPORTED.first(), Some(&"2017-03-01"));
        assert_eq!(SUPPORTED.last(), Some(&"2025-04-07"));
        assert_eq!(SUPPORTED.len(), 35);
        assert_eq!(newest(3), ["2025-04-07", "2024-07-17", "2024-03-15"]);
        // Both were refused before the list was made Azure's exactly (cloud-init asks 2021-08-01).
        let found = |requested| index_of(requested).map(|i| SUPPORTED[i]);
        assert_eq!(found("2021-08-01"), Some("2021-08-01"));
        assert_eq!(found("2024-03-15"), Some("2024-03-15"));
        assert_eq!(index_of("2017-03-01"), Some(0));
        assert_eq!(found("2021-02-01"), Some("2021-02-01"));
        assert_eq!(found("2021-02-1"), None);
    }
}
