//! `/healthz` (the process runs) and `/readyz` (503 only when new events would be refused: a
//! sink is down or shutdown has begun), with every sink's state in the JSON body.

use std::time::Duration;

use futures_util::future::join_all;
use http::StatusCode;
use serde_json::{json, Map, Value};
use warp::reply::Response;

use super::reply::json_response;
use crate::app::App;

/// How long one sink's health check may take before it counts as down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// Renders `/readyz`.
pub async fn readyz(app: &App) -> Response {
    let sinks = app.deliverer.sinks();
    let checks = join_all(sinks.iter().map(|s| async move {
        match tokio::time::timeout(HEALTH_TIMEOUT, s.health()).await {
            Ok(Ok(())) => (s, None),
            Ok(Err(e)) => (s, Some(e.to_string())),
            Err(_) => (
                s,
                Some(format!("health check took longer than {HEALTH_TIMEOUT:?}")),
            ),
        }
    }))
    .await;
    let mut ready = !app.is_shutting_down();
    let mut detail = Map::new();
    for (sink, error) in checks {
        let mut entry = json!({ "type": sink.kind(), "state": if error.is_some() { "down" } else { "up" } });
        if let Some(e) = error {
            ready = false;
            entry["error"] = Value::String(e);
        }
        detail.insert(sink.name().to_owned(), entry);
    }
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "shutting_down": app.is_shutting_down(),
        "sinks": detail,
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(code, &body)
}
