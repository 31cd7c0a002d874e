//! The trait every sink implements.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Event, Receipt, SinkError};

/// A destination for events. Implementations are shared between requests (`&self`) and must be
/// cheap to call concurrently.
///
/// Sinks have no retry loops of their own: the bridge's delivery layer owns deadlines, backoff and
/// the HTTP answer. Retries inside a client library within the call are fine.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The configured name of this sink (the key of its `[sinks.NAME]` table).
    fn name(&self) -> &str;

    /// The configured `type` of this sink (`file`, `kafka`, …).
    fn kind(&self) -> &'static str;

    /// Publishes one event. Returns `Ok` only once the destination has taken responsibility for
    /// it (broker ack, fsync, HTTP 2xx); any doubt is an error.
    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError>;

    /// Whether the sink can currently accept events. Must be cheap: readiness probes call it.
    async fn health(&self) -> Result<(), SinkError>;

    /// Flushes and releases resources. Called once, after the last publish.
    async fn shutdown(&self);
}

/// A shared, type-erased sink.
pub type SinkHandle = Arc<dyn Sink>;
