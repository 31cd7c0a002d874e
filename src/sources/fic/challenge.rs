//! The Fatture in Cloud verification GET (providers.md §1.2): echo the challenge as
//! `{"verification": "<value>"}` once the bearer token checks out.
//!
//! Only a well-formed challenge is echoed (1–256 of `[A-Za-z0-9._-]`), so the endpoint cannot
//! be used to reflect arbitrary content; anything else is 400 `bad_challenge`.

use http::HeaderMap;
use serde_json::json;

use super::verify::{self, FicVerifier, Purpose};
use crate::code::Code;
use crate::sources::Handshake;

/// Answers a verification GET at unix time `now`.
pub fn respond(verifier: &FicVerifier, headers: &HeaderMap, query: Option<&str>, now: u64) -> Handshake {
    if verifier.challenge_requires_token {
        if let Err(e) = verifier.verify(headers, now, Purpose::Challenge) {
            tracing::info!(code = e.code().as_str(), "verification challenge refused");
            return Err((e.code(), None));
        }
    }
    match verify::challenge(headers, query) {
        Ok(value) => {
            tracing::info!("answered the Fatture in Cloud verification challenge");
            Ok(json!({ "verification": value }))
        }
        Err(verify::BadChallenge(why)) => Err((Code::BadChallenge, Some(why))),
    }
}
