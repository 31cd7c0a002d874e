//! OpenTelemetry trace context for exported spans (cargo feature `otlp`): each request's span is
//! a child of the sender's `traceparent`, and the events it publishes carry that span's ids, so
//! an exported trace runs sender → hookbridge → consumer without a break.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Makes `span` a child of the request's W3C trace context, when it carries a valid one. A
/// no-op when no OpenTelemetry layer records the span (export off).
pub fn parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&Headers(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The `traceparent` of the current span when OpenTelemetry records it: what the request's
/// events carry, so their consumers' spans are children of hookbridge's. `None` when export
/// is off.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}
