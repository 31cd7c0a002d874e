//! Enrichment: FIC notifications carry only ids, so hookbridge can fetch each id's current
//! resource (providers.md §1.7) once and add it to the data as `"resources"` beside `"ids"`:
//! `{"ids":[1],"resources":{"1":{…}}}`.
//!
//! Never for `.delete` events (the resource is gone). FIC's quota is respected: `RateLimit-*`
//! headers are read, 403/429 with `Retry-After` pause fetching; while paused or when FIC is down
//! the event is published without resources and marked `hbenrich = "skipped"` (or refused with
//! 503 when `on_unavailable = "retry"`). A short cache keeps bursts from repeating fetches, and a
//! semaphore bounds concurrent fetches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookbridge_sink_core::{Event, ExtensionValue};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use super::types::PREFIX;
use crate::sources::Outcome;

/// Checked enrichment settings of a source.
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    /// The source's name (metric label).
    pub source: String,
    /// API base URL.
    pub base_url: String,
    /// OAuth token.
    pub token: String,
    /// `api.company_id`: the company `hookbridge fic subscriptions` manages by default.
    pub company_id: Option<String>,
    /// 503 instead of publishing un-enriched when FIC cannot answer.
    pub retry_when_unavailable: bool,
    /// Cache lifetime.
    pub cache_ttl: Duration,
    /// Most resources cached (oldest dropped first).
    pub cache_max_entries: usize,
    /// Concurrent fetches.
    pub max_concurrency: usize,
    /// Longest enrichment of one event.
    pub timeout: Duration,
}

/// The API path of the resource named by `id` in an event of type `ty` for company `cid`.
pub fn resource_path(ty: &str, cid: &str, id: &str) -> Option<String> {
    let rest = ty.strip_prefix(PREFIX)?;
    let (family, action) = rest.rsplit_once('.')?;
    if action == "delete" {
        return None;
    }
    let path = match family {
        "entities.clients" => format!("entities/clients/{id}"),
        "entities.suppliers" => format!("entities/suppliers/{id}"),
        "products" => format!("products/{id}"),
        "received_documents.e_invoices" => format!("received_documents/pending/{id}"),
        "received_documents" => format!("received_documents/{id}"),
        "receipts" => format!("receipts/{id}"),
        "cashbook" => format!("cashbook/{id}"),
        "taxes" => format!("taxes/{id}"),
        "archive_documents" => format!("archive/{id}"),
        f if f.starts_with("issued_documents.") => format!("issued_documents/{id}"),
        _ => return None,
    };
    Some(format!("/c/{cid}/{path}"))
}

/// Resources by API path, bounded two ways: an entry lives `cache_ttl`, and past
/// `cache_max_entries` the oldest go first. Thirty lines over a map and a queue, so no cache crate
/// (and its eviction threads) for it.
#[derive(Default)]
struct Cache {
    map: HashMap<String, (Instant, Value)>,
    /// Insertion order; an entry re-inserted later leaves a stale record here, skipped on eviction.
    order: std::collections::VecDeque<(Instant, String)>,
}

impl Cache {
    fn get(&self, path: &str, ttl: Duration) -> Option<Value> {
        let (at, v) = self.map.get(path)?;
        (at.elapsed() < ttl).then(|| v.clone())
    }

    fn insert(&mut self, path: String, value: Value, ttl: Duration, max: usize) {
        let now = Instant::now();
        self.map.insert(path.clone(), (now, value));
        self.order.push_back((now, path));
        while let Some((at, key)) = self.order.front() {
            if now.duration_since(*at) < ttl && self.map.len() <= max {
                break;
            }
            if self.map.get(key).is_some_and(|(t, _)| t == at) {
                self.map.remove(key);
            }
            self.order.pop_front();
        }
    }
}

/// Fetches and caches resources for one source.
pub struct Enricher {
    config: EnrichConfig,
    client: reqwest::Client,
    cache: Mutex<Cache>,
    paused_until: Mutex<Option<Instant>>,
    permits: Semaphore,
}

enum Fetch {
    Found(Value),
    Missing,
    Unavailable,
}

