//! Secrets in the configuration: `{ env = "NAME" }`, `{ file = "/path" }`, or a list of them so
//! several can be active at once during a rotation. Never inline. Defined in `sinks/core` so sink
//! configurations use the same types.

pub use hookbridge_sink_core::settings::{Secret, SecretRef, SecretRefs, SECRET_HINT};
