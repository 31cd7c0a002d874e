//! The running bridge: checked configuration, built sinks, the deliverer, and the state the
//! ingress shares between requests (shutdown flag, in-flight limit).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hookbridge_sink_core::{SinkError, SinkHandle};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{Config, SourceConfig};
use crate::deliver::dedup::Dedup;
use crate::deliver::Deliverer;

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
}

impl App {
    /// Builds every sink from the configuration. No network IO happens here: sinks connect
    /// lazily, so hookbridge starts while a broker is down.
    pub fn build(config: Config) -> Result<Arc<App>, SinkError> {
        Self::build_with(config, Vec::new())
    }

    /// Like [`App::build`], but sinks named in `overrides` are replaced by the given instances
    /// (tests inject failing or slow sinks this way).
    pub fn build_with(config: Config, overrides: Vec<(String, SinkHandle)>) -> Result<Arc<App>, SinkError> {
        let mut overrides: HashMap<String, SinkHandle> = overrides.into_iter().collect();
        let sinks: Vec<SinkHandle> = config
            .sinks
            .iter()
            .map(|s| match overrides.remove(&s.name) {
                Some(sink) => Ok(sink),
                None => s.spec.build(&s.name),
            })
            .collect::<Result<_, _>>()?;
        let dedup = config
            .dedup
            .enabled
            .then(|| Dedup::new(config.dedup.window, config.dedup.max_entries));
        let deliverer = Arc::new(Deliverer::new(
            sinks,
            config.router.clone(),
            dedup,
            config.server.publish_timeout,
        ));
        let sources = config
            .sources
            .iter()
            .map(|s| (s.path.clone(), Arc::new(s.clone())))
            .collect();
        Ok(Arc::new(App {
            sources,
            deliverer,
            shutting_down: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(config.server.max_in_flight)),
            config,
        }))
    }

    /// The source listening on `path`.
    pub fn source_at(&self, path: &str) -> Option<Arc<SourceConfig>> {
        self.sources.get(path).cloned()
    }

    /// Whether shutdown has begun (new events are refused with 503).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Starts refusing new events.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// A slot for one webhook request, or `None` when `max_in_flight` are already running.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        self.in_flight.clone().try_acquire_owned().ok()
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

    /// Flushes and closes every sink.
    pub async fn shutdown_sinks(&self) {
        futures_util::future::join_all(self.deliverer.sinks().iter().map(|s| s.shutdown())).await;
    }
}
