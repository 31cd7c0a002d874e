//! `kind = "gitlab"`: GitLab webhooks. The secret token comes back as is in `X-Gitlab-Token`
//! (compared in constant time, as the `token` verifier does); the type from `X-Gitlab-Event`
//! (`Merge Request Hook` → `com.gitlab.merge_request`, then `.<object_attributes.action>` when
//! the body has one); the id from `Idempotency-Key` (the same on GitLab's retries, GitLab 17.4
//! and later), else `X-Gitlab-Event-UUID`; the subject the project's `path_with_namespace`.
//!
//! ```toml
//! [sources.gitlab]
//! path = "/webhooks/gitlab"
//! kind = "gitlab"
//! verify = { secret = { env = "GITLAB_WEBHOOK_TOKEN" } }
//! ```

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use hookbridge_sink_core::settings::Secret;
use hookbridge_sink_core::Event;
use http::HeaderMap;

use super::verifiers::{hmac::preset, TokenVerifier};
use super::{Checked, Draft, Example, Kind, KindCheck, Provider};
use crate::normalize::mapping::{finish, parse_json, Request};
use crate::normalize::NormalizeError;

/// The header GitLab puts the secret token in.
pub const TOKEN_HEADER: &str = "x-gitlab-token";

/// The registry entry.
pub const KIND: Kind = Kind {
    name: "gitlab",
    keys: &[],
    dedup_on_body: false,
    check,
};

fn check(k: &mut KindCheck<'_, '_>) -> Option<Checked> {
    let (secrets, _) = preset(k.c, k.key, k.raw.verify.is_some(), Some("GitLab"))?;
    Some(Checked {
        verifier: Arc::new(TokenVerifier {
            tokens: secrets.into_iter().map(Secret::new).collect(),
            header: TOKEN_HEADER.into(),
        }),
        provider: Arc::new(GitLab),
    })
}

/// A GitLab source.
#[derive(Debug)]
pub struct GitLab;

/// `Merge Request Hook` → `merge_request`.
fn event_name(header: &str) -> String {
    let name = header.trim();
    let name = name.strip_suffix(" Hook").unwrap_or(name);
    name.to_ascii_lowercase().replace(' ', "_")
}

fn decode_one(source: &str, headers: &HeaderMap, body: &Bytes) -> Result<Event, NormalizeError> {
    let req = Request::new(headers, Some(parse_json(body)?));
    let id = req
        .header("idempotency-key")
        .or_else(|| req.header("x-gitlab-event-uuid"))
        .ok_or_else(|| NormalizeError::missing("id"))?;
    let name = req
        .header("x-gitlab-event")
        .map(|h| event_name(&h))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| NormalizeError::missing("type"))?;
    let ty = match req.pointer("/object_attributes/action") {
        Some(action) => format!("com.gitlab.{name}.{action}"),
        None => format!("com.gitlab.{name}"),
    };
    let mut event = Event::new(id, format!("hookbridge://{source}"), ty);
    event.subject = req.pointer("/project/path_with_namespace");
    finish(event, headers, body)
}

impl Provider for GitLab {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn decode(&self, source: &str, headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError> {
        decode_one(source, headers, body).map(|e| vec![e])
    }

    fn example(&self, draft: &mut Draft, ty: Option<&str>, data: Option<&[u8]>, _: &Example) {
        let ty = ty.unwrap_or("com.gitlab.push");
        let name = ty.strip_prefix("com.gitlab.").unwrap_or(ty);
        let (name, action) = match name.split_once('.') {
            Some((n, a)) => (n, Some(a)),
            None => (name, None),
        };
        let mut words: Vec<String> = name
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect();
        words.push("Hook".into());
        draft.headers.push(("x-gitlab-event".into(), words.join(" ")));
        draft.headers.push(("idempotency-key".into(), draft.id.clone()));
        draft.body = data.map_or_else(
            || {
                let mut v = serde_json::json!({ "object_kind": name });
                if let Some(a) = action {
                    v["object_attributes"] = serde_json::json!({ "action": a });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::test_headers as headers;

    #[test]
    fn type_from_the_event_header_id_from_the_idempotency_key() {
        let h = headers(&[
            ("x-gitlab-event", "Merge Request Hook"),
            ("idempotency-key", "k-1"),
            ("x-gitlab-event-uuid", "u-1"),
            ("content-type", "application/json"),
        ]);
        let body = Bytes::from_static(
            br#"{"object_kind":"merge_request","object_attributes":{"action":"open"},"project":{"path_with_namespace":"g/p"}}"#,
        );
        let e = decode_one("gl", &h, &body).expect("decode");
        assert_eq!(
            (e.id.as_str(), e.ty.as_str(), e.subject.as_deref()),
            ("k-1", "com.gitlab.merge_request.open", Some("g/p"))
        );
        let h = headers(&[("x-gitlab-event", "Push Hook"), ("x-gitlab-event-uuid", "u-2")]);
        let e = decode_one("gl", &h, &Bytes::from_static(b"{}")).expect("decode");
        assert_eq!((e.id.as_str(), e.ty.as_str()), ("u-2", "com.gitlab.push"));
        let err = decode_one(
            "gl",
            &headers(&[("x-gitlab-event", "Push Hook")]),
            &Bytes::from_static(b"{}"),
        )
        .expect_err("no id");
        assert_eq!(err.field.as_deref(), Some("id"));
        let err = decode_one(
            "gl",
            &headers(&[("idempotency-key", "k")]),
            &Bytes::from_static(b"{}"),
        )
        .expect_err("no type");
        assert_eq!(err.field.as_deref(), Some("type"));
    }

    #[test]
    fn the_example_decodes_to_the_type_it_was_asked_for() {
        let mut d = Draft {
            id: "x1".into(),
            ..Draft::default()
        };
        GitLab.example(
            &mut d,
            Some("com.gitlab.merge_request.merge"),
            None,
            &Example::default(),
        );
        let mut h = HeaderMap::new();
        for (k, v) in &d.headers {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                http::HeaderValue::from_str(v).expect("value"),
            );
        }
        let e = decode_one("gl", &h, &Bytes::from(d.body)).expect("decode");
        assert_eq!(
            (e.id.as_str(), e.ty.as_str()),
            ("x1", "com.gitlab.merge_request.merge")
        );
    }
}
