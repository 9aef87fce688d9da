//! How a client of the warm path's Kafka proves who it is and checks whom it talks to: plaintext
//! (development, loopback), `ssl` (mutual TLS: a client certificate) or `sasl_ssl` (TLS with a
//! SCRAM-SHA-512 user and password), the same for the agent's shipper, the collector and every
//! tool that reads the topic. Each binary declares the settings with its own flag and environment
//! names and hands them to [`KafkaSecurity::new`], which validates them once; [`KafkaSecurity::apply`]
//! sets them on a librdkafka client, reading the password file anew each time, so a replaced
//! file takes effect at the next client without a restart.
//!
//! Secrets come from files (or one environment variable for the password), never from argv; a
//! key or password file that other users can read is refused ([`crate::secrets`]).

use anyhow::{Context, bail};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::secrets::{Secret, private_file, read_secret};

/// The security protocol, spelled as librdkafka and Kafka spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Protocol {
    /// No encryption, no authentication: development on loopback only.
    #[default]
    Plaintext,
    /// TLS with a client certificate (mutual TLS).
    Ssl,
    /// TLS with a SCRAM-SHA-512 user and password.
    SaslSsl,
}

impl Protocol {
    fn name(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// The settings as a binary read them (its flags, file and environment), before validation.
/// `flag_prefix` names the flags in error messages (`--kafka-` for the agent).
#[derive(Debug, Clone, Default)]
pub struct KafkaSecuritySettings {
    /// `plaintext`, `ssl` or `sasl_ssl`.
    pub protocol: Protocol,
    /// PEM file of the CA that signed the brokers' certificates (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM file of this client's private key; must not be readable by other users.
    pub key_file: Option<PathBuf>,
    /// SCRAM user name.
    pub sasl_username: Option<String>,
    /// File holding the SCRAM password; must not be readable by other users.
    pub sasl_password_file: Option<PathBuf>,
    /// The password from the environment, when no file is given.
    pub sasl_password: Option<Secret>,
}

/// Where the SCRAM password comes from.
#[derive(Debug, Clone, PartialEq)]
enum Password {
    File(PathBuf),
    Env(Secret),
}

/// Validated Kafka client security, applied to every client a binary creates.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSecurity {
    protocol: Protocol,
    ca_file: Option<PathBuf>,
    cert_and_key: Option<(PathBuf, PathBuf)>,
    sasl: Option<(String, Password)>,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        KafkaSecurity::plaintext()
    }
}

impl KafkaSecurity {
    /// No encryption, no authentication.
    pub fn plaintext() -> Self {
        KafkaSecurity {
            protocol: Protocol::Plaintext,
            ca_file: None,
            cert_and_key: None,
            sasl: None,
        }
    }

    /// Validates `settings`: what each protocol needs is there, nothing is set that the protocol
    /// would ignore, files exist and secrets are private. Messages name the flags as every
    /// binary spells them (`--kafka-...`).
    pub fn new(settings: KafkaSecuritySettings) -> anyhow::Result<Self> {
        let p = "--kafka-";
        let s = settings;
        let protocol = s.protocol;
        if protocol == Protocol::Plaintext {
            let stray = [
                (s.ca_file.is_some(), "ca-file"),
                (s.cert_file.is_some(), "cert-file"),
                (s.key_file.is_some(), "key-file"),
                (s.sasl_username.is_some(), "sasl-username"),
                (s.sasl_password_file.is_some(), "sasl-password-file"),
            ];
            if let Some((_, name)) = stray.iter().find(|(set, _)| *set) {
                bail!(
                    "{p}{name} is set but {p}security-protocol is plaintext: choose ssl or sasl_ssl"
                );
            }
            return Ok(KafkaSecurity::plaintext());
        }
        if let Some(ca) = &s.ca_file {
            readable(ca, &format!("{p}ca-file"))?;
        }
        let cert_and_key = match (s.cert_file, s.key_file) {
            (Some(cert), Some(key)) => {
                readable(&cert, &format!("{p}cert-file"))?;
                private_file(&key, &format!("{p}key-file"))?;
                Some((cert, key))
            }
            (None, None) => None,
            (Some(_), None) => bail!("{p}cert-file needs {p}key-file"),
            (None, Some(_)) => bail!("{p}key-file needs {p}cert-file"),
        };
        if protocol == Protocol::Ssl && cert_and_key.is_none() {
            bail!(
                "{p}security-protocol ssl is mutual TLS: give {p}cert-file and {p}key-file (or use sasl_ssl with a user)"
            );
        }
        let sasl = match (
            protocol,
            s.sasl_username,
            s.sasl_password_file,
            s.sasl_password,
        ) {
            (Protocol::SaslSsl, Some(user), Some(file), _) => {
                private_file(&file, &format!("{p}sasl-password-file"))?;
                Some((user, Password::File(file)))
            }
            (Protocol::SaslSsl, Some(user), None, Some(secret)) => {
                Some((user, Password::Env(secret)))
            }
            (Protocol::SaslSsl, None, _, _) => {
                bail!("{p}security-protocol sasl_ssl needs {p}sasl-username")
            }
            (Protocol::SaslSsl, Some(_), None, None) => bail!(
                "{p}security-protocol sasl_ssl needs {p}sasl-password-file (or the password in the environment)"
            ),
            (_, Some(_), _, _) | (_, _, Some(_), _) => {
                bail!(
                    "{p}sasl-username and {p}sasl-password-file need {p}security-protocol sasl_ssl"
                )
            }
            _ => None,
        };
        Ok(KafkaSecurity {
            protocol,
            ca_file: s.ca_file,
            cert_and_key,
            sasl,
        })
    }

