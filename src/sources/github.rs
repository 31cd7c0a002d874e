//! `kind = "github"`: GitHub webhooks. `X-Hub-Signature-256` (HMAC-SHA256 of the body), the
//! event from `X-GitHub-Event` (and the body's `action`), the id from `X-GitHub-Delivery`.
//! The signature covers the body only, so duplicates are keyed on the body by default.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use hookbridge_sink_core::Event;
use http::HeaderMap;

use super::verifiers::{hmac::preset, newest, Draft, Verify};
use super::{Checked, Example, Kind, KindCheck, Provider};
use crate::normalize::mapping::{finish, parse_json, Request};
use crate::normalize::NormalizeError;
use crate::verify::{hmac, Verified, VerifyError};

/// The registry entry.
pub const KIND: Kind = Kind {
    name: "github",
    keys: &[],
    dedup_on_body: true,
    check,
};

fn check(k: &mut KindCheck<'_, '_>) -> Option<Checked> {
    let (secrets, _) = preset(k.c, k.key, k.raw.verify.is_some(), Some("GitHub"))?;
    Some(Checked {
        verifier: Arc::new(GitHubVerifier { secrets }),
        provider: Arc::new(GitHub),
    })
}

/// `X-Hub-Signature-256` with the source's secrets.
#[derive(Debug)]
pub struct GitHubVerifier {
    /// Active secrets.
    pub secrets: Vec<Vec<u8>>,
}

impl Verify for GitHubVerifier {
    fn kind(&self) -> &'static str {
        "github"
    }

    fn header_only(&self) -> bool {
        false
    }

    fn precheck(&self, headers: &HeaderMap, _: u64) -> Result<(), VerifyError> {
        hmac::github_tag(headers).map(|_| ())
    }

    fn verify_now(&self, headers: &HeaderMap, body: &[u8], _: u64) -> Result<Verified, VerifyError> {
        hmac::github(headers, body, &self.secrets).map(|()| Verified::default())
    }

    fn sign(&self, draft: &mut Draft, _: Option<&[u8]>) -> Result<(), String> {
        let tag = super::verifiers::hmac::mac_bytes::<::hmac::Hmac<sha2::Sha256>>(
            newest(&self.secrets, "secret")?,
            &draft.body,
        )?;
        draft.headers.push((
            "x-hub-signature-256".into(),
            format!("sha256={}", hex::encode(tag)),
        ));
        Ok(())
    }
}

/// A GitHub source.
#[derive(Debug)]
pub struct GitHub;

impl Provider for GitHub {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn decode(&self, source: &str, headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError> {
        decode_one(source, headers, body).map(|e| vec![e])
    }

    fn example(&self, draft: &mut Draft, ty: Option<&str>, data: Option<&[u8]>, _: &Example) {
        let ty = ty.unwrap_or("com.github.ping");
        let event = ty.strip_prefix("com.github.").unwrap_or(ty);
        let (event, action) = match event.split_once('.') {
            Some((e, a)) => (e, Some(a)),
            None => (event, None),
        };
        draft.headers.push(("x-github-event".into(), event.to_owned()));
        draft.headers.push(("x-github-delivery".into(), draft.id.clone()));
        draft.body = data.map_or_else(
            || {
                let mut v = serde_json::json!({ "zen": "Sent by hookbridge send" });
                if let Some(a) = action {
                    v["action"] = a.into();
                }
                v.to_string().into_bytes()
            },
            <[u8]>::to_vec,
        );
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// GitHub: id `X-GitHub-Delivery`, type `com.github.<X-GitHub-Event>[.<action>]`, subject the
/// repository's full name when present.
fn decode_one(source_name: &str, headers: &HeaderMap, body: &Bytes) -> Result<Event, NormalizeError> {
    let is_json = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(hookbridge_sink_core::is_json_content_type);
    let json = if is_json { Some(parse_json(body)?) } else { None };
    let req = Request::new(headers, json);
    let id = req
        .header("x-github-delivery")
        .ok_or_else(|| NormalizeError::missing("id"))?;
    let name = req
        .header("x-github-event")
        .ok_or_else(|| NormalizeError::missing("type"))?;
    let ty = match req.pointer("/action") {
        Some(action) => format!("com.github.{name}.{action}"),
        None => format!("com.github.{name}"),
    };
    let mut event = Event::new(id, format!("hookbridge://{source_name}"), ty);
    event.subject = req.pointer("/repository/full_name");
    finish(event, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::test_headers as headers;

    #[test]
    fn preset() {
        let h = headers(&[
            ("x-github-delivery", "d-1"),
            ("x-github-event", "issues"),
            ("content-type", "application/json"),
        ]);
        let e = decode_one(
            "gh",
            &h,
            &Bytes::from_static(br#"{"action":"opened","repository":{"full_name":"o/r"}}"#),
        )
        .expect("gh");
        assert_eq!(
            (e.id.as_str(), e.ty.as_str()),
            ("d-1", "com.github.issues.opened")
        );
        assert_eq!(e.subject.as_deref(), Some("o/r"));
        let e = decode_one("gh", &h, &Bytes::from_static(b"{}")).expect("gh");
        assert_eq!(e.ty, "com.github.issues");
    }
}
