//! The configuration file as written (serde, `deny_unknown_fields` everywhere). `validate()` in
//! `crate::config` turns these into the checked `Config`.
//!
//! Over 400 lines on purpose: every key of the file format, as written and documented, in one
//! place (a test loads `config.toml.example` against it).

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::secret::SecretRefs;
use super::units::{ByteSize, HumanDuration};

/// `[server]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerRaw {
    /// Address the webhook listener binds. Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// Listener for the admin API (`/admin/*`: spool state, parked events, replay, discard).
    /// Also serves the probes and `/metrics` when `probe_listen` is not set. Default: none (no
    /// admin API; probes on `listen`).
    pub admin_listen: Option<String>,
    /// Listener serving only `/healthz`, `/readyz` and `/metrics` (Kubernetes probes,
    /// Prometheus); never `/admin/*`. Default: none.
    pub probe_listen: Option<String>,
    /// Bearer token the admin API requires (`Authorization: Bearer …`). Required when
    /// `admin_listen` is not a loopback address.
    pub admin_token: Option<SecretRefs>,
    /// Largest request body accepted; bigger bodies get 413. Default `1MiB`.
    pub body_limit: Option<ByteSize>,
    /// Longest a request may take end to end (reading the body, verifying, publishing).
    /// Default `10s`.
    pub request_timeout: Option<HumanDuration>,
    /// Deadline for one publish to one sink; must be below `request_timeout`. Default `5s`.
    pub publish_timeout: Option<HumanDuration>,
    /// How long a client may take to send the request headers. Default `10s`.
    pub header_read_timeout: Option<HumanDuration>,
    /// How long shutdown waits for in-flight requests. Default `30s`.
    pub shutdown_timeout: Option<HumanDuration>,
    /// `Retry-After` sent with 503 answers when no sink gave its own. Default `5s`.
    pub retry_after: Option<HumanDuration>,
    /// Most requests processed at once; more get 503 `overloaded`. Default `1024`.
    pub max_in_flight: Option<usize>,
    /// Most requests to body-signed sources (HMAC, GitHub, Stripe, Standard Webhooks) reading
    /// their body before it is verified; more get 503 `overloaded`. They do not hold the slots
    /// of `max_in_flight` meanwhile. Default: a quarter of `max_in_flight` (at least 1).
    pub max_unauthenticated: Option<usize>,
    /// Longest a client may take to send the body; slower bodies get 503 `request_timeout`.
    /// At most `request_timeout`. Default `5s`.
    pub body_timeout: Option<HumanDuration>,
}

/// `[sources.NAME]`, without its `verify` table (read separately, by kind).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRaw {
    /// URL path the source listens on, e.g. `/webhooks/fic`. Required.
    pub path: String,
    /// What arrives: `cloudevents` (more kinds in later releases). Required.
    pub kind: String,
    /// The public URL providers call (used by kinds that check it). Optional.
    pub public_url: Option<String>,
    /// `sync` (answer after the sinks ack). Default `sync`.
    pub delivery: Option<String>,
    /// Verifier settings; shape depends on `kind`.
    pub verify: Option<IgnoredAny>,
    /// Request headers copied into the event (and sent on by broker sinks). Credentials and
    /// signature headers are refused. Default: none.
    pub keep_headers: Option<Vec<String>>,
    /// What dedup keys an event on: `"id"` (source name, CloudEvents source and id) or `"body"`
    /// (source name and a SHA-256 of the raw body). Default `"body"` for `github`, whose
    /// signature covers only the body — the delivery id and event name come from unsigned
    /// headers, so a captured delivery could be re-sent under fresh ids — `"id"` otherwise.
    pub dedup_on: Option<String>,
    /// `kind = "generic"`: where each CloudEvents attribute comes from.
    pub mapping: Option<MappingRaw>,
    /// `kind = "fattureincloud"`: how `hookbridge fic subscriptions` creates the subscription.
    pub subscription: Option<SubscriptionRaw>,
    /// `kind = "fattureincloud"`: API access for routes with `enrich = true`.
    pub api: Option<FicApiRaw>,
}

