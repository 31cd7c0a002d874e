//! `[sinks.NAME]` with `type = "http"`.

use std::collections::BTreeMap;

use hookbridge_sink_core::settings::{HumanDuration, SecretRef};
use hookbridge_sink_core::{Mode, Template};
use serde::Deserialize;

/// Default `timeout`.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);
/// Default `connect_timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// HTTP sink settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Target URL template. Required.
    pub url: String,
    /// `POST` (default) or `PUT`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Extra headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// CloudEvents binding: `binary` (default) or `structured`.
    #[serde(default)]
    pub mode: Mode,
    /// Whole-request timeout. Default `4s`; must be shorter than `server.publish_timeout`.
    pub timeout: Option<HumanDuration>,
    /// Connection timeout. Default `2s`.
    pub connect_timeout: Option<HumanDuration>,
    /// Redirects followed; `0` (default) means a 3xx is a failure.
    #[serde(default)]
    pub max_redirects: usize,
    /// `Authorization` header from a secret.
    pub auth: Option<Auth>,
    /// Sign requests with Standard Webhooks.
    pub sign: Option<Signing>,
    /// Idle keep-alive connections kept per host. Default `16`.
    pub pool_max_idle_per_host: Option<usize>,
}

/// `auth`: `{ bearer = <secret> }` or `{ basic = { username = "…", password = <secret> } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Auth {
    /// `Authorization: Bearer <token>`.
    Bearer(SecretRef),
    /// `Authorization: Basic …`.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: SecretRef,
    },
}

/// `sign`: Standard Webhooks signing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signing {
    /// The `whsec_…` secret shared with the receiver.
    pub secret: SecretRef,
}

fn default_method() -> String {
    "POST".to_owned()
}

impl HttpConfig {
    /// The sink's own time limits, each with its key and default: hookbridge checks them against
    /// `server.publish_timeout` (which would cut a longer one first) and fits the unset ones
    /// below it.
    pub fn timeouts_mut(&mut self) -> Vec<(&'static str, &mut Option<HumanDuration>, std::time::Duration)> {
        vec![
            ("timeout", &mut self.timeout, DEFAULT_TIMEOUT),
            (
                "connect_timeout",
                &mut self.connect_timeout,
                DEFAULT_CONNECT_TIMEOUT,
            ),
        ]
    }

    /// Every secret the sink reads, with its key (`check` resolves them all).
    pub fn secrets(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut out = Vec::new();
        match &self.auth {
            Some(Auth::Bearer(t)) => out.push(("auth.bearer", t)),
            Some(Auth::Basic { password, .. }) => out.push(("auth.basic.password", password)),
            None => {}
        }
        if let Some(s) = &self.sign {
            out.push(("sign.secret", &s.secret));
        }
        out
    }

    /// Pure validation: `(key, message)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        match Template::compile(&self.url) {
            Err(e) => errors.push(("url".to_owned(), format!("bad template: {e}"))),
            Ok(_) if !(self.url.starts_with("http://") || self.url.starts_with("https://")) => {
                errors.push(("url".to_owned(), "must start with http:// or https://".to_owned()));
            }
            Ok(t) if t.has_field_in_authority() => errors.push((
                "url".to_owned(),
                "a template field in the host or port would let an event choose where the \
                 sink's credentials and signature go; use fields in the path or query only"
                    .to_owned(),
            )),
            Ok(_) => {}
        }
        for (name, value) in &self.headers {
            if let Err(e) = Template::compile(value) {
                errors.push((format!("headers.{name}"), format!("bad template: {e}")));
            }
            let lower = name.to_ascii_lowercase();
            // Headers the sink writes itself: a configured one would go out as a second copy.
            // `authorization` only with `auth` and the signature's only with `sign`: without
            // them a configured header is the only copy (e.g. a custom `ApiKey` scheme).
            let written = ["idempotency-key", "content-type"].contains(&lower.as_str())
                || lower.starts_with("ce-")
                || (lower == "authorization" && self.auth.is_some())
                || (lower.starts_with("webhook-") && self.sign.is_some());
            if written {
                errors.push((
                    format!("headers.{name}"),
                    "set by the sink itself (auth, the delivery key, the CloudEvents binding or the signature); a second copy would be sent".to_owned(),
                ));
            }
        }
        if !["POST", "PUT"].contains(&self.method.to_ascii_uppercase().as_str()) {
            errors.push(("method".to_owned(), format!("{:?}: use POST or PUT", self.method)));
        }
        errors
    }
}
