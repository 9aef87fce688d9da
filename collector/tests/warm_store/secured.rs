//! The warm path through the broker's secured listeners (`scripts/kafka start`: SASL_SSL with
//! SCRAM-SHA-512, SSL with client certificates, ACLs on): agents and a collector that prove who
//! they are, and each way that can fail (a wrong password, an untrusted CA, an expired or
//! not-yet-valid certificate, an ACL) loud, counted, and losing nothing.

use crate::store::{assert_exactly_once, store_records, wait_for_rows};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;
use testkit::kafka::{Credentials, brokers, create_topic, secure, unique};
use testkit::{Agent, Collector, agent_log::warm_events, eventually_async};

/// A topic the ACLs cover (`imds.logs*`), created over the development listener.
async fn secured_topic(name: &str) -> String {
    let topic = unique(&format!("imds.logs.{name}"));
    create_topic(&brokers(), &topic, 2).await;
    topic
}

/// A consumer group the collector's ACLs cover (`imds-collector*`).
fn collector_group() -> String {
    unique("imds-collector")
}

/// The collector, logged in over SASL_SSL as `imds-collector`.
fn secured_collector(topic: &str, out: &std::path::Path, credentials: &Credentials) -> Collector {
    let (brokers, args) = credentials.sasl_ssl();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Collector::start_with(&brokers, topic, &collector_group(), out, &args)
}

/// Waits until the agent's `/metrics` counts a Kafka error of `kind`.
async fn wait_for_kafka_error(agent: &Agent, kind: &str) {
    eventually_async(
        &format!("the shipper counting a Kafka {kind} error"),
        Duration::from_secs(30),
        || async {
            agent.scrape().await.sum(
                "agent_shipper_kafka_errors_total",
                &[&format!("kind=\"{kind}\"")],
            ) > 0.0
        },
    )
    .await;
}

/// Nothing an agent logged was acknowledged: it all waits on disk.
async fn assert_backlog_kept(agent: &Agent) {
    let scrape = agent.scrape().await;
    assert_eq!(scrape.value("agent_shipper_delivered_events_total"), 0.0);
    assert!(scrape.value("agent_shipper_backlog_bytes") > 0.0);
}

#[tokio::test]
async fn agents_on_sasl_ssl_and_mutual_tls_reach_a_secured_collector_exactly_once() {
    let kafka = secure();
    let topic = secured_topic("secured").await;
    let (west_data, east_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = tempfile::tempdir().unwrap();
    let agent_credentials = kafka.credentials("imds-agent");
    let (sasl_brokers, sasl_args) = agent_credentials.sasl_ssl();
    let (tls_brokers, tls_args) = agent_credentials.mutual_tls();
    let mut west = Agent::shipping_with(
        &sasl_brokers,
        &topic,
        ("west", "host-1"),
        west_data.path(),
        &sasl_args,
    );
    let mut east = Agent::shipping_with(
        &tls_brokers,
        &topic,
        ("east", "host-2"),
        east_data.path(),
        &tls_args,
    );
    let collector_credentials = kafka.credentials("imds-collector");
    let mut collector = secured_collector(&topic, out.path(), &collector_credentials);
    west.load(60).await;
    east.load(40).await;
    west.wait_until_shipped().await;
    east.wait_until_shipped().await;
    let password = std::fs::read_to_string(agent_credentials.file("password")).unwrap();
    for agent in [&west, &east] {
        let page = agent.scrape().await;
        assert_eq!(
            page.sum("agent_shipper_kafka_errors_total", &[]),
            0.0,
            "{}",
            agent.stderr()
        );
        assert!(
            !page.text.contains(password.trim()),
            "no secret on /metrics"
        );
    }
    assert!(west.terminate().success() && east.terminate().success());
    let expected = warm_events(&[west_data.path(), east_data.path()]);
    let stored = wait_for_rows(out.path(), expected.len(), Duration::from_secs(30));
    assert!(collector.terminate().success());
    assert_exactly_once(&stored, &expected);
    // No secret in anything the processes wrote: their stderr and their local logs.
    let collector_password =
        std::fs::read_to_string(collector_credentials.file("password")).unwrap();
    for dir in [west_data.path(), east_data.path()] {
        for file in testkit::files_under(dir) {
            let bytes = std::fs::read(&file).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(password.trim()), "{}", file.display());
        }
    }
    for stderr in [west.stderr(), east.stderr(), collector.stderr()] {
        assert!(!stderr.contains(password.trim()) && !stderr.contains(collector_password.trim()));
    }
}

