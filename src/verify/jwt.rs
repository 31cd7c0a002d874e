//! The generic `jwt` verifier: a bearer (or header) token checked against a key set with the
//! algorithms the configuration allows; `iss`, `aud`, `exp`, `nbf` and required claims checked
//! against the caller's `now`. Pure: the key set comes in (a JWKS is fetched elsewhere, see
//! `crate::keys`).

use http::HeaderMap;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::token::bearer;
use super::VerifyError;

/// One verification key.
#[derive(Clone)]
pub struct Key {
    /// `kid`, when known (JWK/JWKS).
    pub kid: Option<String>,
    /// The key.
    pub key: DecodingKey,
}

/// Keys a token may be verified with.
#[derive(Clone, Default)]
pub struct KeySet {
    /// The keys.
    pub keys: Vec<Key>,
}

impl KeySet {
    /// Whether a token naming `kid` (or none) has a key to be checked with: one with that `kid`,
    /// or one without a `kid` (tried for every token, as [`KeySet::candidates`] does).
    pub fn has_candidate(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(_) => self.candidates(kid).next().is_some(),
            None => !self.keys.is_empty(),
        }
    }

    /// Candidate keys for a token with `kid` (all keys when the token names none).
    fn candidates<'a>(&'a self, kid: Option<&'a str>) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.is_none() || k.kid.as_deref() == kid)
    }
}

/// What the verifier checks.
#[derive(Debug, Clone)]
pub struct JwtSpec {
    /// Allowed algorithms (never `none`).
    pub algorithms: Vec<Algorithm>,
    /// Lower-case header carrying the token; `authorization` means `Bearer <token>`.
    pub header: String,
    /// Accepted issuers (empty: not checked).
    pub issuers: Vec<String>,
    /// Accepted audiences: `aud` must contain one (empty: not checked).
    pub audiences: Vec<String>,
    /// Claims that must be present.
    pub required: Vec<String>,
    /// Clock skew for `exp`/`nbf`, seconds.
    pub leeway: u64,
    /// `(claim, CloudEvents attribute)` pairs that must be equal, checked after parsing.
    pub bindings: Vec<(String, String)>,
    /// An `aud` entry also matches without its query string (providers that may or may not
    /// sign the full URL).
    pub audience_ignore_query: bool,
}

/// The token of a request (header lookup only).
pub fn token<'a>(headers: &'a HeaderMap, header: &str) -> Result<&'a str, VerifyError> {
    let mut values = headers.get_all(header).iter();
    let value = values.next().ok_or(VerifyError::MissingToken)?;
    if values.next().is_some() {
        return Err(VerifyError::MissingToken);
    }
    let raw = if header == "authorization" {
        bearer(value.as_bytes()).ok_or(VerifyError::MissingToken)?
    } else {
        value.as_bytes().trim_ascii()
    };
    std::str::from_utf8(raw).map_err(|_| VerifyError::BadSignature)
}

/// The `kid` a token names, if it parses at all.
pub fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok()?.kid
}

/// Verifies `token` at unix time `now`; returns its claims.
pub fn verify(
    spec: &JwtSpec,
    token: &str,
    keys: &KeySet,
    now: u64,
) -> Result<Map<String, Value>, VerifyError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::BadSignature)?;
    if !spec.algorithms.contains(&header.alg) {
        return Err(VerifyError::BadSignature);
    }
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = keys
        .candidates(header.kid.as_deref())
        .find_map(|k| jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &validation).ok())
        .map(|d| d.claims)
        .ok_or(VerifyError::BadSignature)?;
    check_claims(spec, &claims, now)?;
    Ok(claims)
}

