//! `/healthz` (the process runs) and `/readyz` (503 only when new events would be refused: a
//! sink is down, the spool is full or cannot be written, or shutdown has begun), with every
//! sink's state in the JSON body.

use futures_util::future::join_all;
use http::StatusCode;
use serde_json::{json, Map, Value};
use warp::reply::Response;

use super::reply::json_response;
use crate::app::App;

/// Renders `/readyz`; `detail` adds each failure's error text (sink errors can carry URLs and
/// broker text: only the private listeners show them). Sink checks are cached briefly
/// ([`App::sink_health`]), so a flood of probes costs the brokers nothing more.
pub async fn readyz(app: &App, detail: bool) -> Response {
    let sinks = app.deliverer.sinks();
    let checks =
        join_all((0..sinks.len()).map(|i| async move { (&sinks[i], app.sink_status(i).await) })).await;
    let mut ready = !app.is_shutting_down();
    let mut states = Map::new();
    for (i, (sink, status)) in checks.into_iter().enumerate() {
        let mut entry = json!({
            "type": sink.kind(),
            "state": if status.result.is_err() { "down" } else { "up" },
            "since": rfc3339(status.since),
        });
        if let Err(e) = status.result {
            // A sink only fed through the spool being down refuses nothing: events wait on disk.
            if app.is_sync_sink(i) {
                ready = false;
            }
            if detail {
                entry["error"] = Value::String(e);
            }
        }
        if let Some((e, at)) = status.last_error {
            let mut last = json!({ "at": rfc3339(at) });
            if detail {
                last["error"] = Value::String(e);
            }
            entry["last_error"] = last;
        }
        states.insert(sink.name().to_owned(), entry);
    }
    let mut body = json!({
        "status": "ready",
        "shutting_down": app.is_shutting_down(),
        "sinks": states,
    });
    if let Some(spool) = &app.spool {
        // A spool that a failed write left unwritable is reopened here too (throttled), so it
        // recovers without traffic.
        let fault = spool.recover_if_faulty().await;
        if spool.is_full() || fault.is_some() {
            ready = false;
        }
        body["spool"] = spool_state(spool);
        body["spool"]["writable"] = Value::Bool(fault.is_none());
        if let Some(e) = fault.filter(|_| detail) {
            body["spool"]["error"] = Value::String(e);
        }
    }
    body["status"] = json!(if ready { "ready" } else { "not_ready" });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &body)
}

fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The spool's state: pending, per-sink backlog, retained and parked.
pub fn spool_state(spool: &crate::deliver::spool::Spool) -> Value {
    let (events, bytes) = spool.depth();
    let (retained_events, retained_bytes) = spool.retained();
    json!({
        "events": events,
        "bytes": bytes,
        "full": spool.is_full(),
        "backlog": spool.backlog(),
        "retained": { "events": retained_events, "bytes": retained_bytes },
        "parked": spool.parked(),
    })
}

/// Renders `/metrics` (Prometheus text), refreshing the gauges read at scrape time.
pub fn metrics(app: &App) -> Response {
    metrics::gauge!("hookbridge_in_flight_requests").set(app.in_flight() as f64);
    if let Some(spool) = &app.spool {
        let (events, bytes) = spool.depth();
        metrics::gauge!("hookbridge_spool_events").set(events as f64);
        metrics::gauge!("hookbridge_spool_bytes").set(bytes as f64);
        metrics::gauge!("hookbridge_spool_oldest_age_seconds")
            .set(spool.oldest_age().map_or(0.0, |d| d.as_secs_f64()));
        metrics::gauge!("hookbridge_spool_parked").set(spool.parked() as f64);
        metrics::gauge!("hookbridge_spool_retained_events").set(spool.retained().0 as f64);
        for (sink, b) in spool.backlog() {
            metrics::gauge!("hookbridge_spool_backlog_events", "sink" => sink.clone()).set(b.events as f64);
            metrics::gauge!("hookbridge_spool_backlog_oldest_age_seconds", "sink" => sink)
                .set(b.oldest_age_seconds.unwrap_or(0.0));
        }
    }
    let mut resp = Response::new(crate::metrics::render().into());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
