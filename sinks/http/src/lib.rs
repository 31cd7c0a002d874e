//! The `http` sink: forwards each event to an HTTP endpoint with the CloudEvents HTTP binding.
//!
//! What "delivered" means here: the endpoint answered 2xx. 408, 429 (its `Retry-After` is
//! passed on), 5xx, connection errors and timeouts are retryable; any other status — including a
//! 3xx when redirects are not followed — is a permanent rejection. A 500 is never success.
//!
//! Every request carries `Idempotency-Key: <event id>` so receivers can drop re-sends, and can
//! be signed with Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`),
//! using the same implementation hookbridge verifies with.
//!
//! ```toml
//! [sinks.forward]
//! type = "http"
//! url = "https://consumer.internal/hooks/{hbsource}"
//! auth = { bearer = { env = "FORWARD_TOKEN" } }
//! sign = { secret = { env = "FORWARD_WHSEC" } }
//! ```

mod config;
/// The pure event → message builder, public for the fuzz targets (not a stable API).
#[doc(hidden)]
pub mod request;
mod sink;

pub use config::{Auth, HttpConfig, Signing};
pub use sink::HttpSink;
