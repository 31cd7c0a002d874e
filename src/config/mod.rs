//! Configuration: figment loading (a TOML file, then `HOOKBRIDGE_` environment overrides with `__`
//! between key parts) → raw serde structs with `deny_unknown_fields` → [`validate`] → a checked
//! [`Config`].
//!
//! Validation is pure (no IO beyond reading the files the config names) and collects **every**
//! error, each with its origin (file or environment variable), key path and a hint, so `hookbridge
//! check` can print them all at once.

mod error;
mod jwt;
mod provider;
pub mod raw;
pub mod secret;
pub mod units;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;

pub use error::{ConfigError, ConfigErrors};

use crate::registry::{self, SinkSpec};
use crate::route::{Pattern, Router, Rule, Unmatched};
use crate::verify::fic::{self, FicVerifier};
use crate::verify::VerifierConfig;
use raw::{
    CloudEventsVerifyRaw, DedupRaw, FicVerifyRaw, KeyRef, RouteRaw, ServerRaw, SourceRaw, SpoolRaw,
    UnmatchedRaw,
};
use secret::{Secret, SECRET_HINT};

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
/// Paths served by hookbridge itself.
const RESERVED_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

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

/// `[quarantine]`, checked.
#[derive(Debug, Clone)]
pub struct QuarantineConfig {
    /// Sink index.
    pub sink: usize,
    /// Body bytes kept.
    pub max_body: usize,
    /// Rate limit per second.
    pub per_second: u32,
}

/// `[spool]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// Spool directory.
    pub dir: std::path::PathBuf,
    /// Most events held.
    pub max_events: u64,
    /// Most bytes held.
    pub max_bytes: u64,
    /// Most parked dead letters before new events are refused.
    pub max_parked: u64,
    /// First forwarder retry delay.
    pub retry_initial: Duration,
    /// Largest forwarder retry delay.
    pub retry_max: Duration,
    /// Attempts before a retryable failure is dead-lettered (`None`: unlimited), counted while
    /// the sink takes other events.
    pub max_attempts: Option<u32>,
    /// Sinks delivered with one publish in flight (strict spool order).
    pub strict_order: Vec<String>,
    /// How long delivered events are kept for replay.
    pub retain: Duration,
    /// Most bytes of delivered events kept.
    pub retain_max_bytes: u64,
}

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

/// What a source receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Any CloudEvents 1.0 HTTP producer.
    CloudEvents,
    /// Fatture in Cloud API v2 webhooks.
    FattureInCloud,
    /// GitHub webhooks (HMAC-SHA256, `X-GitHub-Event`/`X-GitHub-Delivery`).
    GitHub,
    /// Stripe webhooks (`Stripe-Signature`).
    Stripe,
    /// Standard Webhooks / Svix.
    StandardWebhooks,
    /// Any JSON webhook, with a per-source mapping.
    Generic,
}

/// When the HTTP answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// After every chosen sink acked.
    Sync,
    /// After the event is fsynced to the spool; forwarders deliver it later.
    Spool,
}

/// One `[sources.NAME]`.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The table name.
    pub name: String,
    /// URL path.
    pub path: String,
    /// What arrives.
    pub kind: SourceKind,
    /// Public URL, if configured.
    pub public_url: Option<String>,
    /// Delivery mode.
    pub delivery: Delivery,
    /// How requests are authenticated.
    pub verifier: VerifierConfig,
    /// `kind = "generic"`: the attribute mapping.
    pub mapping: Option<crate::normalize::mapping::Mapping>,
    /// Lower-case names of the request headers copied into events.
    pub keep_headers: Vec<String>,
    /// Dedup keys events on a digest of the raw body (`dedup_on = "body"`), not their id.
    pub dedup_on_body: bool,
    /// Fatture in Cloud: `(verification_method, mapping)` for subscription management.
    pub subscription: Option<(String, String)>,
    /// Fatture in Cloud: API access for enrichment.
    pub enrichment: Option<crate::fic::enrich::EnrichConfig>,
}

/// One `[sinks.NAME]`.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The table name.
    pub name: String,
    /// Type-specific settings.
    pub spec: SinkSpec,
}

/// `[dedup]`, with defaults applied.
#[derive(Debug, Clone)]
pub struct DedupConfig {
    /// Whether duplicates are detected.
    pub enabled: bool,
    /// How long a delivered id is remembered.
    pub window: Duration,
    /// Most ids remembered.
    pub max_entries: usize,
    /// Where remembered ids persist, if anywhere.
    pub path: Option<std::path::PathBuf>,
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

/// Collects errors while walking the configuration.
struct Checker<'a> {
    figment: &'a Figment,
    origin: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl Checker<'_> {
    /// Where the value at `key` came from.
    fn origin_of(&self, key: &str) -> String {
        let meta = self.figment.find_metadata(key);
        describe_origin(meta, key, self.origin)
    }

