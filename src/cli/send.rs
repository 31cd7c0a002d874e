//! `hookbridge send`: builds a request the source's verifier accepts, using the secrets the
//! configuration names (or, for Fatture in Cloud, a test signing key given on the command line).

use base64::Engine as _;
use hmac::Mac;
use hookbridge_sink_core::standard_webhooks;

use crate::config::{Config, SourceConfig, SourceKind};
use crate::verify::fic::FIC_ISSUER;
use crate::verify::hmac::{Algorithm, Encoding};
use crate::verify::VerifierConfig;

/// What to send.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Event type; a per-kind default when absent.
    pub ty: Option<String>,
    /// Body; a per-kind default when absent.
    pub data: Option<Vec<u8>>,
    /// Target URL; default `http://<listen><path>`.
    pub url: Option<String>,
    /// PEM EC private key for sources verified with ES256 (Fatture in Cloud).
    pub key_pem: Option<Vec<u8>>,
    /// Company id for Fatture in Cloud (`subject = company:<id>`). Default `1`.
    pub company: Option<String>,
    /// Unix time to sign with (tests); default now.
    pub now: Option<i64>,
    /// Event id; default a fresh one (load generators pass their own unique ids).
    pub id: Option<String>,
}

/// A built request.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method (`POST`).
    pub method: &'static str,
    /// Target URL.
    pub url: String,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A fresh event id.
fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("hbsend-{nanos:x}-{}", std::process::id())
}

/// Builds the request for source `name`.
pub fn build(config: &Config, name: &str, opts: &Options) -> Result<Request, String> {
    let source = config
        .sources
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("no source named {name:?}"))?;
    let url = opts.url.clone().unwrap_or_else(|| {
        let mut addr = config.server.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}{}", source.path)
    });
    let t = opts.now.unwrap_or_else(now);
    let id = opts.id.clone().unwrap_or_else(new_id);
    let mut headers: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    let body = match source.kind {
        SourceKind::CloudEvents | SourceKind::FattureInCloud => {
            let ty = opts.ty.clone().unwrap_or_else(|| match source.kind {
                SourceKind::FattureInCloud => "it.fattureincloud.webhooks.entities.clients.create".into(),
                _ => "com.example.hookbridge.test".into(),
            });
            let (ce_source, subject) = if source.kind == SourceKind::FattureInCloud {
                (
                    FIC_ISSUER.to_owned(),
                    Some(format!("company:{}", opts.company.as_deref().unwrap_or("1"))),
                )
            } else {
                ("hookbridge://send".to_owned(), None)
            };
            headers.extend([
                ("ce-specversion".into(), "1.0".into()),
                ("ce-id".into(), id.clone()),
                ("ce-source".into(), ce_source),
                ("ce-type".into(), ty),
            ]);
            if let Some(s) = &subject {
                headers.push(("ce-subject".into(), s.clone()));
            }
            let default = if source.kind == SourceKind::FattureInCloud {
                br#"{"data":{"ids":[1]}}"#.to_vec()
            } else {
                b"{}".to_vec()
            };
            let body = opts.data.clone().unwrap_or(default);
            if let VerifierConfig::Fic(v) = &source.verifier {
                let token = fic_token(opts, &v.public_url, &id, subject.as_deref(), t)?;
                headers.push(("authorization".into(), format!("Bearer {token}")));
            }
            body
        }
        SourceKind::GitHub => {
            let ty = opts.ty.clone().unwrap_or_else(|| "com.github.ping".into());
            let event = ty.strip_prefix("com.github.").unwrap_or(&ty).to_owned();
            let (event, action) = match event.split_once('.') {
                Some((e, a)) => (e.to_owned(), Some(a.to_owned())),
                None => (event, None),
            };
            headers.push(("x-github-event".into(), event));
            headers.push(("x-github-delivery".into(), id.clone()));
            opts.data.clone().unwrap_or_else(|| {
                let mut v = serde_json::json!({ "zen": "Sent by hookbridge send" });
                if let Some(a) = action {
                    v["action"] = a.into();
                }
                v.to_string().into_bytes()
            })
        }
        SourceKind::Stripe => {
            let ty = opts
                .ty
                .clone()
                .unwrap_or_else(|| "com.stripe.hookbridge.test".into());
            let stripe_type = ty.strip_prefix("com.stripe.").unwrap_or(&ty).to_owned();
            opts.data.clone().unwrap_or_else(|| {
                serde_json::json!({ "id": format!("evt_{id}"), "object": "event", "type": stripe_type, "created": t })
                    .to_string()
                    .into_bytes()
            })
        }
        SourceKind::StandardWebhooks => {
            headers.push(("webhook-id".into(), id.clone()));
            headers.push(("webhook-timestamp".into(), t.to_string()));
            let ty = opts.ty.clone().unwrap_or_else(|| "hookbridge.test".into());
            opts.data.clone().unwrap_or_else(|| {
                serde_json::json!({ "type": ty, "data": {} })
                    .to_string()
                    .into_bytes()
            })
        }
        SourceKind::Generic => {
            let ty = opts
                .ty
                .clone()
                .unwrap_or_else(|| "com.example.hookbridge.test".into());
            opts.data.clone().unwrap_or_else(|| {
                serde_json::json!({ "id": id, "type": ty })
                    .to_string()
                    .into_bytes()
            })
        }
    };
    sign(source, &mut headers, &body, &id, t, opts.key_pem.as_deref())?;
    Ok(Request {
        method: "POST",
        url,
        headers,
        body,
    })
}

