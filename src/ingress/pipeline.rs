//! One webhook request through the pipeline: credential (headers first, before any slot or
//! body) → in-flight slot → capped body → verify (raw bytes, before parsing) → decode → bind →
//! stamp → enrich → deliver → reply. Everything kind-specific is asked of the source's provider
//! and verifier (`crate::sources`).

use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;

use super::body::read_capped;
use super::reply::{self, ErrorReply};
use crate::app::App;
use crate::code::Code;
use crate::config::{Delivery, SourceConfig};
use crate::normalize::{self, Context};
use crate::sources::{Handshake, Outcome};
use crate::verify::{Verified, VerifyError};

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A request to a source's path.
pub(super) async fn webhook<S, B>(
    app: &Arc<App>,
    source: &SourceConfig,
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let server = &app.config.server;
    if method == Method::GET {
        if let Some(answer) = source.provider.handshake(&headers, query.as_deref(), unix_now()) {
            return handshake(answer);
        }
    }
    if method != Method::POST {
        let mut e = ErrorReply::new(Code::MethodNotAllowed);
        e.allow = source.provider.methods();
        return reply::error(&e);
    }
    if app.is_shutting_down() {
        return reply::error(&ErrorReply::unavailable(Code::ShuttingDown, server.retry_after));
    }
    let request = Request {
        app,
        source,
        headers: &headers,
    };
    // A credential in the headers is checked before the body is read and before a request slot
    // is taken. A body-signed request must first show a well-formed signature header (and a
    // signed timestamp within tolerance); it then reads its body under a slot of its own
    // source's pre-authentication pool (`max_unauthenticated` per source), and takes a request
    // slot only once it verified. So unauthenticated senders, slow or many, never hold the
    // slots authenticated traffic needs, nor the pre-authentication slots of another source.
    let early = match request.early().await {
        Ok(v) => v,
        Err(e) => {
            request.quarantine(&e, None);
            tracing::info!(source = %source.name, status = e.status().as_u16(), code = %e.code, "request refused");
            return reply::error(&e);
        }
    };
    // A request slot, or (body-signed, not yet verified) a slot of the source's
    // pre-authentication pool, traded for a request slot once verified.
    let slot = match early {
        Some(_) => app.try_enter(),
        None => app.try_enter_unauthenticated(&source.name),
    };
    let Some(slot) = slot else {
        let what = if early.is_some() {
            "webhook"
        } else {
            "unauthenticated"
        };
        tracing::warn!(source = %source.name, "too many {what} requests in flight");
        return reply::error(&ErrorReply::unavailable(Code::Overloaded, server.retry_after));
    };
    let work = request.run(body, early, slot);
    instrumented(source, &headers, server, work).await
}

/// One request to a source, past the method checks.
struct Request<'a> {
    app: &'a Arc<App>,
    source: &'a SourceConfig,
    headers: &'a HeaderMap,
}

