//! `kind = "standard-webhooks"`: Standard Webhooks (and Svix): `webhook-id`,
//! `webhook-timestamp`, `webhook-signature` (or the `svix-*` names), secrets `whsec_<base64>`;
//! the type from the body, the time the signed timestamp.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use hookbridge_sink_core::Event;
use http::HeaderMap;

use super::verifiers::{hmac::preset, newest, signed_now, Draft, Verify};
use super::{Checked, Example, Kind, KindCheck, Provider};
use crate::normalize::mapping::{finish, parse_json, time_value, Request};
use crate::normalize::NormalizeError;
use crate::verify::{hmac, Verified, VerifyError};
use hookbridge_sink_core::standard_webhooks;

/// The registry entry.
pub const KIND: Kind = Kind {
    name: "standard-webhooks",
    keys: &[],
    dedup_on_body: false,
    check,
};

fn check(k: &mut KindCheck<'_, '_>) -> Option<Checked> {
    let (secrets, tolerance) = preset(k.c, k.key, k.raw.verify.is_some(), None)?;
    let skey = format!("{}.verify.secret", k.key);
    let mut keys = Vec::new();
    for s in &secrets {
        match std::str::from_utf8(s)
            .map_err(|e| e.to_string())
            .and_then(standard_webhooks::parse_secret)
        {
            Ok(key) => keys.push(key),
            Err(m) => k.c.error(
                skey.clone(),
                m,
                Some("a Standard Webhooks secret looks like whsec_<base64>".into()),
            ),
        }
    }
    Some(Checked {
        verifier: Arc::new(StandardWebhooksVerifier { keys, tolerance }),
        provider: Arc::new(StandardWebhooks),
    })
}

/// The `webhook-signature` check with the source's keys.
#[derive(Debug)]
pub struct StandardWebhooksVerifier {
    /// Decoded keys.
    pub keys: Vec<Vec<u8>>,
    /// Allowed clock difference, seconds.
    pub tolerance: i64,
}

impl Verify for StandardWebhooksVerifier {
    fn kind(&self) -> &'static str {
        "standard-webhooks"
    }

    fn header_only(&self) -> bool {
        false
    }

    fn precheck(&self, headers: &HeaderMap, now: u64) -> Result<(), VerifyError> {
        hmac::standard_webhooks_headers(headers, signed_now(now), self.tolerance)
    }

    fn verify_now(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError> {
        hmac::standard_webhooks(headers, body, signed_now(now), &self.keys, self.tolerance)
            .map(|()| Verified::default())
    }

    fn sign(&self, draft: &mut Draft, _: Option<&[u8]>) -> Result<(), String> {
        let signature =
            standard_webhooks::sign(newest(&self.keys, "secret")?, &draft.id, draft.now, &draft.body);
        draft.headers.push(("webhook-signature".into(), signature));
        Ok(())
    }
}

/// A Standard Webhooks source.
#[derive(Debug)]
pub struct StandardWebhooks;

impl Provider for StandardWebhooks {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn decode(&self, source: &str, headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError> {
        decode_one(source, headers, body).map(|e| vec![e])
    }

    fn example(&self, draft: &mut Draft, ty: Option<&str>, data: Option<&[u8]>, _: &Example) {
        draft.headers.push(("webhook-id".into(), draft.id.clone()));
        draft
            .headers
            .push(("webhook-timestamp".into(), draft.now.to_string()));
        let ty = ty.unwrap_or("hookbridge.test");
        draft.body = data.map_or_else(
            || {
                serde_json::json!({ "type": ty, "data": {} })
                    .to_string()
                    .into_bytes()
            },
            <[u8]>::to_vec,
        );
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Standard Webhooks: id `webhook-id` (or `svix-id`), type the body's `type`, time the signed
/// timestamp.
fn decode_one(source_name: &str, headers: &HeaderMap, body: &Bytes) -> Result<Event, NormalizeError> {
    let req = Request::new(headers, Some(parse_json(body)?));
    let id = req
        .header("webhook-id")
        .or_else(|| req.header("svix-id"))
        .ok_or_else(|| NormalizeError::missing("id"))?;
    let ty = req
        .pointer("/type")
        .ok_or_else(|| NormalizeError::missing("type"))?;
    let mut event = Event::new(id, format!("hookbridge://{source_name}"), ty);
    event.time = req
        .header("webhook-timestamp")
        .or_else(|| req.header("svix-timestamp"))
        .map(time_value)
        .transpose()?;
    finish(event, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::test_headers as headers;

    #[test]
    fn preset() {
        let h = headers(&[("webhook-id", "msg_1"), ("webhook-timestamp", "1700000000")]);
        let e = decode_one("sw", &h, &Bytes::from_static(br#"{"type":"user.created"}"#)).expect("sw");
        assert_eq!((e.id.as_str(), e.ty.as_str()), ("msg_1", "user.created"));
        assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20Z"));
    }
}
