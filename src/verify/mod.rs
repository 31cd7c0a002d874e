//! Request verification primitives: pure functions over (headers, raw body, keys, `now`), run
//! **before any parsing** so an unauthenticated body is never interpreted. No IO (a JWKS is
//! fetched by `crate::keys`) and no imports from the rest of the crate: the configured
//! verifiers that use these live with the sources (`crate::sources::verifiers`).
//!
//! Each failure maps to one reason code of the delivery contract (design §3), answered 401
//! (`crate::code` maps them).

pub mod hmac;
pub mod jwt;
pub mod token;

use std::sync::Arc;

use serde_json::{Map, Value};

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

/// What a successful verification learned that checks after decoding need: the credential's
/// claims, and which claims must equal which attribute of every event the request carries (a
/// token bound to one event must not carry another).
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// The credential's claims (empty for credentials that carry none).
    pub claims: Map<String, Value>,
    /// The claim ↔ attribute equalities (the verifier's, shared: built once, not per request).
    pub bindings: Arc<[Binding]>,
}

/// A claim that must equal an event attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The claim.
    pub claim: String,
    /// The CloudEvents attribute.
    pub attribute: String,
    /// Whether the claim must have a value: a required binding fails without one; an optional
    /// one compares the two as they are, so a claim without a value matches an event without
    /// the attribute (FIC's `sub` against an event without `subject`).
    pub required: bool,
}

impl Binding {
    /// `claim` must be present and equal `attribute`.
    pub fn required(claim: &str, attribute: &str) -> Binding {
        Binding {
            claim: claim.to_owned(),
            attribute: attribute.to_owned(),
            required: true,
        }
    }

    /// `claim` and `attribute` must be equal, both absent included.
    pub fn optional(claim: &str, attribute: &str) -> Binding {
        Binding {
            required: false,
            ..Binding::required(claim, attribute)
        }
    }
}

impl Verified {
    /// Checks the bindings against one decoded event (`attribute` reads it). A failed one is
    /// `id_mismatch` for `id`, `subject_mismatch` for `subject`, and `not_allowed` for any
    /// other attribute.
    pub fn bind(&self, attribute: impl Fn(&str) -> Option<String>) -> Result<(), VerifyError> {
        for b in self.bindings.iter() {
            let claim = self.claims.get(&b.claim).and_then(claim_text);
            if (b.required && claim.is_none()) || claim != attribute(&b.attribute) {
                return Err(match b.attribute.as_str() {
                    "id" => VerifyError::IdMismatch,
                    "subject" => VerifyError::SubjectMismatch,
                    _ => VerifyError::NotAllowed,
                });
            }
        }
        Ok(())
    }
}

/// A claim as text: strings as they are, numbers printed; anything else has none.
pub fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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
