//! Configured verifiers: each a [`Verify`] built from a source's `verify` table, pairing the
//! pure checks of `crate::verify` with the source's secrets or keys — and the signer `hookbridge
//! send` uses, beside the check it must pass. The generic ones (`none`, `token`, `basic`,
//! `hmac`, `jwt`) are here; provider presets live with their provider (`super::github`, …).

pub mod hmac;
pub mod jwt;

use std::sync::Arc;

use base64::Engine as _;
use http::HeaderMap;

use crate::settings::raw::{CloudEventsVerifyRaw, KeyRef};
use crate::settings::secret::{Secret, SecretRefs, SECRET_HINT};
use crate::settings::Checker;
use crate::verify::{self, Verified, VerifyError};

/// A request being built by `hookbridge send`: the source's example, then signed.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// The event id (also the signed id of schemes that sign one).
    pub id: String,
    /// Unix time to sign with.
    pub now: i64,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Draft {
    /// The value of header `name`, if set.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(h, _)| h == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How a source authenticates requests.
#[async_trait::async_trait]
pub trait Verify: Send + Sync + std::fmt::Debug {
    /// The verifier's kind, recorded in the `hbverifier` extension.
    fn kind(&self) -> &'static str;

    /// Whether the credential is in the headers alone: such requests are verified before their
    /// body is read, and before they take a request slot. Body-signed verifiers say `false`.
    fn header_only(&self) -> bool {
        true
    }

    /// What a body-signed verifier can check before the body arrives: the signature header is
    /// present and well-formed and a signed timestamp is within tolerance.
    fn precheck(&self, _headers: &HeaderMap, _now: u64) -> Result<(), VerifyError> {
        Ok(())
    }

    /// Verifies a request at unix time `now` with what is at hand (a JWKS verifier: its cache).
    fn verify_now(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError>;

    /// Verifies a request, fetching keys first where the verifier has to (a JWKS `kid` not yet
    /// known).
    async fn verify(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError> {
        self.verify_now(headers, body, now)
    }

    /// The headers this verifier reads a credential from beyond the well-known ones
    /// ([`verify::SECRET_HEADERS`]): never quarantined and never kept.
    fn credential_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Adds the credential this verifier accepts to a request `send` builds; `key` is the
    /// signing key from the command line, for verifiers whose keys the configuration does not
    /// hold (a JWT issuer's private key).
    fn sign(&self, draft: &mut Draft, key: Option<&[u8]>) -> Result<(), String>;
}

/// `verify = { kind = "none" }`.
#[derive(Debug)]
pub struct NoVerifier;

impl Verify for NoVerifier {
    fn kind(&self) -> &'static str {
        "none"
    }

    fn verify_now(&self, _: &HeaderMap, _: &[u8], _: u64) -> Result<Verified, VerifyError> {
        Ok(Verified::default())
    }

    fn sign(&self, _: &mut Draft, _: Option<&[u8]>) -> Result<(), String> {
        Ok(())
    }
}

/// A static token: `Authorization: Bearer <token>` or a bare token in another header.
#[derive(Debug)]
pub struct TokenVerifier {
    /// Accepted tokens (rotation: any of them).
    pub tokens: Vec<Secret>,
    /// Lower-case header name.
    pub header: String,
}

impl Verify for TokenVerifier {
    fn kind(&self) -> &'static str {
        "token"
    }

    fn verify_now(&self, headers: &HeaderMap, _: &[u8], _: u64) -> Result<Verified, VerifyError> {
        verify::token::verify(headers, &self.header, &self.tokens).map(|()| Verified::default())
    }

    fn credential_headers(&self) -> Vec<String> {
        vec![self.header.clone()]
    }

    fn sign(&self, draft: &mut Draft, _: Option<&[u8]>) -> Result<(), String> {
        // The newest token (last listed) is the one a sender would use after a rotation.
        let token = self.tokens.last().ok_or("no token configured")?;
        let text = String::from_utf8_lossy(token.expose()).into_owned();
        let value = if self.header == "authorization" {
            format!("Bearer {text}")
        } else {
            text
        };
        draft.headers.push((self.header.clone(), value));
        Ok(())
    }
}

/// HTTP Basic: `(user, password)` pairs.
#[derive(Debug)]
pub struct BasicVerifier {
    /// Accepted credentials.
    pub users: Vec<(String, Vec<u8>)>,
}

impl Verify for BasicVerifier {
    fn kind(&self) -> &'static str {
        "basic"
    }

    fn verify_now(&self, headers: &HeaderMap, _: &[u8], _: u64) -> Result<Verified, VerifyError> {
        verify::hmac::basic(headers, &self.users).map(|()| Verified::default())
    }

    fn sign(&self, draft: &mut Draft, _: Option<&[u8]>) -> Result<(), String> {
        let (user, pass) = self.users.last().ok_or("no user configured")?;
        let mut pair = format!("{user}:").into_bytes();
        pair.extend_from_slice(pass);
        let b64 = base64::engine::general_purpose::STANDARD;
        draft
            .headers
            .push(("authorization".into(), format!("Basic {}", b64.encode(pair))));
        Ok(())
    }
}

/// `now` as the signed unix seconds the HMAC schemes compare timestamps in.
pub fn signed_now(now: u64) -> i64 {
    i64::try_from(now).unwrap_or(i64::MAX)
}

/// The newest of a list of secrets (last listed): what a sender signs with after a rotation.
pub fn newest<'a>(list: &'a [Vec<u8>], what: &str) -> Result<&'a [u8], String> {
    list.last()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("no {what} configured"))
}

/// The bytes of a key: inline PEM text, or what a reference names.
pub fn read_key(c: &mut Checker<'_>, key: &str, r: &KeyRef) -> Option<Vec<u8>> {
    match r {
        KeyRef::Pem(text) => Some(text.as_bytes().to_vec()),
        KeyRef::Ref(r) => match r.resolve() {
            Ok(s) => Some(s.expose().to_vec()),
            Err(m) => {
                c.error(key, m, Some(SECRET_HINT.into()));
                None
            }
        },
    }
}

/// A generic `verify` table (`none`, `token`, `basic`, `hmac`, `jwt`) at `key`; `loopback`:
/// whether the webhook listener is loopback only (`none` needs `allow_public` elsewhere).
pub fn check(c: &mut Checker<'_>, key: &str, loopback: bool) -> Option<Arc<dyn Verify>> {
    let raw = c.extract::<CloudEventsVerifyRaw>(key)?;
    match raw {
        CloudEventsVerifyRaw::Basic { .. } | CloudEventsVerifyRaw::Hmac { .. } => hmac::check(c, key, raw),
        CloudEventsVerifyRaw::Jwt { .. } => jwt::check(c, key, raw),
        CloudEventsVerifyRaw::None { allow_public } => {
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
            Some(Arc::new(NoVerifier))
        }
        CloudEventsVerifyRaw::Token { tokens, header } => check_token(c, key, &tokens, header),
    }
}

fn check_token(
    c: &mut Checker<'_>,
    key: &str,
    tokens: &SecretRefs,
    header: Option<String>,
) -> Option<Arc<dyn Verify>> {
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
    Some(Arc::new(TokenVerifier {
        tokens: resolved,
        header,
    }))
}
