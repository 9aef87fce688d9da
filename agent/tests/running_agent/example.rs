//! The built-in example document as the agent serves it, computed with the agent's own version
//! table (the tests compare what is served against it).

use testkit::API_VERSION;

/// The built-in example document, as served at [`API_VERSION`] (without its `extended` block).
pub fn example_document() -> serde_json::Value {
    let mut document = example_document_with_extended(API_VERSION);
    document.as_object_mut().unwrap().remove("extended");
    document
}

/// The built-in example document with the fields that exist at `api_version`, `extended` kept.
pub fn example_document_with_extended(api_version: &str) -> serde_json::Value {
    let document: serde_json::Value =
        serde_json::from_str(agent::metadata::EXAMPLE_DOCUMENT).unwrap();
    let version = agent::api_version::index_of(api_version).unwrap();
    agent::metadata::by_version::filter(&document, version)
}
