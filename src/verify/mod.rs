//! Request verification: pure functions over (headers, raw body, keys), run **before any
//! parsing** so an unauthenticated body is never interpreted.
//!
//! Each failure maps to one reason code of the delivery contract (design §3), answered 401.

pub mod fic;
pub mod hmac;
mod token;

use std::sync::Arc;

use http::HeaderMap;

use crate::config::secret::Secret;
use fic::{FicClaims, FicVerifier, Purpose};

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
    /// Standard Webhooks.
    StandardWebhooks {
        /// Decoded keys.
        keys: Vec<Vec<u8>>,
        /// Allowed clock difference, seconds.
        tolerance: i64,
    },
}

/// What a successful verification learned that later checks need.
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// FIC token claims binding the token to the event (`jti`, `sub`).
    pub fic: Option<FicClaims>,
}

impl VerifierConfig {
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
            VerifierConfig::Fic(v) => v
                .verify(headers, now, Purpose::Notification)
                .map(|c| Verified { fic: Some(c) }),
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
}

impl VerifyError {
    /// The reason code.
    pub fn code(self) -> &'static str {
        match self {
            VerifyError::MissingToken => "missing_token",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::TokenExpired => "token_expired",
            VerifyError::TokenNotYetValid => "token_not_yet_valid",
            VerifyError::IssuerMismatch => "issuer_mismatch",
            VerifyError::AudienceMismatch => "audience_mismatch",
            VerifyError::IdMismatch => "id_mismatch",
            VerifyError::SubjectMismatch => "subject_mismatch",
            VerifyError::NotAllowed => "not_allowed",
            VerifyError::TimestampOutOfRange => "timestamp_out_of_range",
        }
    }
}
