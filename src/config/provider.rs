//! Source settings for providers that do not send CloudEvents: provider verifiers (GitHub,
//! Stripe, Standard Webhooks), the generic `basic` and `hmac` verifiers, mappings and
//! `keep_headers`.

use std::time::Duration;

use hookbridge_sink_core::standard_webhooks;

use super::raw::{CloudEventsVerifyRaw, FieldRaw, MappingRaw, ProviderVerifyRaw};
use super::secret::{SecretRefs, SECRET_HINT};
use super::{Checker, SourceKind};
use crate::normalize::mapping::{parse_template, Field, Mapping};
use crate::verify::hmac::{Algorithm, Encoding, GenericHmac};
use crate::verify::VerifierConfig;

use crate::verify::SECRET_HEADERS;

const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

pub(super) fn secrets(c: &mut Checker<'_>, key: &str, refs: &SecretRefs) -> Vec<Vec<u8>> {
    let list = refs.refs();
    if list.is_empty() {
        c.error(key, "no secret configured", Some(SECRET_HINT.into()));
    }
    let mut out = Vec::new();
    for r in list {
        match r.resolve() {
            Ok(s) => out.push(s.expose().to_vec()),
            Err(m) => c.error(key, m, Some(SECRET_HINT.into())),
        }
    }
    out
}

/// `[sources.X.verify]` for `github`, `stripe`, `standard-webhooks`.
pub(super) fn check_provider_verify(
    c: &mut Checker<'_>,
    key: &str,
    kind: SourceKind,
    has_verify: bool,
) -> Option<VerifierConfig> {
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
    let skey = format!("{vkey}.secret");
    let raw_secrets = secrets(c, &skey, &raw.secret);
    let tolerance = c
        .whole_seconds(&format!("{vkey}.tolerance"), raw.tolerance)
        .map_or(DEFAULT_TOLERANCE.as_secs(), |t| t) as i64;
    match kind {
        SourceKind::GitHub => {
            if raw.tolerance.is_some() {
                c.error(
                    format!("{vkey}.tolerance"),
                    "GitHub signatures carry no timestamp",
                    None,
                );
            }
            Some(VerifierConfig::GitHub { secrets: raw_secrets })
        }
        SourceKind::Stripe => Some(VerifierConfig::Stripe {
            secrets: raw_secrets,
            tolerance,
        }),
        _ => {
            let mut keys = Vec::new();
            for s in &raw_secrets {
                match std::str::from_utf8(s)
                    .map_err(|e| e.to_string())
                    .and_then(standard_webhooks::parse_secret)
                {
                    Ok(k) => keys.push(k),
                    Err(m) => c.error(
                        skey.clone(),
                        m,
                        Some("a Standard Webhooks secret looks like whsec_<base64>".into()),
                    ),
                }
            }
            Some(VerifierConfig::StandardWebhooks { keys, tolerance })
        }
    }
}

/// `basic` and `hmac` for `cloudevents` and `generic` sources.
pub(super) fn check_generic_verify(
    c: &mut Checker<'_>,
    key: &str,
    raw: CloudEventsVerifyRaw,
) -> Option<VerifierConfig> {
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
            Some(VerifierConfig::Basic { users: out })
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
            let keys = secrets(c, &format!("{key}.secret"), &secret);
            let algorithm = match algorithm.as_deref().unwrap_or("sha256") {
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
            let encoding = match encoding.as_deref().unwrap_or("hex") {
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
            let signed = signed.unwrap_or_else(|| "{body}".into());
            if !signed.contains("{body}") {
                c.error(
                    format!("{key}.signed"),
                    "the signed content must include {body}",
                    None,
                );
            }
            if tolerance.is_some() && timestamp_header.is_none() {
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
            Some(VerifierConfig::Hmac {
                spec: std::sync::Arc::new(spec),
                secrets: keys,
            })
        }
        _ => None,
    }
}

fn field(c: &mut Checker<'_>, key: String, raw: &FieldRaw) -> Option<Field> {
    Some(match raw {
        FieldRaw::Header { header } => Field::Header(header.to_ascii_lowercase()),
        FieldRaw::Pointer { pointer } => {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                c.error(key, format!("JSON pointer {pointer:?} must start with '/'"), None);
                return None;
            }
            Field::Pointer(pointer.clone())
        }
        FieldRaw::Value { value } => Field::Value(value.clone()),
        FieldRaw::Template { template } => match parse_template(template) {
            Ok(parts) => Field::Template(parts),
            Err(m) => {
                c.error(key, format!("bad template: {m}"), None);
                return None;
            }
        },
    })
}

/// `[sources.X.mapping]`: required for `generic`, refused elsewhere. `Some(None)` = no mapping.
pub(super) fn check_mapping(
    c: &mut Checker<'_>,
    key: &str,
    kind: Option<SourceKind>,
    raw: Option<&MappingRaw>,
) -> Option<Option<Mapping>> {
    let mkey = format!("{key}.mapping");
    match (kind, raw) {
        (Some(SourceKind::Generic), None) => {
            c.error(
                mkey,
                "a generic source needs a mapping",
                Some("e.g. mapping = { id = { pointer = \"/id\" }, type = { pointer = \"/type\" } }".into()),
            );
            None
        }
        (Some(SourceKind::Generic), Some(m)) => {
            let mut required = |name: &str, f: &Option<FieldRaw>| match f {
                Some(f) => field(c, format!("{mkey}.{name}"), f),
                None => {
                    c.error(
                        format!("{mkey}.{name}"),
                        format!("missing required key `{name}`"),
                        None,
                    );
                    None
                }
            };
            let id = required("id", &m.id);
            let ty = required("type", &m.ty);
            let mut optional =
                |name: &str, f: &Option<FieldRaw>| f.as_ref().map(|f| field(c, format!("{mkey}.{name}"), f));
            let source = optional("source", &m.source);
            let subject = optional("subject", &m.subject);
            let time = optional("time", &m.time);
            Some(Some(Mapping {
                id: id?,
                ty: ty?,
                source: source.map(|f| f.ok_or(())).transpose().ok()?,
                subject: subject.map(|f| f.ok_or(())).transpose().ok()?,
                time: time.map(|f| f.ok_or(())).transpose().ok()?,
            }))
        }
        (_, Some(_)) => {
            c.error(
                mkey,
                "only `kind = \"generic\"` sources take a mapping",
                Some("provider kinds map their events themselves".into()),
            );
            None
        }
        (_, None) => Some(None),
    }
}

/// `keep_headers`: valid names, never credentials or signatures.
pub(super) fn check_keep_headers(
    c: &mut Checker<'_>,
    key: &str,
    raw: Option<&[String]>,
) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, h) in raw.unwrap_or_default().iter().enumerate() {
        let lower = h.to_ascii_lowercase();
        if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            c.error(
                format!("{key}.keep_headers[{i}]"),
                format!("invalid header name {h:?}"),
                None,
            );
            ok = false;
        } else if SECRET_HEADERS.contains(&lower.as_str()) {
            c.error(
                format!("{key}.keep_headers[{i}]"),
                format!("{h:?} carries credentials or a signature and is never kept"),
                None,
            );
            ok = false;
        } else {
            out.push(lower);
        }
    }
    ok.then_some(out)
}