impl Request<'_> {
    fn retry_after(&self) -> std::time::Duration {
        self.app.config.server.retry_after
    }

    /// A refused request to the quarantine, if one is configured (400, 401 and 413 only).
    fn quarantine(&self, e: &ErrorReply, body: Option<&Bytes>) {
        let rejected = matches!(e.status().as_u16(), 400 | 401 | 413);
        if let (true, Some(q)) = (rejected, &self.app.quarantine) {
            q.submit(&crate::quarantine::Rejected {
                source: &self.source.name,
                path: &self.source.path,
                reason: e.code.as_str(),
                status: e.status().as_u16(),
                field: e.field.as_deref(),
                headers: self.headers,
                body,
                credentials: &self.source.verifier.credential_headers(),
            });
        }
    }

    /// The credential checked from the headers alone: the whole verification for header-only
    /// verifiers (`Some`), the pre-check of a body-signed one (`None`: verify after the body).
    async fn early(&self) -> Result<Option<Verified>, ErrorReply> {
        let verifier = &self.source.verifier;
        let early = if verifier.header_only() {
            verifier.verify(self.headers, &[], unix_now()).await.map(Some)
        } else {
            verifier.precheck(self.headers, unix_now()).map(|()| None)
        };
        early.map_err(|e| refused(self.source, e, self.retry_after()))
    }

    /// Reads the body, verifies what was not verified yet, and runs the pipeline.
    async fn run<S, B>(
        &self,
        body: S,
        early: Option<Verified>,
        mut slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<Response, ErrorReply>
    where
        S: Stream<Item = Result<B, warp::Error>>,
        B: Buf,
    {
        let body = self.read(body).await?;
        let verified = match early {
            Some(v) => v,
            None => {
                let v = self
                    .source
                    .verifier
                    .verify(self.headers, &body, unix_now())
                    .await
                    .map_err(|e| refused(self.source, e, self.retry_after()))
                    .inspect_err(|e| self.quarantine(e, Some(&body)))?;
                // Authenticated now: trade the pre-authentication slot for a request slot.
                let permit = self.app.try_enter().ok_or_else(|| {
                    tracing::warn!(source = %self.source.name, "too many webhook requests in flight");
                    ErrorReply::unavailable(Code::Overloaded, self.retry_after())
                })?;
                slot = permit;
                v
            }
        };
        let resp = self
            .pipeline(body.clone(), verified)
            .await
            .inspect_err(|e| self.quarantine(e, Some(&body)));
        drop(slot);
        resp
    }

    async fn read<S, B>(&self, body: S) -> Result<Bytes, ErrorReply>
    where
        S: Stream<Item = Result<B, warp::Error>>,
        B: Buf,
    {
        let server = &self.app.config.server;
        match tokio::time::timeout(
            server.body_timeout,
            read_capped(self.headers, body, server.body_limit),
        )
        .await
        {
            Ok(body) => body.inspect_err(|e| self.quarantine(e, None)),
            Err(_) => Err(
                ErrorReply::unavailable(Code::RequestTimeout, server.retry_after).message(format!(
                    "the body was not received within {}",
                    humantime::format_duration(server.body_timeout)
                )),
            ),
        }
    }

    /// A verified request: decode → bind → stamp → enrich → deliver → reply.
    async fn pipeline(&self, body: Bytes, verified: Verified) -> Result<Response, ErrorReply> {
        let mut events = self.decode(&body)?;
        for e in &events {
            verified
                .bind(|a| e.attribute(a))
                .map_err(|v| ErrorReply::new(v.code()))?;
        }
        // Only now are the id and type the ones the credential vouches for (where it binds them).
        if let Some(first) = events.first() {
            let span = tracing::Span::current();
            span.record("event_id", tracing::field::debug(&first.id));
            span.record("event_type", tracing::field::debug(&first.ty));
        }
        self.stamp(&mut events, &body);
        self.enrich(&mut events).await?;
        let (app, source) = (self.app, self.source);
        let outcomes = match (&source.delivery, &app.spool) {
            (Delivery::Spool, Some(spool)) => app.deliverer.spool_all(&source.name, &events, spool).await,
            _ => app.deliverer.deliver_all(&source.name, &events).await,
        };
        for (e, o) in events.iter().zip(&outcomes) {
            tracing::info!(source = %source.name, event_id = ?e.id, event_type = ?e.ty, outcome = o.status().as_str(), "event");
            crate::metrics::event(&source.name, o.status().as_str());
        }
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        Ok(reply::outcomes(&ids, &outcomes, self.retry_after()))
    }

    fn decode(&self, body: &Bytes) -> Result<Vec<hookbridge_sink_core::Event>, ErrorReply> {
        let events = self
            .source
            .provider
            .decode(&self.source.name, self.headers, body)
            .map_err(|e| {
                let mut r = ErrorReply::new(e.code).message(e.message);
                r.field = e.field;
                r
            })?;
        Ok(events)
    }

    /// hookbridge's own extensions, kept headers, trace context and (body-deduplicated
    /// sources) the body digest.
    fn stamp(&self, events: &mut [hookbridge_sink_core::Event], body: &Bytes) {
        let source = self.source;
        let received = normalize::now_rfc3339();
        let ctx = Context {
            source_name: &source.name,
            verifier: source.verifier.kind(),
            received: &received,
        };
        let body_digest = source.dedup_on_body.then(|| body_digest(body));
        let batch = events.len() > 1;
        // With OTLP export on, events carry the request span's ids (a child of the sender's).
        #[cfg(feature = "otlp")]
        let exported = super::otel::current_traceparent();
        #[cfg(not(feature = "otlp"))]
        let exported: Option<String> = None;
        for (i, e) in events.iter_mut().enumerate() {
            normalize::stamp(e, &ctx);
            normalize::keep_headers(e, self.headers, &source.keep_headers);
            normalize::trace(e, self.headers, exported.as_deref());
            if let Some(digest) = &body_digest {
                // Dedup (and the brokers' delivery key) on what the signature covers.
                let key = if batch {
                    format!("{digest}:{i}")
                } else {
                    digest.clone()
                };
                e.extensions.insert(
                    crate::deliver::BODY_DIGEST.into(),
                    hookbridge_sink_core::ExtensionValue::String(key),
                );
            }
        }
    }

    /// Enrichment of the events a route asks it for (not of those already delivered).
    async fn enrich(&self, events: &mut [hookbridge_sink_core::Event]) -> Result<(), ErrorReply> {
        let (app, source) = (self.app, self.source);
        let Some(enricher) = app.enricher(&source.name) else {
            return Ok(());
        };
        for e in events {
            if !app.config.router.enrich(&source.name, &e.ty)
                || app.deliverer.already_delivered(&source.name, e)
            {
                continue;
            }
            let outcome = enricher.enrich(e).await;
            if outcome == Outcome::Retry {
                return Err(
                    ErrorReply::unavailable(Code::EnrichmentUnavailable, self.retry_after())
                        .message("the provider's API could not be asked for the resources; retry later"),
                );
            }
            tracing::debug!(event_id = ?e.id, ?outcome, "enrichment");
        }
        Ok(())
    }
}

