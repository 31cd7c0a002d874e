//! The one place that turns an outcome into an HTTP status and JSON body (design §3).
//!
//! Errors: `{"error": {"code", "field"?, "message"?}}`. Success:
//! `{"status", "events": [{"id", "status", "receipts": [...]}]}`. 503 always carries
//! `Retry-After`. Never 3xx, 410, 411 or 429: providers such as FIC drop or delete on those.

use std::time::Duration;

use http::header::{HeaderValue, ALLOW, CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::StatusCode;
use serde_json::json;
use warp::reply::Response;

use crate::code::Code;
use crate::deliver::EventOutcome;
use hookbridge_sink_core::Receipt;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// Reason code.
    pub code: Code,
    /// Offending field, if any.
    pub field: Option<String>,
    /// Human-readable detail (never secret).
    pub message: Option<String>,
    /// For 503: when to retry.
    pub retry_after: Option<Duration>,
    /// For 405: the methods the path accepts.
    pub allow: &'static str,
}

impl ErrorReply {
    /// An error with `code` (and its status).
    pub fn new(code: Code) -> Self {
        ErrorReply {
            code,
            field: None,
            message: None,
            retry_after: None,
            allow: "POST",
        }
    }

    /// 400 `malformed`.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(Code::Malformed).message(message)
    }

    /// 413 `body_too_large`.
    pub fn too_large(limit: u64) -> Self {
        Self::new(Code::BodyTooLarge).message(format!("the body exceeds {limit} bytes"))
    }

    /// `code` (a 503) with a `Retry-After`.
    pub fn unavailable(code: Code, retry_after: Duration) -> Self {
        let mut e = Self::new(code);
        e.retry_after = Some(retry_after);
        e
    }

    /// The HTTP status: always the code's.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Adds the offending field.
    pub fn field(mut self, field: Option<String>) -> Self {
        self.field = field;
        self
    }

    /// Adds a message.
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// A JSON response with `status`.
pub fn json_response<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    let mut resp = Response::new(serde_json::to_vec(body).unwrap_or_default().into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Renders an error answer.
pub fn error(e: &ErrorReply) -> Response {
    let mut body = json!({ "code": e.code });
    if let Some(f) = &e.field {
        body["field"] = json!(f);
    }
    if let Some(m) = &e.message {
        body["message"] = json!(m);
    }
    let mut resp = json_response(e.status(), &json!({ "error": body }));
    if let Some(after) = e.retry_after {
        let secs = after.as_secs_f64().ceil().max(1.0) as u64;
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    if e.code == Code::MethodNotAllowed {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(e.allow));
    }
    resp
}

/// Renders the answer for the outcomes of one request's events (`ids` in the same order).
///
/// The request is answered as a whole: any retryable failure → 503 `sink_unavailable` (even if
/// another sink failed permanently); else any permanent failure → 500 `sink_rejected`; else the
/// top-level status is the first of [`crate::code::SUCCESS_ORDER`] any event has.
pub fn outcomes(ids: &[&str], outcomes: &[EventOutcome], default_retry_after: Duration) -> Response {
    let mut retryable = false;
    let mut permanent = false;
    let mut retry_after: Option<Duration> = None;
    let events: Vec<EventEntry<'_>> = ids
        .iter()
        .zip(outcomes)
        .map(|(id, o)| event_entry(id, o))
        .collect();
    if let Some(EventOutcome::Refused { code }) = outcomes
        .iter()
        .find(|o| matches!(o, EventOutcome::Refused { .. }))
    {
        // The spool's own message (paths, sizes) is logged where it arises; the sender learns
        // the code only.
        let e = ErrorReply::unavailable(*code, default_retry_after);
        let message = match *code {
            Code::Overloaded => "the spool is full",
            _ => "the spool cannot take the event now",
        };
        return error_with_events(&e, message, &events);
    }
    for o in outcomes {
        if let EventOutcome::Failed(failures) = o {
            for (_, e) in failures {
                if e.is_retryable() {
                    retryable = true;
                    if let Some(after) = e.retry_after() {
                        retry_after = Some(retry_after.map_or(after, |r| r.max(after)));
                    }
                } else {
                    permanent = true;
                }
            }
        }
    }
    if retryable || permanent {
        let e = if retryable {
            ErrorReply::unavailable(Code::SinkUnavailable, retry_after.unwrap_or(default_retry_after))
        } else {
            ErrorReply::new(Code::SinkRejected)
        };
        return error_with_events(&e, &failure_summary(outcomes), &events);
    }
    let status = crate::code::SUCCESS_ORDER
        .into_iter()
        .find(|s| outcomes.iter().any(|o| o.status() == *s))
        .unwrap_or(Code::Delivered);
    json_response(status.status(), &Answer { events, status })
}

/// An error answer (status and headers of `e`) that keeps the per-event detail next to the
/// error, so operators see which event and sink failed.
fn error_with_events(e: &ErrorReply, message: &str, events: &[EventEntry<'_>]) -> Response {
    let mut resp = error(e);
    let body = json!({ "error": { "code": e.code, "message": message }, "events": events });
    *resp.body_mut() = serde_json::to_vec(&body).unwrap_or_default().into();
    resp
}

/// The success answer, serialised straight from the outcomes: building it as a `serde_json::Value`
/// tree first cost ~8 % of a blackhole request's CPU (BENCHMARKS.md). Fields in alphabetical
/// order, as the `Value` maps wrote them.
#[derive(serde::Serialize)]
struct Answer<'a> {
    events: Vec<EventEntry<'a>>,
    status: Code,
}

/// One event's entry in an answer.
#[derive(serde::Serialize)]
struct EventEntry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<SinkFailure<'a>>>,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    receipts: Option<&'a [Receipt]>,
    status: Code,
}

/// One sink's failure in an event's entry: the sink's name and the kind of failure only. The
/// error's text (a URL, a path, broker text) goes to the log and to the private `/readyz`, never
/// back to the webhook sender, whose provider may show it in a delivery dashboard.
#[derive(serde::Serialize)]
struct SinkFailure<'a> {
    kind: &'static str,
    sink: &'a str,
}

fn event_entry<'a>(id: &'a str, o: &'a EventOutcome) -> EventEntry<'a> {
    let mut entry = EventEntry {
        errors: None,
        id,
        receipts: None,
        status: o.status(),
    };
    match o {
        EventOutcome::Delivered(receipts)
        | EventOutcome::Spooled(receipts)
        | EventOutcome::DeadLettered(receipts) => entry.receipts = Some(receipts),
        EventOutcome::Failed(failures) => {
            entry.errors = Some(
                failures
                    .iter()
                    .map(|(sink, e)| SinkFailure {
                        kind: e.kind().as_str(),
                        sink,
                    })
                    .collect(),
            );
        }
        EventOutcome::Duplicate | EventOutcome::Dropped | EventOutcome::Refused { .. } => {}
    }
    entry
}

fn failure_summary(outcomes: &[EventOutcome]) -> String {
    let mut sinks: Vec<&str> = Vec::new();
    for o in outcomes {
        if let EventOutcome::Failed(f) = o {
            for (s, _) in f {
                if !sinks.contains(&s.as_str()) {
                    sinks.push(s);
                }
            }
        }
    }
    format!("publish failed on sink(s): {}", sinks.join(", "))
}

/// Marks a response as the last on its connection (used while shutting down).
pub fn close_connection(resp: &mut Response) {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}
