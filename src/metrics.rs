//! Prometheus metrics (the `metrics` facade with its Prometheus exporter), served at `/metrics`.
//!
//! Names, all prefixed `hookbridge_`:
//! - `requests_total{source,status}` — webhook requests by HTTP status;
//! - `verification_failures_total{source,reason}` — 401s by reason code;
//! - `events_total{source,outcome}` — events by outcome (delivered, spooled, duplicate, dropped, …);
//! - `routed_total{sink}` — events routed to each sink;
//! - `publish_total{sink,result}` and `publish_duration_seconds{sink}` — every publish attempt;
//! - `retries_total{sink}` — spool forwarder retries;
//! - `dedup_hits_total{source}`;
//! - `in_flight_requests`, `spool_events`, `spool_bytes`, `spool_oldest_age_seconds`;
//! - `build_info{version}` = 1.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide recorder once (later calls reuse it) and returns its handle.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            // `install_recorder` leaves upkeep to the caller: without it, histogram samples
            // pile up until the next scrape — unbounded memory when nobody scrapes /metrics.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("hookbridge-metrics".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            metrics::gauge!("hookbridge_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        })
        .clone()
}

/// Renders the Prometheus text exposition.
pub fn render() -> String {
    install().map(|h| h.render()).unwrap_or_default()
}

/// Per-request metric handles, registered once per label set and reused. The `counter!` and
/// `histogram!` macros build their key (owned label strings in a vector, then a hash and a
/// registry lookup) on every call; a webhook request made four such calls. Handles are only
/// kept once the recorder is installed (a handle taken before that would count nowhere).
struct Cache<K, H> {
    map: std::sync::RwLock<std::collections::HashMap<String, std::collections::HashMap<K, H>>>,
}

impl<K: std::hash::Hash + Eq + Copy, H: Clone> Cache<K, H> {
    fn new() -> Self {
        Cache {
            map: std::sync::RwLock::default(),
        }
    }

    fn get(&self, name: &str, label: K, register: impl FnOnce() -> H) -> H {
        use std::sync::PoisonError;
        if let Some(h) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .and_then(|m| m.get(&label))
        {
            return h.clone();
        }
        let handle = register();
        if HANDLE.get().is_some_and(Option::is_some) {
            self.map
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default()
                .insert(label, handle.clone());
        }
        handle
    }
}

type Counters<K> = std::sync::LazyLock<Cache<K, metrics::Counter>>;

static REQUESTS: Counters<u16> = std::sync::LazyLock::new(Cache::new);
static EVENTS: Counters<&'static str> = std::sync::LazyLock::new(Cache::new);
static PUBLISHES: Counters<&'static str> = std::sync::LazyLock::new(Cache::new);
static PUBLISH_SECONDS: std::sync::LazyLock<Cache<(), metrics::Histogram>> =
    std::sync::LazyLock::new(Cache::new);

/// `hookbridge_requests_total{source,status}` += 1.
pub fn request(source: &str, status: u16) {
    REQUESTS
        .get(source, status, || {
            metrics::counter!("hookbridge_requests_total", "source" => source.to_owned(), "status" => status.to_string())
        })
        .increment(1);
}

/// `hookbridge_events_total{source,outcome}` += 1.
pub fn event(source: &str, outcome: &'static str) {
    EVENTS
        .get(source, outcome, || {
            metrics::counter!("hookbridge_events_total", "source" => source.to_owned(), "outcome" => outcome)
        })
        .increment(1);
}

/// One publish attempt: `hookbridge_publish_total{sink,result}` += 1 and its duration in
/// `hookbridge_publish_duration_seconds{sink}`.
pub fn publish(sink: &str, result: &'static str, seconds: f64) {
    PUBLISH_SECONDS
        .get(
            sink,
            (),
            || metrics::histogram!("hookbridge_publish_duration_seconds", "sink" => sink.to_owned()),
        )
        .record(seconds);
    PUBLISHES
        .get(
            sink,
            result,
            || metrics::counter!("hookbridge_publish_total", "sink" => sink.to_owned(), "result" => result),
        )
        .increment(1);
}
