//! Walking the instance document along a request path and rendering the node found as JSON or
//! as text (Azure's "directory" view).
//!
//! The document's top-level `extended` block is hidden unless the caller asks with
//! `extended=true`, as Azure does with its extended attributes.

use super::error::ApiError;
use super::query::Format;
use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

/// The top-level key shown only with `extended=true`.
const EXTENDED: &str = "extended";

/// A node of the document found at a path.
#[derive(Debug)]
pub(crate) struct Node<'a> {
    value: &'a Value,
    /// The document root with `extended` hidden.
    hide_extended: bool,
}

/// Walks `segments` (already split and percent-decoded) from the root; array elements by index.
pub(crate) fn walk<'a>(
    root: &'a Value,
    segments: &[String],
    extended: bool,
    path: &str,
) -> Result<Node<'a>, ApiError> {
    let not_found = || ApiError::NotFound(path.to_owned());
    if !extended && segments.first().map(String::as_str) == Some(EXTENDED) {
        return Err(not_found());
    }
    let mut value = root;
    for segment in segments {
        value = match value {
            Value::Object(map) => map.get(segment.as_str()),
            // Indexes are plain decimal: "01" or "+1" name nothing, as in Azure.
            Value::Array(items) if is_plain_index(segment) => {
                segment.parse::<usize>().ok().and_then(|i| items.get(i))
            }
            _ => None,
        }
        .ok_or_else(not_found)?;
    }
    Ok(Node {
        value,
        hide_extended: segments.is_empty() && !extended,
    })
}

impl Node<'_> {
    /// Whether the node is an object or an array (the only nodes JSON can render).
    pub(crate) fn is_container(&self) -> bool {
        matches!(self.value, Value::Object(_) | Value::Array(_))
    }
}

fn is_plain_index(segment: &str) -> bool {
    !segment.is_empty()
        && segment.bytes().all(|b| b.is_ascii_digit())
        && (segment == "0" || !segment.starts_with('0'))
}

/// Renders a node: the response body, or why it cannot be rendered in that format.
pub(crate) fn render(node: &Node<'_>, format: Format) -> Result<Vec<u8>, ApiError> {
    match (format, node.value) {
        (Format::Json, Value::Object(map)) => Ok(to_json(&VisibleMap {
            map,
            hide_extended: node.hide_extended,
        })),
        (Format::Json, value @ Value::Array(_)) => Ok(to_json(value)),
        (Format::Json, _) => Err(ApiError::LeafNeedsText),
        (Format::Text, Value::Object(map)) => Ok(listing(
            map.iter()
                .filter(|(key, _)| !(node.hide_extended && key.as_str() == EXTENDED))
                .map(|(key, child)| (key.clone(), child)),
        )),
        (Format::Text, Value::Array(items)) => Ok(listing(
            items
                .iter()
                .enumerate()
                .map(|(i, child)| (i.to_string(), child)),
        )),
        (Format::Text, Value::String(s)) => Ok(s.as_bytes().to_vec()),
        (Format::Text, Value::Null) => Ok(Vec::new()),
        (Format::Text, leaf) => Ok(leaf.to_string().into_bytes()),
    }
}

/// One child per line, in document order; a child that is an object or an array (a directory
/// of its own) ends in `/`. No trailing newline, as Azure.
fn listing<'a>(children: impl Iterator<Item = (String, &'a Value)>) -> Vec<u8> {
    let lines: Vec<String> = children
        .map(|(name, child)| match child {
            Value::Object(_) | Value::Array(_) => format!("{name}/"),
            _ => name,
        })
        .collect();
    lines.join("\n").into_bytes()
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    // A serde_json::Value always serializes.
    serde_json::to_vec(value).unwrap_or_default()
}

/// The root object with `extended` left out, serialized without copying the document.
struct VisibleMap<'a> {
    map: &'a Map<String, Value>,
    hide_extended: bool,
}

impl Serialize for VisibleMap<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_map(None)?;
        for (key, value) in self.map {
            if !(self.hide_extended && key == EXTENDED) {
                out.serialize_entry(key, value)?;
            }
        }
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    fn text(doc: &Value, path: &str) -> String {
        let node = walk(doc, &segs(path), false, path).unwrap();
        String::from_utf8(render(&node, Format::Text).unwrap()).unwrap()
    }

    #[test]
    fn text_lists_children_in_document_order_with_directories_marked() {
        let doc = json!({"compute": {"b": 1, "a": [], "c": {"x": true}}, "network": {}, "extended": {"e": 1}});
        assert_eq!(text(&doc, ""), "compute/\nnetwork/");
        assert_eq!(text(&doc, "compute"), "b\na/\nc/");
        assert_eq!(text(&doc, "compute/b"), "1");
        assert_eq!(text(&doc, "compute/c/x"), "true");
    }

    #[test]
    fn arrays_are_indexed_by_position_and_odd_indexes_name_nothing() {
        let doc = json!({"list": [{"v": "zero"}, "one"]});
        assert_eq!(text(&doc, "list"), "0/\n1");
        assert_eq!(text(&doc, "list/0/v"), "zero");
        assert_eq!(text(&doc, "list/1"), "one");
        for bad in [
            "list/2",
            "list/01",
            "list/-1",
            "list/+1",
            "list/x",
            "list/1/deeper",
        ] {
            assert!(
                matches!(
                    walk(&doc, &segs(bad), false, bad),
                    Err(ApiError::NotFound(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn leaves_need_text_and_extended_is_hidden_unless_asked() {
        let doc = json!({"a": {"b": "v"}, "extended": {"e": 1}});
        let leaf = walk(&doc, &segs("a/b"), false, "a/b").unwrap();
        assert!(matches!(
            render(&leaf, Format::Json),
            Err(ApiError::LeafNeedsText)
        ));
        let root = walk(&doc, &[], false, "").unwrap();
        assert_eq!(render(&root, Format::Json).unwrap(), br#"{"a":{"b":"v"}}"#);
        let root = walk(&doc, &[], true, "").unwrap();
        assert_eq!(
            render(&root, Format::Json).unwrap(),
            br#"{"a":{"b":"v"},"extended":{"e":1}}"#
        );
        assert!(walk(&doc, &segs("extended/e"), false, "x").is_err());
        assert_eq!(text(&json!({"n": null}), "n"), "");
    }
}