/// A wrong password: the shipper says so and counts it, the agent keeps serving metadata and
/// keeps its backlog on disk; the password file replaced (no restart) ships it all, once.
#[tokio::test]
async fn a_wrong_password_is_loud_and_the_mended_file_ships_the_backlog_once() {
    let kafka = secure();
    let topic = secured_topic("password").await;
    let data = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let credentials = kafka.credentials("imds-agent");
    let right = std::fs::read(credentials.file("password")).unwrap();
    credentials.replace("password", b"not-the-password\n");
    let (brokers, args) = credentials.sasl_ssl();
    let mut agent = Agent::shipping_with(&brokers, &topic, ("west", "host-1"), data.path(), &args);
    agent.load(30).await;
    wait_for_kafka_error(&agent, "authentication").await;
    agent.wait_for_log("the refused login", |records| {
        records.iter().any(|r| {
            r.level == logrecord::Level::Error
                && r.message
                    .contains("Kafka refused the shipper's user or password")
        })
    });
    // Still serving, nothing delivered, everything on disk.
    agent.load(10).await;
    assert_backlog_kept(&agent).await;

    let collector_credentials = kafka.credentials("imds-collector");
    let collector = secured_collector(&topic, out.path(), &collector_credentials);
    credentials.replace("password", &right);
    agent.wait_until_shipped().await;
    assert!(agent.terminate().success());
    let expected = warm_events(&[data.path()]);
    assert!(expected.len() >= 40, "{} events", expected.len());
    let stored = wait_for_rows(out.path(), expected.len(), Duration::from_secs(30));
    drop(collector);
    assert_exactly_once(&stored, &expected);
}

/// Certificates either side refuses: the broker's, signed by a CA the agent does not trust; the
/// agent's, expired or not valid yet. Each is a `tls` error, counted and logged, nothing lost.
#[tokio::test]
async fn certificates_either_side_refuses_are_loud_and_lose_nothing() {
    let kafka = secure();
    let topic = secured_topic("certificates").await;
    let elsewhere = tempfile::tempdir().unwrap();
    // A CA of its own: the broker's certificate is not signed by it.
    let untrusted_ca = elsewhere.path().join("other-ca");
    let status = std::process::Command::new(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs"),
    )
    .arg(&untrusted_ca)
    .arg("someone")
    .status()
    .unwrap();
    assert!(status.success());
    let untrusting = kafka.credentials("imds-agent");
    untrusting.replace(
        "ca.pem",
        &std::fs::read(untrusted_ca.join("ca.pem")).unwrap(),
    );
    let expired = kafka.credentials("imds-agent");
    let (cert, key) = kafka.signed_certificate(elsewhere.path(), "imds-agent", "-30d", 1);
    expired.replace("client.pem", &std::fs::read(&cert).unwrap());
    expired.replace("client.key", &std::fs::read(&key).unwrap());
    let not_yet = kafka.credentials("imds-agent");
    let (cert, key) = kafka.signed_certificate(elsewhere.path(), "imds-agent", "+30d", 10);
    not_yet.replace("client.pem", &std::fs::read(&cert).unwrap());
    not_yet.replace("client.key", &std::fs::read(&key).unwrap());

    for (case, credentials) in [
        ("untrusted broker CA", &untrusting),
        ("expired client certificate", &expired),
        ("client certificate not valid yet", &not_yet),
    ] {
        let data = tempfile::tempdir().unwrap();
        let (brokers, args) = credentials.mutual_tls();
        let mut agent =
            Agent::shipping_with(&brokers, &topic, ("west", "host-1"), data.path(), &args);
        agent.load(5).await;
        wait_for_kafka_error(&agent, "tls").await;
        assert_backlog_kept(&agent).await;
        assert!(agent.terminate().success(), "{case}");
        assert!(
            testkit::agent_log::read_log_records(&data.path().join("logs"))
                .iter()
                .any(|r| r.message.contains("TLS with Kafka failed")),
            "{case}: the log says why"
        );
    }
    assert_eq!(
        testkit::kafka::topic_message_count(&brokers(), &topic),
        0,
        "nothing reached the topic"
    );
}

