//! A sink that acknowledges every event at once and keeps nothing: for tests, benchmarks and for
//! deliberately discarding a route's events.

use async_trait::async_trait;
use serde::Deserialize;

use crate::{Event, Mode, Receipt, Sink, SinkError};

/// `[sinks.NAME]` with `type = "blackhole"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    /// Accepted for symmetry with other sinks; nothing is encoded.
    #[serde(default)]
    pub mode: Mode,
}

/// Acks every event without storing it. Its receipt says `"discarded": true`.
#[derive(Debug)]
pub struct BlackholeSink {
    name: String,
}

impl BlackholeSink {
    /// A blackhole sink named `name`.
    pub fn new(name: impl Into<String>, _config: &BlackholeConfig) -> Self {
        BlackholeSink { name: name.into() }
    }
}

#[async_trait]
impl Sink for BlackholeSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "blackhole"
    }

    async fn publish(&self, _event: &Event) -> Result<Receipt, SinkError> {
        Ok(Receipt::new(&self.name).with("discarded", true))
    }

    async fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn shutdown(&self) {}
}
