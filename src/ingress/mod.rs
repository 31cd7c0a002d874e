//! The HTTP ingress: one warp filter dispatching by path to the configured sources, served
//! through hyper-util so we control header-read timeouts and graceful shutdown.
//!
//! Shutdown: once the signal fires, new webhook requests are answered 503 `shutting_down`
//! (with `Connection: close`) while in-flight ones finish, up to `shutdown_timeout`; then the
//! listener closes, open connections are closed, and sinks are flushed.

pub mod admin;
mod body;
pub mod handler;
mod health;
#[cfg(feature = "otlp")]
pub mod otel;
mod pipeline;
pub mod reply;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use warp::Filter;

use crate::app::App;
pub use crate::app::Live;

pub use handler::{Listener, Role};

/// The warp filter for `listener`.
pub fn routes(
    live: Arc<Live>,
    listener: Listener,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    warp::any()
        // Each request takes the configuration current when it arrives and keeps it to the end,
        // so a reload never changes a request half-way.
        .map(move || live.get())
        .and(warp::method())
        .and(warp::path::full())
        // The raw query string (the FIC challenge may arrive there); absent → empty.
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::stream())
        .then(
            move |app: Arc<App>,
                  method: Method,
                  path: warp::path::FullPath,
                  query: String,
                  headers: HeaderMap,
                  body| {
                let query = (!query.is_empty()).then_some(query);
                handler::handle(
                    app,
                    listener,
                    method,
                    path.as_str().to_owned(),
                    query,
                    headers,
                    body,
                )
            },
        )
        .recover(|_rejection: warp::Rejection| async {
            // Nothing above rejects; keep a JSON answer anyway rather than warp's text default.
            Ok::<_, std::convert::Infallible>(reply::error(&reply::ErrorReply::new(
                crate::code::Code::NotFound,
            )))
        })
        .unify()
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains and returns.
pub async fn serve(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    serve_with_admin(app, listener, None, shutdown).await;
}

/// Like [`serve`], with the admin API (and the probes) on a separate `admin` listener when given.
pub async fn serve_with_admin(
    app: Arc<App>,
    listener: TcpListener,
    admin: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) {
    let listeners = Listeners {
        main: listener,
        admin,
        probe: None,
    };
    serve_live(Live::new(app), listeners, shutdown).await;
}

/// The listeners hookbridge serves: webhooks, and optionally the admin API and the probes.
pub struct Listeners {
    /// `server.listen`: webhooks.
    pub main: TcpListener,
    /// `server.admin_listen`: `/admin/*` (and the probes unless `probe` is given).
    pub admin: Option<TcpListener>,
    /// `server.probe_listen`: `/healthz`, `/readyz`, `/metrics`.
    pub probe: Option<TcpListener>,
}

async fn accept(
    listener: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves whatever configuration `live` holds (see [`Live::reload`]) until `shutdown` resolves.
pub async fn serve_live(live: Arc<Live>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let Listeners {
        main: listener,
        admin,
        probe,
    } = listeners;
    live.get().start_forwarders();
    // The probes are served by the probe listener, else the admin listener, else the main one.
    let public = |l: &Option<TcpListener>| {
        l.as_ref()
            .and_then(|l| l.local_addr().ok())
            .is_some_and(|a| !a.ip().is_loopback())
    };
    let listener_of = |role, probes, public| Listener { role, probes, public };
    let main_service = warp::service(routes(
        live.clone(),
        listener_of(Role::Main, admin.is_none() && probe.is_none(), false),
    ));
    let admin_service = warp::service(routes(
        live.clone(),
        listener_of(Role::Admin, probe.is_none(), public(&admin)),
    ));
    let probe_service = warp::service(routes(
        live.clone(),
        listener_of(Role::Probe, true, public(&probe)),
    ));
    let graceful = GracefulShutdown::new();
    let header_read_timeout = live.get().config.server.header_read_timeout;
    let mut drain = std::pin::pin!(drain_on(&live, shutdown));
    loop {
        // Every listener keeps accepting while draining: new webhook requests get a clear 503
        // `shutting_down` instead of a refused connection, and probes still see /readyz.
        let (accepted, role) = tokio::select! {
            biased;
            () = &mut drain => break,
            a = listener.accept() => (a, Role::Main),
            a = accept(&admin) => (a, Role::Admin),
            a = accept(&probe) => (a, Role::Probe),
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let io = TokioIo::new(stream);
        let service = match role {
            Role::Main => main_service.clone(),
            Role::Admin => admin_service.clone(),
            Role::Probe => probe_service.clone(),
        };
        let conn = tokio::spawn(watch(
            &graceful,
            builder.serve_connection(io, TowerToHyperService::new(service)),
            peer,
        ));
        drop(conn);
    }
    drop(listener);
    drop(admin);
    drop(probe);
    stop(&live, graceful).await;
}

/// Waits for `shutdown`, then refuses new events (503 `shutting_down`) and waits for the
/// in-flight requests, at most `shutdown_timeout`.
async fn drain_on(live: &Live, shutdown: impl Future<Output = ()>) {
    shutdown.await;
    tracing::info!("shutdown requested: refusing new events, draining in-flight requests");
    let app = live.get();
    app.begin_shutdown();
    let timeout = app.config.server.shutdown_timeout;
    if !app.drain(timeout).await {
        tracing::warn!(?timeout, "in-flight requests did not finish in time");
    }
}

/// After the listeners closed: idle keep-alive connections get a moment, then the forwarders
/// and sinks stop and the dedup store is flushed.
async fn stop(live: &Live, graceful: GracefulShutdown) {
    // In-flight requests are done (or timed out); give idle keep-alive connections a moment.
    if tokio::time::timeout(Duration::from_secs(2), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("some connections were still open at exit");
    }
    let app = live.get();
    app.stop_forwarders().await;
    app.shutdown_sinks().await;
    if let Some(dedup) = app.deliverer.dedup() {
        dedup.flush();
    }
    tracing::info!("stopped");
}

fn watch<C>(
    graceful: &GracefulShutdown,
    conn: C,
    peer: std::net::SocketAddr,
) -> impl Future<Output = ()> + Send + 'static
where
    C: hyper_util::server::graceful::GracefulConnection + Send + 'static,
    C::Error: std::fmt::Display,
{
    let conn = graceful.watch(conn);
    async move {
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}
