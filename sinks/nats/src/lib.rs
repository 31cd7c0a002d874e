//! The `nats` sink: CloudEvents to NATS, core or JetStream, with the CloudEvents NATS binding
//! (`ce-<attr>` headers and the data as payload in binary mode, the JSON envelope in structured
//! mode).
//!
//! What "delivered" means here:
//! - **JetStream** (`jetstream = true`): the stream's `PubAck` arrived. `Nats-Msg-Id` is the event
//!   id, so JetStream's duplicate window drops re-sends. A subject no stream captures is a
//!   permanent error, never a silent success. Receipt: stream, sequence, duplicate.
//! - **Core NATS**: there is no acknowledgement. The sink publishes and flushes to the server; the
//!   message reaches whoever subscribes at that moment — **at most once**. The receipt says so
//!   (`"delivery": "at_most_once"`). Use JetStream when events must not be lost.
//!
//! The connection is made lazily and retried in the background, so hookbridge starts (and answers
//! 503) while NATS is down, and recovers without a restart.
//!
//! ```toml
//! [sinks.events]
//! type = "nats"
//! url = "nats://127.0.0.1:4222"
//! subject = "fic.{type}"
//! jetstream = true
//! expected_stream = "FIC"            # optional
//! token = { env = "NATS_TOKEN" }     # optional; or user/password, nkey, credentials
//! ```

mod batch;
mod config;
mod error;
/// The pure event → message builder, public for the fuzz targets (not a stable API).
#[doc(hidden)]
pub mod message;
mod sink;

pub use config::{NatsConfig, StreamSpec, TlsConfig};
pub use message::escape_subject_value;
pub use sink::NatsSink;
