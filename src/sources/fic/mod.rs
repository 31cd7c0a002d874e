//! `kind = "fattureincloud"`: Fatture in Cloud API v2 webhooks (providers.md §1). Everything FIC
//! lives here: the ES256 token check (`verify`), the notification decoder (`decode`), the
//! verification GET (`challenge`), the API client and event type catalogue (`api`, `types`) used
//! by `hookbridge fic subscriptions`, and enrichment (`enrich`).

pub mod api;
mod challenge;
mod config;
pub mod decode;
pub mod enrich;
pub mod types;
pub mod verify;

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use hookbridge_sink_core::Event;
use http::HeaderMap;

use super::{cloudevents, Draft, Enrich, Example, Handshake, Kind, Provider, Verify};
use crate::normalize::NormalizeError;
use crate::verify::{Verified, VerifyError};
use verify::{FicVerifier, Purpose, FIC_ISSUER};

/// The registry entry.
pub const KIND: Kind = Kind {
    name: "fattureincloud",
    keys: &["public_url", "api", "subscription"],
    dedup_on_body: false,
    check: config::check,
};

/// A Fatture in Cloud source.
#[derive(Debug)]
pub struct Fic {
    /// The token check (also used by the verification GET).
    pub verifier: Arc<FicVerifier>,
    /// `(verification_method, mapping)` for `hookbridge fic subscriptions`.
    pub subscription: (String, String),
    /// API access for enrichment and the subscriptions tool, if configured.
    pub enrichment: Option<enrich::EnrichConfig>,
}

impl Fic {
    /// The URL FIC calls (the subscription's sink, the token's audience).
    pub fn public_url(&self) -> &str {
        &self.verifier.public_url
    }
}

impl Provider for Fic {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn decode(&self, _: &str, headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError> {
        decode::decode(headers, body).map(|e| vec![e])
    }

    fn handshake(&self, headers: &HeaderMap, query: Option<&str>, now: u64) -> Option<Handshake> {
        Some(challenge::respond(&self.verifier, headers, query, now))
    }

    fn methods(&self) -> &'static str {
        "GET, POST"
    }

    fn example(&self, draft: &mut Draft, ty: Option<&str>, data: Option<&[u8]>, extra: &Example) {
        let ty = ty.unwrap_or("it.fattureincloud.webhooks.entities.clients.create");
        let subject = format!("company:{}", extra.company.as_deref().unwrap_or("1"));
        cloudevents::binary_headers(draft, FIC_ISSUER, ty, Some(&subject));
        draft.body = data.unwrap_or(br#"{"data":{"ids":[1]}}"#).to_vec();
    }

    fn enricher(&self) -> Option<Arc<dyn Enrich>> {
        let e: Arc<dyn Enrich> = enrich::Enricher::new(self.enrichment.clone()?);
        Some(e)
    }

    fn enriches(&self) -> bool {
        self.enrichment.is_some()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Verify for FicVerifier {
    fn kind(&self) -> &'static str {
        "fattureincloud"
    }

    fn verify_now(&self, headers: &HeaderMap, _: &[u8], now: u64) -> Result<Verified, VerifyError> {
        FicVerifier::verify(self, headers, now, Purpose::Notification).map(|c| Verified::from(&c))
    }

    /// FIC's own private key is FIC's: `send` signs with a test key whose public key the source
    /// trusts (`verify.public_key`).
    fn sign(&self, draft: &mut Draft, key: Option<&[u8]>) -> Result<(), String> {
        let pem = key.ok_or("this source verifies ES256 tokens: pass --key with a PEM EC private key whose public key the source trusts (FIC's own private key is FIC's)")?;
        let key = jsonwebtoken::EncodingKey::from_ec_pem(pem).map_err(|e| format!("--key: {e}"))?;
        let t = draft.now;
        let claims = serde_json::json!({
            "iss": FIC_ISSUER, "aud": [self.public_url], "sub": draft.header("ce-subject"),
            "jti": draft.id, "iat": t, "exp": t + 3 * 3600,
        });
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
            &claims,
            &key,
        )
        .map_err(|e| format!("cannot sign: {e}"))?;
        draft
            .headers
            .push(("authorization".into(), format!("Bearer {token}")));
        Ok(())
    }
}
