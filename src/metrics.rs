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