/// `[sources.NAME.api]`: Fatture in Cloud API access for enrichment.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FicApiRaw {
    /// Base URL. Default `https://api-v2.fattureincloud.it`.
    pub base_url: Option<String>,
    /// OAuth access token. Required.
    pub token: super::secret::SecretRef,
    /// When FIC is down or the quota is spent: `publish` (default; the event goes out without
    /// resources and `hbenrich = "skipped"`) or `retry` (503, FIC retries later).
    pub on_unavailable: Option<String>,
    /// How long a fetched resource is reused. Default `30s`.
    pub cache_ttl: Option<HumanDuration>,
    /// Most resources cached at once (oldest dropped first). Default `10000`.
    pub cache_max_entries: Option<usize>,
    /// The FIC company this source's subscriptions belong to: what `hookbridge fic
    /// subscriptions` manages when `--company`/`FIC_COMPANY_ID` are not given. Optional.
    pub company_id: Option<u64>,
    /// Fetches in flight at once. Default `4`.
    pub max_concurrency: Option<usize>,
    /// Longest enrichment of one event. Default `2s`.
    pub timeout: Option<HumanDuration>,
}

/// `[sources.NAME.subscription]` for Fatture in Cloud.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRaw {
    /// `header` (default) or `query`: where FIC puts the verification challenge.
    pub verification_method: Option<String>,
    /// `binary` (default) or `structured`: the CloudEvents mode FIC sends.
    pub mapping: Option<String>,
}

/// `[sources.NAME.mapping]`: for providers that do not send CloudEvents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRaw {
    /// The event id. Required.
    pub id: Option<FieldRaw>,
    /// The event type. Required.
    #[serde(rename = "type")]
    pub ty: Option<FieldRaw>,
    /// The event source. Default `hookbridge://<source name>`.
    pub source: Option<FieldRaw>,
    /// The subject. Optional.
    pub subject: Option<FieldRaw>,
    /// The time (RFC 3339, or unix seconds converted). Optional.
    pub time: Option<FieldRaw>,
}

/// Where one attribute comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum FieldRaw {
    /// `{ header = "X-Event-Id" }`.
    Header {
        /// Header name.
        header: String,
    },
    /// `{ pointer = "/data/id" }`: a JSON pointer into the body.
    Pointer {
        /// JSON pointer (RFC 6901).
        pointer: String,
    },
    /// `{ value = "com.acme.order" }`: a constant.
    Value {
        /// The constant.
        value: String,
    },
    /// `{ template = "com.acme.{header:x-event}.{pointer:/action}" }`.
    Template {
        /// Literal text with `{header:NAME}` and `{pointer:/path}` placeholders.
        template: String,
    },
}

/// `[sources.NAME.verify]` for `github`, `stripe` and `standard-webhooks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderVerifyRaw {
    /// The signing secret(s): several during a rotation. Required.
    pub secret: SecretRefs,
    /// Allowed clock difference for signed timestamps (Stripe, Standard Webhooks). Default `5m`.
    pub tolerance: Option<HumanDuration>,
}

/// One `basic` verifier user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicUserRaw {
    /// User name.
    pub username: String,
    /// Password, from env or file.
    pub password: super::secret::SecretRef,
}

