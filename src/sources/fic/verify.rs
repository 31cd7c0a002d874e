//! Fatture in Cloud: the ES256 JWT FIC sends in `Authorization: Bearer` on every notification and
//! verification GET (providers.md §1.4), and the verification challenge (§1.2).
//!
//! Pure: the key, the configuration and `now` come in; nothing is fetched. The algorithm is
//! pinned to ES256 (an HS256 token "signed" with the public key, or `alg: none`, fails), and
//! lifetimes are checked here against the caller's `now` rather than the system clock, so tests
//! can use a fixed time.

use std::collections::BTreeSet;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
// The unit tests (written against the pre-preset version and kept untouched) use it via `super::*`.
#[cfg(test)]
use serde_json::Map;

use crate::verify::{jwt, Binding, Verified, VerifyError};

/// The issuer FIC puts in `iss`.
pub const FIC_ISSUER: &str = "https://api-v2.fattureincloud.it";

/// FIC's published ES256 public key (providers.md §1.4), the default for `verify.public_key`.
pub const FIC_PUBLIC_KEY_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE/RoHIjgY7hfXfY5p/Jy+K/FguMZ4
3TvZ9t4eN7+kxQ0MJzKtowv4CcYTFqrBm7hMB5ZWKnqLz24D6lQjSL0Ysw==
-----END PUBLIC KEY-----
";

/// The header and query parameter carrying the verification challenge.
pub const CHALLENGE: &str = "x-fic-verification-challenge";

/// Checked settings of a `fattureincloud` source.
#[derive(Clone)]
pub struct FicVerifier {
    key: DecodingKey,
    /// What FIC puts in `aud` (the subscription's sink URL).
    pub public_url: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway: u64,
    /// Allowed `aid` values (empty: any).
    pub app_ids: BTreeSet<String>,
    /// Allowed subjects, as `company:<id>` (empty: any).
    pub companies: BTreeSet<String>,
    /// Require a valid token on the verification GET (signature, `iss`, `exp`, `aud`).
    pub challenge_requires_token: bool,
    /// Also apply the `app_ids`/`companies` allow-lists to the GET's token.
    pub challenge_checks_allow_lists: bool,
}

impl std::fmt::Debug for FicVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FicVerifier")
            .field("public_url", &self.public_url)
            .field("leeway", &self.leeway)
            .field("app_ids", &self.app_ids)
            .field("companies", &self.companies)
            .finish_non_exhaustive()
    }
}

/// The claims that bind a token to an event, kept for the checks after parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FicClaims {
    /// `sub`: `company:<id>`.
    pub sub: Option<String>,
    /// `jti`: the CloudEvents id.
    pub jti: Option<String>,
}

/// Which request the token came with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A POST notification: every claim is required.
    Notification,
    /// The verification GET: `sub`/`jti` are not required (unconfirmed that FIC sends them).
    Challenge,
}

impl FicVerifier {
    /// A verifier from a PEM public key (SPKI, P-256).
    pub fn new(public_key_pem: &[u8], public_url: String) -> Result<Self, String> {
        let key = DecodingKey::from_ec_pem(public_key_pem)
            .map_err(|e| format!("not an EC public key in PEM: {e}"))?;
        Ok(FicVerifier {
            key,
            public_url,
            leeway: 60,
            app_ids: BTreeSet::new(),
            companies: BTreeSet::new(),
            challenge_requires_token: true,
            challenge_checks_allow_lists: false,
        })
    }