fn fic_token(
    opts: &Options,
    public_url: &str,
    id: &str,
    subject: Option<&str>,
    t: i64,
) -> Result<String, String> {
    let pem = opts
        .key_pem
        .as_ref()
        .ok_or("this source verifies ES256 tokens: pass --key with a PEM EC private key whose public key the source trusts (FIC's own private key is FIC's)")?;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pem).map_err(|e| format!("--key: {e}"))?;
    let claims = serde_json::json!({
        "iss": FIC_ISSUER, "aud": [public_url], "sub": subject, "jti": id, "iat": t, "exp": t + 3 * 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &claims,
        &key,
    )
    .map_err(|e| format!("cannot sign: {e}"))
}

/// A token the `jwt` verifier accepts: its first algorithm, `--key` (PEM private key, or the
/// shared secret for HS*), the first issuer, every audience, and each bound claim set to the
/// event attribute it must equal (read from the request's `ce-*` headers, or the id).
fn jwt_token(
    spec: &crate::verify::jwt::JwtSpec,
    headers: &[(String, String)],
    id: &str,
    t: i64,
    key: Option<&[u8]>,
) -> Result<String, String> {
    use jsonwebtoken::AlgorithmFamily;
    let key = key.ok_or(
        "this source verifies JWTs: pass --key with the signing key (PEM private key, or the HS* secret)",
    )?;
    let alg = *spec.algorithms.first().ok_or("the source allows no algorithm")?;
    let encoding = match alg.family() {
        AlgorithmFamily::Hmac => {
            jsonwebtoken::EncodingKey::from_secret(key.trim_ascii_end()).map_err(|e| format!("--key: {e}"))?
        }
        AlgorithmFamily::Rsa => {
            jsonwebtoken::EncodingKey::from_rsa_pem(key).map_err(|e| format!("--key: {e}"))?
        }
        AlgorithmFamily::Ec => {
            jsonwebtoken::EncodingKey::from_ec_pem(key).map_err(|e| format!("--key: {e}"))?
        }
        AlgorithmFamily::Ed => {
            jsonwebtoken::EncodingKey::from_ed_pem(key).map_err(|e| format!("--key: {e}"))?
        }
    };
    let attribute = |name: &str| {
        headers
            .iter()
            .find(|(h, _)| *h == format!("ce-{name}"))
            .map(|(_, v)| v.clone())
            .or_else(|| (name == "id").then(|| id.to_owned()))
    };
    let mut claims = serde_json::json!({ "iat": t, "exp": t + 600 });
    if let Some(iss) = spec.issuers.first() {
        claims["iss"] = iss.clone().into();
    }
    if !spec.audiences.is_empty() {
        claims["aud"] = spec.audiences.clone().into();
    }
    for (claim, attr) in &spec.bindings {
        let value = attribute(attr)
            .ok_or_else(|| format!("cannot bind claim {claim:?}: the request has no {attr:?}"))?;
        claims[claim.as_str()] = value.into();
    }
    for name in &spec.required {
        if claims.get(name).is_none() {
            claims[name.as_str()] = match name.as_str() {
                "jti" => id.to_owned(),
                _ => "hookbridge-send".to_owned(),
            }
            .into();
        }
    }
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &encoding)
        .map_err(|e| format!("cannot sign: {e}"))
}

