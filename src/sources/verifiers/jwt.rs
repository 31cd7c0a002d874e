//! `verify = { kind = "jwt", … }`: a JSON Web Token checked with fixed keys or a JWKS URL
//! (fetched by `crate::keys`), its claims bound to the event's attributes; and its signer.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::{read_key, Draft, Verify};
use crate::keys::{key_set_from_jwks, JwksProvider};
use crate::settings::raw::{CloudEventsVerifyRaw, KeyRef};
use crate::settings::secret::SECRET_HINT;
use crate::settings::Checker;
use crate::verify::jwt::{self as primitive, JwtSpec, Key, KeySet};
use crate::verify::{Binding, Verified, VerifyError};

/// Where a `jwt` verifier's keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// Fixed keys (PEM, JWK, inline JWKS).
    Static(Arc<KeySet>),
    /// A JWKS URL, fetched and cached by [`JwksProvider`].
    Jwks(Arc<JwksProvider>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Static(k) => write!(f, "Static({} keys)", k.keys.len()),
            KeySource::Jwks(p) => write!(f, "Jwks({})", p.url()),
        }
    }
}

/// A generic JWT verifier.
pub struct JwtVerifier {
    /// What is checked.
    pub spec: Arc<JwtSpec>,
    /// Where the keys come from.
    pub keys: KeySource,
    /// `spec.bindings`, as every verified request carries them.
    pub bindings: Arc<[Binding]>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    fn verified(&self, token: &str, set: &KeySet, now: u64) -> Result<Verified, VerifyError> {
        let claims = primitive::verify(&self.spec, token, set, now)?;
        Ok(Verified {
            claims,
            bindings: self.bindings.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Verify for JwtVerifier {
    fn kind(&self) -> &'static str {
        "jwt"
    }

    fn verify_now(&self, headers: &HeaderMap, _: &[u8], now: u64) -> Result<Verified, VerifyError> {
        let token = primitive::token(headers, &self.spec.header)?;
        let set = match &self.keys {
            KeySource::Static(k) => k.clone(),
            // Synchronous callers see the cache only; `verify` refreshes it.
            KeySource::Jwks(p) => p.current(),
        };
        self.verified(token, &set, now)
    }

    /// First refreshes a JWKS when the token names an unknown `kid` (rate-limited by the key
    /// provider).
    async fn verify(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError> {
        let KeySource::Jwks(provider) = &self.keys else {
            return self.verify_now(headers, body, now);
        };
        let token = primitive::token(headers, &self.spec.header)?;
        let set = provider
            .keys_for(primitive::kid_of(token).as_deref())
            .await
            .map_err(|_| VerifyError::KeysUnavailable)?;
        self.verified(token, &set, now)
    }

    fn credential_headers(&self) -> Vec<String> {
        vec![self.spec.header.clone()]
    }

    fn sign(&self, draft: &mut Draft, key: Option<&[u8]>) -> Result<(), String> {
        let token = token_for(&self.spec, draft, key)?;
        let value = if self.spec.header == "authorization" {
            format!("Bearer {token}")
        } else {
            token
        };
        draft.headers.push((self.spec.header.clone(), value));
        Ok(())
    }
}

/// A token the verifier accepts: its first algorithm, `key` (PEM private key, or the shared
/// secret for HS*), the first issuer, every audience, and each bound claim set to the event
/// attribute it must equal (read from the request's `ce-*` headers, or the id).
fn token_for(spec: &JwtSpec, draft: &Draft, key: Option<&[u8]>) -> Result<String, String> {
    let key = key.ok_or(
        "this source verifies JWTs: pass --key with the signing key (PEM private key, or the HS* secret)",
    )?;
    let alg = *spec.algorithms.first().ok_or("the source allows no algorithm")?;
    let encoding = match alg.family() {
        AlgorithmFamily::Hmac => jsonwebtoken::EncodingKey::from_secret(key.trim_ascii_end()),
        AlgorithmFamily::Rsa => jsonwebtoken::EncodingKey::from_rsa_pem(key),
        AlgorithmFamily::Ec => jsonwebtoken::EncodingKey::from_ec_pem(key),
        AlgorithmFamily::Ed => jsonwebtoken::EncodingKey::from_ed_pem(key),
    }
    .map_err(|e| format!("--key: {e}"))?;
    let attribute = |name: &str| {
        draft
            .header(&format!("ce-{name}"))
            .map(str::to_owned)
            .or_else(|| (name == "id").then(|| draft.id.clone()))
    };
    let t = draft.now;
    let mut claims = serde_json::json!({ "iat": t, "exp": t + 600 });
    if let Some(iss) = spec.issuers.first() {
        claims["iss"] = iss.clone().into();
    }
    if !spec.audiences.is_empty() {
        claims["aud"] = spec.audiences.clone().into();
    }
    for (claim, attr) in &spec.bindings {
        let value = attribute(attr)
            .ok_or_else(|| format!("cannot bind claim {claim:?}: the request has no {attr:?}"))?;
        claims[claim.as_str()] = value.into();
    }
    for name in &spec.required {
        if claims.get(name).is_none() {
            claims[name.as_str()] = match name.as_str() {
                "jti" => draft.id.clone(),
                _ => "hookbridge-send".to_owned(),
            }
            .into();
        }
    }
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &encoding)
        .map_err(|e| format!("cannot sign: {e}"))
}

/// The allowed algorithms: known names (unknown ones recorded). `None` when they mix key
/// families (recorded).
fn algorithms(c: &mut Checker<'_>, key: &str, names: &[String]) -> Option<Vec<Algorithm>> {
    let mut algs = Vec::new();
    for (i, a) in names.iter().enumerate() {
        match Algorithm::from_str(a) {
            Ok(alg) => algs.push(alg),
            Err(_) => c.error(
                format!("{key}.algorithms[{i}]"),
                format!("unknown algorithm {a:?}"),
                Some("HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA".into()),
            ),
        }
    }
    if names.is_empty() {
        c.error(format!("{key}.algorithms"), "at least one algorithm", None);
    }
    if algs.windows(2).any(|w| w[0].family() != w[1].family()) {
        c.error(
            format!("{key}.algorithms"),
            "all algorithms must use one key family",
            None,
        );
        return None;
    }
    Some(algs)
}

/// Where the keys come from: `key`, `jwks` or `jwks_url` (exactly one, checked by the caller).
struct Keys {
    pem: Option<KeyRef>,
    jwks: Option<KeyRef>,
    jwks_url: Option<String>,
    min_refresh: Option<crate::settings::units::HumanDuration>,
    refresh: Option<crate::settings::units::HumanDuration>,
}

fn key_source(c: &mut Checker<'_>, key: &str, family: AlgorithmFamily, k: Keys) -> Option<KeySource> {
    if let Some(url) = k.jwks_url {
        if !jwks_url_allowed(&url) {
            c.error(
                format!("{key}.jwks_url"),
                format!("{url:?} is not an https:// URL"),
                Some("keys fetched over plain HTTP can be replaced in transit; http:// is allowed for loopback addresses only".into()),
            );
            return None;
        }
        let min = k.min_refresh.map_or(Duration::from_secs(60), |d| d.0);
        let every = k.refresh.map_or(Duration::from_secs(600), |d| d.0);
        if every < min {
            c.error(format!("{key}.refresh"), "must be at least min_refresh", None);
        }
        return Some(KeySource::Jwks(JwksProvider::new(url, min, every)));
    }
    if k.min_refresh.is_some() || k.refresh.is_some() {
        let which = if k.refresh.is_some() {
            "refresh"
        } else {
            "min_refresh"
        };
        c.error(
            format!("{key}.{which}"),
            "only with jwks_url: keys from `key` or `jwks` are read once and never refetched",
            None,
        );
        return None;
    }
    if let Some(j) = k.jwks {
        let bytes = read_key(c, &format!("{key}.jwks"), &j)?;
        return match serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(&bytes) {
            Ok(set) => Some(KeySource::Static(Arc::new(key_set_from_jwks(&set)))),
            Err(e) => {
                c.error(format!("{key}.jwks"), format!("not a JWKS: {e}"), None);
                None
            }
        };
    }
    if family == AlgorithmFamily::Hmac && matches!(k.pem, Some(KeyRef::Pem(_))) {
        c.warn(
            format!("{key}.key"),
            "the HS shared secret is written inline; anyone who reads this file can sign tokens",
            Some(SECRET_HINT.into()),
        );
    }
    let bytes = read_key(c, &format!("{key}.key"), k.pem.as_ref()?)?;
    let decoded = match family {
        AlgorithmFamily::Hmac => DecodingKey::from_secret(&bytes),
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&bytes),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&bytes),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&bytes),
    };
    match decoded {
        Ok(key) => Some(KeySource::Static(Arc::new(KeySet {
            keys: vec![Key { kid: None, key }],
        }))),
        Err(e) => {
            c.error(format!("{key}.key"), format!("not a {family:?} key: {e}"), None);
            None
        }
    }
}

