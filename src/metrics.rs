//! Prometheus metrics (the `metrics` facade with its Prometheus exporter), served at `/metrics`.
//!
//! [`FAMILIES`] lists every family hookbridge exports, with its type, labels and help text: each
//! gets its `# HELP` line from there, and `tests/docs.rs` checks the README's metrics table
//! against it and the source for names it does not list.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// As Prometheus names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Full name.
    pub name: &'static str,
    /// Type.
    pub kind: Kind,
    /// Label names.
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        labels,
        help,
    }
}

/// Every family hookbridge exports.
pub const FAMILIES: &[Family] = &[
    family("hookbridge_requests_total", Kind::Counter, &["source", "status"], "Webhook requests answered, by source and HTTP status."),
    family("hookbridge_verification_failures_total", Kind::Counter, &["source", "reason"], "Requests refused by the verifier, by reason code."),
    family("hookbridge_events_total", Kind::Counter, &["source", "outcome"], "Events by outcome (delivered, spooled, dead_lettered, dropped, duplicate, sink_unavailable, ...)."),
    family("hookbridge_routed_total", Kind::Counter, &["source", "sink"], "Events routed to each sink (after dedup), by source and sink."),
    family("hookbridge_provider_retries_total", Kind::Counter, &["source"], "Events arriving again after a publish attempt of theirs failed (answered 503 or 500): the provider's retries of them (counted while dedup is on; refusals before publishing, such as overloaded, are not remembered)."),
    family("hookbridge_publish_total", Kind::Counter, &["sink", "result"], "Publish attempts by sink and result (ok, or the failure kind)."),
    family("hookbridge_publish_duration_seconds", Kind::Histogram, &["sink"], "Duration of each publish attempt."),
    family("hookbridge_retries_total", Kind::Counter, &["sink"], "Spool mode: publish attempts retried by a forwarder."),
    family("hookbridge_dedup_hits_total", Kind::Counter, &["source"], "Events answered duplicate (already delivered)."),
    family("hookbridge_dedup_persist_dropped_total", Kind::Counter, &[], "Delivered ids that could not be written to the durable dedup table (kept in memory)."),
    family("hookbridge_dead_letters_total", Kind::Counter, &["sink", "reason"], "Events given up for a sink: sent to the dead-letter sink or parked, by reason."),
    family("hookbridge_sink_panics_total", Kind::Counter, &["sink"], "Publishes that panicked (caught)."),
    family("hookbridge_forwarders_running", Kind::Gauge, &["sink"], "Spool forwarders running per sink (1 when healthy)."),
    family("hookbridge_forwarder_restarts_total", Kind::Counter, &["sink"], "Spool forwarders restarted after ending unexpectedly."),
    family("hookbridge_enrich_failures_total", Kind::Counter, &["source", "reason"], "Enrichment fetches that failed, by reason (unauthorized, forbidden, server_error, quota, timeout, ...)."),
    family("hookbridge_in_flight_requests", Kind::Gauge, &[], "Webhook requests being processed (set when /readyz or /metrics is read)."),
    family("hookbridge_spool_events", Kind::Gauge, &[], "Events in the spool not yet delivered to every sink."),
    family("hookbridge_spool_bytes", Kind::Gauge, &[], "Bytes of those events."),
    family("hookbridge_spool_oldest_age_seconds", Kind::Gauge, &[], "Age of the oldest undelivered event in the spool."),
    family("hookbridge_spool_parked", Kind::Gauge, &[], "Parked dead letters in the spool."),
    family("hookbridge_spool_retained_events", Kind::Gauge, &[], "Delivered events kept for replay (spool.retain)."),
    family("hookbridge_spool_backlog_events", Kind::Gauge, &["sink"], "Events waiting for each sink."),
    family("hookbridge_spool_backlog_oldest_age_seconds", Kind::Gauge, &["sink"], "Age of the oldest event waiting for each sink."),
    family("hookbridge_quarantined_total", Kind::Counter, &[], "Rejected requests written to the quarantine sink."),
    family("hookbridge_quarantine_dropped_total", Kind::Counter, &[], "Rejected requests not quarantined (rate limit or a full queue)."),
    family("hookbridge_replayed_total", Kind::Counter, &[], "Events re-queued by replay."),
    family("hookbridge_build_info", Kind::Gauge, &["version"], "Always 1; the version label names the build."),
];

/// Gives every family its `# HELP` text (on the installed recorder).
fn describe() {
    for f in FAMILIES {
        match f.kind {
            Kind::Counter => metrics::describe_counter!(f.name, f.help),
            Kind::Gauge => metrics::describe_gauge!(f.name, f.help),
            Kind::Histogram => metrics::describe_histogram!(f.name, metrics::Unit::Seconds, f.help),
        }
    }
}

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
            describe();
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

impl<K: std::hash::Hash + Eq, H: Clone> Cache<K, H> {
    fn new() -> Self {
        Cache {
            map: std::sync::RwLock::default(),
        }
    }

    fn get<Q>(&self, name: &str, label: &Q, register: impl FnOnce() -> H) -> H
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        use std::sync::PoisonError;
        if let Some(h) = self
            .map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .and_then(|m| m.get(label))
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
                .insert(label.to_owned(), handle.clone());
        }
        handle
    }
}

type Counters<K> = std::sync::LazyLock<Cache<K, metrics::Counter>>;

static REQUESTS: Counters<u16> = std::sync::LazyLock::new(Cache::new);
static EVENTS: Counters<&'static str> = std::sync::LazyLock::new(Cache::new);
static PUBLISHES: Counters<&'static str> = std::sync::LazyLock::new(Cache::new);
static ROUTED: Counters<String> = std::sync::LazyLock::new(Cache::new);
static PUBLISH_SECONDS: std::sync::LazyLock<Cache<(), metrics::Histogram>> =
    std::sync::LazyLock::new(Cache::new);

/// `hookbridge_requests_total{source,status}` += 1.
pub fn request(source: &str, status: u16) {
    REQUESTS
        .get(source, &status, || {
            metrics::counter!("hookbridge_requests_total", "source" => source.to_owned(), "status" => status.to_string())
        })
        .increment(1);
}

/// `hookbridge_events_total{source,outcome}` += 1.
pub fn event(source: &str, outcome: &'static str) {
    EVENTS
        .get(source, &outcome, || {
            metrics::counter!("hookbridge_events_total", "source" => source.to_owned(), "outcome" => outcome)
        })
        .increment(1);
}

/// `hookbridge_routed_total{source,sink}` += 1.
pub fn routed(source: &str, sink: &str) {
    ROUTED
        .get(source, sink, || {
            metrics::counter!("hookbridge_routed_total", "source" => source.to_owned(), "sink" => sink.to_owned())
        })
        .increment(1);
}

/// One publish attempt: `hookbridge_publish_total{sink,result}` += 1 and its duration in
/// `hookbridge_publish_duration_seconds{sink}`.
pub fn publish(sink: &str, result: &'static str, seconds: f64) {
    PUBLISH_SECONDS
        .get(
            sink,
            &(),
            || metrics::histogram!("hookbridge_publish_duration_seconds", "sink" => sink.to_owned()),
        )
        .record(seconds);
    PUBLISHES
        .get(
            sink,
            &result,
            || metrics::counter!("hookbridge_publish_total", "sink" => sink.to_owned(), "result" => result),
        )
        .increment(1);
}
