//! The running bridge: checked configuration, built sinks, the deliverer, and the state the
//! ingress shares between requests (shutdown flag, in-flight limit).
//!
//! A little over 400 lines: `App` and its lifecycle (build, reload carry-over, start and stop
//! of forwarders, sink health) in one place; the served configuration is `live`, forwarder
//! supervision `supervise`.

mod live;
mod supervise;

pub use live::Live;
pub use supervise::supervise_with;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookbridge_sink_core::{SinkError, SinkHandle};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Config, Delivery, SourceConfig};
use crate::deliver::dedup::Dedup;
use crate::deliver::forward::{self, Backoff};
use crate::deliver::spool::{Limits, Spool, SpoolError};
use crate::deliver::Deliverer;
use crate::route::Router;

/// Why the bridge could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A sink could not be constructed.
    #[error("sink: {0}")]
    Sink(#[from] SinkError),
    /// The spool could not be opened.
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
    /// The dedup file could not be opened.
    #[error("dedup: {0}")]
    Dedup(String),
}

/// Shared state of one running hookbridge.
pub struct App {
    /// The configuration it runs.
    pub config: Config,
    /// Sources by URL path.
    sources: HashMap<String, Arc<SourceConfig>>,
    /// Fan-out engine.
    pub deliverer: Arc<Deliverer>,
    shutting_down: AtomicBool,
    in_flight: Arc<Semaphore>,
    /// Slots for requests to a body-signed source while their body is read and verified: a
    /// pool per source, so a flood on one path cannot starve another source.
    unauthenticated: HashMap<String, Arc<Semaphore>>,
    /// The spool, when a source uses `delivery = "spool"`.
    pub spool: Option<Arc<Spool>>,
    /// Sink indices a sync-mode source can reach: only their health decides readiness.
    sync_sinks: Vec<usize>,
    forwarders: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Where rejected requests go, if configured.
    pub quarantine: Option<Arc<crate::quarantine::Quarantine>>,
    /// Fatture in Cloud enrichers by source name.
    enrichers: HashMap<String, Arc<dyn crate::sources::Enrich>>,
    stop_forwarders: tokio::sync::watch::Sender<bool>,
    /// Forwarders of this app still running (each holds a count while it lives).
    forwarders_alive: Arc<std::sync::atomic::AtomicUsize>,
    /// Each sink's last health result and when it was taken (see [`App::sink_health`]).
    health: Vec<tokio::sync::Mutex<HealthSlot>>,
}

/// A sink's health as `/readyz` reports it: the current state, since when, and the last error
/// seen (kept after the sink recovers).
#[derive(Debug, Clone)]
pub struct SinkStatus {
    /// `Err` with the reason while the sink is down.
    pub result: Result<(), String>,
    /// When the current state (up or down) was first observed.
    pub since: std::time::SystemTime,
    /// The last failed check's error and when it was seen.
    pub last_error: Option<(String, std::time::SystemTime)>,
}

/// A sink's last health result, when it was taken, and its [`SinkStatus`].
#[derive(Debug)]
struct HealthSlot {
    checked: Option<std::time::Instant>,
    status: SinkStatus,
}

impl Default for HealthSlot {
    fn default() -> Self {
        HealthSlot {
            checked: None,
            status: SinkStatus {
                result: Ok(()),
                since: std::time::SystemTime::now(),
                last_error: None,
            },
        }
    }
}

/// How long a sink's health result is reused: `/readyz` polled by many probes (or flooded)
/// costs at most one check per sink per this interval — a Kafka check is a metadata fetch on
/// the blocking pool the spool also needs.
pub const HEALTH_CACHED_FOR: Duration = Duration::from_secs(1);

/// How long one sink's health check may take before it counts as down.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

impl App {
    /// Builds every sink from the configuration. No network IO happens here: sinks connect
    /// lazily, so hookbridge starts while a broker is down.
    pub fn build(config: Config) -> Result<Arc<App>, BuildError> {
        Self::build_with(config, Vec::new())
    }

    /// Like [`App::build`], but sinks named in `overrides` are replaced by the given instances
    /// (tests inject failing or slow sinks this way).
    pub fn build_with(config: Config, overrides: Vec<(String, SinkHandle)>) -> Result<Arc<App>, BuildError> {
        Self::build_from(config, overrides, None)
    }

    /// Builds a successor of `previous` for a reload: the spool and the dedup memory carry over
    /// (the spool directory cannot change while running).
    pub fn build_reload(config: Config, previous: &App) -> Result<Arc<App>, BuildError> {
        if config.spool.dir != previous.config.spool.dir && previous.spool.is_some() {
            return Err(BuildError::Spool(SpoolError::Io(
                "spool.dir cannot change on reload; restart hookbridge to move the spool".into(),
            )));
        }
        Self::build_from(config, Vec::new(), Some(previous))
    }

