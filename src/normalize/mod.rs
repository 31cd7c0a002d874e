//! Normalisation: a verified request → one or more [`Event`]s.
//!
//! Every failure is a client error with a reason code of the delivery contract: `malformed`
//! (unparseable, invalid values) or `missing_attribute` with the attribute's name.

pub mod cloudevents;
pub mod mapping;

use hookbridge_sink_core::{Event, ExtensionValue};

/// Why a request could not be turned into events (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct NormalizeError {
    /// `malformed` or `missing_attribute`.
    pub code: crate::code::Code,
    /// The attribute concerned, if any.
    pub field: Option<String>,
    /// Human-readable detail.
    pub message: String,
}

impl NormalizeError {
    /// A `malformed` error.
    pub fn malformed(field: Option<&str>, message: impl Into<String>) -> Self {
        NormalizeError {
            code: crate::code::Code::Malformed,
            field: field.map(str::to_owned),
            message: message.into(),
        }
    }

    /// A `missing_attribute` error for `field`.
    pub fn missing(field: &str) -> Self {
        NormalizeError {
            code: crate::code::Code::MissingAttribute,
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
    // Extensions that steer hookbridge's own keys are hookbridge's to set, never a sender's:
    // `hbbodydigest` (the dedup key of a body-deduplicated source) and `hbreplay` (a replay's
    // own delivery key). A sender's would let it make its event a duplicate of another one, or
    // slip a re-send past the brokers' duplicate window.
    ext.remove("hbbodydigest");
    ext.remove("hbreplay");
    ext.insert("hbsource".into(), ExtensionValue::from(ctx.source_name));
    ext.insert("hbreceived".into(), ExtensionValue::from(ctx.received));
    ext.insert("hbverifier".into(), ExtensionValue::from(ctx.verifier));
}

/// Request headers from static pairs (unit tests of decoders).
#[cfg(test)]
pub(crate) fn test_headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, http::HeaderValue::from_static(v));
    }
    h
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

/// W3C trace context for an event: the event's own `traceparent` extension (CloudEvents
/// distributed tracing) if it has one, else the request's `traceparent` header continued with a
/// new span id for hookbridge's hop, else a new trace. Stored as the `traceparent` extension, so
/// every sink carries it (and sends it as a `traceparent` header too).
pub fn trace(event: &mut Event, headers: &http::HeaderMap, exported: Option<&str>) {
    if event.extensions.contains_key("traceparent") {
        return;
    }
    if let Some(tp) = exported {
        event
            .extensions
            .insert("traceparent".into(), ExtensionValue::String(tp.to_owned()));
        return;
    }
    use rand::Rng;
    let mut rng = rand::rng();
    let span: u64 = rng.random::<u64>().max(1);
    let incoming = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_traceparent);
    let value = match incoming {
        Some((trace_id, flags)) => format!("00-{trace_id}-{span:016x}-{flags}"),
        None => format!("00-{:032x}-{span:016x}-01", rng.random::<u128>().max(1)),
    };
    event
        .extensions
        .insert("traceparent".into(), ExtensionValue::String(value));
}

/// `(trace id, flags)` of a valid version-00 `traceparent`.
fn parse_traceparent(v: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = v.trim().split('-').collect();
    let [version, trace, parent, flags] = parts.as_slice() else {
        return None;
    };
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = *version == "00"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| (trace.to_string(), flags.to_string()))
}

#[cfg(test)]
mod trace_tests {
    use super::*;

    #[test]
    fn continues_or_starts_a_trace() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let mut e = Event::new("1", "s", "t");
        trace(&mut e, &h, None);
        let tp = e.attribute("traceparent").expect("traceparent");
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{tp}");
        assert!(tp.ends_with("-01"));
        assert!(
            !tp.contains("00f067aa0ba902b7"),
            "a new span id for hookbridge's hop"
        );

        let mut e = Event::new("1", "s", "t");
        h.insert("traceparent", http::HeaderValue::from_static("garbage"));
        trace(&mut e, &h, None);
        let tp = e.attribute("traceparent").expect("new trace");
        assert!(parse_traceparent(&tp).is_some(), "{tp}");

        let mut e = Event::new("1", "s", "t");
        e.extensions.insert(
            "traceparent".into(),
            "00-11111111111111111111111111111111-2222222222222222-00".into(),
        );
        trace(&mut e, &h, None);
        assert_eq!(
            e.attribute("traceparent").as_deref(),
            Some("00-11111111111111111111111111111111-2222222222222222-00")
        );
    }
}
