//! Which fields of the instance document exist at which api-version: one table, copied from the
//! "Version introduced" columns of Azure's IMDS documentation (learn.microsoft.com,
//! azure/virtual-machines/instance-metadata-service, "Instance metadata", schema breakdown), and
//! the filter that answers a request with the fields its api-version has.
//!
//! Why: a client built against an old version (WALinuxAgent asks for 2018-02-01) treats fields it
//! does not know as errors ("Unknown property"). Fields the table does not name (the document's
//! own additions, `extended`, OS-disk details Azure gives no version for) are always served.
//! Fields introduced in 2017-04-02, the version Azure lists for `/metadata/instance` itself, are
//! not in the table: they are in every answer, 2017-03-01 included.

use crate::api_version;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// `(path, first api-version)`. A path walks objects by key; arrays on the way apply it to each
/// element (`compute.storageProfile.dataDisks.isUltraDisk` is in every data disk). Removing a
/// field removes everything under it.
pub const FIELDS: &[(&str, &str)] = &[
    ("compute.subscriptionId", "2017-08-01"),
    ("compute.tags", "2017-08-01"),
    ("compute.resourceGroupName", "2017-08-01"),
    ("compute.placementGroupId", "2017-08-01"),
    ("compute.vmScaleSetName", "2017-12-01"),
    ("compute.zone", "2017-12-01"),
    ("compute.plan", "2018-04-02"),
    ("compute.publicKeys", "2018-04-02"),
    ("compute.azEnvironment", "2018-10-01"),
    ("compute.provider", "2018-10-01"),
    ("compute.customData", "2019-02-01"),
    ("compute.resourceId", "2019-03-11"),
    ("compute.storageProfile", "2019-06-01"),
    ("compute.tagsList", "2019-06-04"),
    ("compute.isHostCompatibilityLayerVm", "2020-06-01"),
    ("compute.securityProfile", "2020-06-01"),
    ("compute.osProfile", "2020-07-15"),
    ("compute.licenseType", "2020-09-01"),
    (
        "compute.osProfile.disablePasswordAuthentication",
        "2020-10-01",
    ),
    ("compute.evictionPolicy", "2020-12-01"),
    ("compute.priority", "2020-12-01"),
    ("compute.userData", "2021-01-01"),
    ("compute.storageProfile.resourceDisk", "2021-02-01"),
    ("compute.extendedLocation", "2021-03-01"),
    ("compute.virtualMachineScaleSet", "2021-03-01"),
    (
        "compute.storageProfile.dataDisks.bytesPerSecondThrottle",
        "2021-05-01",
    ),
    (
        "compute.storageProfile.dataDisks.diskCapacityBytes",
        "2021-05-01",
    ),
    (
        "compute.storageProfile.dataDisks.isSharedDisk",
        "2021-05-01",
    ),
    ("compute.storageProfile.dataDisks.isUltraDisk", "2021-05-01"),
    (
        "compute.storageProfile.dataDisks.opsPerSecondThrottle",
        "2021-05-01",
    ),
    ("compute.platformSubFaultDomain", "2021-10-01"),
    ("compute.additionalCapabilities", "2021-11-01"),
    ("compute.securityProfile.encryptionAtHost", "2021-11-01"),
    // The encryption settings blob's key fields (Azure lists them without saying which disk;
    // the blob is on data disks and on the OS disk).
    (
        "compute.storageProfile.dataDisks.encryptionSettings.diskEncryptionKey",
        "2021-11-01",
    ),
    (
        "compute.storageProfile.dataDisks.encryptionSettings.keyEncryptionKey",
        "2021-11-01",
    ),
    (
        "compute.storageProfile.osDisk.encryptionSettings.diskEncryptionKey",
        "2021-11-01",
    ),
    (
        "compute.storageProfile.osDisk.encryptionSettings.keyEncryptionKey",
        "2021-11-01",
    ),
    ("compute.host", "2021-11-15"),
    ("compute.hostGroup", "2021-11-15"),
    ("compute.securityProfile.securityType", "2021-12-13"),
    (
        "compute.storageProfile.imageReference.communityGalleryImageId",
        "2023-07-01",
    ),
    (
        "compute.storageProfile.imageReference.sharedGalleryImageId",
        "2023-07-01",
    ),
    (
        "compute.storageProfile.imageReference.exactVersion",
        "2023-07-01",
    ),
    ("compute.physicalZone", "2023-11-15"),
];

