//! Request verification: pure functions over (headers, raw body, keys), run **before any
//! parsing** so an unauthenticated body is never interpreted.
//!
//! Each failure maps to one reason code of the delivery contract (design §3), answered 401.

pub mod fic;
pub mod hmac;
pub mod jwt;
pub(crate) mod token;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::secret::Secret;
use fic::{FicClaims, FicVerifier, Purpose};

/// Headers never copied anywhere (events, quarantine): credentials and signatures.
pub const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-hub-signature",
    "x-hub-signature-256",
    "stripe-signature",
    "webhook-signature",
    "svix-signature",
    "x-api-key",
];

/// How a source authenticates requests (checked configuration).
#[derive(Debug, Clone)]
pub enum VerifierConfig {
    /// Explicitly none.
    None,
    /// A static token: `Authorization: Bearer <token>` or a bare token in another header.
    Token {
        /// Accepted tokens (rotation: any of them).
        tokens: Vec<Secret>,
        /// Lower-case header name.
        header: String,
    },
    /// Fatture in Cloud's ES256 JWT.
    Fic(Arc<FicVerifier>),
    /// HTTP Basic: `(user, password)` pairs.
    Basic {
        /// Accepted credentials.
        users: Vec<(String, Vec<u8>)>,
    },
    /// A generic HMAC signature.
    Hmac {
        /// How the signature is made.
        spec: Arc<hmac::GenericHmac>,
        /// Active secrets.
        secrets: Vec<Vec<u8>>,
    },
    /// GitHub's `X-Hub-Signature-256`.
    GitHub {
        /// Active secrets.
        secrets: Vec<Vec<u8>>,
    },
    /// Stripe's `Stripe-Signature`.
    Stripe {
        /// Active secrets (the whole `whsec_…` strings).
        secrets: Vec<Vec<u8>>,
        /// Allowed clock difference, seconds.
        tolerance: i64,
    },
    /// A generic JWT.
    Jwt {
        /// What is checked.
        spec: Arc<jwt::JwtSpec>,
        /// Where the keys come from.
        keys: jwt::KeySource,
    },
    /// Standard Webhooks.
    StandardWebhooks {
        /// Decoded keys.
        keys: Vec<Vec<u8>>,
        /// Allowed clock difference, seconds.
        tolerance: i64,
    },
}

impl VerifierConfig {
    /// Like [`VerifierConfig::verify`], first refreshing a JWKS when the token names an
    /// unknown `kid` (rate-limited by the key provider).
    pub async fn verify_async(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: u64,
    ) -> Result<Verified, VerifyError> {
        if let VerifierConfig::Jwt {
            spec,
            keys: jwt::KeySource::Jwks(provider),
        } = self
        {
            let token = jwt::token(headers, &spec.header)?;
            let set = provider
                .keys_for(jwt::kid_of(token).as_deref())
                .await
                .map_err(|_| VerifyError::KeysUnavailable)?;
            let claims = jwt::verify(spec, token, &set, now)?;
            return Ok(Verified {
                fic: None,
                jwt: Some((spec.clone(), claims)),
            });
        }
        self.verify(headers, body, now)
    }
}

/// What a successful verification learned that later checks need.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// FIC token claims binding the token to the event (`jti`, `sub`).
    pub fic: Option<FicClaims>,
    /// A generic JWT's spec and claims, for the claim ↔ attribute bindings.
    pub jwt: Option<(Arc<jwt::JwtSpec>, serde_json::Map<String, serde_json::Value>)>,
}

impl VerifierConfig {
    /// Whether the credential is in the headers alone (token, basic, JWT, FIC, none): such
    /// requests are verified before their body is read, and before they take a request slot.
    pub fn header_only(&self) -> bool {
        !matches!(
            self,
            VerifierConfig::Hmac { .. }
                | VerifierConfig::GitHub { .. }
                | VerifierConfig::Stripe { .. }
                | VerifierConfig::StandardWebhooks { .. }
        )
    }

