//! Every reply code hookbridge answers with, and the HTTP status each one goes with: one enum
//! that the code emits and that `tests/docs.rs` checks the README's tables against, in both
//! directions, so a code added here without a line in the delivery contract (or a documented
//! code that no longer exists) fails CI.

use http::StatusCode;

/// Where a code can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Webhook listener only (the delivery contract table).
    Webhook,
    /// Admin API only (the admin answers table).
    Admin,
    /// Both.
    Both,
}

impl Surface {
    /// Whether codes of this surface are answered to webhook senders.
    pub fn webhook(self) -> bool {
        matches!(self, Surface::Webhook | Surface::Both)
    }

    /// Whether codes of this surface are answered by the admin API.
    pub fn admin(self) -> bool {
        matches!(self, Surface::Admin | Surface::Both)
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = ($status:literal, $text:literal, $surface:ident) ),* $(,)?) => {
        /// A reply code: the `status` of a success answer or the `error.code` of an error answer.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in declaration order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as it appears in JSON bodies, logs and metric labels.
            pub const fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $text,)* }
            }

            /// The HTTP status it is answered with.
            pub fn status(self) -> StatusCode {
                let n: u16 = match self { $(Code::$variant => $status,)* };
                StatusCode::from_u16(n).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }

            /// Where it can be answered.
            pub const fn surface(self) -> Surface {
                match self { $(Code::$variant => Surface::$surface,)* }
            }
        }
    };
}

codes! {
    /// Sync mode: every chosen sink acknowledged the event.
    Delivered = (200, "delivered", Webhook),
    /// Spool mode: fsynced to the local spool.
    Spooled = (202, "spooled", Webhook),
    /// A sink refused the event permanently; the dead-letter sink took it.
    DeadLettered = (200, "dead_lettered", Webhook),
    /// No route matched and `[unmatched] policy = "drop"`.
    Dropped = (202, "dropped", Webhook),
    /// Already delivered; nothing published again.
    Duplicate = (200, "duplicate", Webhook),

    /// No credential where one was expected (or more than one).
    MissingToken = (401, "missing_token", Both),
    /// The credential does not match.
    BadSignature = (401, "bad_signature", Webhook),
    /// `exp` missing or past.
    TokenExpired = (401, "token_expired", Webhook),
    /// `nbf` in the future.
    TokenNotYetValid = (401, "token_not_yet_valid", Webhook),
    /// `iss` missing or wrong.
    IssuerMismatch = (401, "issuer_mismatch", Webhook),
    /// `aud` missing or without the public URL.
    AudienceMismatch = (401, "audience_mismatch", Webhook),
    /// The token's `jti` differs from the event id.
    IdMismatch = (401, "id_mismatch", Webhook),
    /// The token's `sub` differs from the event subject.
    SubjectMismatch = (401, "subject_mismatch", Webhook),
    /// Valid, but the application or company is not on the allow-list.
    NotAllowed = (401, "not_allowed", Webhook),
    /// The signed timestamp is outside the tolerance.
    TimestampOutOfRange = (401, "timestamp_out_of_range", Webhook),
    /// The keys to check the credential cannot be had now (JWKS URL down, unknown key id).
    KeysUnavailable = (503, "keys_unavailable", Webhook),

    /// Unparseable or invalid request.
    Malformed = (400, "malformed", Both),
    /// A required CloudEvents attribute is missing (`field` names it).
    MissingAttribute = (400, "missing_attribute", Webhook),
    /// A verification challenge without a usable challenge value.
    BadChallenge = (400, "bad_challenge", Webhook),
    /// Body over `server.body_limit`.
    BodyTooLarge = (413, "body_too_large", Both),
    /// No such path.
    NotFound = (404, "not_found", Both),
    /// The path does not take this method.
    MethodNotAllowed = (405, "method_not_allowed", Both),

    /// A sink failed retryably (or the publish deadline passed).
    SinkUnavailable = (503, "sink_unavailable", Webhook),
    /// Too many requests in flight, the spool is full, or too many parked events.
    Overloaded = (503, "overloaded", Both),
    /// The spool cannot be written now (full disk, I/O error).
    SpoolUnavailable = (503, "spool_unavailable", Both),
    /// Shutdown has begun.
    ShuttingDown = (503, "shutting_down", Webhook),
    /// Not completed within `server.request_timeout`.
    RequestTimeout = (503, "request_timeout", Webhook),
    /// Enrichment could not fetch and the route says `on_unavailable = "retry"`.
    EnrichmentUnavailable = (503, "enrichment_unavailable", Webhook),
    /// A sink refused the event permanently and there is no dead-letter sink.
    SinkRejected = (500, "sink_rejected", Webhook),

    /// Admin: the bearer token does not match.
    BadToken = (401, "bad_token", Admin),
    /// Admin: a non-loopback listener without `server.admin_token`.
    AdminTokenRequired = (403, "admin_token_required", Admin),
    /// Admin: no token configured and the `Host` is not a loopback name.
    ForbiddenHost = (403, "forbidden_host", Admin),
    /// Admin: a mutation without `Content-Type: application/json`.
    UnsupportedMediaType = (415, "unsupported_media_type", Admin),
    /// Admin: the spool endpoints when no source runs in spool mode.
    NoSpool = (409, "no_spool", Admin),
}

/// Success codes in the order that picks a batch's top-level `status`: the first one any of its
/// events has.
pub const SUCCESS_ORDER: [Code; 5] = [
    Code::Delivered,
    Code::Spooled,
    Code::DeadLettered,
    Code::Dropped,
    Code::Duplicate,
];

/// Statuses the HTTP layer (hyper) answers by itself, with no body, before hookbridge sees the
/// request: 400 for an unparseable request line or header, 414 for a URI and 431 for headers
/// over its buffer.
pub const HTTP_LAYER: [u16; 3] = [400, 414, 431];

/// Statuses hookbridge never answers (nor any 3xx): providers drop or delete on them (FIC
/// deletes the subscription on 410).
pub const NEVER: [u16; 3] = [410, 411, 429];

impl crate::verify::VerifyError {
    /// The reason code of a failed verification (401, or 503 for `keys_unavailable`).
    pub fn code(self) -> Code {
        use crate::verify::VerifyError;
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

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_never_a_forbidden_status() {
        let mut seen = std::collections::HashSet::new();
        for c in Code::ALL {
            assert!(seen.insert(c.as_str()), "{c} twice");
            let s = c.status().as_u16();
            assert!(!NEVER.contains(&s) && !(300..400).contains(&s), "{c}: {s}");
        }
        for c in SUCCESS_ORDER {
            assert!(c.status().is_success(), "{c}");
        }
    }
}
