//! Normalisation: a verified request → one or more [`Event`]s.
//!
//! Every failure is a client error with a reason code of the delivery contract: `malformed`
//! (unparseable, invalid values) or `missing_attribute` with the attribute's name.

pub mod cloudevents;
pub mod fic;
pub mod mapping;

use hookbridge_sink_core::{Event, ExtensionValue};

/// Why a request could not be turned into events (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct NormalizeError {
    /// `malformed` or `missing_attribute`.
    pub code: &'static str,
    /// The attribute concerned, if any.
    pub field: Option<String>,
    /// Human-readable detail.
    pub message: String,
}

impl NormalizeError {
    /// A `malformed` error.
    pub fn malformed(field: Option<&str>, message: impl Into<String>) -> Self {
        NormalizeError {
            code: "malformed",
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// A `missing_attribute` error for `field`.
    pub fn missing(field: &str) -> Self {
        NormalizeError {
            code: "missing_attribute",
            field: Some(field.to_owned()),
            message: format!("required CloudEvents attribute {field:?} is missing"),
        }
    }
}

/// What the ingress knows about a request besides its headers and body.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The configured source name (`hbsource`).
    pub source_name: &'a str,
    /// The verifier kind that accepted the request (`hbverifier`).
    pub verifier: &'a str,
    /// Receive time, RFC 3339 (`hbreceived`).
    pub received: &'a str,
}

/// Stamps hookbridge's own extensions on an event.
pub fn stamp(event: &mut Event, ctx: &Context<'_>) {
    let ext = &mut event.extensions;
    ext.insert("hbsource".into(), ExtensionValue::from(ctx.source_name));
    ext.insert("hbreceived".into(), ExtensionValue::from(ctx.received));
    ext.insert("hbverifier".into(), ExtensionValue::from(ctx.verifier));
}

/// Now, as RFC 3339 UTC with microseconds.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now
        .replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Copies the configured request headers into the event (names lower-case, values as text).
pub fn keep_headers(event: &mut Event, headers: &http::HeaderMap, names: &[String]) {
    for name in names {
        for value in headers.get_all(name.as_str()) {
            if let Ok(v) = value.to_str() {
                event.headers.push((name.clone(), v.to_owned()));
            }
        }
    }
}
