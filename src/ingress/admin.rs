//! Admin endpoints, served only on `server.admin_listen` (they can re-publish events, so they
//! never share the webhook listener):
//!
//! - `GET /admin/spool`: the spool's state (pending, per-sink backlog, retained, parked);
//! - `GET /admin/parked`: the dead letters parked in the spool, with reasons;
//! - `POST /admin/replay`: re-publish retained events (or parked ones) selected by a JSON
//!   [`ReplayFilter`]; `"dry_run": true` only lists them.

use bytes::Buf;
use futures_util::Stream;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use warp::reply::Response;

use super::body::read_capped;
use super::reply::{self, ErrorReply};
use crate::app::App;
use crate::deliver::spool::{ReplayFilter, Replayed, Spool};

/// Most replayed events listed one by one in the answer (all are counted).
const LISTED: usize = 1000;

/// Handles `/admin/*`.
pub async fn handle<S, B>(app: &App, method: Method, path: &str, headers: &HeaderMap, body: S) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let expected = if path == "/admin/replay" {
        Method::POST
    } else {
        Method::GET
    };
    if !matches!(path, "/admin/replay" | "/admin/spool" | "/admin/parked") {
        return reply::error(&ErrorReply::new(StatusCode::NOT_FOUND, "not_found"));
    }
    if method != expected {
        let mut e = ErrorReply::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        e.allow = if expected == Method::POST { "POST" } else { "GET" };
        return reply::error(&e);
    }
    let Some(spool) = &app.spool else {
        return reply::error(
            &ErrorReply::new(StatusCode::CONFLICT, "no_spool")
                .message("no source uses delivery = \"spool\": nothing is retained"),
        );
    };
    match path {
        "/admin/spool" => reply::json_response(StatusCode::OK, &super::health::spool_state(spool)),
        "/admin/parked" => match spool.list_parked().await {
            Ok(list) => {
                let items: Vec<_> = list
                    .iter()
                    .map(|(seq, sink, p)| {
                        json!({ "seq": seq, "sink": sink, "id": p.record.id(), "type": p.record.ty(),
                                "reason": p.reason, "attempts": p.attempts, "error": p.error })
                    })
                    .collect();
                reply::json_response(StatusCode::OK, &json!({ "parked": items }))
            }
            Err(e) => spool_error(&e.to_string()),
        },
        _ => {
            let bytes = match read_capped(headers, body, 64 << 10).await {
                Ok(b) => b,
                Err(e) => return reply::error(&e),
            };
            let filter: ReplayFilter = match serde_json::from_slice(&bytes) {
                Ok(f) => f,
                Err(e) => return reply::error(&ErrorReply::malformed(format!("replay request: {e}"))),
            };
            replay(app, spool, &filter).await
        }
    }
}

/// The answer to a replay, from the admin endpoint or the CLI on the spool: counts and the first
/// [`LISTED`] events.
pub fn replay_answer(items: &[Replayed], dry_run: bool) -> serde_json::Value {
    json!({
        "matched": items.len(),
        "replayed": if dry_run { 0 } else { items.len() },
        "dry_run": dry_run,
        "events": items.iter().take(LISTED).collect::<Vec<_>>(),
        "truncated": items.len() > LISTED,
    })
}

/// Checks a replay filter against the configuration: the error names the field.
pub fn check_filter(
    config: &crate::config::Config,
    filter: &ReplayFilter,
) -> Result<(), (&'static str, String)> {
    if let Some(t) = &filter.ty {
        crate::route::Pattern::compile(t).map_err(|e| ("type", e))?;
    }
    // With --parked, `sink` may name a sink that was removed (its events parked `sink_removed`).
    if let Some(sink) = filter.sink.as_ref().filter(|_| !filter.parked) {
        if !config.sinks.iter().any(|s| &s.name == sink) {
            return Err(("sink", format!("no sink named {sink:?}")));
        }
    }
    if let Some(to) = &filter.to {
        if !config.sinks.iter().any(|s| &s.name == to) {
            return Err(("to", format!("no sink named {to:?}")));
        }
    }
    if let Some(source) = &filter.source {
        if !config.sources.iter().any(|s| &s.name == source) {
            return Err(("source", format!("no source named {source:?}")));
        }
    }
    if let (Some(a), Some(b)) = (filter.since, filter.until) {
        if a >= b {
            return Err(("until", "must be after since".into()));
        }
    }
    Ok(())
}

async fn replay(app: &App, spool: &Spool, filter: &ReplayFilter) -> Response {
    if let Err((field, message)) = check_filter(&app.config, filter) {
        return reply::error(&ErrorReply::malformed(message).field(Some(field.to_owned())));
    }
    match spool.replay(filter).await {
        Ok(items) => {
            tracing::info!(
                count = items.len(),
                dry_run = filter.dry_run,
                parked = filter.parked,
                "replay"
            );
            metrics::counter!("hookbridge_replayed_total").increment(if filter.dry_run {
                0
            } else {
                items.len() as u64
            });
            reply::json_response(StatusCode::OK, &replay_answer(&items, filter.dry_run))
        }
        Err(crate::deliver::spool::SpoolError::Full(m)) => reply::error(
            &ErrorReply::unavailable("overloaded", app.config.server.retry_after).message(format!(
                "the spool filled up while replaying ({m}); some events were re-queued"
            )),
        ),
        Err(e) => spool_error(&e.to_string()),
    }
}

fn spool_error(message: &str) -> Response {
    reply::error(
        &ErrorReply::new(StatusCode::INTERNAL_SERVER_ERROR, "spool_unavailable").message(message.to_owned()),
    )
}
