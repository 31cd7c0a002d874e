//! Admin endpoints, served only on `server.admin_listen` (they can re-publish events, so they
//! never share the webhook listener nor the probe listener). Every request needs
//! `Authorization: Bearer <server.admin_token>`; without a token configured (allowed on a
//! loopback address only) the `Host` must be a loopback name, so a web page that rebinds its
//! DNS name to 127.0.0.1 cannot drive the API from a browser on the host. Mutations need a
//! JSON body (`Content-Type: application/json`), which a cross-site form cannot send.
//!
//! - `GET /admin/spool`: the spool's state (pending, per-sink backlog, retained, parked);
//! - `GET /admin/parked`: the dead letters parked in the spool, with reasons;
//! - `POST /admin/replay`: re-publish retained events (or parked ones) selected by a JSON
//!   [`ReplayFilter`]; `"dry_run": true` only lists them;
//! - `POST /admin/discard`: delete the parked dead letters the same filter selects.

use bytes::Buf;
use futures_util::Stream;
use http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use warp::reply::Response;

use super::body::read_capped;
use super::reply::{self, ErrorReply};
use crate::app::App;
use crate::code::Code;
use crate::deliver::spool::replay::{check_filter, discard_answer, replay_answer};
use crate::deliver::spool::{ReplayFilter, Spool};

/// Handles `/admin/*`.
pub async fn handle<S, B>(
    app: &App,
    public: bool,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    body: S,
) -> Response
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let expected = if matches!(path, "/admin/replay" | "/admin/discard") {
        Method::POST
    } else {
        Method::GET
    };
    if !matches!(
        path,
        "/admin/replay" | "/admin/discard" | "/admin/spool" | "/admin/parked"
    ) {
        return reply::error(&ErrorReply::new(Code::NotFound));
    }
    if method != expected {
        let mut e = ErrorReply::new(Code::MethodNotAllowed);
        e.allow = if expected == Method::POST { "POST" } else { "GET" };
        return reply::error(&e);
    }
    if let Err(e) = authorize(&app.config.server, headers, public) {
        tracing::warn!(path, code = %e.code, "admin request refused");
        let mut resp = reply::error(&e);
        if e.status() == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer"),
            );
        }
        return resp;
    }
    if method == Method::POST && !is_json(headers) {
        return reply::error(
            &ErrorReply::new(Code::UnsupportedMediaType)
                .message("the admin API takes Content-Type: application/json"),
        );
    }
    let Some(spool) = &app.spool else {
        return reply::error(
            &ErrorReply::new(Code::NoSpool)
                .message("no source uses delivery = \"spool\": nothing is retained"),
        );
    };
    match path {
        "/admin/spool" => reply::json_response(StatusCode::OK, &super::health::spool_state(spool)),
        "/admin/parked" => parked(app, spool).await,
        _ => {
            let bytes = match read_capped(headers, body, 64 << 10).await {
                Ok(b) => b,
                Err(e) => return reply::error(&e),
            };
            let filter: ReplayFilter = match serde_json::from_slice(&bytes) {
                Ok(f) => f,
                Err(e) => return reply::error(&ErrorReply::malformed(format!("{path} request: {e}"))),
            };
            if path == "/admin/discard" {
                discard(app, spool, &filter).await
            } else {
                replay(app, spool, &filter).await
            }
        }
    }
}

/// `GET /admin/parked`: the parked dead letters with their reasons.
async fn parked(app: &App, spool: &Spool) -> Response {
    match spool.list_parked().await {
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
        Err(e) => spool_error(app, &e.to_string()),
    }
}

/// Checks the admin credential (see the module documentation). `public`: the listener is bound
/// to a non-loopback address, where no token means no access (a reload may have removed the
/// token, but cannot move the listener).
pub fn authorize(
    server: &crate::config::ServerConfig,
    headers: &HeaderMap,
    public: bool,
) -> Result<(), ErrorReply> {
    use crate::verify::VerifyError;
    if server.admin_tokens.is_empty() && public {
        return Err(ErrorReply::new(Code::AdminTokenRequired)
            .message("this listener is not on a loopback address and server.admin_token is not set"));
    }
    if server.admin_tokens.is_empty() {
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        return if loopback_host(host) {
            Ok(())
        } else {
            Err(ErrorReply::new(Code::ForbiddenHost)
                .message("without server.admin_token the admin API answers loopback Host names only"))
        };
    }
    crate::verify::token::verify(headers, "authorization", &server.admin_tokens).map_err(|e| {
        ErrorReply::new(match e {
            VerifyError::MissingToken => Code::MissingToken,
            _ => Code::BadToken,
        })
    })
}

/// Whether a `Host` header names this machine's loopback interface (`localhost`, `127.x`,
/// `[::1]`, with or without a port).
fn loopback_host(host: &str) -> bool {
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    let name = authority.host();
    name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn discard(app: &App, spool: &Spool, filter: &ReplayFilter) -> Response {
    // A parked event's sink may have been removed from the configuration: any name goes.
    let parked = ReplayFilter {
        parked: true,
        ..filter.clone()
    };
    if let Err((field, message)) = check_filter(&app.config, &parked) {
        return reply::error(&ErrorReply::malformed(message).field(Some(field.to_owned())));
    }
    // Deleting every parked event takes saying so.
    if !filter.dry_run && !filter.all && !filter.selects_something() {
        return reply::error(
            &ErrorReply::malformed(
                "name what to discard (since, until, source, type, sink) or set \"all\": true",
            )
            .field(Some("all".to_owned())),
        );
    }
    match spool.discard(filter).await {
        Ok(items) => {
            tracing::info!(count = items.len(), dry_run = filter.dry_run, "discard");
            reply::json_response(StatusCode::OK, &discard_answer(&items, filter.dry_run))
        }
        Err(e) => spool_error(app, &e.to_string()),
    }
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
            &ErrorReply::unavailable(Code::Overloaded, app.config.server.retry_after).message(format!(
                "the spool filled up while replaying ({m}); some events were re-queued"
            )),
        ),
        Err(e) => spool_error(app, &e.to_string()),
    }
}

/// The spool could not be read or written: transient (a full or failing disk), so 503 with
/// `Retry-After`, as a webhook sender would get.
fn spool_error(app: &App, message: &str) -> Response {
    reply::error(
        &ErrorReply::unavailable(Code::SpoolUnavailable, app.config.server.retry_after)
            .message(message.to_owned()),
    )
}
