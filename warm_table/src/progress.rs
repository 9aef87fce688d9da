//! Progress lives in the table's commits as application transactions (`txn`, the pattern of
//! kafka-delta-ingest): per Kafka partition, `appId = <group>-<topic>-<partition>` with the last
//! offset stored as version; per machine, `appId = <group>-<topic>-machine-<machine>` with the
//! highest `seq` stored. A commit carries them atomically with its files.

use deltalake::{DeltaTable, DeltaTableError};

/// The application id of a Kafka partition's progress.
pub fn partition_app_id(group: &str, topic: &str, partition: i32) -> String {
    format!("{group}-{topic}-{partition}")
}

/// The application id of a machine's highest stored `seq`.
pub fn machine_app_id(group: &str, topic: &str, machine: &str) -> String {
    format!("{group}-{topic}-machine-{machine}")
}

/// The version stored for `app_id` in the table's current snapshot.
pub async fn stored_version(
    table: &DeltaTable,
    app_id: &str,
) -> Result<Option<i64>, DeltaTableError> {
    table
        .snapshot()?
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
}