/// `verify = { kind = "jwt", … }` at `key`.
pub fn check(c: &mut Checker<'_>, key: &str, raw: CloudEventsVerifyRaw) -> Option<Arc<dyn Verify>> {
    let CloudEventsVerifyRaw::Jwt {
        algorithms: names,
        header,
        key: pem,
        jwks,
        jwks_url,
        min_refresh,
        refresh,
        issuers,
        audiences,
        required,
        leeway,
        bind,
    } = raw
    else {
        return None;
    };
    let algs = algorithms(c, key, &names)?;
    let count = [pem.is_some(), jwks.is_some(), jwks_url.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if count != 1 {
        c.error(key, "exactly one of `key`, `jwks` and `jwks_url`", None);
        return None;
    }
    let family = algs.first()?.family();
    let keys = Keys {
        pem,
        jwks,
        jwks_url,
        min_refresh,
        refresh,
    };
    let keys = key_source(c, key, family, keys)?;
    let spec = JwtSpec {
        algorithms: algs,
        header: header
            .unwrap_or_else(|| "authorization".into())
            .to_ascii_lowercase(),
        issuers: issuers.unwrap_or_default(),
        audiences: audiences.unwrap_or_default(),
        required: required.unwrap_or_else(|| vec!["exp".into()]),
        leeway: c.whole_seconds(&format!("{key}.leeway"), leeway).unwrap_or(60),
        bindings: bind.unwrap_or_default().into_iter().collect(),
        audience_ignore_query: false,
    };
    for (claim, attr) in &spec.bindings {
        let valid = attr.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) && !attr.is_empty();
        if !valid {
            c.error(
                format!("{key}.bind.{claim}"),
                format!("{attr:?} is not a CloudEvents attribute name"),
                None,
            );
        }
    }
    let bindings = spec
        .bindings
        .iter()
        .map(|(c, a)| Binding::required(c, a))
        .collect::<Vec<_>>();
    Some(Arc::new(JwtVerifier {
        spec: Arc::new(spec),
        keys,
        bindings: bindings.into(),
    }))
}

/// `https://` URLs, and `http://` to a loopback address (`localhost`, 127.x, `[::1]`).
fn jwks_url_allowed(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => parsed.host_str().is_some_and(|h| {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}