    /// A duration that is used in whole seconds: a fraction would be cut off silently, so it is
    /// refused. Returns the seconds.
    fn whole_seconds(&mut self, key: &str, d: Option<units::HumanDuration>) -> Option<u64> {
        let d = d?.0;
        if d.subsec_nanos() != 0 {
            self.error(
                key.to_owned(),
                format!(
                    "{} is not a whole number of seconds",
                    humantime::format_duration(d)
                ),
                Some("JWT and signature clocks count in seconds: use e.g. \"1s\" or \"0s\"".into()),
            );
        }
        Some(d.as_secs())
    }

    /// A warning: the configuration works, but is unsafe (a secret written inline).
    fn warn(&mut self, key: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        let key = key.into();
        let mut e = ConfigError::new(self.origin_of(&key), key, message);
        e.hint = hint;
        self.warnings.push(e);
    }

    fn error(&mut self, key: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        let key = key.into();
        let mut e = ConfigError::new(self.origin_of(&key), key, message);
        e.hint = hint;
        self.errors.push(e);
    }

    /// Deserialises the table at `key`, recording serde errors with their full key path.
    fn extract<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        match self.figment.extract_inner::<T>(key) {
            Ok(v) => Some(v),
            Err(e) => {
                self.figment_error(e, key);
                None
            }
        }
    }

    fn figment_error(&mut self, e: figment::Error, prefix: &str) {
        for e in e {
            let (key, hint) = key_and_hint(&e, prefix);
            let origin = describe_origin(e.metadata.as_ref(), &key, self.origin);
            let mut ce = ConfigError::new(origin, key, kind_message(&e.kind));
            ce.hint = hint;
            self.errors.push(ce);
        }
    }
}

fn describe_origin(meta: Option<&figment::Metadata>, key: &str, default: &str) -> String {
    match meta {
        Some(m) => match &m.source {
            Some(figment::Source::File(p)) => p.display().to_string(),
            _ if m.name.contains("environment") => format!(
                "environment variable HOOKBRIDGE_{}",
                key.replace('.', "__").to_uppercase()
            ),
            _ => default.to_owned(),
        },
        None => default.to_owned(),
    }
}

fn kind_message(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(f, _) => format!("unknown key `{f}`"),
        Kind::MissingField(f) => format!("missing required key `{f}`"),
        Kind::UnknownVariant(v, _) => format!("unknown value `{v}`"),
        other => other.to_string(),
    }
}

