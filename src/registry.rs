//! The sink registry: the one place that knows every sink `type`. Each sink crate exports its
//! config type and a constructor; adding a sink means adding one variant and one arm here.

use std::sync::Arc;

use hookbridge_sink_core::{BlackholeConfig, BlackholeSink, SinkError, SinkHandle};
use hookbridge_sink_file::{FileConfig, FileSink};
use serde::Deserialize;

/// Every sink type hookbridge knows, and whether this build includes it.
pub const SINK_TYPES: &[(&str, bool)] = &[
    ("file", true),
    ("blackhole", true),
    ("kafka", cfg!(feature = "kafka")),
    ("rabbitmq", cfg!(feature = "rabbitmq")),
    ("nats", cfg!(feature = "nats")),
    ("http", cfg!(feature = "http")),
];

/// The warning about a password written in a sink's URL.
#[cfg(any(feature = "nats", feature = "http", feature = "rabbitmq"))]
fn warning(what: &str) -> (&'static str, String) {
    (
        "url",
        format!("the {what} URL carries a password inline; anyone who reads this file has it"),
    )
}

/// Whether `url` has a password in its userinfo (`scheme://user:password@host`).
#[cfg(any(feature = "nats", feature = "http"))]
fn has_password(url: &str) -> bool {
    let Some((_, rest)) = url.trim().split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .is_some_and(|(_, password)| !password.is_empty())
}

/// `[sinks.NAME]`, dispatched on its `type` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkSpec {
    /// JSON Lines file or stdout.
    File(FileConfig),
    /// Acks and discards.
    Blackhole(BlackholeConfig),
    /// HTTP forward.
    #[cfg(feature = "http")]
    Http(Box<hookbridge_sink_http::HttpConfig>),
    /// Kafka (idempotent, acks=all).
    #[cfg(feature = "kafka")]
    Kafka(Box<hookbridge_sink_kafka::KafkaConfig>),
    /// NATS core or JetStream.
    #[cfg(feature = "nats")]
    Nats(Box<hookbridge_sink_nats::NatsConfig>),
    /// RabbitMQ with publisher confirms.
    #[cfg(feature = "rabbitmq")]
    Rabbitmq(Box<hookbridge_sink_rabbitmq::RabbitConfig>),
}

