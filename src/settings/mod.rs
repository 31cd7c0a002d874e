//! Settings as written, and the machinery that checks them: the raw serde structs of every table
//! (`deny_unknown_fields`), value types (durations, sizes, secret references), the error type,
//! and the [`Checker`] that extracts tables from the merged figment and collects every error.
//!
//! Lower than both `crate::config` (which orchestrates the sections) and `crate::sources` (whose
//! kinds check their own tables with the same checker), so neither imports the other's internals.

pub mod checker;
pub mod error;
pub mod raw;
pub mod secret;
pub mod units;

pub use checker::Checker;
