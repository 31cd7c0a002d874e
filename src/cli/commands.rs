//! The subcommand bodies the binary calls: each loads the configuration, runs its part of the
//! library, prints the answer and returns the exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::args::{FicCommand, SubAction};
use crate::config;

/// `hookbridge serve`: logs, the configuration, then the server until SIGTERM or ctrl-c.
pub fn serve(path: Option<PathBuf>, watch: bool) -> ExitCode {
    match serve_until_signal(path, watch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookbridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_until_signal(path: Option<PathBuf>, watch: bool) -> anyhow::Result<()> {
    let _logs = crate::telemetry::init();
    let config = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(errors) => anyhow::bail!("{errors}"),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let shutdown = crate::serve::shutdown_signal();
    let result = runtime.block_on(crate::serve::run(config, path, watch, shutdown));
    crate::telemetry::shutdown();
    result
}

/// `hookbridge check`: every error of a configuration, or OK with its counts.
pub fn check(path: &Path) -> ExitCode {
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

/// `hookbridge routes`: which routes match an event type and which sinks it would reach.
pub fn routes(path: &Path, ty: &str, source: Option<&str>) -> ExitCode {
    let config = match config::load(Some(path)) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    match super::routes::explain(&config, ty, source) {
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

/// `hookbridge send`: builds the request the source's verifier accepts, posts it and prints
/// the answer; exit 0 on a 2xx.
pub fn send(
    path: &Path,
    source: &str,
    ty: Option<String>,
    data: Option<PathBuf>,
    url: Option<String>,
    key: Option<PathBuf>,
    company: Option<String>,
) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        let config = config::load(Some(path)).map_err(|e| anyhow::anyhow!("{e}"))?;
        let opts = super::send::Options {
            ty,
            data: read_data(data)?,
            url,
            key_pem: key
                .map(|k| std::fs::read(&k).with_context(|| format!("reading {}", k.display())))
                .transpose()?,
            company,
            now: None,
            id: None,
        };
        let request = super::send::build(&config, source, &opts).map_err(|e| anyhow::anyhow!(e))?;
        let runtime = tokio::runtime::Runtime::new().context("runtime")?;
        runtime.block_on(post(&request))
    };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookbridge send: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The body `send` reads: a file, or stdin for `-`.
fn read_data(data: Option<PathBuf>) -> anyhow::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    Ok(match data {
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).context("reading stdin")?;
            Some(buf)
        }
        Some(p) => Some(std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    })
}

/// Posts the request `send` built and prints the status and body.
async fn post(request: &super::send::Request) -> anyhow::Result<ExitCode> {
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
}

/// `hookbridge healthcheck`: exit 0 if the URL answers 2xx within 3 s.
pub fn healthcheck(url: &str) -> ExitCode {
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

/// `hookbridge fic subscriptions …`.
pub fn fic(command: FicCommand) -> ExitCode {
    match fic_subscriptions(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookbridge fic: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn fic_subscriptions(command: FicCommand) -> anyhow::Result<ExitCode> {
    use super::fic::Action;
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
    let config = fic_config(config, needs_config)?;
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
        super::fic::credentials(&config, source, api_url, token, company).map_err(|e| anyhow::anyhow!(e))?;
    let api = crate::sources::fic::api::Api::new(api_url, token, company);
    let runtime = tokio::runtime::Runtime::new().context("runtime")?;
    match runtime.block_on(super::fic::run(&config, &api, action, json)) {
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

/// The configuration `fic subscriptions` reads: `--config`, required by the actions that read a
/// source from it, else the built-in default.
fn fic_config(path: Option<PathBuf>, needs_config: bool) -> anyhow::Result<config::Config> {
    let config = match (path, needs_config) {
        (Some(p), _) => Some(config::load(Some(&p)).map_err(|e| anyhow::anyhow!("{e}"))?),
        (None, true) => anyhow::bail!("this action reads the source from the configuration: pass --config"),
        (None, false) => None,
    };
    Ok(match config {
        Some(c) => c,
        None => config::load(None).map_err(|e| anyhow::anyhow!("{e}"))?,
    })
}