fn check_claims(spec: &JwtSpec, claims: &Map<String, Value>, now: u64) -> Result<(), VerifyError> {
    let exp = claims
        .get("exp")
        .map(|v| v.as_u64().ok_or(VerifyError::TokenExpired))
        .transpose()?;
    if let Some(exp) = exp {
        if exp.saturating_add(spec.leeway) <= now {
            return Err(VerifyError::TokenExpired);
        }
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = nbf.as_u64().ok_or(VerifyError::TokenNotYetValid)?;
        if nbf > now.saturating_add(spec.leeway) {
            return Err(VerifyError::TokenNotYetValid);
        }
    }
    for name in &spec.required {
        if !claims.contains_key(name) {
            return Err(match name.as_str() {
                "exp" => VerifyError::TokenExpired,
                "iss" => VerifyError::IssuerMismatch,
                "aud" => VerifyError::AudienceMismatch,
                "sub" => VerifyError::SubjectMismatch,
                "jti" => VerifyError::IdMismatch,
                _ => VerifyError::NotAllowed,
            });
        }
    }
    if !spec.issuers.is_empty() {
        let iss = claims.get("iss").and_then(Value::as_str);
        if !iss.is_some_and(|i| spec.issuers.iter().any(|s| s == i)) {
            return Err(VerifyError::IssuerMismatch);
        }
    }
    if !spec.audiences.is_empty() {
        let matches = |a: &str| {
            spec.audiences.iter().any(|s| {
                s == a || (spec.audience_ignore_query && a.split_once('?').is_some_and(|(base, _)| base == s))
            })
        };
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => matches(a),
            Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(matches),
            _ => false,
        };
        if !ok {
            return Err(VerifyError::AudienceMismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn spec() -> JwtSpec {
        JwtSpec {
            algorithms: vec![Algorithm::HS256],
            header: "authorization".into(),
            issuers: vec!["https://issuer".into()],
            audiences: vec!["hooks".into()],
            required: vec!["exp".into(), "jti".into()],
            leeway: 0,
            bindings: vec![("jti".into(), "id".into())],
            audience_ignore_query: false,
        }
    }

    fn keys() -> KeySet {
        KeySet {
            keys: vec![Key {
                kid: Some("k1".into()),
                key: DecodingKey::from_secret(b"s3cret").expect("key"),
            }],
        }
    }

    fn sign(claims: Value, kid: Option<&str>) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_owned);
        encode(&h, &claims, &EncodingKey::from_secret(b"s3cret").expect("key")).expect("sign")
    }

    /// The bindings of `spec` checked as the pipeline does, through [`super::super::Verified`].
    fn check_bindings(
        spec: &JwtSpec,
        claims: &Map<String, Value>,
        attribute: impl Fn(&str) -> Option<String>,
    ) -> Result<(), VerifyError> {
        super::super::Verified {
            claims: claims.clone(),
            bindings: spec
                .bindings
                .iter()
                .map(|(c, a)| super::super::Binding::required(c, a))
                .collect::<Vec<_>>()
                .into(),
        }
        .bind(attribute)
    }

    #[test]
    fn claims_and_bindings() {
        let good = json!({"iss": "https://issuer", "aud": ["x", "hooks"], "exp": 2000, "jti": "e1"});
        let claims = verify(&spec(), &sign(good.clone(), Some("k1")), &keys(), 1000).expect("valid");
        assert_eq!(
            check_bindings(&spec(), &claims, |a| (a == "id").then(|| "e1".to_owned())),
            Ok(())
        );
        assert_eq!(
            check_bindings(&spec(), &claims, |_| Some("e2".to_owned())),
            Err(VerifyError::IdMismatch)
        );
        let cases = [
            (
                json!({"iss": "https://issuer", "aud": "hooks", "exp": 900, "jti": "e"}),
                VerifyError::TokenExpired,
            ),
            (
                json!({"iss": "https://other", "aud": "hooks", "exp": 2000, "jti": "e"}),
                VerifyError::IssuerMismatch,
            ),
            (
                json!({"iss": "https://issuer", "aud": "nope", "exp": 2000, "jti": "e"}),
                VerifyError::AudienceMismatch,
            ),
            (
                json!({"iss": "https://issuer", "aud": "hooks", "jti": "e"}),
                VerifyError::TokenExpired,
            ),
            (
                json!({"iss": "https://issuer", "aud": "hooks", "exp": 2000}),
                VerifyError::IdMismatch,
            ),
            (
                json!({"iss": "https://issuer", "aud": "hooks", "exp": 2000, "jti": "e", "nbf": 1500}),
                VerifyError::TokenNotYetValid,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(
                verify(&spec(), &sign(c.clone(), None), &keys(), 1000).map(|_| ()),
                Err(want),
                "{c}"
            );
        }
        // Wrong kid, wrong algorithm.
        assert_eq!(
            verify(&spec(), &sign(good.clone(), Some("k9")), &keys(), 1000).map(|_| ()),
            Err(VerifyError::BadSignature)
        );
        let mut s = spec();
        s.algorithms = vec![Algorithm::RS256];
        assert_eq!(
            verify(&s, &sign(good, Some("k1")), &keys(), 1000).map(|_| ()),
            Err(VerifyError::BadSignature)
        );
    }
}