impl SinkSpec {
    /// The `type` name.
    pub fn type_name(&self) -> &'static str {
        match self {
            SinkSpec::File(_) => "file",
            SinkSpec::Blackhole(_) => "blackhole",
            #[cfg(feature = "http")]
            SinkSpec::Http(_) => "http",
            #[cfg(feature = "kafka")]
            SinkSpec::Kafka(_) => "kafka",
            #[cfg(feature = "nats")]
            SinkSpec::Nats(_) => "nats",
            #[cfg(feature = "rabbitmq")]
            SinkSpec::Rabbitmq(_) => "rabbitmq",
        }
    }

    /// Pure validation: `(key relative to the sink table, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        match self {
            SinkSpec::File(c) => c.validate().into_iter().map(|(k, m)| (k.to_owned(), m)).collect(),
            SinkSpec::Blackhole(_) => Vec::new(),
            #[cfg(feature = "http")]
            SinkSpec::Http(c) => c.validate(),
            #[cfg(feature = "kafka")]
            SinkSpec::Kafka(c) => c.validate(),
            #[cfg(feature = "nats")]
            SinkSpec::Nats(c) => c.validate(),
            #[cfg(feature = "rabbitmq")]
            SinkSpec::Rabbitmq(c) => c.validate(),
        }
    }

    /// A secret written inline in the sink's table, if any: `(key, what)`. The AMQP URL's
    /// password is one unless it is the local `guest` default.
    pub fn inline_secret(&self) -> Option<(&'static str, String)> {
        match self {
            #[cfg(feature = "rabbitmq")]
            SinkSpec::Rabbitmq(c) => c.inline_password().then(|| warning("AMQP")),
            #[cfg(feature = "nats")]
            SinkSpec::Nats(c) => c.url.split(',').any(has_password).then(|| warning("NATS")),
            #[cfg(feature = "http")]
            SinkSpec::Http(c) => has_password(&c.url).then(|| warning("HTTP sink")),
            _ => None,
        }
    }

    /// The sink's own time limits `(key, value, default)`, for the check against
    /// `server.publish_timeout` (see [`crate::config`]).
    pub fn timeouts_mut(
        &mut self,
    ) -> Vec<(
        &'static str,
        &mut Option<hookbridge_sink_core::settings::HumanDuration>,
        std::time::Duration,
    )> {
        match self {
            SinkSpec::File(_) | SinkSpec::Blackhole(_) => Vec::new(),
            #[cfg(feature = "http")]
            SinkSpec::Http(c) => c.timeouts_mut(),
            #[cfg(feature = "kafka")]
            SinkSpec::Kafka(c) => c.timeouts_mut(),
            #[cfg(feature = "nats")]
            SinkSpec::Nats(c) => c.timeouts_mut(),
            #[cfg(feature = "rabbitmq")]
            SinkSpec::Rabbitmq(c) => c.timeouts_mut(),
        }
    }

    /// Every secret the sink reads: `(key relative to the sink table, reference)`.
    pub fn secrets(&self) -> Vec<(&'static str, &hookbridge_sink_core::settings::SecretRef)> {
        match self {
            SinkSpec::File(_) | SinkSpec::Blackhole(_) => Vec::new(),
            #[cfg(feature = "http")]
            SinkSpec::Http(c) => c.secrets(),
            #[cfg(feature = "kafka")]
            SinkSpec::Kafka(c) => c.secrets(),
            #[cfg(feature = "nats")]
            SinkSpec::Nats(c) => c.secrets(),
            #[cfg(feature = "rabbitmq")]
            SinkSpec::Rabbitmq(c) => c.secrets(),
        }
    }

    /// Builds the sink. Construction does no network IO: sinks connect lazily, so hookbridge
    /// starts while a broker is down.
    pub fn build(&self, name: &str) -> Result<SinkHandle, SinkError> {
        Ok(match self {
            SinkSpec::File(c) => Arc::new(FileSink::new(name, c.clone())),
            SinkSpec::Blackhole(c) => Arc::new(BlackholeSink::new(name, c)),
            #[cfg(feature = "http")]
            SinkSpec::Http(c) => Arc::new(hookbridge_sink_http::HttpSink::new(name, (**c).clone())?),
            #[cfg(feature = "kafka")]
            SinkSpec::Kafka(c) => Arc::new(hookbridge_sink_kafka::KafkaSink::new(name, (**c).clone())?),
            #[cfg(feature = "nats")]
            SinkSpec::Nats(c) => Arc::new(hookbridge_sink_nats::NatsSink::new(name, (**c).clone())?),
            #[cfg(feature = "rabbitmq")]
            SinkSpec::Rabbitmq(c) => {
                Arc::new(hookbridge_sink_rabbitmq::RabbitSink::new(name, (**c).clone())?)
            }
        })
    }
}

/// Checks a `type` value before the table is parsed, so an unknown or not-compiled-in type gets a
/// precise message instead of a generic "unknown variant".
pub fn check_type(ty: &str) -> Result<(), (String, String)> {
    check_type_in(SINK_TYPES, ty)
}

fn check_type_in(types: &[(&str, bool)], ty: &str) -> Result<(), (String, String)> {
    let available = || {
        types
            .iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match types.iter().find(|(name, _)| *name == ty) {
        Some((_, true)) => Ok(()),
        Some((_, false)) => Err((
            format!("sink type {ty:?} is not compiled into this build"),
            format!(
                "this hookbridge was built without the {ty:?} sink (cargo feature {ty:?}); available here: {}",
                available()
            ),
        )),
        None => Err((
            format!("unknown sink type {ty:?}"),
            format!("one of {}", available()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_out_types_say_so() {
        let types = [("file", true), ("kafka", false)];
        assert!(check_type_in(&types, "file").is_ok());
        let (message, hint) = check_type_in(&types, "kafka").expect_err("compiled out");
        assert!(message.contains("not compiled into this build"), "{message}");
        assert!(
            hint.contains("cargo feature \"kafka\"") && hint.contains("available here: file"),
            "{hint}"
        );
        let (message, _) = check_type_in(&types, "zeromq").expect_err("unknown");
        assert!(message.contains("unknown sink type"), "{message}");
    }

    #[test]
    fn this_build_lists_its_features() {
        for (name, on) in SINK_TYPES {
            let expected = match *name {
                "kafka" => cfg!(feature = "kafka"),
                "nats" => cfg!(feature = "nats"),
                "rabbitmq" => cfg!(feature = "rabbitmq"),
                "http" => cfg!(feature = "http"),
                _ => true,
            };
            assert_eq!(*on, expected, "{name}");
        }
    }
}
