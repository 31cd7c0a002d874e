//! The generic `hmac` and `basic` verifiers, and what the provider presets built on HMAC
//! (`super::super::github`, `stripe`, `standard_webhooks`) share: their `verify` table.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::Mac;
use http::HeaderMap;

use super::{newest, signed_now, BasicVerifier, Draft, Verify};
use crate::settings::raw::{CloudEventsVerifyRaw, ProviderVerifyRaw};
use crate::settings::secret::SECRET_HINT;
use crate::settings::Checker;
use crate::verify::hmac::{Algorithm, Encoding, GenericHmac};
use crate::verify::{Verified, VerifyError};

/// Default clock tolerance of signed timestamps.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// A provider preset's `verify` table (`secret`, `tolerance`), checked: the secrets and the
/// tolerance in seconds; `None` when it is missing or unreadable (the error is recorded).
/// `untimed`: the provider's name when its credential carries no timestamp (`tolerance` is then
/// refused).
pub fn preset(
    c: &mut Checker<'_>,
    key: &str,
    has_verify: bool,
    untimed: Option<&str>,
) -> Option<(Vec<Vec<u8>>, i64)> {
    let vkey = format!("{key}.verify");
    if !has_verify {
        c.error(
            vkey,
            "missing verifier configuration",
            Some("add verify = { secret = { env = \"NAME\" } } with the provider's signing secret".into()),
        );
        return None;
    }
    let raw: ProviderVerifyRaw = c.extract(&vkey)?;
    let raw_secrets = c.secrets(&format!("{vkey}.secret"), &raw.secret);
    if let (Some(provider), Some(_)) = (untimed, raw.tolerance) {
        c.error(
            format!("{vkey}.tolerance"),
            format!("{provider} signatures carry no timestamp"),
            None,
        );
    }
    let tolerance = c
        .whole_seconds(&format!("{vkey}.tolerance"), raw.tolerance)
        .map_or(DEFAULT_TOLERANCE.as_secs(), |t| t) as i64;
    Some((raw_secrets, tolerance))
}

/// A generic HMAC signature.
#[derive(Debug)]
pub struct HmacVerifier {
    /// How the signature is made.
    pub spec: Arc<GenericHmac>,
    /// Active secrets.
    pub secrets: Vec<Vec<u8>>,
}

impl Verify for HmacVerifier {
    fn kind(&self) -> &'static str {
        "hmac"
    }

    fn header_only(&self) -> bool {
        false
    }

    fn precheck(&self, headers: &HeaderMap, now: u64) -> Result<(), VerifyError> {
        self.spec.signature(headers, signed_now(now)).map(|_| ())
    }

    fn verify_now(&self, headers: &HeaderMap, body: &[u8], now: u64) -> Result<Verified, VerifyError> {
        self.spec
            .verify(headers, body, signed_now(now), &self.secrets)
            .map(|()| Verified::default())
    }

    fn credential_headers(&self) -> Vec<String> {
        let mut out = vec![self.spec.header.clone()];
        out.extend(self.spec.timestamp_header.clone());
        out
    }

    fn sign(&self, draft: &mut Draft, _: Option<&[u8]>) -> Result<(), String> {
        let spec = &self.spec;
        let secret = newest(&self.secrets, "secret")?;
        let ts = draft.now.to_string();
        let content = spec.content(&draft.body, Some(&ts));
        let tag = match spec.algorithm {
            Algorithm::Sha1 => mac_bytes::<hmac::Hmac<sha1::Sha1>>(secret, &content)?,
            Algorithm::Sha256 => mac_bytes::<hmac::Hmac<sha2::Sha256>>(secret, &content)?,
            Algorithm::Sha512 => mac_bytes::<hmac::Hmac<sha2::Sha512>>(secret, &content)?,
        };
        let encoded = match spec.encoding {
            Encoding::Hex => hex::encode(tag),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(tag),
        };
        draft
            .headers
            .push((spec.header.clone(), format!("{}{encoded}", spec.prefix)));
        if let Some(h) = &spec.timestamp_header {
            draft.headers.push((h.clone(), ts));
        }
        Ok(())
    }
}

