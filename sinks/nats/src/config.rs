//! `[sinks.NAME]` with `type = "nats"`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hookbridge_sink_core::settings::{HumanDuration, SecretRef};
use hookbridge_sink_core::{Mode, Template};
use serde::Deserialize;

/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// NATS sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated. Default `nats://127.0.0.1:4222`.
    #[serde(default = "default_url")]
    pub url: String,
    /// Subject template, e.g. `fic.{type}`. Values are escaped: whitespace, `*` and `>` become
    /// `_`; an empty token is an error. Required.
    pub subject: String,
    /// Publish through JetStream and wait for the `PubAck`. Default `false` (core NATS,
    /// at-most-once).
    #[serde(default)]
    pub jetstream: bool,
    /// JetStream: the stream that must capture the subject (`Nats-Expected-Stream`). Optional.
    pub expected_stream: Option<String>,
    /// JetStream: create this stream at the first publish if it does not exist (an existing
    /// stream of that name is used as it is: its settings are not changed). Default: none.
    pub create_stream: Option<StreamSpec>,
    /// CloudEvents binding: `binary` (default) or `structured`.
    #[serde(default)]
    pub mode: Mode,
    /// Extra headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Token authentication.
    pub token: Option<SecretRef>,
    /// User name for user/password authentication.
    pub user: Option<String>,
    /// Password for user/password authentication.
    pub password: Option<SecretRef>,
    /// NKey seed.
    pub nkey: Option<SecretRef>,
    /// A `.creds` file (JWT + NKey), as `{ file = … }` or `{ env = … }` holding its content.
    pub credentials: Option<SecretRef>,
    /// TLS settings.
    pub tls: Option<TlsConfig>,
    /// Connection attempt timeout. Default `4s`; must be shorter than `server.publish_timeout`.
    pub connect_timeout: Option<HumanDuration>,
    /// Longest wait between reconnection attempts. Default `2s`.
    pub max_reconnect_delay: Option<HumanDuration>,
}

/// `create_stream`: a stream hookbridge creates at its first publish when missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// Stream name. Required.
    pub name: String,
    /// Subjects it captures. Required.
    pub subjects: Vec<String>,
    /// JetStream duplicate window. Default `2m`.
    pub duplicate_window: Option<HumanDuration>,
    /// Maximum message age. Default: unlimited.
    pub max_age: Option<HumanDuration>,
}

/// `tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Require TLS. Default `true` when the table is present.
    #[serde(default = "yes")]
    pub required: bool,
    /// CA certificate(s) (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM), with `cert_file`.
    pub key_file: Option<PathBuf>,
}

fn default_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}

fn yes() -> bool {
    true
}

impl NatsConfig {
    /// The sink's own time limits, each with its key and default: hookbridge checks them against
    /// `server.publish_timeout` (which would cut a longer one first) and fits the unset ones
    /// below it.
    pub fn timeouts_mut(&mut self) -> Vec<(&'static str, &mut Option<HumanDuration>, std::time::Duration)> {
        vec![(
            "connect_timeout",
            &mut self.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )]
    }

    /// Every secret the sink reads, with its key (`check` resolves them all).
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        [
            ("token", &self.token),
            ("password", &self.password),
            ("nkey", &self.nkey),
            ("credentials", &self.credentials),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_ref()?)))
        .collect()
    }

    /// Pure validation: `(key, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if let Err(e) = Template::compile(&self.subject) {
            errors.push(("subject".to_owned(), format!("bad template: {e}")));
        }
        for (name, value) in &self.headers {
            if let Err(e) = Template::compile(value) {
                errors.push((format!("headers.{name}"), format!("bad template: {e}")));
            }
            let lower = name.to_ascii_lowercase();
            // Headers the sink writes itself would replace (or be replaced by) the configured one.
            if lower == "content-type" || lower == "nats-msg-id" || lower.starts_with("ce-") {
                errors.push((
                    format!("headers.{name}"),
                    "set by the sink itself (the CloudEvents binding, or JetStream's Nats-Msg-Id delivery key)".to_owned(),
                ));
            }
        }
        if !self.jetstream && (self.expected_stream.is_some() || self.create_stream.is_some()) {
            errors.push((
                "jetstream".to_owned(),
                "expected_stream and create_stream need jetstream = true".to_owned(),
            ));
        }
        if self.password.is_some() != self.user.is_some() {
            errors.push(("user".to_owned(), "user and password go together".to_owned()));
        }
        if let Some(s) = &self.create_stream {
            if s.subjects.is_empty() {
                errors.push((
                    "create_stream.subjects".to_owned(),
                    "at least one subject".to_owned(),
                ));
            }
            if s.name.is_empty() || s.name.contains(['.', ' ', '*', '>']) {
                errors.push((
                    "create_stream.name".to_owned(),
                    format!("invalid stream name {:?}", s.name),
                ));
            }
        }
        if let Some(t) = &self.tls {
            if t.cert_file.is_some() != t.key_file.is_some() {
                errors.push((
                    "tls.cert_file".to_owned(),
                    "cert_file and key_file go together".to_owned(),
                ));
            }
        }
        errors
    }
}
