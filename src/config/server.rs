//! `[server]`: listeners, limits and deadlines, with defaults applied.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::ServerRaw;
use super::secret::Secret;
use super::units;
use crate::settings::Checker;

/// `[server]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Webhook listener.
    pub listen: SocketAddr,
    /// Admin API listener (`/admin/*`; also the probes unless `probe_listen` is set), if any.
    pub admin_listen: Option<SocketAddr>,
    /// Probe listener (`/healthz`, `/readyz`, `/metrics` only), if any.
    pub probe_listen: Option<SocketAddr>,
    /// Tokens the admin API accepts (any of them: rotation). Empty: none needed (loopback only).
    pub admin_tokens: Vec<Secret>,
    /// Body cap in bytes.
    pub body_limit: u64,
    /// End-to-end request deadline.
    pub request_timeout: Duration,
    /// Per-sink publish deadline.
    pub publish_timeout: Duration,
    /// Header read deadline.
    pub header_read_timeout: Duration,
    /// Drain deadline at shutdown.
    pub shutdown_timeout: Duration,
    /// Default `Retry-After` for 503 answers.
    pub retry_after: Duration,
    /// Concurrent request cap.
    pub max_in_flight: usize,
    /// Cap on requests reading a body not yet verified (body-signed sources).
    pub max_unauthenticated: usize,
    /// Body read deadline.
    pub body_timeout: Duration,
}

pub(super) fn check_server(c: &mut Checker<'_>, present: bool) -> Option<ServerConfig> {
    let raw: ServerRaw = if present {
        c.extract("server")?
    } else {
        ServerRaw::default()
    };
    let listen_text = raw.listen.as_deref().unwrap_or("127.0.0.1:8080");
    let listen = parse_addr(c, "server.listen", listen_text);
    let admin_listen = raw
        .admin_listen
        .as_deref()
        .and_then(|a| parse_addr(c, "server.admin_listen", a));
    let probe_listen = raw
        .probe_listen
        .as_deref()
        .and_then(|a| parse_addr(c, "server.probe_listen", a));
    let admin_tokens = admin_tokens(c, &raw, admin_listen);
    let d = |v: Option<units::HumanDuration>, default: u64| v.map_or(Duration::from_secs(default), |h| h.0);
    let (request_timeout, publish_timeout) = deadlines(c, &raw);
    let body_limit = raw.body_limit.map_or(1 << 20, |b| b.0);
    if body_limit == 0 {
        c.error("server.body_limit", "must be above zero", None);
    }
    let max_in_flight = raw.max_in_flight.unwrap_or(1024);
    if max_in_flight == 0 {
        c.error("server.max_in_flight", "must be above zero", None);
    }
    let max_unauthenticated = raw.max_unauthenticated.unwrap_or((max_in_flight / 4).max(1));
    if max_unauthenticated == 0 {
        c.error("server.max_unauthenticated", "must be above zero", None);
    }
    let body_timeout = d(raw.body_timeout, 5).min(request_timeout);
    if raw
        .body_timeout
        .is_some_and(|b| b.0 > request_timeout || b.0.is_zero())
    {
        c.error(
            "server.body_timeout",
            format!(
                "must be above zero and at most server.request_timeout ({})",
                humantime::format_duration(request_timeout)
            ),
            None,
        );
    }
    Some(ServerConfig {
        listen: listen?,
        admin_listen,
        probe_listen,
        admin_tokens,
        body_limit,
        request_timeout,
        publish_timeout,
        header_read_timeout: d(raw.header_read_timeout, 10),
        shutdown_timeout: d(raw.shutdown_timeout, 30),
        retry_after: d(raw.retry_after, 5),
        max_in_flight,
        max_unauthenticated,
        body_timeout,
    })
}

fn parse_addr(c: &mut Checker<'_>, key: &str, text: &str) -> Option<SocketAddr> {
    match text.parse() {
        Ok(a) => Some(a),
        Err(e) => {
            c.error(
                key,
                format!("invalid address {text:?}: {e}"),
                Some("an IP address and port, e.g. \"127.0.0.1:8080\" or \"[::]:8080\"".into()),
            );
            None
        }
    }
}

/// The admin API's tokens; a non-loopback admin listener must have one.
fn admin_tokens(c: &mut Checker<'_>, raw: &ServerRaw, admin_listen: Option<SocketAddr>) -> Vec<Secret> {
    let admin_tokens = raw
        .admin_token
        .as_ref()
        .map(|refs| c.secrets("server.admin_token", refs))
        .unwrap_or_default()
        .into_iter()
        .map(Secret::new)
        .collect();
    if let Some(addr) = admin_listen.filter(|a| !a.ip().is_loopback()) {
        if raw.admin_token.is_none() {
            c.error(
                "server.admin_token",
                format!("required: server.admin_listen ({addr}) is not a loopback address, and the admin API can re-publish events"),
                Some("set admin_token = { env = \"HOOKBRIDGE_ADMIN_TOKEN\" } (or { file = … }); probes go to server.probe_listen, which needs none".into()),
            );
        }
    }
    admin_tokens
}

/// `request_timeout` and `publish_timeout`: the publish deadline leaves time to answer.
fn deadlines(c: &mut Checker<'_>, raw: &ServerRaw) -> (Duration, Duration) {
    let d = |v: Option<units::HumanDuration>, default: u64| v.map_or(Duration::from_secs(default), |h| h.0);
    let request_timeout = d(raw.request_timeout, 10);
    let publish_timeout = d(raw.publish_timeout, 5);
    if publish_timeout < Duration::from_millis(100) {
        c.error(
            "server.publish_timeout",
            "must be at least 100ms (sink timeouts are fitted under it)",
            None,
        );
    }
    if publish_timeout >= request_timeout {
        c.error(
            "server.publish_timeout",
            format!(
                "must be shorter than server.request_timeout ({})",
                humantime::format_duration(request_timeout)
            ),
            Some("the answer must leave time to report a failed publish".into()),
        );
    }
    (request_timeout, publish_timeout)
}