fn key_and_hint(e: &figment::Error, prefix: &str) -> (String, Option<String>) {
    use figment::error::Kind;
    // figment appends the extraction prefix after the inner path; rebuild prefix-first.
    let prefix_parts: Vec<&str> = prefix.split('.').filter(|p| !p.is_empty()).collect();
    let mut inner: Vec<String> = e.path.clone();
    if inner.ends_with(&prefix_parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        && !prefix_parts.is_empty()
    {
        inner.truncate(inner.len() - prefix_parts.len());
    }
    if inner.starts_with(&prefix_parts.iter().map(|s| s.to_string()).collect::<Vec<_>>()) {
        inner.drain(..prefix_parts.len());
    }
    let mut parts: Vec<String> = prefix_parts.iter().map(|s| s.to_string()).collect();
    parts.extend(inner);
    let (extra, hint) = match &e.kind {
        Kind::UnknownField(f, expected) => (
            Some(f.clone()),
            Some(format!("valid keys here: {}", expected.join(", "))),
        ),
        Kind::MissingField(f) => (Some(f.to_string()), None),
        Kind::UnknownVariant(_, expected) => (None, Some(format!("one of: {}", expected.join(", ")))),
        _ => (None, None),
    };
    if let Some(extra) = extra {
        // Some deserializers already put the offending field at the end of the path.
        if parts.last() != Some(&extra) {
            parts.push(extra);
        }
    }
    (parts.join("."), hint)
}

/// Validates a merged figment: every error is collected.
pub fn validate(figment: Figment, origin: &str) -> Result<Config, ConfigErrors> {
    let mut c = Checker {
        figment: &figment,
        origin,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let top: Dict = match figment.extract() {
        Ok(d) => d,
        Err(e) => {
            c.figment_error(e, "");
            return Err(ConfigErrors(c.errors));
        }
    };
    // A variable shaped like an override (`HOOKBRIDGE_X__Y`) whose first segment is no table
    // of the file is not applied (see `env_provider`): most likely a typo, so said.
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
    let sources = check_sources(&mut c, top.get("sources"), server.as_ref());
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
    // Tables that are accepted but would do nothing here: said, not refused (a configuration
    // shared between deployments may carry them).
    if top.contains_key("spool") && !sources.iter().any(|s| s.delivery == Delivery::Spool) {
        c.warn(
            "spool",
            "no source has delivery = \"spool\": the spool is never opened and these settings do nothing",
            None,
        );
    }
    if let Some(d) = &dedup {
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

fn check_server(c: &mut Checker<'_>, present: bool) -> Option<ServerConfig> {
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
    let admin_tokens = raw
        .admin_token
        .as_ref()
        .map(|refs| provider::secrets(c, "server.admin_token", refs))
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn table_names(c: &mut Checker<'_>, value: Option<&Value>, key: &str) -> Vec<String> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(dict) = value.as_dict() else {
        c.error(key, "must be a table of named entries", None);
        return Vec::new();
    };
    let mut names = Vec::new();
    for name in dict.keys() {
        if valid_name(name) {
            names.push(name.clone());
        } else {
            c.error(
                format!("{key}.{name}"),
                format!("invalid name {name:?}"),
                Some("names use letters, digits, '_' and '-'".into()),
            );
        }
    }
    names
}

fn check_sinks(
    c: &mut Checker<'_>,
    value: Option<&Value>,
    publish_timeout: Option<Duration>,
) -> Vec<SinkConfig> {
    let mut sinks = Vec::new();
    for name in table_names(c, value, "sinks") {
        let key = format!("sinks.{name}");
        let ty = match c.figment.find_value(&format!("{key}.type")) {
            Ok(v) => v.as_str().map(str::to_owned),
            Err(_) => None,
        };
        let Some(ty) = ty else {
            c.error(
                format!("{key}.type"),
                "missing required key `type`",
                Some(format!(
                    "one of: {}",
                    registry::SINK_TYPES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            continue;
        };
        if let Err((message, hint)) = registry::check_type(&ty) {
            c.error(format!("{key}.type"), message, Some(hint));
            continue;
        }
        let Some(mut spec) = c.extract::<SinkSpec>(&key) else {
            continue;
        };
        if let Some(publish) = publish_timeout {
            fit_timeouts(c, &key, &mut spec, publish);
        }
        for (k, message) in spec.validate() {
            c.error(format!("{key}.{k}"), message, None);
        }
        if let Some(warning) = spec.inline_secret() {
            c.warn(
                format!("{key}.{}", warning.0),
                warning.1,
                Some(SECRET_HINT.into()),
            );
        }
        // Resolved here, as source secrets are: an unset variable fails `check`, not the first
        // publish (or `serve`).
        for (k, r) in spec.secrets() {
            if let Err(m) = r.resolve() {
                c.error(format!("{key}.{k}"), m, Some(SECRET_HINT.into()));
            }
        }
        sinks.push(SinkConfig { name, spec });
    }
    sinks
}

/// A sink's own time limit at or past `server.publish_timeout` does nothing (the publish deadline
/// cuts it first) and, for Kafka's `message_timeout`, lets a record land after the sender was
/// answered 503 — a duplicate on the provider's retry. An explicit one is refused; an unset one
/// gets its default or, when the deadline is shorter, four fifths of it.
fn fit_timeouts(c: &mut Checker<'_>, key: &str, spec: &mut SinkSpec, publish: Duration) {
    for (k, value, default) in spec.timeouts_mut() {
        match value {
            Some(d) if d.0 >= publish => c.error(
                format!("{key}.{k}"),
                format!(
                    "{} is not shorter than server.publish_timeout ({}), which would cut it first",
                    humantime::format_duration(d.0),
                    humantime::format_duration(publish)
                ),
                Some("lower it, or raise server.publish_timeout (and server.request_timeout)".into()),
            ),
            Some(_) => {}
            None => {
                *value = Some(hookbridge_sink_core::settings::HumanDuration(
                    default.min(publish * 4 / 5),
                ));
            }
        }
    }
}

fn check_sources(
    c: &mut Checker<'_>,
    value: Option<&Value>,
    server: Option<&ServerConfig>,
) -> Vec<SourceConfig> {
    let mut sources: Vec<SourceConfig> = Vec::new();
    let names = table_names(c, value, "sources");
    if value.is_some() && names.is_empty() || value.is_none() {
        c.error(
            "sources",
            "no source is configured",
            Some("add a [sources.NAME] table with path, kind and verify".into()),
        );
    }
    let mut paths: Vec<(String, String)> = Vec::new();
    for name in names {
        let key = format!("sources.{name}");
        let Some(raw) = c.extract::<SourceRaw>(&key) else {
            continue;
        };
        let duplicate = paths.iter().find(|(p, _)| *p == raw.path).map(|(_, n)| n.clone());
        if let Some(other) = &duplicate {
            c.error(
                format!("{key}.path"),
                format!("path {:?} is already used by source {other:?}", raw.path),
                None,
            );
        } else {
            paths.push((raw.path.clone(), name.clone()));
        }
        let checked = check_source(c, &key, name, raw, server);
        if let (Some(source), None) = (checked, duplicate) {
            sources.push(source);
        }
    }
    sources
}

fn check_source(
    c: &mut Checker<'_>,
    key: &str,
    name: String,
    raw: SourceRaw,
    server: Option<&ServerConfig>,
) -> Option<SourceConfig> {
    let mut ok = true;
    if !raw.path.starts_with('/') || raw.path.contains(['?', '#', ' ']) {
        c.error(
            format!("{key}.path"),
            format!("invalid path {:?}", raw.path),
            Some("an absolute URL path such as \"/webhooks/fic\"".into()),
        );
        ok = false;
    } else if RESERVED_PATHS.contains(&raw.path.as_str()) {
        c.error(
            format!("{key}.path"),
            format!("{:?} is reserved for hookbridge itself", raw.path),
            None,
        );
        ok = false;
    }
    let kinds = "cloudevents, fattureincloud, github, stripe, standard-webhooks, generic";
    let kind = match raw.kind.as_str() {
        "cloudevents" => Some(SourceKind::CloudEvents),
        "fattureincloud" => Some(SourceKind::FattureInCloud),
        "github" => Some(SourceKind::GitHub),
        "stripe" => Some(SourceKind::Stripe),
        "standard-webhooks" => Some(SourceKind::StandardWebhooks),
        "generic" => Some(SourceKind::Generic),
        other => {
            c.error(
                format!("{key}.kind"),
                format!("unknown source kind {other:?}"),
                Some(format!("one of: {kinds}")),
            );
            None
        }
    };
    let mapping = provider::check_mapping(c, key, kind, raw.mapping.as_ref());
    let keep_headers = provider::check_keep_headers(c, key, raw.keep_headers.as_deref());
    let dedup_on_body = match raw.dedup_on.as_deref() {
        None => Some(kind == Some(SourceKind::GitHub)),
        Some("id") => Some(false),
        Some("body") => Some(true),
        Some(other) => {
            c.error(
                format!("{key}.dedup_on"),
                format!("unknown value {other:?}"),
                Some("one of: id, body".into()),
            );
            None
        }
    };
    let enrichment = match (&raw.api, kind) {
        (None, _) => Some(None),
        (Some(_), Some(k)) if k != SourceKind::FattureInCloud => {
            c.error(
                format!("{key}.api"),
                "only fattureincloud sources have an api table",
                None,
            );
            None
        }
        (Some(api), _) => {
            let on_unavailable = api.on_unavailable.clone().unwrap_or_else(|| "publish".into());
            if !["publish", "retry"].contains(&on_unavailable.as_str()) {
                c.error(
                    format!("{key}.api.on_unavailable"),
                    format!("{on_unavailable:?}: use publish or retry"),
                    None,
                );
            }
            if api.max_concurrency == Some(0) {
                c.error(format!("{key}.api.max_concurrency"), "must be at least 1", None);
            }
            if api.cache_max_entries == Some(0) {
                c.error(
                    format!("{key}.api.cache_max_entries"),
                    "must be at least 1 (cache_ttl = \"0s\" turns the cache off)",
                    None,
                );
            }
            match api.token.resolve() {
                Ok(token) => Some(Some(crate::fic::enrich::EnrichConfig {
                    source: name.to_owned(),
                    base_url: api
                        .base_url
                        .clone()
                        .unwrap_or_else(|| crate::fic::api::DEFAULT_BASE_URL.into()),
                    token: String::from_utf8_lossy(token.expose()).into_owned(),
                    company_id: api.company_id.map(|c| c.to_string()),
                    retry_when_unavailable: on_unavailable == "retry",
                    cache_ttl: api.cache_ttl.map_or(Duration::from_secs(30), |d| d.0),
                    cache_max_entries: api.cache_max_entries.unwrap_or(10_000),
                    max_concurrency: api.max_concurrency.unwrap_or(4),
                    timeout: api.timeout.map_or(Duration::from_secs(2), |d| d.0),
                })),
                Err(m) => {
                    c.error(format!("{key}.api.token"), m, Some(SECRET_HINT.into()));
                    None
                }
            }
        }
    };
    let subscription = match (&raw.subscription, kind) {
        (Some(_), Some(k)) if k != SourceKind::FattureInCloud => {
            c.error(
                format!("{key}.subscription"),
                "only fattureincloud sources have a subscription",
                None,
            );
            None
        }
        (sub, Some(SourceKind::FattureInCloud)) => {
            let method = sub
                .as_ref()
                .and_then(|s| s.verification_method.clone())
                .unwrap_or_else(|| "header".into());
            let mapping = sub
                .as_ref()
                .and_then(|s| s.mapping.clone())
                .unwrap_or_else(|| "binary".into());
            if !["header", "query"].contains(&method.as_str()) {
                c.error(
                    format!("{key}.subscription.verification_method"),
                    format!("{method:?}: use header or query"),
                    None,
                );
            }
            if !["binary", "structured"].contains(&mapping.as_str()) {
                c.error(
                    format!("{key}.subscription.mapping"),
                    format!("{mapping:?}: use binary or structured"),
                    None,
                );
            }
            Some(Some((method, mapping)))
        }
        _ => Some(None),
    };
    let delivery = match raw.delivery.as_deref() {
        None | Some("sync") => Some(Delivery::Sync),
        Some("spool") => Some(Delivery::Spool),
        Some(other) => {
            c.error(
                format!("{key}.delivery"),
                format!("unknown delivery mode {other:?}"),
                Some("one of: sync, spool".into()),
            );
            None
        }
    };
    if raw.public_url.is_some() && kind.is_some_and(|k| k != SourceKind::FattureInCloud) {
        c.error(
            format!("{key}.public_url"),
            "only fattureincloud sources use it (the audience of FIC's token); here it would do nothing",
            None,
        );
    }
    let verifier = if kind == Some(SourceKind::FattureInCloud) {
        check_fic_verify(c, key, raw.verify.is_some(), raw.public_url.as_deref())
    } else if matches!(
        kind,
        Some(SourceKind::GitHub | SourceKind::Stripe | SourceKind::StandardWebhooks)
    ) {
        kind.and_then(|k| provider::check_provider_verify(c, key, k, raw.verify.is_some()))
    } else if raw.verify.is_none() {
        c.error(
            format!("{key}.verify"),
            "missing verifier configuration",
            Some("every source needs a [verify] table; use verify = { kind = \"none\" } to accept unauthenticated events explicitly".into()),
        );
        None
    } else {
        check_cloudevents_verify(c, &format!("{key}.verify"), server)
    };
    // The verifier's own credential headers (a custom token, JWT, HMAC header) are never kept:
    // they would be copied into every event.
    if let (Some(v), Some(kept)) = (&verifier, &keep_headers) {
        let secret = v.credential_headers();
        for (i, h) in kept.iter().enumerate() {
            if secret.iter().any(|s| s.eq_ignore_ascii_case(h)) {
                c.error(
                    format!("{key}.keep_headers[{i}]"),
                    format!("{h:?} carries this source's credential and is never kept"),
                    None,
                );
            }
        }
    }
    if !ok {
        return None;
    }
    Some(SourceConfig {
        name,
        path: raw.path,
        kind: kind?,
        public_url: raw.public_url,
        delivery: delivery?,
        verifier: verifier?,
        mapping: mapping?,
        keep_headers: keep_headers?,
        dedup_on_body: dedup_on_body?,
        subscription: subscription?,
        enrichment: enrichment?,
    })
}

fn check_fic_verify(
    c: &mut Checker<'_>,
    key: &str,
    has_verify: bool,
    public_url: Option<&str>,
) -> Option<VerifierConfig> {
    let raw: FicVerifyRaw = if has_verify {
        c.extract(&format!("{key}.verify"))?
    } else {
        FicVerifyRaw::default()
    };
    let url_ok = public_url.is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"));
    if !url_ok {
        c.error(
            format!("{key}.public_url"),
            match public_url {
                None => "missing required key `public_url`".to_owned(),
                Some(u) => format!("invalid URL {u:?}"),
            },
            Some("the URL Fatture in Cloud calls (the subscription's sink), e.g. \"https://hooks.example.com/webhooks/fic\"; FIC puts it in the token's aud".into()),
        );
    }
    let pem = match &raw.public_key {
        None => Some(fic::FIC_PUBLIC_KEY_PEM.as_bytes().to_vec()),
        Some(KeyRef::Pem(text)) => Some(text.as_bytes().to_vec()),
        Some(KeyRef::Ref(r)) => match r.resolve() {
            Ok(s) => Some(s.expose().to_vec()),
            Err(m) => {
                c.error(format!("{key}.verify.public_key"), m, Some(SECRET_HINT.into()));
                None
            }
        },
    };
    let mut verifier = match pem.map(|p| FicVerifier::new(&p, public_url.unwrap_or_default().to_owned())) {
        Some(Ok(v)) => v,
        Some(Err(m)) => {
            c.error(
                format!("{key}.verify.public_key"),
                m,
                Some("an ES256 (P-256) public key, PEM \"BEGIN PUBLIC KEY\"".into()),
            );
            return None;
        }
        None => return None,
    };
    if let Some(l) = c.whole_seconds(&format!("{key}.verify.leeway"), raw.leeway) {
        verifier.leeway = l;
    }
    let unlisted =
        raw.app_ids.as_ref().is_none_or(Vec::is_empty) && raw.companies.as_ref().is_none_or(Vec::is_empty);
    if !unlisted && raw.allow_any_company == Some(true) {
        c.error(
            format!("{key}.verify.allow_any_company"),
            "allow_any_company = true and an allow-list (companies or app_ids) contradict each other: the list would still apply",
            Some("keep the list and remove allow_any_company, or the reverse".into()),
        );
    }
    if raw.challenge_checks_allow_lists == Some(true) && raw.challenge_requires_token == Some(false) {
        c.error(
            format!("{key}.verify.challenge_checks_allow_lists"),
            "has no effect with challenge_requires_token = false (there is no token to check)",
            None,
        );
    }
    if unlisted && raw.allow_any_company != Some(true) {
        c.error(
            format!("{key}.verify.companies"),
            "Fatture in Cloud signs every customer's events with the same key: without an allow-list any FIC customer can subscribe this URL and publish into your brokers",
            Some("list your companies (companies = [123456]) or applications (app_ids = [\"…\"]), or set allow_any_company = true".into()),
        );
    }
    verifier.app_ids = raw
        .app_ids
        .unwrap_or_default()
        .iter()
        .map(raw::IdText::text)
        .collect();
    verifier.companies = raw
        .companies
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let t = c.text();
            if t.starts_with("company:") {
                t
            } else {
                format!("company:{t}")
            }
        })
        .collect();
    verifier.challenge_requires_token = raw.challenge_requires_token.unwrap_or(true);
    verifier.challenge_checks_allow_lists = raw.challenge_checks_allow_lists.unwrap_or(false);
    url_ok.then(|| VerifierConfig::Fic(std::sync::Arc::new(verifier)))
}

fn check_cloudevents_verify(
    c: &mut Checker<'_>,
    key: &str,
    server: Option<&ServerConfig>,
) -> Option<VerifierConfig> {
    let raw = c.extract::<CloudEventsVerifyRaw>(key)?;
    match raw {
        CloudEventsVerifyRaw::Basic { .. } | CloudEventsVerifyRaw::Hmac { .. } => {
            provider::check_generic_verify(c, key, raw)
        }
        CloudEventsVerifyRaw::Jwt { .. } => jwt::check_jwt_verify(c, key, raw),
        CloudEventsVerifyRaw::None { allow_public } => {
            let loopback = server.is_none_or(|s| s.listen.ip().is_loopback());
            if !loopback && !allow_public {
                c.error(
                    format!("{key}.kind"),
                    "verify.kind = \"none\" on a non-loopback listener accepts events from anyone",
                    Some(
                        "configure a verifier, or set allow_public = true if a proxy in front authenticates"
                            .into(),
                    ),
                );
                return None;
            }
            Some(VerifierConfig::None)
        }
        CloudEventsVerifyRaw::Token { tokens, header } => {
            let mut resolved = Vec::new();
            let refs = tokens.refs();
            if refs.is_empty() {
                c.error(
                    format!("{key}.tokens"),
                    "no token configured",
                    Some(SECRET_HINT.into()),
                );
            }
            for r in refs {
                match r.resolve() {
                    Ok(s) => resolved.push(s),
                    Err(m) => c.error(format!("{key}.tokens"), m, Some(SECRET_HINT.into())),
                }
            }
            let header = header
                .unwrap_or_else(|| "authorization".into())
                .to_ascii_lowercase();
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                c.error(
                    format!("{key}.header"),
                    format!("invalid header name {header:?}"),
                    None,
                );
                return None;
            }
            Some(VerifierConfig::Token {
                tokens: resolved,
                header,
            })
        }
    }
}

fn check_routes(
    c: &mut Checker<'_>,
    top: &Dict,
    sinks: &[SinkConfig],
    sources: &[SourceConfig],
) -> Option<Router> {
    let rules_raw: Vec<RouteRaw> = if top.contains_key("routes") {
        c.extract("routes")?
    } else {
        Vec::new()
    };
    let defined = sinks
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let resolve = |c: &mut Checker<'_>, key: String, names: &[String]| -> Vec<usize> {
        let mut out = Vec::new();
        if names.is_empty() {
            c.error(
                key.clone(),
                "at least one sink is required",
                Some(format!("defined: {defined}")),
            );
        }
        for (j, n) in names.iter().enumerate() {
            match sinks.iter().position(|s| &s.name == n) {
                // A sink named twice is one target: publishing (and counting) it twice would
                // skew the spool's backlog and send the event twice.
                Some(i) if out.contains(&i) => {}
                Some(i) => out.push(i),
                None => c.error(
                    format!("{key}[{j}]"),
                    format!("no sink named {n:?}"),
                    Some(format!("defined: {defined}")),
                ),
            }
        }
        out
    };
    let mut rules = Vec::new();
    for (i, r) in rules_raw.iter().enumerate() {
        if let Some(s) = &r.source {
            if !sources.iter().any(|src| &src.name == s) {
                c.error(
                    format!("routes[{i}].source"),
                    format!("no source named {s:?}"),
                    Some(format!(
                        "defined: {}",
                        sources
                            .iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
            }
        }
        let mut types = Vec::new();
        for (j, t) in r
            .types
            .clone()
            .unwrap_or_else(|| vec!["**".into()])
            .iter()
            .enumerate()
        {
            match Pattern::compile(t) {
                Ok(p) => types.push(p),
                Err(m) => c.error(
                    format!("routes[{i}].types[{j}]"),
                    format!("bad pattern: {m}"),
                    Some(
                        "segments are separated by '.'; '*' = one segment, '**' = one or more (last only)"
                            .into(),
                    ),
                ),
            }
        }
        let sink_ids = resolve(c, format!("routes[{i}].sinks"), &r.sinks);
        if r.enrich {
            let fic_with_api = |name: &str| sources.iter().any(|s| s.name == name && s.enrichment.is_some());
            let ok = match &r.source {
                Some(s) => fic_with_api(s),
                None => sources.iter().any(|s| s.enrichment.is_some()),
            };
            if !ok {
                c.error(
                    format!("routes[{i}].enrich"),
                    "enrichment needs a fattureincloud source with an [api] table",
                    Some("add [sources.NAME.api] token = { env = \"FIC_ACCESS_TOKEN\" } and source = \"NAME\" to the route".into()),
                );
            }
        }
        rules.push(Rule {
            source: r.source.clone(),
            types,
            sinks: sink_ids,
            enrich: r.enrich,
        });
    }
    let unmatched_raw: UnmatchedRaw = if top.contains_key("unmatched") {
        c.extract("unmatched")?
    } else {
        UnmatchedRaw {
            policy: None,
            sinks: None,
        }
    };
    let unmatched = match unmatched_raw.policy.as_deref() {
        None | Some("drop") => {
            if unmatched_raw.sinks.is_some() {
                c.error("unmatched.sinks", "only used with policy = \"route\"", None);
            }
            Unmatched::Drop
        }
        Some("route") => Unmatched::Route(resolve(
            c,
            "unmatched.sinks".into(),
            unmatched_raw.sinks.as_deref().unwrap_or_default(),
        )),
        Some(other) => {
            c.error(
                "unmatched.policy",
                format!("unknown policy {other:?}"),
                Some("one of: drop, route".into()),
            );
            Unmatched::Drop
        }
    };
    Some(Router::new(rules, unmatched))
}

fn check_dedup(c: &mut Checker<'_>, present: bool) -> Option<DedupConfig> {
    let raw: DedupRaw = if present {
        c.extract("dedup")?
    } else {
        DedupRaw {
            enabled: None,
            window: None,
            max_entries: None,
            path: None,
        }
    };
    let max_entries = raw.max_entries.unwrap_or(100_000);
    if max_entries == 0 {
        c.error(
            "dedup.max_entries",
            "must be above zero",
            Some("set enabled = false to turn dedup off".into()),
        );
    }
    Some(DedupConfig {
        enabled: raw.enabled.unwrap_or(true),
        window: raw.window.map_or(Duration::from_secs(3600), |w| w.0),
        max_entries,
        path: raw.path,
    })
}

fn check_quarantine(
    c: &mut Checker<'_>,
    present: bool,
    sinks: &[SinkConfig],
) -> Option<Option<QuarantineConfig>> {
    if !present {
        return Some(None);
    }
    let raw: raw::QuarantineRaw = c.extract("quarantine")?;
    let Some(sink) = sinks.iter().position(|s| s.name == raw.sink) else {
        let defined: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
        c.error(
            "quarantine.sink",
            format!("no sink named {:?}", raw.sink),
            Some(format!("defined: {}", defined.join(", "))),
        );
        return None;
    };
    Some(Some(QuarantineConfig {
        sink,
        max_body: raw.max_body.map_or(16 << 10, |b| b.0 as usize),
        per_second: match raw.per_second {
            Some(0) => {
                c.error(
                    "quarantine.per_second",
                    "must be at least 1",
                    Some("to stop quarantining, remove the [quarantine] table".into()),
                );
                return None;
            }
            n => n.unwrap_or(10),
        },
    }))
}

fn check_dead_letter(c: &mut Checker<'_>, present: bool, sinks: &[SinkConfig]) -> Option<Option<usize>> {
    if !present {
        return Some(None);
    }
    let raw: raw::DeadLetterRaw = c.extract("dead_letter")?;
    match sinks.iter().position(|s| s.name == raw.sink) {
        Some(i) => Some(Some(i)),
        None => {
            let defined: Vec<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
            c.error(
                "dead_letter.sink",
                format!("no sink named {:?}", raw.sink),
                Some(format!("defined: {}", defined.join(", "))),
            );
            None
        }
    }
}

/// `spool.max_attempts` when it is not set.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 20;

fn check_spool(c: &mut Checker<'_>, present: bool) -> Option<SpoolConfig> {
    let raw: SpoolRaw = if present {
        c.extract("spool")?
    } else {
        SpoolRaw::default()
    };
    let cfg = SpoolConfig {
        dir: raw.dir.unwrap_or_else(|| "hookbridge-spool".into()),
        max_events: raw.max_events.unwrap_or(1_000_000),
        max_bytes: raw.max_bytes.map_or(1 << 30, |b| b.0),
        max_parked: raw.max_parked.unwrap_or(10_000),
        retry_initial: raw.retry_initial.map_or(Duration::from_millis(200), |d| d.0),
        retry_max: raw.retry_max.map_or(Duration::from_secs(30), |d| d.0),
        max_attempts: match &raw.max_attempts {
            None => Some(DEFAULT_MAX_ATTEMPTS),
            Some(raw::MaxAttempts::Count(n)) => Some(*n),
            Some(raw::MaxAttempts::Word(w)) if w == "unlimited" => None,
            Some(raw::MaxAttempts::Word(w)) => {
                c.error(
                    "spool.max_attempts",
                    format!("{w:?} is not a number of attempts"),
                    Some("a number above zero, or \"unlimited\"".into()),
                );
                None
            }
        },
        strict_order: raw.strict_order.clone(),
        retain: raw.retain.map_or(Duration::from_secs(24 * 3600), |d| d.0),
        retain_max_bytes: raw.retain_max_bytes.map_or(256 << 20, |b| b.0),
    };
    if cfg.max_attempts == Some(0) {
        c.error(
            "spool.max_attempts",
            "must be above zero",
            Some("\"unlimited\" retries until the sink takes the event".into()),
        );
    }
    if cfg.max_events == 0 {
        c.error("spool.max_events", "must be above zero", None);
    }
    if cfg.max_parked == 0 {
        c.error("spool.max_parked", "must be above zero", None);
    }
    if cfg.max_bytes == 0 {
        c.error("spool.max_bytes", "must be above zero", None);
    }
    if cfg.retry_initial > cfg.retry_max || cfg.retry_initial.is_zero() {
        c.error(
            "spool.retry_initial",
            "must be above zero and at most spool.retry_max",
            None,
        );
    }
    if cfg.dir.is_file() {
        c.error("spool.dir", format!("{} is a file", cfg.dir.display()), None);
    }
    Some(cfg)
}
