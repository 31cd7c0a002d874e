//! `hookbridge send`: builds a request the source's verifier accepts, using the secrets the
//! configuration names (or a signing key given on the command line: a JWT issuer's, or a test
//! key for Fatture in Cloud). The example comes from the source's kind, the signature from its
//! verifier (`crate::sources`).

use crate::config::Config;
use crate::sources::{Draft, Example};

/// What to send.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Event type; a per-kind default when absent.
    pub ty: Option<String>,
    /// Body; a per-kind default when absent.
    pub data: Option<Vec<u8>>,
    /// Target URL; default `http://<listen><path>`.
    pub url: Option<String>,
    /// PEM EC private key for sources verified with ES256 (Fatture in Cloud).
    pub key_pem: Option<Vec<u8>>,
    /// Company id for Fatture in Cloud (`subject = company:<id>`). Default `1`.
    pub company: Option<String>,
    /// Unix time to sign with (tests); default now.
    pub now: Option<i64>,
    /// Event id; default a fresh one (load generators pass their own unique ids).
    pub id: Option<String>,
}

/// A built request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method (`POST`).
    pub method: &'static str,
    /// Target URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A fresh event id.
fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("hbsend-{nanos:x}-{}", std::process::id())
}

/// Builds the request for source `name`: the source kind's example (type and body as given, or
/// its defaults), signed by the source's verifier.
pub fn build(config: &Config, name: &str, opts: &Options) -> Result<Request, String> {
    let source = config
        .sources
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no source named {name:?}"))?;
    let url = opts.url.clone().unwrap_or_else(|| {
        let mut addr = config.server.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}{}", source.path)
    });
    let mut draft = Draft {
        id: opts.id.clone().unwrap_or_else(new_id),
        now: opts.now.unwrap_or_else(now),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Vec::new(),
    };
    let extra = Example {
        company: opts.company.clone(),
    };
    source
        .provider
        .example(&mut draft, opts.ty.as_deref(), opts.data.as_deref(), &extra);
    source.verifier.sign(&mut draft, opts.key_pem.as_deref())?;
    Ok(Request {
        method: "POST",
        url,
        headers: draft.headers,
        body: draft.body,
    })
}