impl Enricher {
    /// An enricher. No IO.
    pub fn new(config: EnrichConfig) -> Arc<Enricher> {
        Arc::new(Enricher {
            permits: Semaphore::new(config.max_concurrency),
            client: reqwest::Client::builder()
                .timeout(config.timeout)
                .build()
                .unwrap_or_default(),
            cache: Mutex::new(Cache::default()),
            paused_until: Mutex::new(None),
            config,
        })
    }

    fn paused(&self) -> bool {
        self.paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| Instant::now() < t)
    }

    fn pause(&self, d: Duration) {
        *self.paused_until.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + d);
        tracing::warn!(
            seconds = d.as_secs(),
            "Fatture in Cloud quota reached: enrichment paused"
        );
    }

    async fn fetch(&self, path: &str) -> Fetch {
        if let Some(v) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path, self.config.cache_ttl)
        {
            return Fetch::Found(v);
        }
        if self.paused() {
            return Fetch::Unavailable;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return Fetch::Unavailable;
        };
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        let resp = match self.client.get(&url).bearer_auth(&self.config.token).send().await {
            Ok(r) => r,
            Err(e) => {
                let reason = if e.is_timeout() { "timeout" } else { "unreachable" };
                self.failed(reason, &format!("{path}: {e}"));
                return Fetch::Unavailable;
            }
        };
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let retry_after = header("retry-after");
        let remaining = header("ratelimit-hourlyremaining");
        if status == 403 || status == 429 {
            if retry_after.is_some() || status == 429 {
                self.failed("quota", &format!("{path}: {status}"));
                self.pause(Duration::from_secs(retry_after.unwrap_or(60)));
            } else {
                // A token without the scope for this resource: it will not get better by itself.
                self.failed("forbidden", &format!("{path}: 403 (the token lacks the scope?)"));
            }
            return Fetch::Unavailable;
        }
        if remaining == Some(0) {
            // This answer used the last request of the hour: stop before FIC refuses.
            self.pause(Duration::from_secs(retry_after.unwrap_or(60)));
        }
        match status {
            200..=299 => {
                let bytes = resp.bytes().await.unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let resource = body.get("data").cloned().unwrap_or(body);
                self.cache.lock().unwrap_or_else(PoisonError::into_inner).insert(
                    path.to_owned(),
                    resource.clone(),
                    self.config.cache_ttl,
                    self.config.cache_max_entries,
                );
                Fetch::Found(resource)
            }
            404 => Fetch::Missing,
            401 => {
                // An expired or revoked token: every fetch fails until it is replaced.
                self.failed(
                    "unauthorized",
                    &format!("{path}: 401 (expired or revoked token?)"),
                );
                Fetch::Unavailable
            }
            500..=599 => {
                self.failed("server_error", &format!("{path}: {status}"));
                Fetch::Unavailable
            }
            _ => {
                self.failed("unexpected_status", &format!("{path}: {status}"));
                Fetch::Unavailable
            }
        }
    }

    /// Counts and logs a failed fetch (never the token).
    fn failed(&self, reason: &'static str, detail: &str) {
        metrics::counter!("hookbridge_enrich_failures_total", "source" => self.config.source.clone(), "reason" => reason)
            .increment(1);
        tracing::warn!(source = %self.config.source, reason, detail, "Fatture in Cloud enrichment fetch failed");
    }

    /// Resources cached now (tests and diagnostics).
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    /// Adds the resources to `event` (in place) and reports what happened.
    pub async fn enrich(&self, event: &mut Event) -> Outcome {
        let cid = event
            .subject
            .as_deref()
            .and_then(|s| s.strip_prefix("company:"))
            .map(str::to_owned);
        let data: Value = event
            .data
            .as_deref()
            .and_then(|d| serde_json::from_slice(d).ok())
            .unwrap_or(Value::Null);
        let ids: Vec<String> = data["ids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let (Some(cid), false) = (cid, ids.is_empty()) else {
            return Outcome::NotApplicable;
        };
        let paths: Vec<(String, String)> = ids
            .iter()
            .filter_map(|id| resource_path(&event.ty, &cid, id).map(|p| (id.clone(), p)))
            .collect();
        if paths.is_empty() {
            return Outcome::NotApplicable;
        }
        let fetches = futures_util::future::join_all(paths.iter().map(|(_, p)| self.fetch(p)));
        let results = match tokio::time::timeout(self.config.timeout, fetches).await {
            Ok(r) => r,
            Err(_) => {
                self.failed("timeout", &format!("no answer within {:?}", self.config.timeout));
                paths.iter().map(|_| Fetch::Unavailable).collect()
            }
        };
        let mut resources = Map::new();
        let mut unavailable = false;
        let mut missing = false;
        for ((id, _), r) in paths.iter().zip(results) {
            match r {
                Fetch::Found(v) => {
                    resources.insert(id.clone(), v);
                }
                Fetch::Missing => missing = true,
                Fetch::Unavailable => unavailable = true,
            }
        }
        if unavailable && resources.is_empty() {
            if self.config.retry_when_unavailable {
                return Outcome::Retry;
            }
            event
                .extensions
                .insert("hbenrich".into(), ExtensionValue::from("skipped"));
            return Outcome::Skipped;
        }
        let mut data = data;
        data["resources"] = Value::Object(resources);
        event.data = Some(Bytes::from(data.to_string()));
        if unavailable || missing {
            event
                .extensions
                .insert("hbenrich".into(), ExtensionValue::from("partial"));
            Outcome::Partial
        } else {
            event
                .extensions
                .insert("hbenrich".into(), ExtensionValue::from("complete"));
            Outcome::Enriched
        }
    }
}

