//! The configuration being served, and its replacement on reload.

use std::sync::Arc;

use super::{App, BuildError};
use crate::config::Config;

/// The configuration being served, swappable at run time (SIGHUP reload).
pub struct Live {
    current: std::sync::RwLock<Arc<App>>,
}

impl Live {
    /// Serves `app`.
    pub fn new(app: Arc<App>) -> Arc<Live> {
        Arc::new(Live {
            current: std::sync::RwLock::new(app),
        })
    }

    /// The current configuration.
    pub fn get(&self) -> Arc<App> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the running configuration with `config`. A configuration that cannot be built
    /// is rejected and the old one keeps serving. In-flight requests finish on the old one,
    /// whose sinks are closed once they are done.
    pub async fn reload(&self, config: Config) -> Result<(), BuildError> {
        let old = self.get();
        if config.server.listen != old.config.server.listen
            || config.server.admin_listen != old.config.server.admin_listen
            || config.server.probe_listen != old.config.server.probe_listen
        {
            tracing::warn!("listener addresses changed: they take effect at the next restart");
        }
        // The dedup table and the spool are carried over as they are.
        let (d, od) = (&config.dedup, &old.config.dedup);
        if d.enabled
            && od.enabled
            && (d.window, d.max_entries, &d.path) != (od.window, od.max_entries, &od.path)
        {
            tracing::warn!("dedup.window, max_entries and path take effect at the next restart");
        }
        let (s, os) = (&config.spool, &old.config.spool);
        if (s.max_events, s.max_bytes, s.max_parked) != (os.max_events, os.max_bytes, os.max_parked) {
            tracing::warn!("spool.max_events, max_bytes and max_parked take effect at the next restart");
        }
        let new = App::build_reload(config, &old)?;
        // One forwarder per sink at a time: stop the old ones before the new ones start.
        old.stop_forwarders().await;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = new.clone();
        new.start_forwarders();
        tokio::spawn(async move {
            old.drain(old.config.server.shutdown_timeout).await;
            old.shutdown_sinks().await;
        });
        Ok(())
    }
}
