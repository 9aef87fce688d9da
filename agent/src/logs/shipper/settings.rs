//! The warm shipper's settings, declared once (flattened into the agent's settings, `config.rs`)
//! and validated here.

use serde::{Deserialize, Serialize};
use service::kafka_security::{KafkaSecurity, KafkaSecuritySettings, Protocol};
use service::secrets::Secret;
use std::path::PathBuf;

/// Where the shipper sends and how it authenticates.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct ShipperSettings {
    /// Kafka bootstrap servers for the warm path (`host:port,...`); without it the shipper is off.
    #[arg(long, env = "AGENT_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Kafka topic of the warm path.
    #[arg(long, env = "AGENT_KAFKA_TOPIC", default_value = "imds.logs")]
    pub kafka_topic: String,
    /// How the shipper reaches Kafka: plaintext (development on loopback), ssl (mutual TLS) or
    /// sasl_ssl (SCRAM-SHA-512 over TLS).
    #[arg(
        long,
        env = "AGENT_KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value = "plaintext"
    )]
    pub kafka_security_protocol: Protocol,
    /// PEM file of the CA that signed the brokers' certificates (default: the system's CAs).
    #[arg(long, env = "AGENT_KAFKA_CA_FILE")]
    pub kafka_ca_file: Option<PathBuf>,
    /// PEM file of this agent's client certificate (ssl: mutual TLS).
    #[arg(long, env = "AGENT_KAFKA_CERT_FILE")]
    pub kafka_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (mode 600: refused if others can read it).
    #[arg(long, env = "AGENT_KAFKA_KEY_FILE")]
    pub kafka_key_file: Option<PathBuf>,
    /// SCRAM-SHA-512 user (sasl_ssl).
    #[arg(long, env = "AGENT_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// File holding the SCRAM password (mode 600), read again when it changes; or the password in
    /// AGENT_KAFKA_SASL_PASSWORD (never a flag: arguments are visible in `ps`).
    #[arg(long, env = "AGENT_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
}

/// Where the warm shipper sends.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port,...`.
    pub brokers: String,
    /// The warm path's topic.
    pub topic: String,
    /// How the shipper authenticates and checks the brokers.
    pub security: KafkaSecurity,
}

impl ShipperSettings {
    /// The shipper's destination, `None` when no brokers are set (the warm path is off);
    /// `password` is AGENT_KAFKA_SASL_PASSWORD's value.
    pub fn validate(self, password: Option<Secret>) -> anyhow::Result<Option<KafkaConfig>> {
        let Some(brokers) = self.kafka_brokers.filter(|b| !b.trim().is_empty()) else {
            return Ok(None);
        };
        Ok(Some(KafkaConfig {
            brokers,
            topic: self.kafka_topic,
            security: KafkaSecurity::new(KafkaSecuritySettings {
                protocol: self.kafka_security_protocol,
                ca_file: self.kafka_ca_file,
                cert_file: self.kafka_cert_file,
                key_file: self.kafka_key_file,
                sasl_username: self.kafka_sasl_username,
                sasl_password_file: self.kafka_sasl_password_file,
                sasl_password: password,
            })?,
        }))
    }
}
