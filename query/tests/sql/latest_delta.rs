//! `LatestDelta`, the provider of table `logs` over a Delta table, in both of its ways of holding
//! the snapshot: each statement counts the rows of the newest version once the snapshot is older
//! than `MAX_STALENESS`, and a filter on partition and data columns answers the same, read from a
//! checkpoint with typed statistics (`stats_parsed`) and from the JSON commits after it.

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::prelude::SessionContext;
use query::table::latest_delta::{Files, LatestDelta, MAX_STALENESS};
use std::sync::Arc;
use std::time::Duration;

fn count(runtime: &tokio::runtime::Runtime, ctx: &SessionContext, sql: &str) -> i64 {
    runtime.block_on(async {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let column = batches[0].column(0);
        column
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0)
    })
}

#[test]
fn both_ways_of_holding_the_snapshot_answer_from_the_newest_version() {
    for files in [Files::PerScan, Files::Kept] {
        let store = tempfile::tempdir().unwrap();
        crate::fixtures::write_delta(store.path(), &crate::fixtures::records(), 2);
        let add = crate::fixtures::checkpoint(store.path());
        for typed in ["stats_parsed", "partitionValues_parsed"] {
            assert!(add.contains(&typed.to_owned()), "checkpoint's add: {add:?}");
        }
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let ctx = SessionContext::new();
        runtime.block_on(async {
            warm_table::register_storage();
            let url = warm_table::location(store.path().to_str().unwrap()).unwrap();
            let table = deltalake::DeltaTableBuilder::from_url(url)
                .unwrap()
                .build()
                .unwrap();
            table.update_datafusion_session(&ctx.state()).unwrap();
            let latest = LatestDelta::open(table, &warm_table::PARTITION_COLUMNS, files)
                .await
                .unwrap();
            ctx.register_table("logs", Arc::new(latest)).unwrap();
        });
        let all = "SELECT count(*) FROM logs";
        // One machine-hour: partition values and a data column.
        let one = "SELECT count(*) FROM logs WHERE date = '2026-01-01' AND hour = '01' \
                   AND cluster = 'c1' AND machine = 'm2'";
        assert_eq!(count(&runtime, &ctx, all), 180, "{files:?}");
        assert_eq!(count(&runtime, &ctx, one), 10, "{files:?}");

        let mut more = crate::fixtures::records();
        for r in &mut more {
            r.timestamp += chrono::Duration::days(7);
        }
        crate::fixtures::write_delta(store.path(), &more, 1);
        // Within MAX_STALENESS the snapshot held answers; after it, the newest version.
        assert_eq!(count(&runtime, &ctx, all), 180, "{files:?}");
        testkit::eventually(
            "the newest version once the snapshot is older than MAX_STALENESS",
            MAX_STALENESS + Duration::from_secs(10),
            || count(&runtime, &ctx, all) == 360,
        );
        assert_eq!(count(&runtime, &ctx, one), 10, "{files:?}");
    }
}
