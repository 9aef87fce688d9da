//! The Kafka broker the tests use: the one `scripts/kafka start` runs, or `$KAFKA_BROKERS`.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The broker list; fails the test with how to start a broker when none answers.
pub fn brokers() -> String {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let first = brokers.split(',').next().unwrap().to_owned();
    let reachable = first.parse::<SocketAddr>().ok().is_some_and(|addr| {
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
    });
    assert!(
        reachable,
        "no Kafka broker at {brokers}: start one with `scripts/kafka start` (or set KAFKA_BROKERS)"
    );
    brokers
}

/// A topic or group name no other test uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}.{}.{nanos}", std::process::id())
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .unwrap();
    for result in results {
        result.unwrap();
    }
}

/// Messages in a topic: the sum of its partitions' high watermarks.
pub fn topic_message_count(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("count"))
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .sum()
}

/// The secured listeners of the broker `scripts/kafka start` runs, and the CA, certificates and
/// SCRAM passwords it made (`scripts/kafka secrets` prints where).
#[derive(Debug, Clone)]
pub struct SecureKafka {
    /// The SASL_SSL (SCRAM-SHA-512) listener.
    pub sasl_ssl: String,
    /// The SSL listener that requires client certificates (mutual TLS).
    pub ssl: String,
    /// The directory of `ca.pem`, `ca.key`, `<principal>.pem`, `.key` and `.password`.
    pub secrets: PathBuf,
}

/// The broker's secured side; fails the test with how to start it when it is not there.
pub fn secure() -> SecureKafka {
    let plaintext = brokers();
    let port: u16 = plaintext
        .split(',')
        .next()
        .and_then(|b| b.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .unwrap();
    let secrets = std::env::var_os("KAFKA_SECRETS").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../.cache/kafka-run")
                .join(port.to_string())
                .join("secrets")
        },
        PathBuf::from,
    );
    let sasl_ssl = format!("127.0.0.1:{}", port + 2);
    let reachable = std::net::TcpStream::connect_timeout(
        &sasl_ssl.parse::<SocketAddr>().unwrap(),
        Duration::from_secs(2),
    )
    .is_ok();
    assert!(
        reachable && secrets.join("imds-agent.password").exists(),
        "no secured Kafka listener at {sasl_ssl} with secrets in {}: start the broker with `scripts/kafka start` (or set KAFKA_SECRETS)",
        secrets.display()
    );
    SecureKafka {
        sasl_ssl,
        ssl: format!("127.0.0.1:{}", port + 3),
        secrets,
    }
}

impl SecureKafka {
    /// A copy of `principal`'s credentials (`imds-agent`, `imds-collector`) in a directory of
    /// the test's own, private as the binaries require, so a test can break and mend them.
    pub fn credentials(&self, principal: &str) -> Credentials {
        let dir = tempfile::tempdir().unwrap();
        for (from, to) in [
            ("ca.pem".to_owned(), "ca.pem"),
            (format!("{principal}.pem"), "client.pem"),
            (format!("{principal}.key"), "client.key"),
            (format!("{principal}.password"), "password"),
        ] {
            let target = dir.path().join(to);
            std::fs::copy(self.secrets.join(&from), &target).unwrap();
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        Credentials {
            dir,
            principal: principal.to_owned(),
            broker: self.clone(),
        }
    }

    /// Makes a certificate for `principal` signed by the broker's CA, valid `days` from the
    /// clock `faketime_offset` gives (e.g. `-30d` for one that expired, `+30d` for one not valid
    /// yet), with Debian's faketime and `scripts/make-certs`; returns its `(cert, key)`.
    pub fn signed_certificate(
        &self,
        dir: &Path,
        principal: &str,
        faketime_offset: &str,
        days: u32,
    ) -> (PathBuf, PathBuf) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-certs");
        // libfaketime preloaded into openssl (the `faketime` wrapper would read `-30d` as flags).
        let library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
        assert!(
            Path::new(library).exists(),
            "libfaketime is missing: run scripts/install-test-deps (Debian package faketime)"
        );
        let status = std::process::Command::new(script)
            .arg(dir)
            .arg(principal)
            .env("CA_DIR", &self.secrets)
            .env("DAYS", days.to_string())
            .env("LD_PRELOAD", library)
            .env("FAKETIME", faketime_offset)
            .status()
            .unwrap();
        assert!(status.success(), "scripts/make-certs failed");
        (
            dir.join(format!("{principal}.pem")),
            dir.join(format!("{principal}.key")),
        )
    }
}

/// One principal's credentials in a private directory of the test's own.
#[derive(Debug)]
pub struct Credentials {
    dir: tempfile::TempDir,
    /// `imds-agent` or `imds-collector`.
    pub principal: String,
    broker: SecureKafka,
}

impl Credentials {
    /// A file of the copy: `ca.pem`, `client.pem`, `client.key`, `password`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Replaces a file the way an operator's tooling does: a new file renamed over the old.
    pub fn replace(&self, name: &str, contents: &[u8]) {
        let temporary = self.dir.path().join(format!(".{name}.new"));
        std::fs::write(&temporary, contents).unwrap();
        std::fs::set_permissions(&temporary, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(temporary, self.file(name)).unwrap();
    }

    /// The broker's SASL_SSL address and the agent's or collector's flags for it.
    pub fn sasl_ssl(&self) -> (String, Vec<String>) {
        let args = vec![
            "--kafka-security-protocol".into(),
            "sasl_ssl".into(),
            "--kafka-ca-file".into(),
            self.path_text("ca.pem"),
            "--kafka-sasl-username".into(),
            self.principal.clone(),
            "--kafka-sasl-password-file".into(),
            self.path_text("password"),
        ];
        (self.broker.sasl_ssl.clone(), args)
    }

    /// The broker's mutual-TLS address and the agent's or collector's flags for it.
    pub fn mutual_tls(&self) -> (String, Vec<String>) {
        let args = vec![
            "--kafka-security-protocol".into(),
            "ssl".into(),
            "--kafka-ca-file".into(),
            self.path_text("ca.pem"),
            "--kafka-cert-file".into(),
            self.path_text("client.pem"),
            "--kafka-key-file".into(),
            self.path_text("client.key"),
        ];
        (self.broker.ssl.clone(), args)
    }

    /// A librdkafka client configuration logged in over SASL_SSL as this principal.
    pub fn sasl_client(&self) -> ClientConfig {
        let password = std::fs::read_to_string(self.file("password")).unwrap();
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &self.broker.sasl_ssl)
            .set("security.protocol", "sasl_ssl")
            .set("ssl.ca.location", self.path_text("ca.pem").as_str())
            .set("sasl.mechanisms", "SCRAM-SHA-512")
            .set("sasl.username", &self.principal)
            .set("sasl.password", password.trim());
        client
    }

    fn path_text(&self, name: &str) -> String {
        // The temporary directory's path is UTF-8 on every machine the tests run on.
        self.file(name).to_str().unwrap().to_owned()
    }
}
