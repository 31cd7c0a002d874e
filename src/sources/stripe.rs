//! `kind = "stripe"`: Stripe webhooks. `Stripe-Signature` (`t=…,v1=…`: HMAC-SHA256 of
//! `"{t}.{body}"`, the timestamp within `tolerance`); id, type and time from the body.

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

/// The registry entry.
pub const KIND: Kind = Kind {
    name: "stripe",
    keys: &[],
    dedup_on_body: false,
    check,
};

fn check(k: &mut KindCheck<'_, '_>) -> Option<Checked> {
    let (secrets, tolerance) = preset(k.c, k.key, k.raw.verify.is_some(), None)?;
    Some(Checked {
        verifier: Arc::new(StripeVerifier { secrets, tolerance }),
        provider: Arc::new(Stripe),
    })
}

/// `Stripe-Signature` with the source's secrets.
#[derive(Debug)]
pub struct StripeVerifier {
    /// Active secrets (the whole `whsec_…` strings).
    pub secrets: Vec<Vec<u8>>,
    /// Allowed clock difference, seconds.
    pub tolerance: i64,
}

impl Verify for StripeVerifier {
    fn kind(&self) -> &'static str {
        "stripe"
    }

    fn header_only(&self) -> bool {
        false
    }

    fn precheck(&self, headers: &HeaderMap, now: u64) -> Result<(), VerifyError> {
        hmac::stripe_header(headers, signed_now(now), self.tolerance).map(|_| ())
    }

    fn verify_now(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError> {
        hmac::stripe(headers, body, signed_now(now), &self.secrets, self.tolerance)
            .map(|()| Verified::default())
    }

    fn sign(&self, draft: &mut Draft, _: Option<&[u8]>) -> Result<(), String> {
        let t = draft.now;
        let mut content = format!("{t}.").into_bytes();
        content.extend_from_slice(&draft.body);
        let tag = super::verifiers::hmac::mac_bytes::<::hmac::Hmac<sha2::Sha256>>(
            newest(&self.secrets, "secret")?,
            &content,
        )?;
        draft.headers.push((
            "stripe-signature".into(),
            format!("t={t},v1={}", hex::encode(tag)),
        ));
        Ok(())
    }
}

/// A Stripe source.
#[derive(Debug)]
pub struct Stripe;

impl Provider for Stripe {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn decode(&self, source: &str, headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError> {
        decode_one(source, headers, body).map(|e| vec![e])
    }

    fn example(&self, draft: &mut Draft, ty: Option<&str>, data: Option<&[u8]>, _: &Example) {
        let ty = ty.unwrap_or("com.stripe.hookbridge.test");
        let stripe_type = ty.strip_prefix("com.stripe.").unwrap_or(ty);
        draft.body = data.map_or_else(
            || {
                serde_json::json!({ "id": format!("evt_{}", draft.id), "object": "event", "type": stripe_type, "created": draft.now })
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

/// Stripe: id and type from the body (`com.stripe.<type>`), time from `created`.
fn decode_one(source_name: &str, headers: &HeaderMap, body: &Bytes) -> Result<Event, NormalizeError> {
    let req = Request::new(headers, Some(parse_json(body)?));
    let id = req.pointer("/id").ok_or_else(|| NormalizeError::missing("id"))?;
    let ty = req
        .pointer("/type")
        .ok_or_else(|| NormalizeError::missing("type"))?;
    let mut event = Event::new(
        id,
        format!("hookbridge://{source_name}"),
        format!("com.stripe.{ty}"),
    );
    event.time = req.pointer("/created").map(time_value).transpose()?;
    event.subject = req.pointer("/account");
    finish(event, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::test_headers as headers;

    #[test]
    fn preset() {
        let e = decode_one(
            "st",
            &headers(&[]),
            &Bytes::from_static(br#"{"id":"evt_1","type":"invoice.paid","created":1700000000}"#),
        )
        .expect("stripe");
        assert_eq!(
            (e.id.as_str(), e.ty.as_str()),
            ("evt_1", "com.stripe.invoice.paid")
        );
        assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(
            decode_one("st", &headers(&[]), &Bytes::from_static(b"{}"))
                .expect_err("id")
                .field
                .as_deref(),
            Some("id")
        );
    }
}
