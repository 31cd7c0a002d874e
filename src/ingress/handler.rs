//! One webhook request through the pipeline: source lookup → in-flight slot → capped body →
//! verify (raw bytes, before parsing) → normalise → deliver → answer.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use warp::reply::Response;

use super::body::read_capped;
use super::reply::{self, ErrorReply};
use crate::app::App;
use crate::config::{SourceConfig, SourceKind};
use crate::normalize::{self, cloudevents, fic, mapping, Context};
use crate::verify::fic::FicVerifier;
use crate::verify::VerifierConfig;

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The webhook listener (also serving health endpoints unless an admin listener exists).
    Main,
    /// `server.admin_listen`: health endpoints only.
    Admin,
}

/// Handles any request.
pub async fn handle<S, B>(
    app: Arc<App>,
    role: Role,
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let serves_health = role == Role::Admin || app.config.server.admin_listen.is_none();
    let mut resp = match path.as_str() {
        "/healthz" | "/readyz" | "/metrics" if !serves_health => not_found(),
        "/healthz" | "/readyz" | "/metrics" if method != Method::GET && method != Method::HEAD => {
            reply::error(&ErrorReply::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            ))
        }
        "/healthz" => reply::json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" => super::health::readyz(&app).await,
        "/metrics" => super::health::metrics(&app),
        p if role == Role::Admin && p.starts_with("/admin/") => {
            super::admin::handle(&app, method, p, &headers, body).await
        }
        _ if role == Role::Admin => not_found(),
        _ => match app.source_at(&path) {
            None => not_found(),
            Some(source) => {
                let resp = webhook(&app, &source, method, query, headers, body).await;
                crate::metrics::request(&source.name, resp.status().as_u16());
                resp
            }
        },
    };
    if app.is_shutting_down() {
        reply::close_connection(&mut resp);
    }
    resp
}

fn not_found() -> Response {
    reply::error(&ErrorReply::new(StatusCode::NOT_FOUND, "not_found"))
}

async fn webhook<S, B>(
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
        if let VerifierConfig::Fic(fic) = &source.verifier {
            return super::challenge::respond(fic, &headers, query.as_deref());
        }
    }
    if method != Method::POST {
        let mut e = ErrorReply::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        if source.kind == SourceKind::FattureInCloud {
            e.allow = "GET, POST";
        }
        return reply::error(&e);
    }
    if app.is_shutting_down() {
        return reply::error(&ErrorReply::unavailable("shutting_down", server.retry_after));
    }
    let Some(_permit) = app.try_enter() else {
        tracing::warn!(source = %source.name, "too many requests in flight");
        return reply::error(&ErrorReply::unavailable("overloaded", server.retry_after));
    };
    let work = async {
        let quarantine = |e: &ErrorReply, body: Option<&Bytes>| {
            let rejected = matches!(e.status.as_u16(), 400 | 401 | 413);
            if let (true, Some(q)) = (rejected, &app.quarantine) {
                q.submit(&crate::quarantine::Rejected {
                    source: &source.name,
                    path: &source.path,
                    reason: e.code,
                    status: e.status.as_u16(),
                    field: e.field.as_deref(),
                    headers: &headers,
                    body,
                });
            }
        };
        let body = read_capped(&headers, body, server.body_limit)
            .await
            .inspect_err(|e| quarantine(e, None))?;
        process(app, source, &headers, body.clone())
            .await
            .inspect_err(|e| quarantine(e, Some(&body)))
    };
    // One span per request: source, first event's id and type, and the outcome (HTTP status).
    let span = tracing::info_span!(
        "webhook",
        source = %source.name,
        event_id = tracing::field::Empty,
        event_type = tracing::field::Empty,
        status = tracing::field::Empty,
    );
    let result =
        tracing::Instrument::instrument(tokio::time::timeout(server.request_timeout, work), span.clone())
            .await;
    let _entered = span.enter();
    let resp = match result {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => {
            tracing::info!(source = %source.name, status = e.status.as_u16(), code = e.code, "request refused");
            reply::error(&e)
        }
        Err(_) => {
            tracing::warn!(source = %source.name, "request timed out");
            reply::error(
                &ErrorReply::unavailable("request_timeout", server.retry_after).message(format!(
                    "the request did not complete within {}",
                    humantime::format_duration(server.request_timeout)
                )),
            )
        }
    };
    span.record("status", resp.status().as_u16());
    resp
}

