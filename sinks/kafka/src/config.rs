//! `[sinks.NAME]` with `type = "kafka"`.

use std::collections::BTreeMap;

use hookbridge_sink_core::settings::{HumanDuration, SecretRef};
use hookbridge_sink_core::{Mode, Template};
use serde::Deserialize;

/// Properties hookbridge sets itself (with their librdkafka aliases), and the key of the sink
/// table that sets each. The passthrough table may not name them: hookbridge's value would be
/// applied over it (or, for an alias, either could win, the order of a hash map deciding).
const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "brokers"),
    ("metadata.broker.list", "brokers"),
    ("acks", "nothing: hookbridge always asks for acks=all"),
    (
        "request.required.acks",
        "nothing: hookbridge always asks for acks=all",
    ),
    ("enable.idempotence", "idempotence"),
    (
        "client.id",
        "nothing: hookbridge names the client hookbridge-<sink>",
    ),
    ("message.timeout.ms", "message_timeout"),
    ("delivery.timeout.ms", "message_timeout"),
    ("linger.ms", "linger"),
    ("queue.buffering.max.ms", "linger"),
    ("queue.buffering.max.kbytes", "queue_max_kbytes"),
    ("batch.size", "batch_size"),
    ("compression.type", "compression"),
    ("compression.codec", "compression"),
    ("sasl.password", "sasl_password"),
    ("ssl.key.password", "ssl_key_password"),
];

/// Default `message_timeout`: below the default `server.publish_timeout` (5 s).
pub const DEFAULT_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

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
    /// The sink's own time limits, each with its key and default: hookbridge checks them against
    /// `server.publish_timeout` (which would cut a longer one first) and fits the unset ones
    /// below it.
    pub fn timeouts_mut(&mut self) -> Vec<(&'static str, &mut Option<HumanDuration>, std::time::Duration)> {
        vec![(
            "message_timeout",
            &mut self.message_timeout,
            DEFAULT_MESSAGE_TIMEOUT,
        )]
    }

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
            if let Some((_, instead)) = RESERVED.iter().find(|(p, _)| p == key) {
                errors.push((
                    format!("librdkafka.{key}"),
                    format!("set by hookbridge: use {instead}"),
                ));
            }
        }
        if let (Some(linger), Some(timeout)) = (self.linger, self.message_timeout) {
            // librdkafka refuses to start a producer whose records would time out while lingering.
            if linger.0 >= timeout.0 {
                errors.push((
                    "linger".to_owned(),
                    "must be shorter than message_timeout (librdkafka refuses the producer)".to_owned(),
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
