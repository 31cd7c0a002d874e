//! The `hookbridge` command line: `serve` and `check`.

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
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Parse and validate a configuration; print every error and exit non-zero if any.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short, env = "HOOKBRIDGE_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Check { config } => check(&config),
        Command::Serve { config } => match serve(config) {
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

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("HOOKBRIDGE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("HOOKBRIDGE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn serve(path: Option<PathBuf>) -> anyhow::Result<()> {
    init_logging();
    let config = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(errors) => anyhow::bail!("{errors}"),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.server.listen;
    let builtin = config.origin == "built-in default";
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().context("listener address")?;
    let admin = match config.server.admin_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (server.admin_listen)"))?;
            tracing::info!(listen = %l.local_addr().context("admin address")?, "admin endpoints listening");
            Some(l)
        }
        None => None,
    };
    for s in &config.sources {
        if matches!(s.verifier, hookbridge::verify::VerifierConfig::None) {
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
    hookbridge::ingress::serve_with_admin(app, listener, admin, shutdown_signal()).await;
    Ok(())
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