/// The table as a tree: a node's field exists from `since` (an index into
/// [`api_version::SUPPORTED`]; `None` for an intermediate name the table only passes through).
#[derive(Debug, Default)]
struct Node {
    since: Option<usize>,
    children: BTreeMap<&'static str, Node>,
}

static TREE: LazyLock<Node> = LazyLock::new(|| {
    let mut root = Node::default();
    for (path, version) in FIELDS {
        let mut node = &mut root;
        for name in path.split('.') {
            node = node.children.entry(name).or_default();
        }
        node.since = api_version::index_of(version);
    }
    root
});

/// The newest version any field was introduced in: from it on, nothing is filtered.
pub fn newest_field_version() -> usize {
    FIELDS
        .iter()
        .filter_map(|(_, v)| api_version::index_of(v))
        .max()
        .unwrap_or(0)
}

/// The document as served at `version` (an index into [`api_version::SUPPORTED`]): every field
/// the table says came later is left out.
pub fn filter(document: &Value, version: usize) -> Value {
    filter_node(document, &TREE, version)
}

fn filter_node(value: &Value, node: &Node, version: usize) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (key, child) in map {
                match node.children.get(key.as_str()) {
                    None => {
                        out.insert(key.clone(), child.clone());
                    }
                    Some(field) if field.since.is_some_and(|since| since > version) => {}
                    Some(field) => {
                        out.insert(key.clone(), filter_node(child, field, version));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| filter_node(item, node, version))
                .collect(),
        ),
        leaf => leaf.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(version: &str) -> usize {
        api_version::index_of(version).unwrap()
    }

    #[test]
    fn every_version_in_the_table_is_a_supported_one_and_paths_are_unique() {
        for (path, version) in FIELDS {
            assert!(api_version::index_of(version).is_some(), "{path} {version}");
        }
        let mut paths: Vec<_> = FIELDS.iter().map(|(p, _)| *p).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), FIELDS.len());
        assert_eq!(api_version::SUPPORTED[newest_field_version()], "2023-11-15");
    }

    #[test]
    fn fields_appear_at_the_version_azure_introduced_them() {
        let doc = json!({
            "compute": {
                "vmId": "v", "tagsList": [], "osProfile": {"adminUsername": "a", "disablePasswordAuthentication": "true"},
                "userData": "", "storageProfile": {
                    "dataDisks": [{"lun": "0", "isUltraDisk": "false"}, {"lun": "1", "isUltraDisk": "true"}],
                    "imageReference": {"offer": "o", "exactVersion": "1"}
                },
                "custom": "kept"
            },
            "network": {"interface": []},
            "extended": {"x": 1}
        });
        assert_eq!(
            filter(&doc, at("2018-02-01")),
            json!({"compute": {"vmId": "v", "custom": "kept"}, "network": {"interface": []}, "extended": {"x": 1}})
        );
        assert_eq!(
            filter(&doc, at("2019-06-04"))["compute"],
            json!({"vmId": "v", "tagsList": [], "storageProfile": {
                "dataDisks": [{"lun": "0"}, {"lun": "1"}], "imageReference": {"offer": "o"}}, "custom": "kept"})
        );
        assert_eq!(
            filter(&doc, at("2020-07-15"))["compute"]["osProfile"],
            json!({"adminUsername": "a"})
        );
        let newest = filter(&doc, at("2025-04-07"));
        assert_eq!(newest, doc);
        assert_eq!(
            filter(&doc, at("2017-03-01")),
            filter(&doc, at("2017-04-02"))
        );
    }
}