    fn build_from(
        config: Config,
        overrides: Vec<(String, SinkHandle)>,
        previous: Option<&App>,
    ) -> Result<Arc<App>, BuildError> {
        crate::metrics::install();
        let mut overrides: HashMap<String, SinkHandle> = overrides.into_iter().collect();
        let sinks: Vec<SinkHandle> = config
            .sinks
            .iter()
            .map(|s| match overrides.remove(&s.name) {
                Some(sink) => Ok(sink),
                None => s.spec.build(&s.name),
            })
            .collect::<Result<_, _>>()?;
        let dedup = open_dedup(&config, previous)?;
        let deliverer = Arc::new(
            Deliverer::new(sinks, config.router.clone(), dedup, config.server.publish_timeout)
                .with_dead_letter(config.dead_letter),
        );
        let sources = config
            .sources
            .iter()
            .map(|s| (s.path.clone(), Arc::new(s.clone())))
            .collect();
        let spool = open_spool(&config, previous)?;
        let sync_sinks = reachable_sinks(&config.router, config.sinks.len(), &config.sources);
        let quarantine = config.quarantine.as_ref().and_then(|q| {
            let sink = deliverer.sinks().get(q.sink)?.clone();
            Some(crate::quarantine::Quarantine::new(
                q,
                sink,
                config.server.publish_timeout,
            ))
        });
        let health = deliverer
            .sinks()
            .iter()
            .map(|_| tokio::sync::Mutex::new(HealthSlot::default()))
            .collect();
        Ok(Arc::new(App {
            sources,
            deliverer,
            shutting_down: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            unauthenticated: config
                .sources
                .iter()
                .filter(|s| !s.verifier.header_only())
                .map(|s| {
                    let pool = Arc::new(Semaphore::new(config.server.max_unauthenticated));
                    (s.name.clone(), pool)
                })
                .collect(),
            spool,
            sync_sinks,
            forwarders: std::sync::Mutex::new(Vec::new()),
            quarantine,
            enrichers: config
                .sources
                .iter()
                .filter_map(|s| Some((s.name.clone(), s.provider.enricher()?)))
                .collect(),
            stop_forwarders: tokio::sync::watch::Sender::new(false),
            forwarders_alive: Arc::default(),
            health,
            config,
        }))
    }

    /// The source listening on `path`.
    pub fn source_at(&self, path: &str) -> Option<Arc<SourceConfig>> {
        self.sources.get(path).cloned()
    }

    /// The enricher of source `name`, if it has an API configuration.
    pub fn enricher(&self, name: &str) -> Option<&Arc<dyn crate::sources::Enrich>> {
        self.enrichers.get(name)
    }

    /// Whether shutdown has begun (new events are refused with 503).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Starts refusing new events.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Webhook requests being processed now.
    pub fn in_flight(&self) -> usize {
        self.config
            .server
            .max_in_flight
            .saturating_sub(self.in_flight.available_permits())
    }