    /// The protocol in force.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// The SCRAM user, if any (for log lines: who this client is).
    pub fn principal(&self) -> Option<&str> {
        self.sasl.as_ref().map(|(user, _)| user.as_str())
    }

    /// Sets the security properties on a librdkafka client. Reads the password file now (and
    /// checks it is still private), so a replaced file counts from the next client on.
    pub fn apply(&self, client: &mut ClientConfig) -> anyhow::Result<()> {
        client.set("security.protocol", self.protocol.name());
        if self.protocol == Protocol::Plaintext {
            return Ok(());
        }
        client.set("ssl.endpoint.identification.algorithm", "https");
        if let Some(ca) = &self.ca_file {
            client.set("ssl.ca.location", path_text(ca)?);
        }
        if let Some((cert, key)) = &self.cert_and_key {
            private_file(key, "the Kafka client key file")?;
            client.set("ssl.certificate.location", path_text(cert)?);
            client.set("ssl.key.location", path_text(key)?);
        }
        if let Some((user, password)) = &self.sasl {
            let password = match password {
                Password::Env(secret) => secret.clone(),
                Password::File(path) => read_secret(path, "the Kafka SASL password file")?,
            };
            client.set("sasl.mechanisms", "SCRAM-SHA-512");
            client.set("sasl.username", user);
            client.set("sasl.password", password.expose());
        }
        Ok(())
    }

    /// A hash of the contents of every file the security reads: a changed hash means the
    /// credentials were replaced and clients should be made anew. Unreadable files count as
    /// empty (the next client creation says why).
    pub fn fingerprint(&self) -> u64 {
        let mut files: Vec<&Path> = self.ca_file.iter().map(PathBuf::as_path).collect();
        if let Some((cert, key)) = &self.cert_and_key {
            files.extend([cert.as_path(), key.as_path()]);
        }
        if let Some((_, Password::File(path))) = &self.sasl {
            files.push(path);
        }
        crate::secrets::contents_fingerprint(&files)
    }

    /// Says, as a warning, when plaintext is used with a broker that is not on loopback: events
    /// then cross the network readable and forgeable by anyone on the path.
    pub fn warn_if_exposed(&self, brokers: &str, client: &str) {
        if self.protocol == Protocol::Plaintext && !all_loopback(brokers) {
            tracing::warn!(
                brokers,
                client,
                "Kafka security protocol is plaintext with a broker off loopback: events cross the network unencrypted and unauthenticated; use ssl or sasl_ssl"
            );
        }
    }
}

/// Whether every `host:port` in a broker list is a loopback address or `localhost`.
pub fn all_loopback(brokers: &str) -> bool {
    brokers.split(',').map(str::trim).all(|broker| {
        let host = broker
            .rsplit_once(':')
            .map_or(broker, |(host, _)| host)
            .trim_start_matches('[')
            .trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    })
}

/// What kind of failure a Kafka error is, for a counter's `kind` label and the log:
/// `authentication` (wrong user or password), `tls` (a certificate refused either way, a
/// handshake that failed), `authorization` (an ACL denied it), or `other`.
pub fn error_kind(error: &KafkaError, reason: &str) -> &'static str {
    use RDKafkaErrorCode as C;
    match error.rdkafka_error_code() {
        Some(C::Authentication | C::SaslAuthenticationFailed) => "authentication",
        Some(C::SSL) => "tls",
        Some(
            C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed,
        ) => "authorization",
        _ if reason.contains("SSL handshake failed") || reason.contains("certificate") => "tls",
        _ if reason.contains("uthentication") => "authentication",
        _ => "other",
    }
}

