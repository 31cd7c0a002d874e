//! Fatture in Cloud API tooling: the webhook event type catalogue and a client for the
//! subscription endpoints (providers.md §1.1, §1.6), used by `hookbridge fic subscriptions`.

pub mod api;
pub mod enrich;
pub mod types;