    /// A slot for one webhook request, or `None` when `max_in_flight` are already running.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
    }

    /// A slot for one request to the body-signed source `source` while its body is read and
    /// verified, or `None` when `max_unauthenticated` requests to that source are already doing
    /// so. It does not count against `max_in_flight`: unauthenticated senders cannot take the
    /// slots authenticated ones need, and each source has its own pool.
    pub fn try_enter_unauthenticated(&self, source: &str) -> Option<OwnedSemaphorePermit> {
        self.unauthenticated.get(source)?.clone().try_acquire_owned().ok()
    }

    /// Waits until no webhook request is in flight, at most `timeout`. Returns whether it drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let all = u32::try_from(self.config.server.max_in_flight).unwrap_or(u32::MAX);
        tokio::time::timeout(timeout, self.in_flight.acquire_many(all))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Checks every sink once (which also starts lazy connections) and logs its state.
    pub async fn log_sink_health(&self) {
        for sink in self.deliverer.sinks() {
            match tokio::time::timeout(Duration::from_secs(5), sink.health()).await {
                Ok(Ok(())) => tracing::info!(sink = %sink.name(), kind = sink.kind(), "sink ready"),
                Ok(Err(e)) => {
                    tracing::warn!(sink = %sink.name(), kind = sink.kind(), error = %e, "sink not ready yet")
                }
                Err(_) => {
                    tracing::warn!(sink = %sink.name(), kind = sink.kind(), "sink health check timed out")
                }
            }
        }
    }

    /// The health of the sink at `index`: `Err` with the reason when it is down. Checked at most
    /// once per [`HEALTH_CACHED_FOR`]; callers arriving while a check runs wait for its result
    /// rather than starting their own.
    pub async fn sink_health(&self, index: usize) -> Result<(), String> {
        self.sink_status(index).await.result
    }

    /// Like [`App::sink_health`], with since when the sink is in its state and its last error.
    pub async fn sink_status(&self, index: usize) -> SinkStatus {
        let sink = &self.deliverer.sinks()[index];
        let Some(slot) = self.health.get(index) else {
            return HealthSlot::default().status;
        };
        let mut slot = slot.lock().await;
        if slot.checked.is_some_and(|at| at.elapsed() < HEALTH_CACHED_FOR) {
            return slot.status.clone();
        }
        let result = match tokio::time::timeout(HEALTH_TIMEOUT, sink.health()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("health check took longer than {HEALTH_TIMEOUT:?}")),
        };
        let now = std::time::SystemTime::now();
        // The first check sets the state's start too: before it, nothing was known.
        if slot.checked.is_none() || result.is_ok() != slot.status.result.is_ok() {
            slot.status.since = now;
        }
        if let Err(e) = &result {
            slot.status.last_error = Some((e.clone(), now));
        }
        slot.status.result = result;
        slot.checked = Some(std::time::Instant::now());
        slot.status.clone()
    }

    /// Whether sink `index` can be reached by a sync-mode source (its outage refuses events).
    pub fn is_sync_sink(&self, index: usize) -> bool {
        self.sync_sinks.contains(&index)
    }

    /// Starts one supervised spool forwarder per sink (no-op without a spool). Needs a tokio
    /// runtime.
    pub fn start_forwarders(&self) {
        let Some(spool) = &self.spool else { return };
        let names: Vec<String> = self
            .deliverer
            .sinks()
            .iter()
            .map(|s| s.name().to_owned())
            .collect();
        let backoff = Backoff {
            initial: self.config.spool.retry_initial,
            max: self.config.spool.retry_max,
        };
        let mut handles = self
            .forwarders
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        spool.set_sinks(names);
        let dead_letters = forward::DeadLetters {
            max_attempts: self.config.spool.max_attempts,
            sink: self.deliverer.dead_letter_sink().cloned(),
        };
        for sink in self.deliverer.sinks() {
            let settings = forward::Settings {
                publish_timeout: self.config.server.publish_timeout,
                backoff,
                dead_letters: dead_letters.clone(),
                strict_order: self.config.spool.strict_order.contains(&sink.name().to_owned()),
                alive: self.forwarders_alive.clone(),
            };
            handles.push(tokio::spawn(supervise::supervise(
                spool.clone(),
                sink.clone(),
                settings,
                self.stop_forwarders.subscribe(),
            )));
        }
    }

    /// Stops the forwarders, letting a publish in progress finish (bounded by the deadline).
    /// Returns once none runs: a successor's forwarders never overlap these.
    pub async fn stop_forwarders(&self) {
        self.stop_forwarders.send_replace(true);
        let handles: Vec<_> = std::mem::take(
            &mut *self
                .forwarders
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let deadline = self.config.server.publish_timeout + Duration::from_secs(1);
        for mut h in handles {
            if tokio::time::timeout(deadline, &mut h).await.is_err() {
                // Aborting the supervisor aborts its forwarder (see `AbortOnDrop`).
                h.abort();
                let _ = h.await;
            }
        }
        // An aborted forwarder ends at its next await, not at once: wait (briefly) until none
        // runs, so a successor never overlaps it.
        let settled = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.forwarders_alive.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < settled {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Flushes and closes every sink.
    pub async fn shutdown_sinks(&self) {
        futures_util::future::join_all(self.deliverer.sinks().iter().map(|s| s.shutdown())).await;
    }
}

/// The dedup store: the previous configuration's (a reload keeps what it remembers), or a
/// new one, persistent when `[dedup] path` is set.
fn open_dedup(config: &Config, previous: Option<&App>) -> Result<Option<Dedup>, BuildError> {
    let carried = previous.and_then(|p| p.deliverer.dedup().cloned());
    Ok(match (config.dedup.enabled, carried) {
        (false, _) => None,
        (true, Some(d)) => Some(d),
        (true, None) => Some(match &config.dedup.path {
            Some(path) => {
                Dedup::open(config.dedup.window, config.dedup.max_entries, path).map_err(BuildError::Dedup)?
            }
            None => Dedup::new(config.dedup.window, config.dedup.max_entries),
        }),
    })
}

/// The spool: the previous configuration's (it cannot move while running), or opened when a
/// source delivers through it; its retention set from this configuration.
fn open_spool(config: &Config, previous: Option<&App>) -> Result<Option<Arc<Spool>>, BuildError> {
    let uses_spool = config.sources.iter().any(|s| s.delivery == Delivery::Spool);
    let spool = if let Some(existing) = previous.and_then(|p| p.spool.clone()) {
        Some(existing)
    } else if uses_spool {
        let limits = Limits {
            max_events: config.spool.max_events,
            max_bytes: config.spool.max_bytes,
            max_parked: config.spool.max_parked,
        };
        Some(Spool::open(&config.spool.dir, limits)?)
    } else {
        None
    };
    if let Some(spool) = &spool {
        spool.set_retention(crate::deliver::spool::Retention {
            age: config.spool.retain,
            max_bytes: config.spool.retain_max_bytes,
        });
    }
    Ok(spool)
}

/// Sinks reachable from sync-mode sources: from any rule without a source filter or naming a
/// sync source, plus the unmatched route.
fn reachable_sinks(router: &Router, sink_count: usize, sources: &[SourceConfig]) -> Vec<usize> {
    let sync: Vec<&str> = sources
        .iter()
        .filter(|s| s.delivery == Delivery::Sync)
        .map(|s| s.name.as_str())
        .collect();
    if sync.is_empty() {
        return Vec::new();
    }
    (0..sink_count).filter(|i| router.can_reach(&sync, *i)).collect()
}
