//! The Fatture in Cloud verification GET (providers.md §1.2): echo the challenge as
//! `{"verification": "<value>"}` once the bearer token checks out.
//!
//! Only a well-formed challenge is echoed (1–256 of `[A-Za-z0-9._-]`), so the endpoint cannot
//! be used to reflect arbitrary content; anything else is 400 `bad_challenge`.

use http::{HeaderMap, StatusCode};
use serde_json::json;
use warp::reply::Response;

use super::reply::{self, ErrorReply};
use crate::verify::fic::{self, FicVerifier, Purpose};

/// Answers a verification GET.
pub fn respond(verifier: &FicVerifier, headers: &HeaderMap, query: Option<&str>) -> Response {
    if verifier.challenge_requires_token {
        if let Err(e) = verifier.verify(headers, super::handler::unix_now(), Purpose::Challenge) {
            tracing::info!(code = e.code().as_str(), "verification challenge refused");
            return reply::error(&ErrorReply::new(e.code()));
        }
    }
    match fic::challenge(headers, query) {
        Ok(value) => {
            tracing::info!("answered the Fatture in Cloud verification challenge");
            reply::json_response(StatusCode::OK, &json!({ "verification": value }))
        }
        Err(fic::BadChallenge(why)) => {
            reply::error(&ErrorReply::new(crate::code::Code::BadChallenge).message(why))
        }
    }
}
