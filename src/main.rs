//! The `hookbridge` command line: `serve`, `check`, `routes`, `send`, `healthcheck`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hookbridge::config::{self, Config};

/// Receive webhooks, verify them, normalise them to CloudEvents and publish them to brokers.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default). Without a configuration, a built-in one accepts CloudEvents
    /// on 127.0.0.1:8080/events and appends them to ./hookbridge-events.jsonl.
    Serve {
        /// Configuration file (TOML). Environment overrides: HOOKBRIDGE_<KEY>__<KEY>.
        /// SIGHUP reloads it; a broken new configuration is rejected and the old one kept.
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: Option<PathBuf>,
        /// Also reload when the configuration file changes.
        #[arg(long)]
        watch: bool,
    },
    /// Parse and validate a configuration; print every error and exit non-zero if any.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Show which routes match an event type and which sinks it would reach.
    Routes {
        /// Configuration file (TOML).
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: PathBuf,
        /// Event type, e.g. it.fattureincloud.webhooks.entities.clients.create.
        #[arg(long = "type", short)]
        ty: String,
        /// Only this source (default: every source).
        #[arg(long, short)]
        source: Option<String>,
    },
    /// Send a request that the source's verifier accepts, and print the answer.
    Send {
        /// Configuration file (TOML); its secrets sign the request.
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: PathBuf,
        /// Source name.
        #[arg(long, short)]
        source: String,
        /// Event type (a per-kind default when absent).
        #[arg(long = "type", short)]
        ty: Option<String>,
        /// Body from a file, or `-` for stdin (a per-kind default when absent).
        #[arg(long, short)]
        data: Option<PathBuf>,
        /// Target URL (default: http://<server.listen><source path>).
        #[arg(long, short)]
        url: Option<String>,
        /// Signing key for token sources: PEM EC private key for Fatture in Cloud (a test key),
        /// or for `jwt` sources the PEM private key (HS*: the shared secret).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Fatture in Cloud company id for the subject (default 1).
        #[arg(long)]
        company: Option<String>,
    },
    /// Re-publish events the spool retained (or parked dead letters), through the running
    /// server's admin endpoint (server.admin_listen) or, when it is stopped, the spool itself.
    Replay {
        #[command(flatten)]
        select: Selection,
        /// Replay the dead letters parked in the spool (each to the sink it failed on); without
        /// it, --since is required.
        #[arg(long)]
        parked: bool,
        /// Re-queue to this sink instead (e.g. events parked for a sink that was removed or
        /// renamed: reason `sink_removed`).
        #[arg(long)]
        to: Option<String>,
    },
    /// Delete dead letters parked in the spool (selected like `replay --parked`), through the
    /// running server's admin endpoint or, when it is stopped, the spool itself.
    Discard {
        #[command(flatten)]
        select: Selection,
        /// Every parked event (without a selector or this, nothing is deleted).
        #[arg(long)]
        all: bool,
    },
    /// Fatture in Cloud tools.
    Fic {
        #[command(subcommand)]
        command: FicCommand,
    },
    /// Exit 0 if the URL answers 2xx within 3 s (container health checks without curl).
    Healthcheck {
        /// URL to probe.
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

#[derive(Subcommand)]
enum FicCommand {
    /// Manage the webhook subscriptions of a company (API token and company from env or flags).
    Subscriptions {
        #[command(subcommand)]
        action: SubAction,
        /// FIC API base URL. Default: the source's `api.base_url`, else FIC's.
        #[arg(long, global = true, env = "FIC_API_URL")]
        api_url: Option<String>,
        /// OAuth access token. Default: the source's `api.token`.
        #[arg(long, global = true, env = "FIC_ACCESS_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Company id. Default: the source's `api.company_id`.
        #[arg(long, global = true, env = "FIC_COMPANY_ID")]
        company: Option<String>,
        /// Configuration file (for the source's public_url, routes and verification method).
        #[arg(long, short, global = true, env = "HOOKBRIDGE_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SubAction {
    /// List subscriptions.
    List,
    /// Show one subscription.
    Show {
        /// Subscription id (e.g. SUB123).
        id: String,
    },
    /// Create the subscription for a source (types from its routes) and wait until verified.
    Create {
        /// Source name.
        #[arg(long)]
        source: String,
        /// How long to wait for verification.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Update a subscription's sink and types from a source's current configuration.
    Update {
        /// Subscription id.
        id: String,
        /// Source name.
        #[arg(long)]
        source: String,
    },
    /// Re-run verification, sending the source's verification method again, and wait.
    Verify {
        /// Subscription id.
        id: String,
        /// Source name.
        #[arg(long)]
        source: String,
        /// How long to wait for verification.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: std::time::Duration,
    },
    /// Delete a subscription.
    Delete {
        /// Subscription id.
        id: String,
    },
}

fn fic(command: FicCommand) -> anyhow::Result<ExitCode> {
    use hookbridge::cli::fic::Action;
    let FicCommand::Subscriptions {
        action,
        api_url,
        token,
        company,
        config,
        json,
    } = command;
    let needs_config = matches!(
        action,
        SubAction::Create { .. } | SubAction::Update { .. } | SubAction::Verify { .. }
    );
    let config = match (config, needs_config) {
        (Some(p), _) => Some(config::load(Some(&p)).map_err(|e| anyhow::anyhow!("{e}"))?),
        (None, true) => anyhow::bail!("this action reads the source from the configuration: pass --config"),
        (None, false) => None,
    };
    let config = match config {
        Some(c) => c,
        None => config::load(None).map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let action = match action {
        SubAction::List => Action::List,
        SubAction::Show { id } => Action::Show { id },
        SubAction::Create { source, wait } => Action::Create { source, wait },
        SubAction::Update { id, source } => Action::Update { id, source },
        SubAction::Verify { id, source, wait } => Action::Verify { id, source, wait },
        SubAction::Delete { id } => Action::Delete { id },
    };
    let source = match &action {
        Action::Create { source, .. } | Action::Update { source, .. } | Action::Verify { source, .. } => {
            Some(source.as_str())
        }
        Action::List | Action::Show { .. } | Action::Delete { .. } => None,
    };
    let (api_url, token, company) =
        hookbridge::cli::fic::credentials(&config, source, api_url, token, company)
            .map_err(|e| anyhow::anyhow!(e))?;
    let api = hookbridge::sources::fic::api::Api::new(api_url, token, company);
    let runtime = tokio::runtime::Runtime::new().context("runtime")?;
    match runtime.block_on(hookbridge::cli::fic::run(&config, &api, action, json)) {
        Ok(outcome) => {
            print!("{}", outcome.output);
            if json {
                println!();
            }
            Ok(if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(e) => anyhow::bail!(e),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve {
        config: None,
        watch: false,
    }) {
        Command::Check { config } => check(&config),
        Command::Routes { config, ty, source } => routes(&config, &ty, source.as_deref()),
        Command::Send {
            config,
            source,
            ty,
            data,
            url,
            key,
            company,
        } => match send(&config, &source, ty, data, url, key, company) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("hookbridge send: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Healthcheck { url } => healthcheck(&url),
        Command::Replay { select, parked, to } => {
            if select.since.is_none() && !parked {
                eprintln!("hookbridge replay: --since is required (unless --parked)");
                return ExitCode::from(2);
            }
            spool_command(select, parked, false, to, hookbridge::cli::replay::Action::Replay)
        }
        Command::Discard { select, all } => {
            spool_command(select, true, all, None, hookbridge::cli::replay::Action::Discard)
        }
        Command::Fic { command } => match fic(command) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("hookbridge fic: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config, watch } => match serve(config, watch) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hookbridge: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match config::load(Some(path)) {
        Ok(c) => {
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "{}: OK ({} source(s), {} sink(s))",
                path.display(),
                c.sources.len(),
                c.sinks.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::FAILURE
        }
    }
}

fn routes(path: &std::path::Path, ty: &str, source: Option<&str>) -> ExitCode {
    let config = match config::load(Some(path)) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    match hookbridge::cli::routes::explain(&config, ty, source) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hookbridge routes: {e}");
            ExitCode::FAILURE
        }
    }
}

fn send(
    path: &std::path::Path,
    source: &str,
    ty: Option<String>,
    data: Option<PathBuf>,
    url: Option<String>,
    key: Option<PathBuf>,
    company: Option<String>,
) -> anyhow::Result<ExitCode> {
    use std::io::Read as _;
    let config = config::load(Some(path)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let data = match data {
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("reading stdin")?;
            Some(buf)
        }
        Some(p) => Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let key_pem = key
        .map(|k| std::fs::read(&k).with_context(|| format!("reading {}", k.display())))
        .transpose()?;
    let opts = hookbridge::cli::send::Options {
        ty,
        data,
        url,
        key_pem,
        company,
        now: None,
        id: None,
    };
    let request = hookbridge::cli::send::build(&config, source, &opts).map_err(|e| anyhow::anyhow!(e))?;
    let runtime = tokio::runtime::Runtime::new().context("runtime")?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let mut rb = client.post(&request.url).body(request.body.clone());
        for (k, v) in &request.headers {
            rb = rb.header(k, v);
        }
        let resp = rb.send().await.with_context(|| format!("POST {}", request.url))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        println!("POST {} -> {}", request.url, status.as_u16());
        println!("{body}");
        Ok(if status.is_success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}

/// What `replay` and `discard` select.
#[derive(clap::Args, Debug)]
struct Selection {
    /// Configuration file (TOML).
    #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
    config: PathBuf,
    /// Received at or after: RFC 3339 time, or a duration ago (`2h`).
    #[arg(long)]
    since: Option<String>,
    /// Received before: RFC 3339 time, or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// Only events from this source.
    #[arg(long, short)]
    source: Option<String>,
    /// Only types matching this pattern (`*` one segment, `**` the rest).
    #[arg(long = "type", short)]
    ty: Option<String>,
    /// Only this sink (replay: default every sink each event went to; discard: the sink each
    /// event was parked for).
    #[arg(long)]
    sink: Option<String>,
    /// List what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the JSON answer.
    #[arg(long)]
    json: bool,
}

/// `replay` or `discard`: runs it and prints the answer.
fn spool_command(
    select: Selection,
    parked: bool,
    all: bool,
    to: Option<String>,
    action: hookbridge::cli::replay::Action,
) -> ExitCode {
    let name = match action {
        hookbridge::cli::replay::Action::Replay => "replay",
        hookbridge::cli::replay::Action::Discard => "discard",
    };
    let now = time::OffsetDateTime::now_utc();
    let parse = |t: Option<String>| {
        t.map(|t| hookbridge::cli::replay::parse_time(&t, now))
            .transpose()
    };
    let (since, until) = match (parse(select.since), parse(select.until)) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("hookbridge {name}: {e}");
            return ExitCode::from(2);
        }
    };
    let filter = hookbridge::deliver::spool::ReplayFilter {
        since,
        until,
        source: select.source,
        ty: select.ty,
        sink: select.sink,
        parked,
        to,
        dry_run: select.dry_run,
        all,
    };
    let (path, json) = (select.config, select.json);
    let run = || -> anyhow::Result<()> {
        let config = config::load(Some(&path)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let runtime = tokio::runtime::Runtime::new()?;
        let answer = runtime
            .block_on(hookbridge::cli::replay::run_action(&config, &filter, action))
            .map_err(|e| anyhow::anyhow!(e))?;
        if json {
            println!("{answer}");
        } else {
            print!("{}", hookbridge::cli::replay::describe(&answer));
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookbridge {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck(url: &str) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Runtime::new() else {
        return ExitCode::FAILURE;
    };
    let ok = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(3))
            .build()
            .ok()?;
        let resp = client.get(url).send().await.ok()?;
        Some(resp.status().is_success())
    });
    if ok == Some(true) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Logs go to stderr from a thread of their own, in batches; the guard flushes them when dropped.
///
/// At the default `info` level every event logs a line. Written to stderr by the request itself,
/// that line cost ~4 CPU-µs per event (a quarter of a blackhole request, BENCHMARKS.md), one
/// `write` each, and a slow reader of stderr (a container runtime's pipe) stalled the runtime
/// thread. Lossless: when the queue (128k lines) is full, logging waits, as a direct write did.
fn init_logging() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_env("HOOKBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HOOKBRIDGE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("hookbridge-log")
        .finish(std::io::BufWriter::new(std::io::stderr()));
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    let fmt: Box<dyn Layer<_> + Send + Sync> = if json { Box::new(fmt.json()) } else { Box::new(fmt) };
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    // `set_global_default`, not `init()`: with tracing-subscriber's `tracing-log` feature (which
    // the `otlp` feature turns on, through tracing-opentelemetry) `init()` also installs a
    // `log` bridge at TRACE, so every `log::trace!` of the broker clients' dependencies built a
    // record only for the filter to drop it: ~10 CPU-µs per RabbitMQ event (BENCHMARKS.md).
    #[cfg(feature = "otlp")]
    {
        match otlp_layer() {
            Ok(Some(layer)) => {
                let _ = tracing::subscriber::set_global_default(registry.with(layer));
                return guard;
            }
            Ok(None) => {}
            Err(e) => eprintln!("hookbridge: OTLP export disabled: {e}"),
        }
    }
    let _ = tracing::subscriber::set_global_default(registry);
    guard
}

/// The OTLP provider, flushed at exit.
#[cfg(feature = "otlp")]
static OTLP: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = std::sync::OnceLock::new();

/// An OpenTelemetry layer exporting spans over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
#[cfg(feature = "otlp")]
fn otlp_layer<S>() -> anyhow::Result<Option<impl tracing_subscriber::Layer<S>>>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use opentelemetry::trace::TracerProvider as _;
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().build()?;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name("hookbridge")
                .build(),
        )
        .build();
    let tracer = provider.tracer("hookbridge");
    let _ = OTLP.set(provider.clone());
    opentelemetry::global::set_tracer_provider(provider);
    Ok(Some(tracing_opentelemetry::layer().with_tracer(tracer)))
}

fn serve(path: Option<PathBuf>, watch: bool) -> anyhow::Result<()> {
    let _logs = init_logging();
    let config = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(errors) => anyhow::bail!("{errors}"),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let result = runtime.block_on(run(config, path, watch));
    #[cfg(feature = "otlp")]
    if let Some(p) = OTLP.get() {
        // Export the spans still batched before exiting.
        let _ = p.shutdown();
    }
    result
}

async fn run(config: Config, path: Option<PathBuf>, watch: bool) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let builtin = config.origin == "built-in default";
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().context("listener address")?;
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
    if config.server.admin_listen.is_some() && config.server.admin_tokens.is_empty() {
        tracing::warn!("the admin API takes no token (server.admin_token is not set): anything on this host can replay events");
    }
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    for s in &config.sources {
        if s.verifier.kind() == "none" {
            tracing::warn!(source = %s.name, "source accepts unauthenticated requests (verify.kind = \"none\")");
        }
    }
    tracing::info!(listen = %local, config = %config.origin, "hookbridge listening");
    if builtin {
        print_quickstart(local);
    }
    let app = hookbridge::app::App::build(config).context("cannot build the sinks")?;
    {
        // Starts lazy broker connections and reports them; never blocks serving.
        let app = app.clone();
        tokio::spawn(async move { app.log_sink_health().await });
    }
    let live = hookbridge::ingress::Live::new(app);
    if let Some(path) = path {
        tokio::spawn(reload_loop(live.clone(), path, watch));
    }
    let listeners = hookbridge::ingress::Listeners {
        main: listener,
        admin,
        probe,
    };
    hookbridge::ingress::serve_live(live, listeners, shutdown_signal()).await;
    Ok(())
}

/// Binds an optional listener (`key` names it in errors).
async fn bind_extra(
    addr: Option<std::net::SocketAddr>,
    key: &str,
    what: &str,
) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let l = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({key})"))?;
    tracing::info!(listen = %l.local_addr().context("listener address")?, "{what}");
    Ok(Some(l))
}

/// Reloads on SIGHUP (and on file changes with `--watch`).
async fn reload_loop(live: std::sync::Arc<hookbridge::ingress::Live>, path: PathBuf, watch: bool) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP");
            None
        }
    };
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
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
            () = hup_fired => tracing::info!("SIGHUP: reloading the configuration"),
            () = tokio::time::sleep(std::time::Duration::from_secs(2)), if watch => {
                let now = modified(&path);
                if now == last {
                    continue;
                }
                last = now;
                tracing::info!("configuration file changed: reloading");
            }
        }
        match config::load(Some(&path)) {
            Err(errors) => {
                tracing::error!(errors = %errors, "reload rejected: the running configuration stays");
            }
            Ok(config) => match live.reload(config).await {
                Ok(()) => tracing::info!("configuration reloaded"),
                Err(e) => tracing::error!(error = %e, "reload rejected: the running configuration stays"),
            },
        }
    }
}

fn print_quickstart(addr: std::net::SocketAddr) {
    println!(
        "hookbridge is running with its built-in configuration: CloudEvents on http://{addr}/events \
         are appended to ./hookbridge-events.jsonl.\nTry:\n\n  curl -i http://{addr}/events \\\n    \
         -H 'ce-specversion: 1.0' -H 'ce-id: hello-1' -H 'ce-source: urn:example' \\\n    \
         -H 'ce-type: com.example.hello' -H 'content-type: application/json' \\\n    \
         -d '{{\"hello\":\"world\"}}'\n\n  tail -n1 hookbridge-events.jsonl\n"
    );
}

async fn shutdown_signal() {
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
