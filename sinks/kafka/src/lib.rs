//! The `kafka` sink: CloudEvents to Kafka through rdkafka (librdkafka built from source).
//!
//! What "delivered" means here: librdkafka's delivery report for the record arrived without
//! error, from an idempotent producer with `acks=all` — the partition leader and its in-sync
//! replicas have the record. Receipt: topic, partition, offset.
//!
//! Bounded by design: `message.timeout.ms` (default 4 s) stays below hookbridge's publish
//! deadline, so a request is never held for librdkafka's default 300 s, and the producer queue is
//! capped (`queue.buffering.max.kbytes`, default 16 MiB instead of 1 GiB). Many records are in
//! flight at once: `publish` enqueues and awaits its own delivery report only.
//!
//! A topic that does not exist is detected from metadata (permanent failure at once) rather than
//! by waiting out `topic.metadata.propagation.max.ms`. After a fatal idempotent-producer error a
//! new producer is built.
//!
//! Binding: binary mode (default) sends `ce_<attr>` headers and `content-type`, the data as the
//! value; structured mode sends the JSON envelope with `content-type:
//! application/cloudevents+json`. The key is the `key` template, else the `partitionkey`
//! extension, else `{subject}` (per-company order for Fatture in Cloud), else none.
//!
//! ```toml
//! [sinks.kafka]
//! type = "kafka"
//! brokers = "127.0.0.1:9092"
//! topic = "fic.{type}"
//! [sinks.kafka.librdkafka]
//! "security.protocol" = "SASL_SSL"
//! ```

mod config;
#[cfg(feature = "client")]
mod error;
pub mod message;
#[cfg(feature = "client")]
mod sink;

pub use config::KafkaConfig;
#[cfg(feature = "client")]
pub use sink::KafkaSink;
