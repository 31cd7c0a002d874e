//! `[sinks.NAME]` with `type = "kafka"`.

use std::collections::BTreeMap;

use hookbridge_sink_core::settings::{HumanDuration, SecretRef};
use hookbridge_sink_core::{Mode, Template};
use serde::Deserialize;

/// Properties hookbridge sets itself; the passthrough table may not override them.
const RESERVED: &[&str] = &[
    "bootstrap.servers",
    "acks",
    "request.required.acks",
    "sasl.password",
    "ssl.key.password",
];

/// Kafka sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated. Default `127.0.0.1:9092`.
    #[serde(default = "default_brokers")]
    pub brokers: String,
    /// Topic template, e.g. `fic.{type}`. Required.
    pub topic: String,
    /// Key template. Default: the `partitionkey` extension, else `{subject}`, else no key.
    pub key: Option<String>,
    /// Extra headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// CloudEvents binding: `binary` (default) or `structured`.
    #[serde(default)]
    pub mode: Mode,
    /// Idempotent producer (no duplicates or reordering from producer retries). Default `true`.
    #[serde(default = "yes")]
    pub idempotence: bool,
    /// `message.timeout.ms`: how long librdkafka keeps trying one record. Keep it below
    /// `server.publish_timeout`. Default `4s`.
    pub message_timeout: Option<HumanDuration>,
    /// `queue.buffering.max.kbytes`: producer memory cap in KiB. Default `16384` (16 MiB).
    pub queue_max_kbytes: Option<u32>,
    /// `linger.ms`: batching delay. Default `5ms`.
    pub linger: Option<HumanDuration>,
    /// `batch.size` in bytes. Default: librdkafka's.
    pub batch_size: Option<u32>,
    /// `compression.type`: none, gzip, snappy, lz4, zstd. Default: none.
    pub compression: Option<String>,
    /// `sasl.password`, from env or file.
    pub sasl_password: Option<SecretRef>,
    /// `ssl.key.password`, from env or file.
    pub ssl_key_password: Option<SecretRef>,
    /// Any other librdkafka property, passed through as is (e.g. `security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `ssl.ca.location`).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

fn default_brokers() -> String {
    "127.0.0.1:9092".to_owned()
}

fn yes() -> bool {
    true
}

impl KafkaConfig {
    /// Every secret the sink reads, with its key (`check` resolves them all).
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        [
            ("sasl_password", &self.sasl_password),
            ("ssl_key_password", &self.ssl_key_password),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_ref()?)))
        .collect()
    }

    /// Pure validation: `(key, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut template = |key: String, value: &str| {
            if let Err(e) = Template::compile(value) {
                errors.push((key, format!("bad template: {e}")));
            }
        };
        template("topic".to_owned(), &self.topic);
        if let Some(k) = &self.key {
            template("key".to_owned(), k);
        }
        for (name, value) in &self.headers {
            template(format!("headers.{name}"), value);
        }
        if self.headers.contains_key("") {
            errors.push(("headers".to_owned(), "a header name is empty".to_owned()));
        }
        for key in self.librdkafka.keys() {
            if RESERVED.contains(&key.as_str()) {
                errors.push((
                    format!("librdkafka.{key}"),
                    "set by hookbridge (use brokers, sasl_password, ssl_key_password)".to_owned(),
                ));
            }
        }
        if self.brokers.trim().is_empty() {
            errors.push(("brokers".to_owned(), "must not be empty".to_owned()));
        }
        if let Some(c) = &self.compression {
            if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&c.as_str()) {
                errors.push(("compression".to_owned(), format!("unknown compression {c:?}")));
            }
        }
        errors
    }
}