    /// What can be checked before the body arrives, for a body-signed verifier: the signature
    /// header is present and well-formed and a signed timestamp is within tolerance. A request
    /// that fails it is refused before it takes a pre-authentication slot or sends its body.
    /// Header-only verifiers are checked whole before the body instead (`verify_async`).
    pub fn precheck(&self, headers: &HeaderMap, now: u64) -> Result<(), VerifyError> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        match self {
            VerifierConfig::Hmac { spec, .. } => spec.signature(headers, now).map(|_| ()),
            VerifierConfig::GitHub { .. } => hmac::github_tag(headers).map(|_| ()),
            VerifierConfig::Stripe { tolerance, .. } => {
                hmac::stripe_header(headers, now, *tolerance).map(|_| ())
            }
            VerifierConfig::StandardWebhooks { tolerance, .. } => {
                hmac::standard_webhooks_headers(headers, now, *tolerance)
            }
            _ => Ok(()),
        }
    }

    /// The headers this verifier reads a credential from beyond the well-known ones
    /// ([`SECRET_HEADERS`]): a custom token, JWT or HMAC signature header (and an HMAC's signed
    /// timestamp). They are never quarantined and never kept.
    pub fn credential_headers(&self) -> Vec<String> {
        match self {
            VerifierConfig::Token { header, .. } => vec![header.clone()],
            VerifierConfig::Hmac { spec, .. } => {
                let mut out = vec![spec.header.clone()];
                out.extend(spec.timestamp_header.clone());
                out
            }
            VerifierConfig::Jwt { spec, .. } => vec![spec.header.clone()],
            _ => Vec::new(),
        }
    }

    /// The verifier's kind, recorded in the `hbverifier` extension.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifierConfig::None => "none",
            VerifierConfig::Token { .. } => "token",
            VerifierConfig::Fic(_) => "fattureincloud",
            VerifierConfig::Basic { .. } => "basic",
            VerifierConfig::Hmac { .. } => "hmac",
            VerifierConfig::GitHub { .. } => "github",
            VerifierConfig::Stripe { .. } => "stripe",
            VerifierConfig::StandardWebhooks { .. } => "standard-webhooks",
            VerifierConfig::Jwt { .. } => "jwt",
        }
    }

    /// Verifies a request at unix time `now`. `Ok` means the request is authentic as far as
    /// this verifier can tell from headers and raw body; bindings to parsed attributes (FIC's
    /// `jti`/`sub`) are checked after parsing with what [`Verified`] carries.
    pub fn verify(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError> {
        let signed_now = i64::try_from(now).unwrap_or(i64::MAX);
        let plain = |r: Result<(), VerifyError>| r.map(|()| Verified::default());
        match self {
            VerifierConfig::Basic { users } => plain(hmac::basic(headers, users)),
            VerifierConfig::Hmac { spec, secrets } => plain(spec.verify(headers, body, signed_now, secrets)),
            VerifierConfig::GitHub { secrets } => plain(hmac::github(headers, body, secrets)),
            VerifierConfig::Stripe { secrets, tolerance } => {
                plain(hmac::stripe(headers, body, signed_now, secrets, *tolerance))
            }
            VerifierConfig::StandardWebhooks { keys, tolerance } => plain(hmac::standard_webhooks(
                headers, body, signed_now, keys, *tolerance,
            )),
            VerifierConfig::None => Ok(Verified::default()),
            VerifierConfig::Token { tokens, header } => {
                token::verify(headers, header, tokens).map(|()| Verified::default())
            }
            VerifierConfig::Fic(v) => v.verify(headers, now, Purpose::Notification).map(|c| Verified {
                fic: Some(c),
                jwt: None,
            }),
            VerifierConfig::Jwt { spec, keys } => {
                let token = jwt::token(headers, &spec.header)?;
                let set = match keys {
                    jwt::KeySource::Static(k) => k.clone(),
                    // Synchronous callers see the cache only; `verify_async` refreshes it.
                    jwt::KeySource::Jwks(p) => p.current(),
                };
                let claims = jwt::verify(spec, token, &set, now)?;
                Ok(Verified {
                    fic: None,
                    jwt: Some((spec.clone(), claims)),
                })
            }
        }
    }
}

/// Why verification failed; each is a reason code in the 401 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No credential where one was expected (or more than one).
    #[error("missing_token")]
    MissingToken,
    /// The credential does not match (bad signature, wrong key or algorithm, unparseable token).
    #[error("bad_signature")]
    BadSignature,
    /// `exp` is missing or past.
    #[error("token_expired")]
    TokenExpired,
    /// `nbf` is in the future.
    #[error("token_not_yet_valid")]
    TokenNotYetValid,
    /// `iss` is missing or not the expected issuer.
    #[error("issuer_mismatch")]
    IssuerMismatch,
    /// `aud` is missing or does not contain our public URL.
    #[error("audience_mismatch")]
    AudienceMismatch,
    /// The token's `jti` is missing or differs from the event id.
    #[error("id_mismatch")]
    IdMismatch,
    /// The token's `sub` is missing or differs from the event subject.
    #[error("subject_mismatch")]
    SubjectMismatch,
    /// The token is valid but its application or company is not on the allow-list.
    #[error("not_allowed")]
    NotAllowed,
    /// The signed timestamp is outside the allowed tolerance (or unparseable).
    #[error("timestamp_out_of_range")]
    TimestampOutOfRange,
    /// The keys to check the credential with cannot be had now (the JWKS URL is down, or the
    /// token names a key not yet fetched and a refetch is not yet allowed): transient, 503.
    #[error("keys_unavailable")]
    KeysUnavailable,
}

impl VerifyError {
    /// The reason code (401, or 503 for `keys_unavailable`).
    pub fn code(self) -> crate::code::Code {
        use crate::code::Code;
        match self {
            VerifyError::MissingToken => Code::MissingToken,
            VerifyError::BadSignature => Code::BadSignature,
            VerifyError::TokenExpired => Code::TokenExpired,
            VerifyError::TokenNotYetValid => Code::TokenNotYetValid,
            VerifyError::IssuerMismatch => Code::IssuerMismatch,
            VerifyError::AudienceMismatch => Code::AudienceMismatch,
            VerifyError::IdMismatch => Code::IdMismatch,
            VerifyError::SubjectMismatch => Code::SubjectMismatch,
            VerifyError::NotAllowed => Code::NotAllowed,
            VerifyError::TimestampOutOfRange => Code::TimestampOutOfRange,
            VerifyError::KeysUnavailable => Code::KeysUnavailable,
        }
    }
}
