//! Sources: what arrives at a path, and how it becomes events. One module per `kind`, each a
//! [`Kind`] in [`KINDS`] — the registry, and the only list of kinds. A kind checks its own
//! settings and returns a [`Provider`] (decode to events, answer a handshake, make an example
//! request for `hookbridge send`, enrich) and a [`Verify`] (check the credential, sign for
//! `send`). The request handler runs every source through the same steps: verify → decode →
//! bind → stamp → enrich → deliver → reply.
//!
//! # Adding a provider
//! One file, `src/sources/<provider>.rs`, holding a `pub const KIND: Kind` whose `check` builds
//! the provider (and its verifier: a preset of `verifiers::hmac`, a struct of its own beside
//! the provider, or the generic `verify` table through [`verifiers::check`]); one line in
//! [`KINDS`]; its tests. `src/sources/gitlab.rs` is the smallest complete example: a token
//! header (`X-Gitlab-Token`) and a type from `X-Gitlab-Event`.

mod check;
pub mod cloudevents;
pub mod fic;
pub mod generic;
pub mod github;
pub mod gitlab;
pub mod standard_webhooks;
pub mod stripe;
pub mod verifiers;

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use hookbridge_sink_core::Event;
use http::HeaderMap;

pub use check::check_sources;
pub use verifiers::{Draft, Verify};

use crate::code::Code;
use crate::normalize::NormalizeError;
use crate::settings::raw::SourceRaw;
use crate::settings::Checker;

/// Every source kind hookbridge knows.
pub const KINDS: &[Kind] = &[
    cloudevents::KIND,
    fic::KIND,
    github::KIND,
    gitlab::KIND,
    stripe::KIND,
    standard_webhooks::KIND,
    generic::KIND,
];

/// The kind named `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// One source kind of the registry.
pub struct Kind {
    /// The `kind` value in `[sources.NAME]`.
    pub name: &'static str,
    /// The keys of `[sources.NAME]` beyond the common ones that this kind reads (`mapping`,
    /// `public_url`, `api`, `subscription`); any other kind refuses them.
    pub keys: &'static [&'static str],
    /// The default of `dedup_on`: `true` when the signature covers the body only, so the id
    /// (from an unsigned header) cannot be trusted to key duplicates.
    pub dedup_on_body: bool,
    /// Checks the kind's settings, recording every error; `None` when any was found.
    pub check: fn(&mut KindCheck<'_, '_>) -> Option<Checked>,
}

/// What a kind's check reads: the checker, the source's key path and table, and whether the
/// webhook listener is loopback only (`verify = { kind = "none" }` is refused elsewhere).
pub struct KindCheck<'c, 'a> {
    /// The checker (errors, warnings, table extraction).
    pub c: &'c mut Checker<'a>,
    /// `sources.NAME`.
    pub key: &'c str,
    /// `NAME`.
    pub name: &'c str,
    /// The table as written.
    pub raw: &'c SourceRaw,
    /// Whether the webhook listener is bound to a loopback address.
    pub loopback: bool,
}

impl KindCheck<'_, '_> {
    /// The source's generic `verify` table (`none`, `token`, `basic`, `hmac`, `jwt`).
    pub fn generic_verifier(&mut self) -> Option<Arc<dyn Verify>> {
        if self.raw.verify.is_none() {
            self.c.error(
                format!("{}.verify", self.key),
                "missing verifier configuration",
                Some("every source needs a [verify] table; use verify = { kind = \"none\" } to accept unauthenticated events explicitly".into()),
            );
            return None;
        }
        verifiers::check(self.c, &format!("{}.verify", self.key), self.loopback)
    }
}

/// What a kind's check builds.
pub struct Checked {
    /// Decoding, handshakes, examples, enrichment.
    pub provider: Arc<dyn Provider>,
    /// The credential check.
    pub verifier: Arc<dyn Verify>,
}

/// A GET handshake's answer: a JSON body (200), or a refusal.
pub type Handshake = Result<serde_json::Value, (Code, Option<String>)>;

/// What a source does with a verified request, and everything kind-specific around it.
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The kind's name.
    fn kind(&self) -> &'static str;

    /// A verified request → its events (one, or a batch).
    fn decode(&self, source: &str, headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError>;

    /// The answer to a GET (a provider's verification handshake); `None`: GET is not allowed.
    fn handshake(&self, _headers: &HeaderMap, _query: Option<&str>, _now: u64) -> Option<Handshake> {
        None
    }

    /// The methods the source's path answers (the `Allow` header of a 405).
    fn methods(&self) -> &'static str {
        "POST"
    }

    /// Fills a request for `hookbridge send` (headers and body, before signing): the event
    /// type `ty` (or the kind's default) and `data` (or the kind's default body).
    fn example(&self, draft: &mut Draft, ty: Option<&str>, data: Option<&[u8]>, extra: &Example);

    /// An enricher for this source's events, if it has one configured (built once per
    /// configuration: it holds caches and clients).
    fn enricher(&self) -> Option<Arc<dyn Enrich>> {
        None
    }

    /// Whether the source has enrichment configured (routes with `enrich = true` need one).
    fn enriches(&self) -> bool {
        false
    }

    /// For kind-specific tooling (`hookbridge fic …`).
    fn as_any(&self) -> &dyn Any;
}

/// Example settings a provider may use beyond type and data.
#[derive(Debug, Clone, Default)]
pub struct Example {
    /// Fatture in Cloud: the company id of the event's subject. Default `1`.
    pub company: Option<String>,
}

/// What enrichment did to an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not applicable (a `.delete`, no ids, unknown family).
    NotApplicable,
    /// Every resource added.
    Enriched,
    /// Some resources could not be fetched (`hbenrich = "partial"`).
    Partial,
    /// The provider's API unavailable or quota spent: published without resources
    /// (`hbenrich = "skipped"`).
    Skipped,
    /// The API unavailable and the source asks for a retry: answer 503.
    Retry,
}

/// Adds what a provider's notification only points at (resources behind ids).
#[async_trait::async_trait]
pub trait Enrich: Send + Sync {
    /// Enriches one event in place.
    async fn enrich(&self, event: &mut Event) -> Outcome;
}

/// Delivery mode of a source: when the HTTP answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// After every chosen sink acked.
    Sync,
    /// After the event is fsynced to the spool; forwarders deliver it later.
    Spool,
}

/// One `[sources.NAME]`, checked.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The table name.
    pub name: String,
    /// URL path.
    pub path: String,
    /// What arrives, and how it becomes events.
    pub provider: Arc<dyn Provider>,
    /// Delivery mode.
    pub delivery: Delivery,
    /// How requests are authenticated.
    pub verifier: Arc<dyn Verify>,
    /// Lower-case names of the request headers copied into events.
    pub keep_headers: Vec<String>,
    /// Dedup keys events on a digest of the raw body (`dedup_on = "body"`), not their id.
    pub dedup_on_body: bool,
}

impl SourceConfig {
    /// The provider as its concrete type, when it is one (`fic::Fic`).
    pub fn provider_as<T: 'static>(&self) -> Option<&T> {
        self.provider.as_any().downcast_ref::<T>()
    }
}
