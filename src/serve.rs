//! `hookbridge serve`: binds the listeners, builds the sinks, serves until the shutdown future
//! resolves (then drains, see [`crate::ingress`]), and reloads the configuration on SIGHUP (and
//! on file changes with `--watch`). The binary passes [`shutdown_signal`]; a test passes its
//! own future.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{self, Config};
use crate::ingress::{Listeners, Live};

/// The target of these log lines: the one they had when the binary wrote them.
const TARGET: &str = "hookbridge";

/// Serves `config` until `shutdown` resolves, then drains. `path` (the file `config` came
/// from) is reloaded on SIGHUP, and with `watch` when it changes; `None`: no reloads.
pub async fn run(
    config: Config,
    path: Option<PathBuf>,
    watch: bool,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (listeners, local) = bind(&config).await?;
    announce(&config, local);
    let app = crate::app::App::build(config).context("cannot build the sinks")?;
    {
        // Starts lazy broker connections and reports them; never blocks serving.
        let app = app.clone();
        tokio::spawn(async move { app.log_sink_health().await });
    }
    let live = Live::new(app);
    let reloads = path.map(|path| tokio::spawn(reload_loop(live.clone(), path, watch)));
    crate::ingress::serve_live(live, listeners, shutdown).await;
    if let Some(reloads) = reloads {
        // Served and drained: nothing is left to reload (the binary exits next anyway).
        reloads.abort();
    }
    Ok(())
}

/// Binds the main listener and the optional admin and probe ones; returns them with the main
/// listener's address.
async fn bind(config: &Config) -> anyhow::Result<(Listeners, SocketAddr)> {
    let listen = config.server.listen;
    let main = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = main.local_addr().context("listener address")?;
    let admin = bind_extra(
        config.server.admin_listen,
        "server.admin_listen",
        "admin API listening",
    )
    .await?;
    let probe = bind_extra(
        config.server.probe_listen,
        "server.probe_listen",
        "probes listening",
    )
    .await?;
    Ok((Listeners { main, admin, probe }, local))
}

/// Binds an optional listener (`key` names it in errors).
async fn bind_extra(
    addr: Option<SocketAddr>,
    key: &str,
    what: &str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({key})"))?;
    tracing::info!(target: TARGET, listen = %l.local_addr().context("listener address")?, "{what}");
    Ok(Some(l))
}

/// Logs the configuration's warnings and the listening address; with the built-in
/// configuration, prints how to try it.
fn announce(config: &Config, local: SocketAddr) {
    if config.server.admin_listen.is_some() && config.server.admin_tokens.is_empty() {
        tracing::warn!(target: TARGET, "the admin API takes no token (server.admin_token is not set): anything on this host can replay events");
    }
    for w in &config.warnings {
        tracing::warn!(target: TARGET, "{w}");
    }
    for s in &config.sources {
        if s.verifier.kind() == "none" {
            tracing::warn!(target: TARGET, source = %s.name, "source accepts unauthenticated requests (verify.kind = \"none\")");
        }
    }
    tracing::info!(target: TARGET, listen = %local, config = %config.origin, "hookbridge listening");
    if config.origin == "built-in default" {
        print_quickstart(local);
    }
}

/// Reloads on SIGHUP (and on file changes with `--watch`).
async fn reload_loop(live: Arc<Live>, path: PathBuf, watch: bool) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(target: TARGET, error = %e, "cannot listen for SIGHUP");
            None
        }
    };
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut last = modified(&path);
    loop {
        let hup_fired = async {
            #[cfg(unix)]
            if let Some(h) = hup.as_mut() {
                h.recv().await;
                return;
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = hup_fired => tracing::info!(target: TARGET, "SIGHUP: reloading the configuration"),
            () = tokio::time::sleep(std::time::Duration::from_secs(2)), if watch => {
                let now = modified(&path);
                if now == last {
                    continue;
                }
                last = now;
                tracing::info!(target: TARGET, "configuration file changed: reloading");
            }
        }
        reload(&live, &path).await;
    }
}

/// Loads `path` and swaps it in; a broken configuration is logged and the running one stays.
async fn reload(live: &Live, path: &Path) {
    match config::load(Some(path)) {
        Err(errors) => {
            tracing::error!(target: TARGET, errors = %errors, "reload rejected: the running configuration stays");
        }
        Ok(config) => match live.reload(config).await {
            Ok(()) => tracing::info!(target: TARGET, "configuration reloaded"),
            Err(e) => {
                tracing::error!(target: TARGET, error = %e, "reload rejected: the running configuration stays")
            }
        },
    }
}

fn print_quickstart(addr: SocketAddr) {
    println!(
        "hookbridge is running with its built-in configuration: CloudEvents on http://{addr}/events \
         are appended to ./hookbridge-events.jsonl.\nTry:\n\n  curl -i http://{addr}/events \\\n    \
         -H 'ce-specversion: 1.0' -H 'ce-id: hello-1' -H 'ce-source: urn:example' \\\n    \
         -H 'ce-type: com.example.hello' -H 'content-type: application/json' \\\n    \
         -d '{{\"hello\":\"world\"}}'\n\n  tail -n1 hookbridge-events.jsonl\n"
    );
}

/// Resolves on ctrl-c or SIGTERM: the binary's shutdown.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