#[async_trait::async_trait]
impl crate::sources::Enrich for Enricher {
    async fn enrich(&self, event: &mut Event) -> Outcome {
        Enricher::enrich(self, event).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_bounded_by_size_and_age() {
        let mut c = Cache::default();
        let ttl = Duration::from_secs(60);
        for i in 0..1000 {
            c.insert(format!("/r/{i}"), Value::from(i), ttl, 100);
        }
        assert_eq!(c.map.len(), 100);
        assert!(c.order.len() <= 100, "{}", c.order.len());
        assert!(c.get("/r/0", ttl).is_none() && c.get("/r/999", ttl).is_some());
        // Re-inserting one key again and again keeps one entry, and the queue drains.
        for _ in 0..1000 {
            c.insert("/same".into(), Value::Null, Duration::ZERO, 100);
        }
        assert!(
            c.map.len() <= 1 && c.order.len() <= 1,
            "{} {}",
            c.map.len(),
            c.order.len()
        );
    }

    #[test]
    fn endpoints_per_family() {
        let p = |t: &str| resource_path(&format!("{PREFIX}{t}"), "7", "42");
        assert_eq!(
            p("entities.clients.create").as_deref(),
            Some("/c/7/entities/clients/42")
        );
        assert_eq!(
            p("entities.suppliers.update").as_deref(),
            Some("/c/7/entities/suppliers/42")
        );
        assert_eq!(p("products.stock_update").as_deref(), Some("/c/7/products/42"));
        assert_eq!(
            p("issued_documents.invoices.email_sent").as_deref(),
            Some("/c/7/issued_documents/42")
        );
        assert_eq!(
            p("issued_documents.e_invoices.status_update").as_deref(),
            Some("/c/7/issued_documents/42")
        );
        assert_eq!(
            p("received_documents.create").as_deref(),
            Some("/c/7/received_documents/42")
        );
        assert_eq!(
            p("received_documents.e_invoices.receive").as_deref(),
            Some("/c/7/received_documents/pending/42")
        );
        assert_eq!(p("receipts.update").as_deref(), Some("/c/7/receipts/42"));
        assert_eq!(p("cashbook.create").as_deref(), Some("/c/7/cashbook/42"));
        assert_eq!(p("taxes.create").as_deref(), Some("/c/7/taxes/42"));
        assert_eq!(p("archive_documents.create").as_deref(), Some("/c/7/archive/42"));
        assert_eq!(p("entities.clients.delete"), None, "never for deletes");
        assert_eq!(p("subscriptions.welcome"), None);
    }
}
