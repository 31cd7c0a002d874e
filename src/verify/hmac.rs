//! HMAC-family verifiers over the raw body and headers: Standard Webhooks, GitHub, Stripe and a
//! generic HMAC. Every comparison is constant-time; every active secret is tried (rotation).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use hookbridge_sink_core::standard_webhooks;
use http::HeaderMap;

use super::VerifyError;

/// A header's single value as text; absent → `MissingToken`, repeated or non-ASCII → `BadSignature`
/// (two signature headers are ambiguous, so neither is trusted).
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let v = values.next().ok_or(VerifyError::MissingToken)?;
    if values.next().is_some() {
        return Err(VerifyError::BadSignature);
    }
    v.to_str().map_err(|_| VerifyError::BadSignature)
}

/// Checks `|now - ts| <= tolerance` (seconds), future timestamps included.
fn within(ts: i64, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    if (now - ts).abs() > tolerance {
        return Err(VerifyError::TimestampOutOfRange);
    }
    Ok(())
}

/// The Standard Webhooks headers of a request (`webhook-*`, or Svix's `svix-*` names), the
/// timestamp checked against `now`.
struct SwHeaders<'a> {
    id: &'a str,
    ts: i64,
    sig: &'a str,
}

fn sw_headers(headers: &HeaderMap, now: i64, tolerance: i64) -> Result<SwHeaders<'_>, VerifyError> {
    let prefix = if headers.contains_key("webhook-id") || !headers.contains_key("svix-id") {
        "webhook"
    } else {
        "svix"
    };
    let id = single(headers, &format!("{prefix}-id"))?;
    let ts = single(headers, &format!("{prefix}-timestamp"))?;
    let sig = single(headers, &format!("{prefix}-signature"))?;
    let ts: i64 = ts.trim().parse().map_err(|_| VerifyError::TimestampOutOfRange)?;
    within(ts, now, tolerance)?;
    Ok(SwHeaders { id, ts, sig })
}

/// Standard Webhooks (`webhook-*`, or Svix's `svix-*` names). `keys` are decoded secrets.
pub fn standard_webhooks(
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    keys: &[Vec<u8>],
    tolerance: i64,
) -> Result<(), VerifyError> {
    let h = sw_headers(headers, now, tolerance)?;
    if standard_webhooks::verify(keys, h.id, h.ts, body, h.sig) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// What can be checked of a Standard Webhooks request before its body arrives.
pub fn standard_webhooks_headers(headers: &HeaderMap, now: i64, tolerance: i64) -> Result<(), VerifyError> {
    sw_headers(headers, now, tolerance).map(|_| ())
}

fn hmac_sha256(key: &[u8]) -> Hmac<sha2::Sha256> {
    <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// GitHub's signature tag from `X-Hub-Signature-256: sha256=<hex>`.
pub fn github_tag(headers: &HeaderMap) -> Result<Vec<u8>, VerifyError> {
    let value = single(headers, "x-hub-signature-256")?;
    let hex_sig = value.strip_prefix("sha256=").ok_or(VerifyError::BadSignature)?;
    let tag = hex::decode(hex_sig).map_err(|_| VerifyError::BadSignature)?;
    if tag.len() != 32 {
        return Err(VerifyError::BadSignature);
    }
    Ok(tag)
}

/// GitHub: `X-Hub-Signature-256: sha256=<lower-case hex HMAC-SHA256(secret, body)>`.
pub fn github(headers: &HeaderMap, body: &[u8], secrets: &[Vec<u8>]) -> Result<(), VerifyError> {
    let tag = github_tag(headers)?;
    let mut ok = false;
    for secret in secrets {
        let mut mac = hmac_sha256(secret);
        mac.update(body);
        ok |= mac.verify_slice(&tag).is_ok();
    }
    ok.then_some(()).ok_or(VerifyError::BadSignature)
}

/// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`, HMAC-SHA256 keyed with the whole
/// `whsec_…` string over `"{t}.{body}"`; other schemes (`v0`) are ignored.
pub fn stripe(
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    secrets: &[Vec<u8>],
    tolerance: i64,
) -> Result<(), VerifyError> {
    let (t, sigs) = stripe_header(headers, now, tolerance)?;
    let mut ok = false;
    for secret in secrets {
        let mut mac = hmac_sha256(secret);
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        for sig in &sigs {
            ok |= standard_webhooks::constant_time_eq(&tag, sig);
        }
    }
    ok.then_some(()).ok_or(VerifyError::BadSignature)
}

/// `Stripe-Signature`'s timestamp (checked against `now`) and its `v1` candidates.
pub fn stripe_header(
    headers: &HeaderMap,
    now: i64,
    tolerance: i64,
) -> Result<(i64, Vec<Vec<u8>>), VerifyError> {
    let value = single(headers, "stripe-signature")?;
    let mut t = None;
    let mut sigs = Vec::new();
    if value.split(',').count() > 2 * standard_webhooks::MAX_SIGNATURES {
        return Err(VerifyError::BadSignature);
    }
    for part in value.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) if t.is_none() => {
                t = Some(v.parse::<i64>().map_err(|_| VerifyError::BadSignature)?)
            }
            Some(("t", _)) => return Err(VerifyError::BadSignature),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|_| VerifyError::BadSignature)?),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::BadSignature)?;
    // Only signatures of the right length count, and at most a few: each secret's MAC is computed
    // once, so a header with thousands of candidates costs no more than one with one.
    sigs.retain(|s| s.len() == 32);
    if sigs.is_empty() || sigs.len() > standard_webhooks::MAX_SIGNATURES {
        return Err(VerifyError::BadSignature);
    }
    within(t, now, tolerance)?;
    Ok((t, sigs))
}