fn first<'a>(list: &'a [Vec<u8>], what: &str) -> Result<&'a [u8], String> {
    list.last()
        .map(Vec::as_slice)
        .ok_or_else(|| format!("no {what} configured"))
}

fn sign(
    source: &SourceConfig,
    headers: &mut Vec<(String, String)>,
    body: &[u8],
    id: &str,
    t: i64,
    key: Option<&[u8]>,
) -> Result<(), String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    match &source.verifier {
        VerifierConfig::None | VerifierConfig::Fic(_) => {}
        VerifierConfig::Jwt { spec, .. } => {
            let token = jwt_token(spec, headers, id, t, key)?;
            let value = if spec.header == "authorization" {
                format!("Bearer {token}")
            } else {
                token
            };
            headers.push((spec.header.clone(), value));
        }
        VerifierConfig::Token { tokens, header } => {
            // The newest token (last listed) is the one a sender would use after a rotation.
            let token = tokens.last().ok_or("no token configured")?;
            let text = String::from_utf8_lossy(token.expose()).into_owned();
            let value = if header == "authorization" {
                format!("Bearer {text}")
            } else {
                text
            };
            headers.push((header.clone(), value));
        }
        VerifierConfig::Basic { users } => {
            let (user, pass) = users.last().ok_or("no user configured")?;
            let mut pair = format!("{user}:").into_bytes();
            pair.extend_from_slice(pass);
            headers.push(("authorization".into(), format!("Basic {}", b64.encode(pair))));
        }
        VerifierConfig::GitHub { secrets } => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(first(secrets, "secret")?)
                .map_err(|e| e.to_string())?;
            mac.update(body);
            headers.push((
                "x-hub-signature-256".into(),
                format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
            ));
        }
        VerifierConfig::Stripe { secrets, .. } => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(first(secrets, "secret")?)
                .map_err(|e| e.to_string())?;
            mac.update(format!("{t}.").as_bytes());
            mac.update(body);
            headers.push((
                "stripe-signature".into(),
                format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes())),
            ));
        }
        VerifierConfig::StandardWebhooks { keys, .. } => {
            headers.push((
                "webhook-signature".into(),
                standard_webhooks::sign(first(keys, "secret")?, id, t, body),
            ));
        }
        VerifierConfig::Hmac { spec, secrets } => {
            let secret = first(secrets, "secret")?;
            let ts = t.to_string();
            let content = spec.content(body, Some(&ts));
            let tag = match spec.algorithm {
                Algorithm::Sha1 => mac_bytes::<hmac::Hmac<sha1::Sha1>>(secret, &content)?,
                Algorithm::Sha256 => mac_bytes::<hmac::Hmac<sha2::Sha256>>(secret, &content)?,
                Algorithm::Sha512 => mac_bytes::<hmac::Hmac<sha2::Sha512>>(secret, &content)?,
            };
            let encoded = match spec.encoding {
                Encoding::Hex => hex::encode(tag),
                Encoding::Base64 => b64.encode(tag),
            };
            headers.push((spec.header.clone(), format!("{}{encoded}", spec.prefix)));
            if let Some(h) = &spec.timestamp_header {
                headers.push((h.clone(), ts));
            }
        }
    }
    Ok(())
}

fn mac_bytes<M: Mac + hmac::digest::KeyInit>(secret: &[u8], content: &[u8]) -> Result<Vec<u8>, String> {
    let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret).map_err(|e| e.to_string())?;
    mac.update(content);
    Ok(mac.finalize().into_bytes().to_vec())
}
