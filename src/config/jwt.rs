//! `verify = { kind = "jwt", … }`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey};

use super::raw::{CloudEventsVerifyRaw, KeyRef};
use super::secret::SECRET_HINT;
use super::Checker;
use crate::keys::{key_set_from_jwks, JwksProvider};
use crate::verify::jwt::{JwtSpec, Key, KeySet, KeySource};
use crate::verify::VerifierConfig;

fn read(c: &mut Checker<'_>, key: &str, r: &KeyRef) -> Option<Vec<u8>> {
    match r {
        KeyRef::Pem(text) => Some(text.as_bytes().to_vec()),
        KeyRef::Ref(r) => match r.resolve() {
            Ok(s) => Some(s.expose().to_vec()),
            Err(m) => {
                c.error(key, m, Some(SECRET_HINT.into()));
                None
            }
        },
    }
}

pub(super) fn check_jwt_verify(
    c: &mut Checker<'_>,
    key: &str,
    raw: CloudEventsVerifyRaw,
) -> Option<VerifierConfig> {
    let CloudEventsVerifyRaw::Jwt {
        algorithms,
        header,
        key: pem,
        jwks,
        jwks_url,
        min_refresh,
        refresh,
        issuers,
        audiences,
        required,
        leeway,
        bind,
    } = raw
    else {
        return None;
    };
    let mut algs = Vec::new();
    for (i, a) in algorithms.iter().enumerate() {
        match Algorithm::from_str(a) {
            Ok(alg) => algs.push(alg),
            Err(_) => c.error(
                format!("{key}.algorithms[{i}]"),
                format!("unknown algorithm {a:?}"),
                Some("HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA".into()),
            ),
        }
    }
    if algorithms.is_empty() {
        c.error(format!("{key}.algorithms"), "at least one algorithm", None);
    }
    let families: Vec<_> = algs.iter().map(|a| a.family()).collect();
    if families.windows(2).any(|w| w[0] != w[1]) {
        c.error(
            format!("{key}.algorithms"),
            "all algorithms must use one key family",
            None,
        );
        return None;
    }
    let sources = [pem.is_some(), jwks.is_some(), jwks_url.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if sources != 1 {
        c.error(key, "exactly one of `key`, `jwks` and `jwks_url`", None);
        return None;
    }
    let family = *families.first()?;
    let keys = if let Some(url) = jwks_url {
        if !jwks_url_allowed(&url) {
            c.error(
                format!("{key}.jwks_url"),
                format!("{url:?} is not an https:// URL"),
                Some("keys fetched over plain HTTP can be replaced in transit; http:// is allowed for loopback addresses only".into()),
            );
            return None;
        }
        let min = min_refresh.map_or(Duration::from_secs(60), |d| d.0);
        let every = refresh.map_or(Duration::from_secs(600), |d| d.0);
        if every < min {
            c.error(format!("{key}.refresh"), "must be at least min_refresh", None);
        }
        KeySource::Jwks(JwksProvider::new(url, min, every))
    } else if min_refresh.is_some() || refresh.is_some() {
        let which = if refresh.is_some() {
            "refresh"
        } else {
            "min_refresh"
        };
        c.error(
            format!("{key}.{which}"),
            "only with jwks_url: keys from `key` or `jwks` are read once and never refetched",
            None,
        );
        return None;
    } else if let Some(j) = jwks {
        let bytes = read(c, &format!("{key}.jwks"), &j)?;
        match serde_json::from_slice::<jsonwebtoken::jwk::JwkSet>(&bytes) {
            Ok(set) => KeySource::Static(Arc::new(key_set_from_jwks(&set))),
            Err(e) => {
                c.error(format!("{key}.jwks"), format!("not a JWKS: {e}"), None);
                return None;
            }
        }
    } else {
        if family == jsonwebtoken::AlgorithmFamily::Hmac && matches!(pem, Some(KeyRef::Pem(_))) {
            c.warn(
                format!("{key}.key"),
                "the HS shared secret is written inline; anyone who reads this file can sign tokens",
                Some(SECRET_HINT.into()),
            );
        }
        let bytes = read(c, &format!("{key}.key"), pem.as_ref()?)?;
        let decoded = match family {
            jsonwebtoken::AlgorithmFamily::Hmac => DecodingKey::from_secret(&bytes),
            jsonwebtoken::AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&bytes),
            jsonwebtoken::AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&bytes),
            jsonwebtoken::AlgorithmFamily::Ed => DecodingKey::from_ed_pem(&bytes),
        };
        match decoded {
            Ok(k) => KeySource::Static(Arc::new(KeySet {
                keys: vec![Key { kid: None, key: k }],
            })),
            Err(e) => {
                c.error(format!("{key}.key"), format!("not a {family:?} key: {e}"), None);
                return None;
            }
        }
    };
    let spec = JwtSpec {
        algorithms: algs,
        header: header
            .unwrap_or_else(|| "authorization".into())
            .to_ascii_lowercase(),
        issuers: issuers.unwrap_or_default(),
        audiences: audiences.unwrap_or_default(),
        required: required.unwrap_or_else(|| vec!["exp".into()]),
        leeway: c.whole_seconds(&format!("{key}.leeway"), leeway).unwrap_or(60),
        bindings: bind.unwrap_or_default().into_iter().collect(),
        audience_ignore_query: false,
    };
    for (claim, attr) in &spec.bindings {
        let valid = attr.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) && !attr.is_empty();
        if !valid {
            c.error(
                format!("{key}.bind.{claim}"),
                format!("{attr:?} is not a CloudEvents attribute name"),
                None,
            );
        }
    }
    Some(VerifierConfig::Jwt {
        spec: Arc::new(spec),
        keys,
    })
}

/// `https://` URLs, and `http://` to a loopback address (`localhost`, 127.x, `[::1]`).
fn jwks_url_allowed(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => parsed.host().is_some(),
        "http" => parsed.host_str().is_some_and(|h| {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}
