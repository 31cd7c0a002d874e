//! `[sinks.NAME]` with `type = "rabbitmq"`.

use std::collections::BTreeMap;

use hookbridge_sink_core::settings::{HumanDuration, SecretRef};
use hookbridge_sink_core::{Mode, Template};
use serde::Deserialize;

/// Default `confirm_timeout`.
pub const DEFAULT_CONFIRM_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);
/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// RabbitMQ sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitConfig {
    /// AMQP URL, inline or `{ env = … }` / `{ file = … }` (it usually holds a password).
    /// Default `amqp://127.0.0.1:5672/%2f` (guest/guest).
    #[serde(default)]
    pub url: Option<UrlRef>,
    /// Exchange template. Default `""` (the default exchange: routing key = queue name).
    #[serde(default)]
    pub exchange: String,
    /// Routing key template. Default `{type}`.
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    /// Publish as `mandatory`: an unroutable message is returned and the publish fails
    /// (permanently) instead of being silently dropped. Default `true`.
    #[serde(default = "yes")]
    pub mandatory: bool,
    /// Persistent delivery mode (2). Default `true`.
    #[serde(default = "yes")]
    pub persistent: bool,
    /// Declare the exchange at connection time. Default: not declared (it is yours).
    pub declare_exchange: Option<ExchangeSpec>,
    /// Declare a queue at connection time and bind it to the exchange, so messages have
    /// somewhere to go from the first publish (with `mandatory`, an unbound exchange returns
    /// every message: a permanent failure). Default: none (queues are your consumers').
    pub declare_queue: Option<QueueSpec>,
    /// CloudEvents binding: `binary` (default) or `structured`.
    #[serde(default)]
    pub mode: Mode,
    /// Extra `headers` table entries; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Per-message TTL (`expiration` property). Default: none.
    pub expiration: Option<HumanDuration>,
    /// Message priority 0–255. Default: none.
    pub priority: Option<u8>,
    /// Longest wait for the broker's confirm. Default `4s`; must be shorter than
    /// `server.publish_timeout` (unset, it is fitted below it).
    pub confirm_timeout: Option<HumanDuration>,
    /// Confirm-mode channels in the pool. Default `4`.
    pub channels: Option<usize>,
    /// Connection attempt timeout. Default `4s`; must be shorter than `server.publish_timeout`.
    pub connect_timeout: Option<HumanDuration>,
}

/// An AMQP URL, inline or as a secret reference.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum UrlRef {
    /// Inline URL.
    Plain(String),
    /// `{ env = … }` or `{ file = … }`.
    Ref(SecretRef),
}

/// `declare_exchange`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSpec {
    /// `direct`, `fanout`, `topic` or `headers`. Default `topic`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Survives a broker restart. Default `true`.
    #[serde(default = "yes")]
    pub durable: bool,
}

/// `declare_queue`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// Queue name. Required.
    pub name: String,
    /// Binding key to the exchange (`#`: everything on a topic exchange). Default `#`.
    #[serde(default = "default_binding_key")]
    pub binding_key: String,
    /// Survives a broker restart. Default `true`.
    #[serde(default = "yes")]
    pub durable: bool,
}

fn default_binding_key() -> String {
    "#".to_owned()
}

fn default_routing_key() -> String {
    "{type}".to_owned()
}

fn default_kind() -> String {
    "topic".to_owned()
}

fn yes() -> bool {
    true
}

impl RabbitConfig {
    /// The sink's own time limits, each with its key and default: hookbridge checks them against
    /// `server.publish_timeout` (which would cut a longer one first) and fits the unset ones
    /// below it.
    pub fn timeouts_mut(&mut self) -> Vec<(&'static str, &mut Option<HumanDuration>, std::time::Duration)> {
        vec![
            (
                "confirm_timeout",
                &mut self.confirm_timeout,
                DEFAULT_CONFIRM_TIMEOUT,
            ),
            (
                "connect_timeout",
                &mut self.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
            ),
        ]
    }

    /// Whether the URL is written inline with a password other than the local `guest` default
    /// (`amqp://guest:guest@localhost`): `check` warns about it.
    pub fn inline_password(&self) -> bool {
        let Some(UrlRef::Plain(url)) = &self.url else {
            return false;
        };
        let Some((_, rest)) = url.split_once("://") else {
            return false;
        };
        let Some((userinfo, host)) = rest.split('/').next().unwrap_or_default().rsplit_once('@') else {
            return false;
        };
        let Some((_, password)) = userinfo.split_once(':') else {
            return false;
        };
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let local = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
        let guest_default = password == "guest" && local;
        !password.is_empty() && !guest_default
    }

    /// Every secret the sink reads, with its key (`check` resolves them all).
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        match &self.url {
            Some(UrlRef::Ref(r)) => vec![("url", r)],
            _ => Vec::new(),
        }
    }

    /// Pure validation: `(key, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        for (key, value) in [("exchange", &self.exchange), ("routing_key", &self.routing_key)] {
            if let Err(e) = Template::compile(value) {
                errors.push((key.to_owned(), format!("bad template: {e}")));
            }
        }
        for (name, value) in &self.headers {
            if let Err(e) = Template::compile(value) {
                errors.push((format!("headers.{name}"), format!("bad template: {e}")));
            }
        }
        if let Some(x) = &self.declare_exchange {
            if !["direct", "fanout", "topic", "headers"].contains(&x.kind.as_str()) {
                errors.push((
                    "declare_exchange.kind".to_owned(),
                    format!(
                        "unknown exchange kind {:?} (direct, fanout, topic, headers)",
                        x.kind
                    ),
                ));
            }
            if self.exchange.is_empty() || self.exchange.contains('{') {
                errors.push((
                    "declare_exchange".to_owned(),
                    "needs a fixed, non-empty `exchange` name".to_owned(),
                ));
            }
        }
        if let Some(q) = &self.declare_queue {
            if q.name.is_empty() || q.name.len() > 255 || q.name.starts_with("amq.") {
                errors.push((
                    "declare_queue.name".to_owned(),
                    "1 to 255 bytes, not starting with amq. (reserved by the broker)".to_owned(),
                ));
            }
            if q.binding_key.len() > 255 {
                errors.push((
                    "declare_queue.binding_key".to_owned(),
                    "at most 255 bytes".to_owned(),
                ));
            }
            if self.exchange.is_empty() || self.exchange.contains('{') {
                errors.push((
                    "declare_queue".to_owned(),
                    "needs a fixed, non-empty `exchange` name to bind to".to_owned(),
                ));
            }
        }
        if self.channels == Some(0) {
            errors.push(("channels".to_owned(), "must be above zero".to_owned()));
        }
        if let Some(UrlRef::Plain(u)) = &self.url {
            if !(u.starts_with("amqp://") || u.starts_with("amqps://")) {
                errors.push(("url".to_owned(), "must start with amqp:// or amqps://".to_owned()));
            }
        }
        errors
    }
}