/// `[sources.NAME.verify]` for `kind = "cloudevents"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum CloudEventsVerifyRaw {
    /// No verification. Only allowed on a loopback listener unless `allow_public = true`.
    None {
        /// Accept unauthenticated events on a non-loopback listener. Default `false`.
        #[serde(default)]
        allow_public: bool,
    },
    /// A static shared token, compared in constant time.
    Token {
        /// The accepted tokens (several during a rotation).
        tokens: SecretRefs,
        /// Header carrying the token. Default `authorization`, where it must be `Bearer <token>`;
        /// any other header carries the bare token.
        header: Option<String>,
    },
    /// HTTP Basic credentials (several users/passwords may be active).
    Basic {
        /// Accepted credentials.
        users: Vec<BasicUserRaw>,
    },
    /// A JSON Web Token.
    Jwt {
        /// Allowed algorithms, e.g. `["RS256"]` (one key family). Required.
        algorithms: Vec<String>,
        /// Header carrying the token. Default `authorization` (`Bearer <token>`).
        header: Option<String>,
        /// A PEM public key (RSA, EC, Ed25519) or, for HS*, the shared secret: inline PEM or
        /// `{ file = … }` / `{ env = … }`.
        key: Option<KeyRef>,
        /// A JWKS document: inline JSON or `{ file = … }`.
        jwks: Option<KeyRef>,
        /// A JWKS URL, fetched, cached and refreshed on an unknown `kid`.
        jwks_url: Option<String>,
        /// Least time between two JWKS fetches. Default `60s`.
        min_refresh: Option<HumanDuration>,
        /// How often the JWKS is refetched even when every `kid` is known (a revoked key stops
        /// being trusted). Default `10m`.
        refresh: Option<HumanDuration>,
        /// Accepted `iss` values. Default: not checked.
        issuers: Option<Vec<String>>,
        /// Accepted `aud` values (one must be present). Default: not checked.
        audiences: Option<Vec<String>>,
        /// Claims that must be present. Default `["exp"]`.
        required: Option<Vec<String>>,
        /// Clock skew on `exp`/`nbf`. Default `60s`.
        leeway: Option<HumanDuration>,
        /// Claim ↔ CloudEvents attribute equalities, e.g. `{ jti = "id", sub = "subject" }`.
        bind: Option<std::collections::BTreeMap<String, String>>,
    },
    /// A generic HMAC signature over the raw body.
    Hmac {
        /// The secret(s). Required.
        secret: SecretRefs,
        /// Header carrying the signature. Required.
        header: String,
        /// `sha1`, `sha256` (default) or `sha512`.
        algorithm: Option<String>,
        /// `hex` (default) or `base64`.
        encoding: Option<String>,
        /// Text before the signature, e.g. `sha256=`. Default none.
        prefix: Option<String>,
        /// Signed content: `{body}` (default) or a template such as `{timestamp}.{body}`.
        signed: Option<String>,
        /// Header carrying the timestamp (required when `signed` uses `{timestamp}`).
        timestamp_header: Option<String>,
        /// Allowed clock difference. Default `5m`.
        tolerance: Option<HumanDuration>,
    },
}

/// `[[routes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRaw {
    /// Only events from this source. Default: any source.
    pub source: Option<String>,
    /// Type patterns; `*` = one segment, `**` = one or more (last only). Default `["**"]`.
    pub types: Option<Vec<String>>,
    /// Sinks the matching events go to. Required, at least one.
    pub sinks: Vec<String>,
    /// Fatture in Cloud sources: add the resources behind the ids to the data. Default `false`.
    #[serde(default)]
    pub enrich: bool,
}

/// `[unmatched]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnmatchedRaw {
    /// `drop` (answer 202 `dropped`) or `route` (send to `sinks`). Default `drop`.
    pub policy: Option<String>,
    /// Sinks for unmatched events when `policy = "route"`.
    pub sinks: Option<Vec<String>>,
}

/// `[dedup]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupRaw {
    /// Answer re-sent events `duplicate` without publishing again. Default `true`.
    pub enabled: Option<bool>,
    /// How long an event id is remembered after it was delivered. Default `1h`.
    pub window: Option<HumanDuration>,
    /// Most ids remembered; the oldest are forgotten first. Default `100000`.
    pub max_entries: Option<usize>,
    /// A file keeping the remembered ids across restarts (created if missing; one process at a
    /// time). Default: none, ids are kept in memory only.
    pub path: Option<std::path::PathBuf>,
}

