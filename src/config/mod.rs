//! Configuration: figment loading (a TOML file, then `HOOKBRIDGE_` environment overrides with `__`
//! between key parts) → raw serde structs with `deny_unknown_fields` → [`validate`] → a checked
//! [`Config`].
//!
//! Validation is pure (no IO beyond reading the files the config names) and collects **every**
//! error, each with its origin (file or environment variable), key path and a hint, so `hookbridge
//! check` can print them all at once.

mod routes;
mod sections;
mod server;
mod sinks;

pub use crate::settings::{raw, secret, units};
pub use crate::sources::{Delivery, SourceConfig};
pub use sections::{DedupConfig, QuarantineConfig, SpoolConfig, DEFAULT_MAX_ATTEMPTS};
pub use server::ServerConfig;
pub use sinks::SinkConfig;

use std::path::Path;

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;

pub use crate::settings::error::{ConfigError, ConfigErrors};

use crate::route::Router;
use crate::settings::Checker;
use routes::check_routes;
use sections::{check_dead_letter, check_dedup, check_quarantine, check_spool};
use server::check_server;
use sinks::check_sinks;

/// The built-in configuration used when no file is given: CloudEvents at `/events` without
/// verification (loopback only), everything to `./hookbridge-events.jsonl`.
pub const BUILTIN: &str = r#"
[server]
listen = "127.0.0.1:8080"

[sources.events]
path = "/events"
kind = "cloudevents"
verify = { kind = "none" }

[sinks.file]
type = "file"
path = "hookbridge-events.jsonl"

[[routes]]
sinks = ["file"]
"#;