/// Digest of the generic HMAC verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1 (legacy providers).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// Signature text encoding of the generic HMAC verifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hex (either case).
    Hex,
    /// Standard base64.
    Base64,
}

/// The generic HMAC verifier's settings.
#[derive(Debug, Clone)]
pub struct GenericHmac {
    /// Header carrying the signature (lower-case).
    pub header: String,
    /// Digest.
    pub algorithm: Algorithm,
    /// Encoding.
    pub encoding: Encoding,
    /// Prefix before the signature (e.g. `sha256=`), stripped before decoding.
    pub prefix: String,
    /// Signed content: `{body}` and `{timestamp}` placeholders, e.g. `{timestamp}.{body}`.
    pub signed: String,
    /// Header carrying the timestamp, when `signed` uses it.
    pub timestamp_header: Option<String>,
    /// Allowed clock difference in seconds.
    pub tolerance: i64,
}

impl GenericHmac {
    /// Verifies a request.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
        secrets: &[Vec<u8>],
    ) -> Result<(), VerifyError> {
        let (tag, timestamp) = self.signature(headers, now)?;
        let content = self.content(body, timestamp.as_deref());
        let mut ok = false;
        for secret in secrets {
            ok |= match self.algorithm {
                Algorithm::Sha1 => check::<Hmac<sha1::Sha1>>(secret, &content, &tag),
                Algorithm::Sha256 => check::<Hmac<sha2::Sha256>>(secret, &content, &tag),
                Algorithm::Sha512 => check::<Hmac<sha2::Sha512>>(secret, &content, &tag),
            };
        }
        ok.then_some(()).ok_or(VerifyError::BadSignature)
    }

    /// The signature tag and the signed timestamp (checked against `now`), from the headers.
    pub fn signature(&self, headers: &HeaderMap, now: i64) -> Result<(Vec<u8>, Option<String>), VerifyError> {
        let value = single(headers, &self.header)?;
        let encoded = value
            .trim()
            .strip_prefix(self.prefix.as_str())
            .ok_or(VerifyError::BadSignature)?;
        let tag = match self.encoding {
            Encoding::Hex => hex::decode(encoded),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| hex::FromHexError::InvalidStringLength),
        }
        .map_err(|_| VerifyError::BadSignature)?;
        let timestamp = match &self.timestamp_header {
            Some(h) => {
                let ts = single(headers, h)?;
                let parsed: i64 = ts.trim().parse().map_err(|_| VerifyError::TimestampOutOfRange)?;
                within(parsed, now, self.tolerance)?;
                Some(ts.trim().to_owned())
            }
            None => None,
        };
        Ok((tag, timestamp))
    }

    /// The signed content: `signed` with `{body}` and `{timestamp}` filled in.
    pub fn content(&self, body: &[u8], timestamp: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + 32);
        let mut rest = self.signed.as_str();
        while let Some(start) = rest.find('{') {
            out.extend_from_slice(&rest.as_bytes()[..start]);
            let after = &rest[start..];
            if let Some(tail) = after.strip_prefix("{body}") {
                out.extend_from_slice(body);
                rest = tail;
            } else if let Some(tail) = after.strip_prefix("{timestamp}") {
                out.extend_from_slice(timestamp.unwrap_or_default().as_bytes());
                rest = tail;
            } else {
                out.push(b'{');
                rest = &after[1..];
            }
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }
}

fn check<M: Mac + hmac::digest::KeyInit>(secret: &[u8], content: &[u8], tag: &[u8]) -> bool {
    let Ok(mut mac) = <M as hmac::digest::KeyInit>::new_from_slice(secret) else {
        return false;
    };
    mac.update(content);
    mac.verify_slice(tag).is_ok()
}

/// `Authorization: Basic` against `(user, password)` pairs, constant-time.
pub fn basic(headers: &HeaderMap, users: &[(String, Vec<u8>)]) -> Result<(), VerifyError> {
    use sha2::Digest;
    use subtle::ConstantTimeEq;
    let value = single(headers, "authorization")?;
    let (scheme, encoded) = value.split_once(' ').ok_or(VerifyError::MissingToken)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(VerifyError::MissingToken);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| VerifyError::BadSignature)?;
    let presented = sha2::Sha256::digest(&decoded);
    let mut ok = subtle::Choice::from(0);
    for (user, pass) in users {
        let mut expected = user.as_bytes().to_vec();
        expected.push(b':');
        expected.extend_from_slice(pass);
        ok |= sha2::Sha256::digest(&expected).ct_eq(&presented);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

#[cfg(test)]
mod tests;