async fn process(
    app: &Arc<App>,
    source: &SourceConfig,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, ErrorReply> {
    let verified = source.verifier.verify_async(headers, &body, unix_now()).await.map_err(|e| {
        metrics::counter!("hookbridge_verification_failures_total", "source" => source.name.clone(), "reason" => e.code())
            .increment(1);
        ErrorReply::unauthorized(e.code())
    })?;
    let received = normalize::now_rfc3339();
    let ctx = Context {
        source_name: &source.name,
        verifier: source.verifier.kind(),
        received: &received,
    };
    let mut events = match source.kind {
        SourceKind::CloudEvents => cloudevents::decode(headers, &body),
        SourceKind::FattureInCloud => fic::decode(headers, &body).map(|e| vec![e]),
        SourceKind::GitHub => mapping::github(&source.name, headers, &body).map(|e| vec![e]),
        SourceKind::Stripe => mapping::stripe(&source.name, headers, &body).map(|e| vec![e]),
        SourceKind::StandardWebhooks => {
            mapping::standard_webhooks(&source.name, headers, &body).map(|e| vec![e])
        }
        SourceKind::Generic => match &source.mapping {
            Some(m) => mapping::decode(m, &source.name, headers, &body).map(|e| vec![e]),
            None => Err(normalize::NormalizeError::malformed(
                None,
                "no mapping configured",
            )),
        },
    }
    .map_err(|e| {
        let mut r = ErrorReply::new(StatusCode::BAD_REQUEST, e.code).message(e.message);
        r.field = e.field;
        r
    })?;
    if let Some((spec, claims)) = &verified.jwt {
        for e in &events {
            crate::verify::jwt::check_bindings(spec, claims, |a| e.attribute(a))
                .map_err(|v| ErrorReply::unauthorized(v.code()))?;
        }
    }
    if let Some(claims) = &verified.fic {
        for e in &events {
            FicVerifier::check_event(claims, &e.id, e.subject.as_deref())
                .map_err(|v| ErrorReply::unauthorized(v.code()))?;
        }
    }
    if let Some(first) = events.first() {
        let span = tracing::Span::current();
        span.record("event_id", first.id.as_str());
        span.record("event_type", first.ty.as_str());
    }
    for e in &mut events {
        normalize::stamp(e, &ctx);
        normalize::keep_headers(e, headers, &source.keep_headers);
        normalize::trace(e, headers);
    }
    if let Some(enricher) = app.enricher(&source.name) {
        for e in &mut events {
            if !app.config.router.enrich(&source.name, &e.ty) {
                continue;
            }
            let outcome = enricher.enrich(e).await;
            if outcome == crate::fic::enrich::Outcome::Retry {
                return Err(
                    ErrorReply::unavailable("enrichment_unavailable", app.config.server.retry_after)
                        .message("Fatture in Cloud could not be asked for the resources; retry later"),
                );
            }
            tracing::debug!(event_id = %e.id, ?outcome, "enrichment");
        }
    }
    let outcomes = match (&source.delivery, &app.spool) {
        (crate::config::Delivery::Spool, Some(spool)) => {
            app.deliverer.spool_all(&source.name, &events, spool).await
        }
        _ => app.deliverer.deliver_all(&source.name, &events).await,
    };
    for (e, o) in events.iter().zip(&outcomes) {
        tracing::info!(source = %source.name, event_id = %e.id, event_type = %e.ty, outcome = o.status(), "event");
        crate::metrics::event(&source.name, o.status());
    }
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    Ok(reply::outcomes(&ids, &outcomes, app.config.server.retry_after))
}