/// `[sources.NAME.verify]` for `kind = "fattureincloud"` (every key optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FicVerifyRaw {
    /// FIC's ES256 public key: inline PEM, `{ file = … }` or `{ env = … }`. Default: the key FIC
    /// publishes, compiled in.
    pub public_key: Option<KeyRef>,
    /// Clock skew allowed on `exp`/`nbf`. Default `60s`.
    pub leeway: Option<HumanDuration>,
    /// Accept only tokens whose `aid` (FIC application id) is listed. One of `app_ids` and
    /// `companies` is required unless `allow_any_company = true`.
    pub app_ids: Option<Vec<IdText>>,
    /// Accept only these companies (`123` or `"company:123"`, matched against `sub`).
    pub companies: Option<Vec<IdText>>,
    /// Accept events of every FIC company and application: any FIC customer who learns the
    /// public URL can subscribe it and publish into your brokers. Default `false`.
    pub allow_any_company: Option<bool>,
    /// Require a valid token (signature, `iss`, `exp`, `aud`) on the verification GET.
    /// Default `true`.
    pub challenge_requires_token: Option<bool>,
    /// Also apply `app_ids`/`companies` to the GET's token (unconfirmed that FIC sends `sub` there).
    /// Default `false`.
    pub challenge_checks_allow_lists: Option<bool>,
}

/// A public key: inline PEM text or a reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum KeyRef {
    /// PEM text.
    Pem(String),
    /// `{ file = … }` or `{ env = … }`.
    Ref(super::secret::SecretRef),
}

/// An id written as a number or a string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IdText {
    /// `123`.
    Int(i64),
    /// `"123"`.
    Text(String),
}

impl IdText {
    /// The id as text.
    pub fn text(&self) -> String {
        match self {
            IdText::Int(i) => i.to_string(),
            IdText::Text(s) => s.clone(),
        }
    }
}

/// `[spool]`: the durable local store behind `delivery = "spool"` sources.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolRaw {
    /// Directory of the spool (created if missing; one process at a time). Default
    /// `hookbridge-spool`.
    pub dir: Option<std::path::PathBuf>,
    /// Most events held; past it new events get 503. Default `1000000`.
    pub max_events: Option<u64>,
    /// Most bytes held; past it new events get 503. Default `1GiB`.
    pub max_bytes: Option<ByteSize>,
    /// Most parked dead letters; at it new events get 503 until an operator replays or
    /// discards some (`hookbridge replay/discard --parked`). Default `10000`.
    pub max_parked: Option<u64>,
    /// First retry delay of a forwarder. Default `200ms`.
    pub retry_initial: Option<HumanDuration>,
    /// Largest retry delay of a forwarder. Default `30s`.
    pub retry_max: Option<HumanDuration>,
    /// Attempts per event and sink before it is dead-lettered (retryable failures), counted only
    /// while the sink takes other events (an outage parks nothing). Default `20`;
    /// `"unlimited"` retries until the sink takes it.
    pub max_attempts: Option<MaxAttempts>,
    /// Sinks whose forwarder keeps one publish in flight, so they receive events in spool order,
    /// retries included (default: up to 64 in flight; see the README on order).
    #[serde(default)]
    pub strict_order: Vec<String>,
    /// How long delivered events are kept for `hookbridge replay`. Default `24h`; `0s` keeps
    /// nothing.
    pub retain: Option<HumanDuration>,
    /// Most bytes of delivered events kept for replay (the oldest go first). Default `256MiB`.
    pub retain_max_bytes: Option<ByteSize>,
}

/// `spool.max_attempts`: a count, or `"unlimited"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MaxAttempts {
    /// Attempts.
    Count(u32),
    /// `"unlimited"`.
    Word(String),
}

/// `[dead_letter]`: where events go that a sink refused permanently or that exhausted
/// `spool.max_attempts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterRaw {
    /// The sink receiving them (the original event plus `hbdl*` extensions saying why). Required.
    pub sink: String,
}

/// `[quarantine]`: where rejected requests go for debugging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRaw {
    /// The sink receiving them. Required.
    pub sink: String,
    /// Body bytes kept (the rest is cut, and marked so). Default `16KiB`.
    pub max_body: Option<ByteSize>,
    /// Most quarantined requests per second (the rest are counted, not sent). Default `10`.
    pub per_second: Option<u32>,
}
