//! hookbridge: receive webhooks, verify them, normalise them into CloudEvents, route them by type
//! and publish them to brokers.
//!
//! ```text
//! HTTP request ──► ingress ──► verify ──► normalize ──► dedup ──► route ──► deliver ──► sinks
//! ```
//!
//! The promise every module serves: a 2xx answer means every chosen sink has taken
//! responsibility for the event; anything transient is a 503 so the provider retries.

pub mod app;
pub mod cli;
pub mod code;
pub mod config;
pub mod deliver;
pub mod ingress;
pub mod keys;
pub mod metrics;
pub mod normalize;
pub mod quarantine;
pub mod registry;
pub mod route;
pub mod serve;
pub mod settings;
pub mod sources;
pub mod telemetry;
pub mod verify;

pub use hookbridge_sink_core as sink;