/// Top-level keys.
const TOP_LEVEL: &[&str] = &[
    "server",
    "sources",
    "sinks",
    "routes",
    "unmatched",
    "dedup",
    "spool",
    "quarantine",
    "dead_letter",
];

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: the file path, or `built-in default`.
    pub origin: String,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[sources.*]`, sorted by name.
    pub sources: Vec<SourceConfig>,
    /// `[sinks.*]`, sorted by name; routes refer to them by index.
    pub sinks: Vec<SinkConfig>,
    /// `[[routes]]` and `[unmatched]`, compiled.
    pub router: Router,
    /// `[dedup]`.
    pub dedup: DedupConfig,
    /// `[spool]`, with defaults applied (opened only when a source uses it).
    pub spool: SpoolConfig,
    /// `[quarantine]`, if configured.
    pub quarantine: Option<QuarantineConfig>,
    /// `[dead_letter]`: the dead-letter sink's index, if configured.
    pub dead_letter: Option<usize>,
    /// What `check` warns about without failing (a secret written inline), each naming its key.
    pub warnings: Vec<ConfigError>,
}

/// Loads and validates `path`, or the built-in default when `None`; environment overrides apply
/// to both.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    let figment = match path {
        Some(p) => {
            if let Err(e) = std::fs::metadata(p) {
                return Err(ConfigErrors(vec![ConfigError::new(
                    p.display().to_string(),
                    "",
                    format!("cannot read configuration file: {e}"),
                )]));
            }
            Figment::from(Toml::file(p))
        }
        None => Figment::from(Toml::string(BUILTIN)),
    };
    let origin = path.map_or_else(|| "built-in default".to_owned(), |p| p.display().to_string());
    validate(figment.merge(env_provider()), &origin)
}

/// Loads a configuration from TOML text (tests, `check` of generated configs).
pub fn from_toml_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    validate(Figment::from(Toml::string(text)).merge(env_provider()), origin)
}

fn env_provider() -> Env {
    // Only variables that name a key of the file override it: `HOOKBRIDGE_SERVER__LISTEN`, never
    // HOOKBRIDGE_CONFIG or HOOKBRIDGE_LOG (which configure the process), a secret the file reads
    // itself (`admin_token = { env = "HOOKBRIDGE_ADMIN_TOKEN" }`), or the variables Kubernetes
    // makes for a Service named hookbridge (`HOOKBRIDGE_SERVICE_HOST`, `HOOKBRIDGE_PORT`).
    Env::prefixed("HOOKBRIDGE_")
        .split("__")
        .filter(|key| override_target(key.as_str()) == Some(true))
}

/// For the part of a variable's name after `HOOKBRIDGE_` (`SERVER__LISTEN`, or `server.listen`
/// once figment has split it): `None` when it is not shaped like an override (no nesting),
/// else whether its first segment is a table of the file.
fn override_target(path: &str) -> Option<bool> {
    let path = path.replace("__", ".");
    let (top, _) = path.split_once('.')?;
    Some(TOP_LEVEL.iter().any(|t| t.eq_ignore_ascii_case(top)))
}

/// Validates a merged figment: every error is collected.
pub fn validate(figment: Figment, origin: &str) -> Result<Config, ConfigErrors> {
    let mut c = Checker::new(&figment, origin);
    let top: Dict = match figment.extract() {
        Ok(d) => d,
        Err(e) => {
            c.figment_error(e, "");
            return Err(ConfigErrors(c.errors));
        }
    };
    unapplied_overrides(&mut c);
    for key in top.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            c.error(
                key.clone(),
                format!("unknown key `{key}`"),
                Some(format!("valid top-level keys: {}", TOP_LEVEL.join(", "))),
            );
        }
    }
    let server = check_server(&mut c, top.contains_key("server"));
    let sinks = check_sinks(
        &mut c,
        top.get("sinks"),
        server.as_ref().map(|s| s.publish_timeout),
    );
    let loopback = server.as_ref().is_none_or(|s| s.listen.ip().is_loopback());
    let sources = crate::sources::check_sources(&mut c, top.get("sources"), loopback);
    let router = check_routes(&mut c, &top, &sinks, &sources);
    let dedup = check_dedup(&mut c, top.contains_key("dedup"));
    let spool = check_spool(&mut c, top.contains_key("spool"));
    if let Some(spool) = &spool {
        for name in &spool.strict_order {
            if !sinks.iter().any(|s| &s.name == name) {
                c.error("spool.strict_order", format!("no sink named {name:?}"), None);
            }
        }
    }
    no_effect_warnings(&mut c, &top, &sources, dedup.as_ref());
    let quarantine = check_quarantine(&mut c, top.contains_key("quarantine"), &sinks);
    let dead_letter = check_dead_letter(&mut c, top.contains_key("dead_letter"), &sinks);
    match (server, router, dedup, spool, quarantine, dead_letter) {
        (Some(server), Some(router), Some(dedup), Some(spool), Some(quarantine), Some(dead_letter))
            if c.errors.is_empty() =>
        {
            Ok(Config {
                warnings: c.warnings,
                quarantine,
                dead_letter,
                origin: origin.to_owned(),
                server,
                sources,
                sinks,
                router,
                dedup,
                spool,
            })
        }
        _ => Err(ConfigErrors(c.errors)),
    }
}

/// A variable shaped like an override (`HOOKBRIDGE_X__Y`) whose first segment is no table of
/// the file is not applied (see `env_provider`): most likely a typo, so said.
fn unapplied_overrides(c: &mut Checker<'_>) {
    for (var, _) in std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v))) {
        let Some(path) = var.strip_prefix("HOOKBRIDGE_") else {
            continue;
        };
        if override_target(path) == Some(false) {
            let top_key = path.split("__").next().unwrap_or_default();
            c.warnings.push(ConfigError::new(
                "environment".to_owned(),
                var.clone(),
                format!(
                    "not applied: {} is not a table of the configuration ({})",
                    top_key.to_ascii_lowercase(),
                    TOP_LEVEL.join(", ")
                ),
            ));
        }
    }
}

/// Tables that are accepted but would do nothing here: said, not refused (a configuration
/// shared between deployments may carry them).
fn no_effect_warnings(
    c: &mut Checker<'_>,
    top: &Dict,
    sources: &[SourceConfig],
    dedup: Option<&DedupConfig>,
) {
    if top.contains_key("spool") && !sources.iter().any(|s| s.delivery == Delivery::Spool) {
        c.warn(
            "spool",
            "no source has delivery = \"spool\": the spool is never opened and these settings do nothing",
            None,
        );
    }
    if let Some(d) = dedup {
        if !d.enabled
            && top
                .get("dedup")
                .and_then(Value::as_dict)
                .is_some_and(|t| t.len() > 1)
        {
            c.warn(
                "dedup",
                "enabled = false: the other [dedup] settings do nothing",
                None,
            );
        }
    }
}
