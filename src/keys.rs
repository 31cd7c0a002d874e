//! Key providers for the `jwt` verifier: a JWKS URL fetched and cached here (IO lives outside
//! `verify/`).
//!
//! An unknown `kid` triggers a refetch at most once per `min_refresh`, so forged `kid`s cannot
//! make hookbridge hammer the URL; while the URL is down the cached keys keep working.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;

use crate::verify::jwt::{Key, KeySet};

/// A cached JWKS.
pub struct JwksProvider {
    url: String,
    min_refresh: Duration,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the last fetch was attempted (successful or not), and the number of fetches.
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    fetches: Mutex<u64>,
}

/// Builds a key set from a JWKS document (keys that cannot be used are skipped).
pub fn key_set_from_jwks(set: &JwkSet) -> KeySet {
    KeySet {
        keys: set
            .keys
            .iter()
            .filter_map(|jwk| {
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(Key {
                    kid: jwk.common.key_id.clone(),
                    key,
                })
            })
            .collect(),
    }
}

impl JwksProvider {
    /// A provider for `url`. No IO until first use.
    pub fn new(url: String, min_refresh: Duration) -> Arc<JwksProvider> {
        Arc::new(JwksProvider {
            url,
            min_refresh,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            keys: RwLock::new(Arc::new(KeySet::default())),
            last_attempt: tokio::sync::Mutex::new(None),
            fetches: Mutex::new(0),
        })
    }

    /// The JWKS URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How many fetches were made (for tests and metrics).
    pub fn fetches(&self) -> u64 {
        *self.fetches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached keys.
    pub fn current(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Keys for a token naming `kid`: the cache, refreshed first when the `kid` is unknown (or
    /// nothing is cached) and the last attempt is older than `min_refresh`.
    pub async fn keys_for(&self, kid: Option<&str>) -> Arc<KeySet> {
        let current = self.current();
        let known = match kid {
            Some(k) => current.has_kid(k),
            None => !current.keys.is_empty(),
        };
        if known {
            return current;
        }
        let mut last = self.last_attempt.lock().await;
        // Someone else may have refreshed while we waited.
        let current = self.current();
        if kid.is_some_and(|k| current.has_kid(k)) {
            return current;
        }
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return current;
        }
        *last = Some(Instant::now());
        *self.fetches.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        match self.fetch().await {
            Ok(set) => {
                let set = Arc::new(set);
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set.clone();
                tracing::info!(url = %self.url, keys = set.keys.len(), "JWKS refreshed");
                set
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the cached keys");
                current
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        Ok(key_set_from_jwks(&set))
    }
}
