//! The hot path (exact counters scraped from `/metrics` after a known set of requests) and the
//! full-fidelity local log (one typed INFO event per request, same id as the response header).

use logrecord::Level;
use testkit::{API_VERSION, Agent, http::client};

#[tokio::test]
async fn counters_match_a_known_set_of_requests_exactly() {
    let agent = Agent::start_unlimited();
    let mut instance_bytes = 0.0;
    for _ in 0..3 {
        let response = agent.instance("/compute", "").await;
        assert_eq!(response.status(), 200);
        instance_bytes += response.bytes().await.unwrap().len() as f64;
    }
    for _ in 0..2 {
        let response = agent.instance("/compute/vmId", "&format=text").await;
        assert_eq!(response.status(), 200);
        instance_bytes += response.bytes().await.unwrap().len() as f64;
    }
    let bad_version = agent.get("/metadata/instance?api-version=1999-01-01").await;
    instance_bytes += bad_version.bytes().await.unwrap().len() as f64;
    let no_header = client()
        .get(agent.url(&format!("/metadata/instance?api-version={API_VERSION}")))
        .send()
        .await
        .unwrap();
    instance_bytes += no_header.bytes().await.unwrap().len() as f64;
    assert_eq!(agent.instance("/nothing", "").await.status(), 404);
    assert_eq!(agent.get("/metadata/versions").await.status(), 200);
    assert_eq!(agent.get("/favicon.ico").await.status(), 404);

    let scrape = agent.scrape().await;
    let requests = |labels: &str| scrape.value(&format!("imds_requests_total{{{labels}}}"));
    assert_eq!(
        requests(
            r#"endpoint="/metadata/instance",api_version="2021-02-01",format="json",status="200""#
        ),
        3.0
    );
    assert_eq!(
        requests(
            r#"endpoint="/metadata/instance",api_version="2021-02-01",format="text",status="200""#
        ),
        2.0
    );
    assert_eq!(
        requests(
            r#"endpoint="/metadata/instance",api_version="unsupported",format="json",status="400""#
        ),
        1.0
    );
    assert_eq!(
        requests(
            r#"endpoint="/metadata/instance",api_version="2021-02-01",format="json",status="400""#
        ),
        1.0
    );
    assert_eq!(
        requests(
            r#"endpoint="/metadata/instance",api_version="2021-02-01",format="json",status="404""#
        ),
        1.0
    );
    assert_eq!(
        requests(r#"endpoint="/metadata/versions",api_version="none",format="json",status="200""#),
        1.0
    );
    assert_eq!(
        requests(r#"endpoint="other",api_version="none",format="json",status="404""#),
        1.0
    );
    assert_eq!(
        scrape.sum("imds_requests_total", &[]),
        10.0,
        "no other series:\n{}",
        scrape.text
    );

    let histogram = |series: &str| scrape.value(series);
    assert_eq!(
        histogram(r#"imds_request_duration_seconds_count{endpoint="/metadata/instance"}"#),
        8.0
    );
    assert_eq!(
        histogram(
            r#"imds_request_duration_seconds_bucket{endpoint="/metadata/instance",le="+Inf"}"#
        ),
        8.0
    );
    assert!(
        histogram(
            r#"imds_request_duration_seconds_bucket{endpoint="/metadata/instance",le="0.00001"}"#
        ) <= 8.0
    );
    assert!(scrape.text.contains(
        r#"imds_request_duration_seconds_bucket{endpoint="/metadata/instance",le="0.000025"}"#
    ));
    assert_eq!(
        histogram(r#"imds_request_duration_seconds_count{endpoint="other"}"#),
        1.0
    );
    assert_eq!(
        histogram(r#"imds_response_size_bytes_count{endpoint="/metadata/instance"}"#),
        8.0
    );
    // 404 bodies are included: count the one above too.
    let not_found_bytes = br#"{"error":"Not found: /metadata/instance/nothing"}"#.len() as f64;
    assert_eq!(
        histogram(r#"imds_response_size_bytes_sum{endpoint="/metadata/instance"}"#),
        instance_bytes + not_found_bytes
    );

    assert_eq!(scrape.value("imds_requests_in_flight"), 0.0);
    assert_eq!(scrape.value("imds_throttled_requests_total"), 0.0);
    assert_eq!(
        scrape.value(&format!(
            r#"agent_build_info{{version="{}",cluster="test-cluster",machine="test-host"}}"#,
            agent::VERSION
        )),
        1.0
    );
    let age = scrape.value("imds_metadata_age_seconds");
    assert!((0.0..5.0).contains(&age), "age {age}");
    assert_eq!(scrape.value("agent_log_dropped_events_total"), 0.0);
    for line in [
        "# TYPE imds_requests_total counter",
        "# TYPE imds_request_duration_seconds histogram",
        "# TYPE imds_requests_in_flight gauge",
        "# HELP imds_requests_total ",
    ] {
        assert!(scrape.text.contains(line), "missing {line:?}");
    }

    // Every request wrote exactly one INFO request event, and the counter of INFO events agrees
    // with the file.
    let records = agent.wait_for_log("10 request events", |r| {
        r.iter().filter(|r| r.target == "imds::request").count() == 10
    });
    let info_in_file = records.iter().filter(|r| r.level == Level::Info).count() as f64;
    let scrape = agent.scrape().await;
    assert_eq!(
        scrape.value(r#"agent_log_events_total{level="INFO"}"#),
        info_in_file
    );
}

#[tokio::test]
async fn each_request_event_carries_the_response_request_id_and_typed_fields() {
    let agent = Agent::start_unlimited();
    let response = agent.instance("/compute/vmId", "&format=text").await;
    let request_id = response.headers()["x-ms-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let bytes = response.bytes().await.unwrap().len() as u64;
    let error = client()
        .delete(agent.url("/metadata/versions?api-version=2019-06-01&format=text"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    let error_id = error.headers()["x-ms-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let records = agent.wait_for_log("both request events", |r| {
        r.iter().filter(|r| r.target == "imds::request").count() == 2
    });
    let event = records
        .iter()
        .find(|r| r.request_id.map(|id| id.to_string()) == Some(request_id.clone()))
        .unwrap();
    assert_eq!(event.level, Level::Info);
    assert_eq!(event.message, "request served");
    assert_eq!(
        (event.cluster.as_str(), event.machine.as_str()),
        ("test-cluster", "test-host")
    );
    assert_eq!(event.method.as_deref(), Some("GET"));
    assert_eq!(
        event.path.as_deref(),
        Some("/metadata/instance/compute/vmId")
    );
    assert_eq!(event.api_version.as_deref(), Some(API_VERSION));
    assert_eq!(event.format.as_deref(), Some("text"));
    assert_eq!(event.status, Some(200));
    assert_eq!(event.response_bytes, Some(bytes));
    assert_eq!(event.caller.as_deref(), Some("127.0.0.1"));
    assert!(event.latency_us.unwrap() < 1_000_000);
    assert_eq!(event.fields, None);

    let failed = records
        .iter()
        .find(|r| r.request_id.map(|id| id.to_string()) == Some(error_id.clone()))
        .unwrap();
    assert_eq!(
        (
            failed.method.as_deref(),
            failed.status,
            failed.format.as_deref()
        ),
        (Some("DELETE"), Some(405), Some("text"))
    );
    assert_eq!(failed.api_version.as_deref(), Some("2019-06-01"));

    // Start-up events are in the file too, below INFO included (default threshold: debug).
    assert!(records.iter().any(|r| r.message == "metadata API listening"
        && r.fields.as_ref().unwrap()["addr"] == agent.api.to_string()));
    // Sequence numbers follow file order, one apart.
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    let first = seqs[0];
    assert_eq!(
        seqs,
        (first..first + records.len() as u64).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn log_level_sets_the_file_threshold() {
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--log-level", "warn"])
        .start();
    assert_eq!(agent.get("/metadata/versions").await.status(), 200);
    testkit::stays(
        "no event below WARN in the file",
        std::time::Duration::from_millis(300),
        || agent.log_records().iter().all(|r| r.level >= Level::Warn),
    );
    assert_eq!(
        agent
            .scrape()
            .await
            .value(r#"agent_log_events_total{level="INFO"}"#),
        0.0
    );
}

#[tokio::test]
async fn a_full_log_writer_drops_and_counts_and_never_blocks_requests() {
    // A one-line queue: a burst of concurrent requests outruns the writer thread.
    let agent = Agent::builder()
        .args(["--rate-limit", "0", "--log-buffer-lines", "1"])
        .start();
    let tasks: Vec<_> = (0..400)
        .map(|_| {
            let url = agent.url("/metadata/versions");
            tokio::spawn(async move {
                client()
                    .get(url)
                    .header("Metadata", "true")
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            200,
            "every request succeeds whatever the log does"
        );
    }
    // The writer catches up: the file holds every event not counted as dropped.
    let (emitted, dropped, records) = testkit::eventually_async(
        "the log writer's catching up",
        std::time::Duration::from_secs(10),
        || async {
            let scrape = agent.scrape().await;
            let emitted: f64 = scrape.sum("agent_log_events_total", &[]);
            let dropped = scrape.value("agent_log_dropped_events_total");
            let records = agent.log_records();
            (records.len() as f64 == emitted - dropped).then_some((emitted, dropped, records))
        },
    )
    .await;
    assert_eq!(
        records.len() as f64,
        emitted - dropped,
        "every event is either in the file or counted as dropped"
    );
    // What was written is numbered in file order, without gaps: drops never reach the writer.
    assert!(records.windows(2).all(|w| w[1].seq == w[0].seq + 1));
}

#[tokio::test]
async fn a_full_disk_loses_whole_events_counted_as_a_seq_gap_and_serving_goes_on() {
    let disk = testkit::disk::Tmpfs::mount(256 * 1024);
    let mut agent = Agent::builder()
        .data_dir(disk.path())
        .args(["--rate-limit", "0"])
        .start();
    // Each request is one ~400-byte INFO event: 3,000 are several times the disk.
    for _ in 0..3000 {
        let response = agent.instance("/compute/vmId", "&format=text").await;
        assert_eq!(
            response.status(),
            200,
            "serving must go on with the disk full"
        );
    }
    let scrape = testkit::eventually_async(
        "over a thousand events dropped for the full disk",
        std::time::Duration::from_secs(10),
        || async {
            let scrape = agent.scrape().await;
            (scrape.value("agent_log_dropped_events_total") > 1000.0).then_some(scrape)
        },
    )
    .await;
    let dropped = scrape.value("agent_log_dropped_events_total");
    // Every event the log took so far (written or dropped), each with its own seq.
    let accepted = scrape.sum("agent_log_events_total", &[]) as u64;
    assert!(dropped > 1000.0, "dropped {dropped}");
    assert!(agent.terminate().success());

    // Every line on disk is one whole record, no seq twice, and the gaps are the lost events.
    let logs = disk.path().join("logs");
    let mut seqs = Vec::new();
    // In hour order (a run across the top of an hour writes two files; read_dir has no order).
    let mut files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        for line in text.lines() {
            let record = logrecord::LogRecord::from_json_line(line)
                .unwrap_or_else(|e| panic!("{e}: {line:.120}"));
            seqs.push(record.seq);
        }
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq in file order");
    // The first events fit; of the seqs the log had handed out when the counts were read, the
    // missing ones are the lost events: in gaps (a cut-back line frees room for a shorter one)
    // or after the last line that fitted. The few events logged after the read (shutting down)
    // may be lost too, hence the margin.
    let first = seqs[0];
    let last = first + accepted - 1;
    let written = seqs.iter().filter(|&&seq| seq <= last).count() as u64;
    let missing = accepted - written;
    assert!(
        (missing as f64 - dropped).abs() <= 10.0,
        "missing {missing} of seqs {first}..={last}, dropped {dropped}"
    );
}