/// Logs an error Kafka reported to `client` (`shipper`, `collector`) and counts it in `counter`
/// with its [`error_kind`] as the `kind` label: ERROR for a refused login, certificate or ACL, WARN
/// for the rest (a broker down, which librdkafka retries).
pub fn report_error(counter: &'static str, client: &str, error: &KafkaError, reason: &str) {
    let kind = error_kind(error, reason);
    metrics::counter!(counter, "kind" => kind).increment(1);
    match kind {
        "authentication" => {
            tracing::error!(kind, %error, reason, "Kafka refused the {client}'s user or password")
        }
        "tls" => {
            tracing::error!(kind, %error, reason, "TLS with Kafka failed for the {client} (a certificate refused either way, or not TLS at all)")
        }
        "authorization" => {
            tracing::error!(kind, %error, reason, "Kafka's ACLs refuse the {client} this topic or group")
        }
        _ => tracing::warn!(kind, %error, reason, "Kafka reported an error to the {client}"),
    }
}

fn readable(path: &Path, what: &str) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .map(drop)
        .with_context(|| format!("{what} {}: cannot be read", path.display()))
}

fn path_text(path: &Path) -> anyhow::Result<String> {
    path.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, "secret-value\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn each_protocol_needs_its_credentials_and_refuses_strays() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (
            file(dir.path(), "c.pem", 0o644),
            file(dir.path(), "k.pem", 0o600),
        );
        let password = file(dir.path(), "password", 0o600);
        let error = |settings| format!("{:#}", KafkaSecurity::new(settings).unwrap_err());
        assert!(
            error(KafkaSecuritySettings {
                ca_file: Some(cert.clone()),
                ..Default::default()
            })
            .contains("--kafka-ca-file is set but --kafka-security-protocol is plaintext")
        );
        assert!(
            error(KafkaSecuritySettings {
                protocol: Protocol::Ssl,
                ..Default::default()
            })
            .contains("mutual TLS")
        );
        assert!(
            error(KafkaSecuritySettings {
                protocol: Protocol::SaslSsl,
                sasl_username: Some("u".into()),
                ..Default::default()
            })
            .contains("needs --kafka-sasl-password-file")
        );
        let sasl = KafkaSecurity::new(KafkaSecuritySettings {
            protocol: Protocol::SaslSsl,
            ca_file: Some(cert.clone()),
            sasl_username: Some("imds-agent".into()),
            sasl_password_file: Some(password.clone()),
            ..Default::default()
        })
        .unwrap();
        let mut client = ClientConfig::new();
        sasl.apply(&mut client).unwrap();
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.password"), Some("secret-value"));
        assert_eq!(client.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert!(!format!("{sasl:?}").contains("secret-value"));
        let mtls = KafkaSecurity::new(KafkaSecuritySettings {
            protocol: Protocol::Ssl,
            cert_file: Some(cert),
            key_file: Some(key),
            ..Default::default()
        })
        .unwrap();
        let before = mtls.fingerprint();
        let mut client = ClientConfig::new();
        mtls.apply(&mut client).unwrap();
        assert_eq!(client.get("security.protocol"), Some("ssl"));
        std::fs::write(dir.path().join("k.pem"), "another key").unwrap();
        assert_ne!(
            mtls.fingerprint(),
            before,
            "a replaced key is a new fingerprint"
        );
    }

    #[test]
    fn secrets_readable_by_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = file(dir.path(), "password", 0o644);
        let error = KafkaSecurity::new(KafkaSecuritySettings {
            protocol: Protocol::SaslSsl,
            sasl_username: Some("u".into()),
            sasl_password_file: Some(open.clone()),
            ..Default::default()
        })
        .unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.contains("accessible by other users (mode 644)"),
            "{message}"
        );
        assert!(!message.contains("secret-value"), "{message}");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_secret(&open, "token").is_err());
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(
            read_secret(&open, "token").unwrap().expose(),
            "secret-value"
        );
    }

    #[test]
    fn loopback_brokers_are_told_apart() {
        assert!(all_loopback("127.0.0.1:9092,localhost:9094,[::1]:9092"));
        assert!(!all_loopback("127.0.0.1:9092,kafka-1.example:9094"));
        assert!(!all_loopback("10.0.0.5:9092"));
    }
}