/// A client that speaks plaintext to the TLS listener (a wrong `--kafka-security-protocol`) is
/// refused by the broker; the agent says so, keeps its backlog, and serves metadata.
#[tokio::test]
async fn a_plaintext_client_on_a_tls_listener_is_refused_and_loses_nothing() {
    let kafka = secure();
    let topic = secured_topic("plaintext").await;
    let data = tempfile::tempdir().unwrap();
    let mut agent = Agent::shipping_to(&kafka.sasl_ssl, &topic, "west", "host-1", data.path());
    agent.load(5).await;
    eventually_async(
        "the shipper counting the refused connection",
        Duration::from_secs(30),
        || async {
            agent
                .scrape()
                .await
                .sum("agent_shipper_kafka_errors_total", &[])
                > 0.0
        },
    )
    .await;
    agent.load(5).await;
    assert_backlog_kept(&agent).await;
    assert!(agent.terminate().success());
    assert_eq!(testkit::kafka::topic_message_count(&brokers(), &topic), 0);
}

/// Least privilege, against the real broker's ACLs: an agent's credentials cannot read the topic
/// (nor run a collector: nothing is committed to the table), a collector's cannot write to it.
#[tokio::test]
async fn an_agents_credentials_cannot_read_and_a_collectors_cannot_write() {
    let kafka = secure();
    let topic = secured_topic("acl").await;
    let agent_credentials = kafka.credentials("imds-agent");
    // Something to read: one event shipped by a legitimate agent.
    let data = tempfile::tempdir().unwrap();
    let (brokers_sasl, args) = agent_credentials.sasl_ssl();
    let mut agent = Agent::shipping_with(
        &brokers_sasl,
        &topic,
        ("west", "host-1"),
        data.path(),
        &args,
    );
    agent.load(5).await;
    agent.wait_until_shipped().await;
    assert!(agent.terminate().success());
    assert!(testkit::kafka::topic_message_count(&brokers(), &topic) > 0);

    // A consumer with the agent's login is refused the group.
    let consumer: BaseConsumer = agent_credentials
        .sasl_client()
        .set("group.id", collector_group())
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let refused = (0..100).find_map(|_| match consumer.poll(Duration::from_millis(200)) {
        Some(Err(error)) => Some(error.to_string()),
        Some(Ok(_)) => panic!("the agent's login read a message"),
        None => None,
    });
    let refused = refused.expect("the broker refused the agent's consumer");
    assert!(refused.contains("uthoriz"), "{refused}");

    // A collector run with the agent's login stores nothing, says why, and counts it.
    let out = tempfile::tempdir().unwrap();
    let (brokers_sasl, args) = agent_credentials.sasl_ssl();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let collector =
        Collector::start_with(&brokers_sasl, &topic, &collector_group(), out.path(), &args);
    eventually_async(
        "the collector counting an authorization error",
        Duration::from_secs(30),
        || async {
            collector
                .scrape()
                .await
                .sum("collector_kafka_errors_total", &["kind=\"authorization\""])
                > 0.0
        },
    )
    .await;
    assert!(
        collector
            .stderr()
            .contains("Kafka's ACLs refuse the collector"),
        "{}",
        collector.stderr()
    );
    assert!(store_records(out.path()).is_empty());
    drop(collector);

    // A producer with the collector's login is refused the topic.
    let producer: FutureProducer = kafka
        .credentials("imds-collector")
        .sasl_client()
        .set("message.timeout.ms", "20000")
        .create()
        .unwrap();
    let delivery = producer
        .send(
            FutureRecord::to(&topic).key("k").payload("forged"),
            Duration::from_secs(5),
        )
        .await;
    let (error, _) = delivery.expect_err("the collector's login wrote to the topic");
    assert_eq!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
}

/// A collector refused at start (a wrong password) stops with the reason, touching nothing.
#[tokio::test]
async fn a_collector_refused_at_start_says_why_and_creates_nothing() {
    let kafka = secure();
    let topic = secured_topic("collector-refused").await;
    let credentials = kafka.credentials("imds-collector");
    credentials.replace("password", b"not-the-password\n");
    let (brokers, args) = credentials.sasl_ssl();
    let out = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(testkit::process::workspace_binary("collector"))
        .args(["--kafka-brokers", &brokers, "--topic", &topic])
        .args([
            "--group",
            &collector_group(),
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--out")
        .arg(out.path())
        .args(&args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Kafka refused the collector's user or password")
            && stderr.contains("or it refused this client"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert!(!out.path().join("_delta_log").exists());
}
