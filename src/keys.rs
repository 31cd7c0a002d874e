//! Key providers for the `jwt` verifier: a JWKS URL fetched and cached here (IO lives outside
//! `verify/`).
//!
//! An unknown `kid` triggers a refetch at most once per `min_refresh`, so forged `kid`s cannot
//! make hookbridge hammer the URL; while the URL is down the cached keys keep working. A token
//! whose key cannot be had — the URL down with nothing cached, or an unknown `kid` while a
//! refetch is not yet allowed — is answered 503 `keys_unavailable` (the sender retries), never
//! 401 (the sender would drop the event). The keys are refetched every `refresh` too, so a key
//! the issuer revoked stops being trusted without a restart. Fetches follow no redirect and
//! read at most [`MAX_JWKS_BYTES`].

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::DecodingKey;

use crate::verify::jwt::{Key, KeySet};

/// Largest JWKS document read (real ones are a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 << 10;

/// The keys for a token cannot be had now (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeysUnavailable;

/// A cached JWKS.
pub struct JwksProvider {
    url: String,
    min_refresh: Duration,
    refresh: Duration,
    client: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the last fetch was attempted (successful or not).
    last_attempt: tokio::sync::Mutex<Option<Instant>>,
    /// When the cached keys were fetched.
    fetched_at: Mutex<Option<Instant>>,
    fetches: Mutex<u64>,
    /// A background refresh is under way.
    refreshing: std::sync::atomic::AtomicBool,
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
    /// A provider for `url`, refetched at most once per `min_refresh` on an unknown `kid` and
    /// every `refresh` regardless. No IO until first use.
    pub fn new(url: String, min_refresh: Duration, refresh: Duration) -> Arc<JwksProvider> {
        Arc::new(JwksProvider {
            url,
            min_refresh,
            refresh,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            keys: RwLock::new(Arc::new(KeySet::default())),
            last_attempt: tokio::sync::Mutex::new(None),
            fetched_at: Mutex::new(None),
            fetches: Mutex::new(0),
            refreshing: std::sync::atomic::AtomicBool::new(false),
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

    fn stale(&self) -> bool {
        self.fetched_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none_or(|at| at.elapsed() >= self.refresh)
    }

    /// Keys for a token naming `kid`: the cache, refetched first when the `kid` is unknown (or
    /// nothing is cached) and the last attempt is older than `min_refresh`. A cache older than
    /// `refresh` is refetched in the background while it keeps serving (no request waits for
    /// a periodic refresh). `Err` when the `kid` is unknown and no fetch could be made or
    /// succeeded now.
    pub async fn keys_for(self: &Arc<Self>, kid: Option<&str>) -> Result<Arc<KeySet>, KeysUnavailable> {
        let current = self.current();
        if current.has_candidate(kid) {
            if self.stale() && !self.refreshing.swap(true, std::sync::atomic::Ordering::AcqRel) {
                let me = self.clone();
                tokio::spawn(async move {
                    let mut last = me.last_attempt.lock().await;
                    if me.stale() && last.is_none_or(|at| at.elapsed() >= me.min_refresh) {
                        let _ = me.refetch(&mut last).await;
                    }
                    me.refreshing.store(false, std::sync::atomic::Ordering::Release);
                });
            }
            return Ok(current);
        }
        let mut last = self.last_attempt.lock().await;
        // Someone else may have refreshed while we waited.
        let current = self.current();
        if current.has_candidate(kid) {
            return Ok(current);
        }
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            // A refetch is not allowed yet; the kid may be a key the issuer rotated in since,
            // so the sender should retry, not give up.
            return Err(KeysUnavailable);
        }
        match self.refetch(&mut last).await {
            Some(set) => Ok(set),
            None => Err(KeysUnavailable),
        }
    }

    /// Fetches the JWKS now (the caller holds `last_attempt`), replacing the cache on success.
    async fn refetch(&self, last: &mut Option<Instant>) -> Option<Arc<KeySet>> {
        *last = Some(Instant::now());
        *self.fetches.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        match self.fetch().await {
            Ok(set) => {
                let set = Arc::new(set);
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = set.clone();
                *self.fetched_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                tracing::info!(url = %self.url, keys = set.keys.len(), "JWKS refreshed");
                Some(set)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "JWKS fetch failed; keeping the cached keys");
                None
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let mut resp = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("status {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(format!("the document is over {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the document is over {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        Ok(key_set_from_jwks(&set))
    }
}