/// HMAC of `content` under `secret` with the MAC `M`.
pub fn mac_bytes<M: Mac + hmac::digest::KeyInit>(secret: &[u8], content: &[u8]) -> Result<Vec<u8>, String> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(content);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// `basic` and `hmac` for `cloudevents` and `generic` sources.
pub fn check(c: &mut Checker<'_>, key: &str, raw: CloudEventsVerifyRaw) -> Option<Arc<dyn Verify>> {
    match raw {
        CloudEventsVerifyRaw::Basic { users } => {
            if users.is_empty() {
                c.error(format!("{key}.users"), "at least one user", None);
            }
            let mut out = Vec::new();
            for (i, u) in users.iter().enumerate() {
                match u.password.resolve() {
                    Ok(p) => out.push((u.username.clone(), p.expose().to_vec())),
                    Err(m) => c.error(format!("{key}.users[{i}].password"), m, Some(SECRET_HINT.into())),
                }
            }
            Some(Arc::new(BasicVerifier { users: out }))
        }
        CloudEventsVerifyRaw::Hmac {
            secret,
            header,
            algorithm,
            encoding,
            prefix,
            signed,
            timestamp_header,
            tolerance,
        } => {
            let keys = c.secrets(&format!("{key}.secret"), &secret);
            let (algorithm, encoding) = scheme(c, key, algorithm.as_deref(), encoding.as_deref())?;
            let signed = signed.unwrap_or_else(|| "{body}".into());
            check_signed(c, key, &signed, timestamp_header.as_deref(), tolerance.is_some());
            for h in std::iter::once(&header).chain(timestamp_header.iter()) {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    c.error(
                        format!("{key}.header"),
                        format!("invalid header name {h:?}"),
                        None,
                    );
                }
            }
            let spec = GenericHmac {
                header: header.to_ascii_lowercase(),
                algorithm,
                encoding,
                prefix: prefix.unwrap_or_default(),
                signed,
                timestamp_header: timestamp_header.map(|h| h.to_ascii_lowercase()),
                tolerance: c
                    .whole_seconds(&format!("{key}.tolerance"), tolerance)
                    .map_or(DEFAULT_TOLERANCE.as_secs(), |t| t) as i64,
            };
            Some(Arc::new(HmacVerifier {
                spec: Arc::new(spec),
                secrets: keys,
            }))
        }
        _ => None,
    }
}

/// `algorithm` and `encoding` of an `hmac` table.
fn scheme(
    c: &mut Checker<'_>,
    key: &str,
    algorithm: Option<&str>,
    encoding: Option<&str>,
) -> Option<(Algorithm, Encoding)> {
    let algorithm = match algorithm.unwrap_or("sha256") {
        "sha1" => Algorithm::Sha1,
        "sha256" => Algorithm::Sha256,
        "sha512" => Algorithm::Sha512,
        other => {
            c.error(
                format!("{key}.algorithm"),
                format!("unknown algorithm {other:?}"),
                Some("sha1, sha256 or sha512".into()),
            );
            return None;
        }
    };
    let encoding = match encoding.unwrap_or("hex") {
        "hex" => Encoding::Hex,
        "base64" => Encoding::Base64,
        other => {
            c.error(
                format!("{key}.encoding"),
                format!("unknown encoding {other:?}"),
                Some("hex or base64".into()),
            );
            return None;
        }
    };
    Some((algorithm, encoding))
}

/// What an `hmac` table signs: the body always, a timestamp exactly when a header carries one.
fn check_signed(
    c: &mut Checker<'_>,
    key: &str,
    signed: &str,
    timestamp_header: Option<&str>,
    tolerance: bool,
) {
    if !signed.contains("{body}") {
        c.error(
            format!("{key}.signed"),
            "the signed content must include {body}",
            None,
        );
    }
    if tolerance && timestamp_header.is_none() {
        c.error(
            format!("{key}.tolerance"),
            "has no effect without timestamp_header (nothing signed carries a time)",
            None,
        );
    }
    if signed.contains("{timestamp}") != timestamp_header.is_some() {
        c.error(
            format!("{key}.timestamp_header"),
            "timestamp_header and a {timestamp} in `signed` go together",
            None,
        );
    }
}
