//! Request verification: pure functions over (headers, raw body, keys), run **before any
//! parsing** so an unauthenticated body is never interpreted.
//!
//! Each failure maps to one reason code of the delivery contract (design §3), answered 401.

mod token;

use http::HeaderMap;

use crate::config::secret::Secret;

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
}

impl VerifierConfig {
    /// The verifier's kind, recorded in the `hbverifier` extension.
    pub fn kind(&self) -> &'static str {
        match self {
            VerifierConfig::None => "none",
            VerifierConfig::Token { .. } => "token",
        }
    }

    /// Verifies a request. `Ok` means the request is authentic as far as this verifier can tell.
    pub fn verify(&self, headers: &HeaderMap, _body: &[u8]) -> Result<(), VerifyError> {
        match self {
            VerifierConfig::None => Ok(()),
            VerifierConfig::Token { tokens, header } => token::verify(headers, header, tokens),
        }
    }
}

/// Why verification failed; each is a reason code in the 401 answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No credential where one was expected (or more than one).
    #[error("missing_token")]
    MissingToken,
    /// The credential does not match.
    #[error("bad_signature")]
    BadSignature,
}

impl VerifyError {
    /// The reason code.
    pub fn code(self) -> &'static str {
        match self {
            VerifyError::MissingToken => "missing_token",
            VerifyError::BadSignature => "bad_signature",
        }
    }
}
