//! Any request: probes, metrics and the admin API by listener, webhooks by source path (the
//! pipeline itself is `super::pipeline`).

use std::sync::Arc;

use bytes::Buf;
use futures_util::Stream;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use warp::reply::Response;

use super::reply::{self, ErrorReply};
use crate::app::App;
use crate::code::Code;

/// Which listener a request arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The webhook listener (also serving the probes and `/metrics` unless an admin or probe
    /// listener exists; its `/readyz` then shows states without error text).
    Main,
    /// `server.admin_listen`: the admin API (authenticated), and the probes unless a probe
    /// listener exists.
    Admin,
    /// `server.probe_listen`: `/healthz`, `/readyz` and `/metrics` only.
    Probe,
}

/// A bound listener: its role, and what was decided from the listeners actually bound (never
/// from a reloaded configuration, which cannot move them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// What it serves.
    pub role: Role,
    /// Whether it serves `/healthz`, `/readyz` and `/metrics`.
    pub probes: bool,
    /// Whether it is bound to a non-loopback address: the admin API there needs a token even
    /// if a reload removed it from the configuration.
    pub public: bool,
}

/// Handles any request.
pub async fn handle<S, B>(
    app: Arc<App>,
    listener: Listener,
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
    let Listener { role, probes, public } = listener;
    let serves_health = probes;
    let mut resp = match path.as_str() {
        "/healthz" | "/readyz" | "/metrics" if !serves_health => not_found(),
        "/healthz" | "/readyz" | "/metrics" if method != Method::GET && method != Method::HEAD => {
            reply::error(&ErrorReply::new(Code::MethodNotAllowed))
        }
        "/healthz" => reply::json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" => {
            // The detail (sink errors) on the probe listener, and on the admin listener to
            // whoever the admin API would answer.
            let detail = match role {
                Role::Main => false,
                Role::Probe => true,
                Role::Admin => super::admin::authorize(&app.config.server, &headers, public).is_ok(),
            };
            super::health::readyz(&app, detail).await
        }
        "/metrics" => super::health::metrics(&app),
        p if role == Role::Admin && p.starts_with("/admin/") => {
            super::admin::handle(&app, public, method, p, &headers, body).await
        }
        _ if role != Role::Main => not_found(),
        _ => match app.source_at(&path) {
            None => not_found(),
            Some(source) => {
                let resp = super::pipeline::webhook(&app, &source, method, query, headers, body).await;
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
    reply::error(&ErrorReply::new(Code::NotFound))
}
