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
    ("kafka", false),
    ("rabbitmq", cfg!(feature = "rabbitmq")),
    ("nats", cfg!(feature = "nats")),
    ("http", false),
];

/// `[sinks.NAME]`, dispatched on its `type` key.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkSpec {
    /// JSON Lines file or stdout.
    File(FileConfig),
    /// Acks and discards.
    Blackhole(BlackholeConfig),
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
            #[cfg(feature = "nats")]
            SinkSpec::Nats(c) => c.validate(),
            #[cfg(feature = "rabbitmq")]
            SinkSpec::Rabbitmq(c) => c.validate(),
        }
    }

    /// Builds the sink. Construction does no network IO: sinks connect lazily, so hookbridge
    /// starts while a broker is down.
    pub fn build(&self, name: &str) -> Result<SinkHandle, SinkError> {
        Ok(match self {
            SinkSpec::File(c) => Arc::new(FileSink::new(name, c.clone())),
            SinkSpec::Blackhole(c) => Arc::new(BlackholeSink::new(name, c)),
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
    match SINK_TYPES.iter().find(|(name, _)| *name == ty) {
        Some((_, true)) => Ok(()),
        Some((_, false)) => Err((
            format!("sink type {ty:?} is not compiled into this build"),
            format!(
                "this hookbridge was built without the {ty:?} sink; available here: {}",
                available()
            ),
        )),
        None => Err((
            format!("unknown sink type {ty:?}"),
            format!("one of {}", available()),
        )),
    }
}

fn available() -> String {
    SINK_TYPES
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}