/// Runs a request's work under its span (source, first event's id and type, the status) and
/// the end-to-end deadline.
async fn instrumented(
    source: &SourceConfig,
    headers: &HeaderMap,
    server: &crate::config::ServerConfig,
    work: impl std::future::Future<Output = Result<Response, ErrorReply>>,
) -> Response {
    let span = tracing::info_span!(
        "webhook",
        source = %source.name,
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    // The sender's trace context is taken as it comes, before verification, as OpenTelemetry's
    // HTTP instrumentation does: the OTel span is made when the span is, and a parent set later
    // is ignored. An unauthenticated caller thus picks the trace id (and sampling flag) of its
    // own request's span only; nothing it sends reaches a broker unverified.
    #[cfg(feature = "otlp")]
    super::otel::parent(&span, headers);
    #[cfg(not(feature = "otlp"))]
    let _ = headers;
    let result =
        tracing::Instrument::instrument(tokio::time::timeout(server.request_timeout, work), span.clone())
            .await;
    let _entered = span.enter();
    let resp = match result {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::info!(source = %source.name, status = e.status().as_u16(), code = %e.code, "request refused");
            reply::error(&e)
        }
        Err(_) => {
            tracing::warn!(source = %source.name, "request timed out");
            reply::error(
                &ErrorReply::unavailable(Code::RequestTimeout, server.retry_after).message(format!(
                    "the request did not complete within {}",
                    humantime::format_duration(server.request_timeout)
                )),
            )
        }
    };
    span.record("status", resp.status().as_u16());
    resp
}

/// A handshake's answer: 200 with its JSON, or the refusal's code.
fn handshake(answer: Handshake) -> Response {
    match answer {
        Ok(body) => reply::json_response(StatusCode::OK, &body),
        Err((code, message)) => {
            let mut e = ErrorReply::new(code);
            if let Some(m) = message {
                e = e.message(m);
            }
            reply::error(&e)
        }
    }
}

/// 32 hex digits of SHA-256 over the raw body.
fn body_digest(body: &[u8]) -> String {
    use sha2::Digest as _;
    hookbridge_sink_core::short_hex(&sha2::Sha256::digest(body))
}

/// A failed verification, counted: 401 with its reason, or 503 `keys_unavailable` when the keys could
/// not be had (the sender retries; a 401 would make it drop the event).
fn refused(source: &SourceConfig, e: VerifyError, retry_after: std::time::Duration) -> ErrorReply {
    metrics::counter!("hookbridge_verification_failures_total", "source" => source.name.clone(), "reason" => e.code().as_str())
        .increment(1);
    if e == VerifyError::KeysUnavailable {
        return ErrorReply::unavailable(e.code(), retry_after);
    }
    ErrorReply::new(e.code())
}