    /// Verifies the bearer token of a request at unix time `now`. FIC is a preset of the generic
    /// JWT machinery ([`super::jwt`]): ES256 only, `iss` exact, `aud` containing the public URL
    /// (with or without a query string), `exp`/`nbf` with leeway, `sub`/`jti` required on
    /// notifications; then FIC's allow-lists.
    pub fn verify(&self, headers: &HeaderMap, now: u64, purpose: Purpose) -> Result<FicClaims, VerifyError> {
        let token = jwt::token(headers, "authorization")?;
        let mut required = vec!["exp".to_owned(), "iss".to_owned(), "aud".to_owned()];
        if purpose == Purpose::Notification {
            required.extend(["sub".to_owned(), "jti".to_owned()]);
        }
        let spec = jwt::JwtSpec {
            algorithms: vec![Algorithm::ES256],
            header: "authorization".to_owned(),
            issuers: vec![FIC_ISSUER.to_owned()],
            audiences: vec![self.public_url.clone()],
            required,
            leeway: self.leeway,
            bindings: Vec::new(),
            audience_ignore_query: true,
        };
        let keys = jwt::KeySet {
            keys: vec![jwt::Key {
                kid: None,
                key: self.key.clone(),
            }],
        };
        let claims = jwt::verify(&spec, token, &keys, now)?;
        let text = |name: &str| claims.get(name).and_then(crate::verify::claim_text);
        let out = FicClaims {
            sub: text("sub"),
            jti: text("jti"),
        };
        let check_lists = purpose == Purpose::Notification || self.challenge_checks_allow_lists;
        if check_lists {
            if !self.app_ids.is_empty() && !text("aid").is_some_and(|a| self.app_ids.contains(&a)) {
                return Err(VerifyError::NotAllowed);
            }
            if !self.companies.is_empty() && !out.sub.as_ref().is_some_and(|s| self.companies.contains(s)) {
                return Err(VerifyError::NotAllowed);
            }
        }
        Ok(out)
    }

    /// Checks the token ↔ event bindings: `jti == id`, `sub == subject` (as the pipeline does,
    /// through [`Verified::bind`]).
    pub fn check_event(claims: &FicClaims, id: &str, subject: Option<&str>) -> Result<(), VerifyError> {
        Verified::from(claims).bind(|a| match a {
            "id" => Some(id.to_owned()),
            "subject" => subject.map(str::to_owned),
            _ => None,
        })
    }
}

/// A notification token's bindings, shared by every request.
static BINDINGS: std::sync::LazyLock<std::sync::Arc<[Binding]>> = std::sync::LazyLock::new(|| {
    std::sync::Arc::from([
        Binding::required("jti", "id"),
        Binding::optional("sub", "subject"),
    ])
});

impl From<&FicClaims> for Verified {
    /// The claims of a notification's token, bound to the event: `jti` to its id (required),
    /// `sub` to its subject (as they are: a `sub` without text matches an event without a
    /// subject, as FIC's check always did).
    fn from(c: &FicClaims) -> Verified {
        let mut claims = serde_json::Map::new();
        for (name, value) in [("jti", &c.jti), ("sub", &c.sub)] {
            if let Some(v) = value {
                claims.insert(name.to_owned(), Value::String(v.clone()));
            }
        }
        Verified {
            claims,
            bindings: BINDINGS.clone(),
        }
    }
}

/// Why a challenge value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadChallenge(pub String);

/// The challenge of a verification GET, from the header or the query string: 1–256 characters
/// of `[A-Za-z0-9._-]`. Both present and different is refused.
pub fn challenge(headers: &HeaderMap, query: Option<&str>) -> Result<String, BadChallenge> {
    let mut from_header = headers.get_all(CHALLENGE).iter();
    let header = from_header.next();
    if from_header.next().is_some() {
        return Err(BadChallenge("the challenge header appears more than once".into()));
    }
    let header = header
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| BadChallenge("the challenge header is not ASCII".into()))
        })
        .transpose()?;
    let mut from_query = query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(k, _)| *k == CHALLENGE)
        .map(|(_, v)| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        });
    let query = from_query.next();
    if from_query.next().is_some() {
        return Err(BadChallenge(
            "the challenge parameter appears more than once".into(),
        ));
    }
    let value = match (header, query) {
        (Some(h), Some(q)) if h != q => {
            return Err(BadChallenge(
                "the challenge header and query parameter differ".into(),
            ))
        }
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => return Err(BadChallenge(format!("no {CHALLENGE} header or query parameter"))),
    };
    let valid = (1..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(BadChallenge(
            "the challenge must be 1-256 characters of A-Z a-z 0-9 . _ -".into(),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
