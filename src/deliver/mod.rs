//! Delivery: dedup, routing and concurrent fan-out to the chosen sinks with a per-publish
//! deadline. Sync mode: the answer waits for every receipt.

pub mod dedup;
pub mod forward;
pub mod spool;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use hookbridge_sink_core::{Event, Receipt, SinkError, SinkHandle};

use crate::route::{Decision, Router};
use dedup::{Claim, Dedup};
use spool::{Record, Spool, SpoolError};

/// One publish with the deadline, recorded in `hookbridge_publish_total` and
/// `hookbridge_publish_duration_seconds`.
pub async fn publish_timed(
    sink: &SinkHandle,
    event: &Event,
    deadline: std::time::Duration,
) -> Result<Receipt, SinkError> {
    use futures_util::FutureExt as _;
    let started = std::time::Instant::now();
    // A panic inside a sink's publish is caught here, for sync requests and spool forwarders
    // alike: it becomes an error of kind `crashed`, never a reset connection or a dead task.
    // The publish future is awaited (and so dropped) inside the guard: a panic in its `Drop`
    // is caught too.
    let guarded = std::panic::AssertUnwindSafe(async { sink.publish(event).await }).catch_unwind();
    let result = match tokio::time::timeout(deadline, guarded).await {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::error!(sink = %sink.name(), event_id = ?event.id, panic = %what, "the sink panicked while publishing");
            metrics::counter!("hookbridge_sink_panics_total", "sink" => sink.name().to_owned()).increment(1);
            Err(SinkError::crashed(format!("the sink panicked: {what}")))
        }
        Err(_) => Err(SinkError::timeout(format!(
            "no acknowledgement within {}",
            humantime::format_duration(deadline)
        ))),
    };
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.kind().as_str(),
    };
    crate::metrics::publish(sink.name(), outcome, started.elapsed().as_secs_f64());
    result
}

/// The extension holding a digest of the raw body, set on the events of a source with
/// `dedup_on = "body"` (GitHub by default): hookbridge's dedup and the brokers' delivery key use
/// it instead of the id, which such a provider does not sign.
pub const BODY_DIGEST: &str = "hbbodydigest";

/// What happened to one event.
#[derive(Debug)]
pub enum EventOutcome {
    /// Every chosen sink acked.
    Delivered(Vec<Receipt>),
    /// Already delivered; nothing published again.
    Duplicate,
    /// No route matched and the policy is `drop`.
    Dropped,
    /// At least one sink failed; `(sink name, error)` for each failure.
    Failed(Vec<(String, SinkError)>),
    /// Durably spooled; one receipt per target sink (`"spooled": seq`).
    Spooled(Vec<Receipt>),
    /// Some sink refused the event permanently and it went to the dead-letter sink; receipts of
    /// the sinks that took it and of the dead-letter sink (`"dead_letter_for"`).
    DeadLettered(Vec<Receipt>),
    /// Not taken, for a reason that clears by itself (spool full or unwritable): 503 `code`.
    /// The detail (sizes, paths) is logged where it arises, never sent back.
    Refused {
        /// Reason code.
        code: crate::code::Code,
    },
}

impl EventOutcome {
    /// The status used in the JSON answer.
    pub fn status(&self) -> crate::code::Code {
        use crate::code::Code;
        match self {
            EventOutcome::Delivered(_) => Code::Delivered,
            EventOutcome::Duplicate => Code::Duplicate,
            EventOutcome::Dropped => Code::Dropped,
            EventOutcome::Failed(f) if f.iter().any(|(_, e)| e.is_retryable()) => Code::SinkUnavailable,
            EventOutcome::Failed(_) => Code::SinkRejected,
            EventOutcome::Spooled(_) => Code::Spooled,
            EventOutcome::DeadLettered(_) => Code::DeadLettered,
            EventOutcome::Refused { code } => *code,
        }
    }
}

/// The dedup key of `event`: `(source name, CE source, id)`, or `(source name, "body", digest)`
/// for a source that dedups on the body ([`BODY_DIGEST`]).
fn dedup_key(source_name: &str, event: &Event) -> dedup::Key {
    match event.extensions.get(BODY_DIGEST) {
        Some(hookbridge_sink_core::ExtensionValue::String(digest)) => {
            (source_name.to_owned(), "body".to_owned(), digest.clone())
        }
        _ => (source_name.to_owned(), event.source.clone(), event.id.clone()),
    }
}

/// Why an event was dead-lettered (the `hbdlreason` extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    /// The sink refused it permanently.
    Rejected,
    /// Retryable failures used up `spool.max_attempts` while the sink took other events.
    Exhausted,
    /// Publishing it panicked the sink (repeatedly, in spool mode).
    Crashed,
}

impl DeadReason {
    /// The reason's name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Rejected => "rejected",
            DeadReason::Exhausted => "exhausted",
            DeadReason::Crashed => "crashed",
        }
    }
}

/// The event sent to the dead-letter sink: the original, unchanged, plus extensions saying which
/// sink failed (`hbdlsink`), why (`hbdlreason`), after how many attempts (`hbdlattempts`) and
/// the last error (`hbdlerror`).
pub fn dead_letter_event(
    event: &Event,
    sink: &str,
    reason: DeadReason,
    attempts: u32,
    error: &SinkError,
) -> Event {
    use hookbridge_sink_core::ExtensionValue;
    let mut e = event.clone();
    e.extensions
        .insert("hbdlsink".into(), ExtensionValue::String(sink.to_owned()));
    e.extensions.insert(
        "hbdlreason".into(),
        ExtensionValue::String(reason.as_str().to_owned()),
    );
    e.extensions.insert(
        "hbdlattempts".into(),
        ExtensionValue::Integer(i64::from(attempts)),
    );
    e.extensions
        .insert("hbdlerror".into(), ExtensionValue::String(error.to_string()));
    e
}

/// The fan-out engine shared by every request.
pub struct Deliverer {
    sinks: Vec<SinkHandle>,
    router: Router,
    dedup: Option<Dedup>,
    publish_timeout: Duration,
    dead_letter: Option<usize>,
}

impl Deliverer {
    /// A deliverer over `sinks` (indexed as the router's indices).
    pub fn new(
        sinks: Vec<SinkHandle>,
        router: Router,
        dedup: Option<Dedup>,
        publish_timeout: Duration,
    ) -> Self {
        Deliverer {
            sinks,
            router,
            dedup,
            publish_timeout,
            dead_letter: None,
        }
    }

    /// Sends permanently refused events to sink `index` (`[dead_letter]`).
    pub fn with_dead_letter(mut self, index: Option<usize>) -> Self {
        self.dead_letter = index;
        self
    }

    /// The dead-letter sink, if configured.
    pub fn dead_letter_sink(&self) -> Option<&SinkHandle> {
        self.dead_letter.and_then(|i| self.sinks.get(i))
    }

    /// The dedup table, if enabled.
    pub fn dedup(&self) -> Option<&Dedup> {
        self.dedup.as_ref()
    }

    /// The sinks, by index.
    pub fn sinks(&self) -> &[SinkHandle] {
        &self.sinks
    }

    /// Delivers the events of one request concurrently; outcomes in request order.
    pub async fn deliver_all(self: &Arc<Self>, source_name: &str, events: &[Event]) -> Vec<EventOutcome> {
        join_all(events.iter().map(|e| self.deliver(source_name, e))).await
    }

    /// Delivers one event: dedup claim, route, fan-out, mark delivered only if every sink acked.
    pub async fn deliver(&self, source_name: &str, event: &Event) -> EventOutcome {
        let targets = match self.router.route(source_name, &event.ty) {
            Decision::Drop => return EventOutcome::Dropped,
            Decision::Sinks(s) => s,
        };
        let guard = match self.claim(source_name, event).await {
            Ok(g) => g,
            Err(duplicate) => return duplicate,
        };
        for sink in targets.iter().filter_map(|&i| self.sinks.get(i)) {
            crate::metrics::routed(source_name, sink.name());
        }
        let results = join_all(
            targets
                .iter()
                .filter_map(|&i| self.sinks.get(i))
                .map(|sink| self.publish_one(sink, event)),
        )
        .await;
        let mut receipts = Vec::with_capacity(results.len());
        let mut failures = Vec::new();
        for (sink, result) in targets.iter().filter_map(|&i| self.sinks.get(i)).zip(results) {
            match result {
                Ok(r) => receipts.push(r),
                Err(e) => failures.push((sink.name().to_owned(), e)),
            }
        }
        if failures.is_empty() {
            if let Some(g) = guard {
                g.delivered();
            }
            return EventOutcome::Delivered(receipts);
        }
        match self.dead_letter_sync(event, failures).await {
            Ok(dead) => {
                receipts.extend(dead);
                if let Some(g) = guard {
                    g.delivered();
                }
                EventOutcome::DeadLettered(receipts)
            }
            // The guard drops here: the id is released so the provider's retry publishes again.
            Err(failures) => EventOutcome::Failed(failures),
        }
    }

    /// Sync mode: when every failure is permanent and a dead-letter sink is configured (and is
    /// not itself among the failed), each failure goes there. `Err` keeps the failures (plus the
    /// dead-letter sink's own, if it failed) for the answer.
    async fn dead_letter_sync(
        &self,
        event: &Event,
        failures: Vec<(String, SinkError)>,
    ) -> Result<Vec<Receipt>, Vec<(String, SinkError)>> {
        let Some(dl) = self.dead_letter_sink() else {
            return Err(failures);
        };
        if failures
            .iter()
            .any(|(name, e)| e.is_retryable() || name == dl.name())
        {
            return Err(failures);
        }
        let mut receipts = Vec::with_capacity(failures.len());
        for (name, error) in &failures {
            let reason = if error.kind() == hookbridge_sink_core::ErrorKind::Crashed {
                DeadReason::Crashed
            } else {
                DeadReason::Rejected
            };
            let dead = dead_letter_event(event, name, reason, 1, error);
            match self.publish_one(dl, &dead).await {
                Ok(r) => {
                    metrics::counter!("hookbridge_dead_letters_total", "sink" => name.clone(), "reason" => reason.as_str())
                        .increment(1);
                    tracing::warn!(sink = %name, event_id = ?event.id, dead_letter = %dl.name(), error = %error,
                        "event refused permanently; sent to the dead-letter sink");
                    // The kind only: the error's text (a URL, broker text) is in the log above and
                    // in the dead letter's `hbdlerror`, never in the answer to the sender.
                    receipts.push(
                        r.with("dead_letter_for", name.as_str())
                            .with("error", error.kind().as_str()),
                    );
                }
                Err(e) => {
                    let mut failures = failures;
                    failures.push((dl.name().to_owned(), e));
                    return Err(failures);
                }
            }
        }
        Ok(receipts)
    }

    /// Whether the event was already delivered (it will be answered `duplicate`): enrichment
    /// skips it rather than asking the provider's API again for a retry. A look only; the
    /// claim decides.
    pub fn already_delivered(&self, source_name: &str, event: &Event) -> bool {
        self.dedup
            .as_ref()
            .is_some_and(|d| d.delivered(&dedup_key(source_name, event)))
    }

    /// Claims the event's dedup key — `(source name, CE source, id)`, or `(source name, "body",
    /// digest)` for a source that dedups on the body ([`BODY_DIGEST`]): `Ok(guard)` to go on (no guard when dedup is off), or
    /// `Err(Duplicate)` when it was already delivered — counted in `hookbridge_dedup_hits_total`.
    async fn claim(&self, source_name: &str, event: &Event) -> Result<Option<dedup::Guard>, EventOutcome> {
        let Some(d) = &self.dedup else {
            return Ok(None);
        };
        let claim = d.claim(dedup_key(source_name, event)).await;
        if claim.is_retry() {
            metrics::counter!("hookbridge_provider_retries_total", "source" => source_name.to_owned())
                .increment(1);
        }
        match claim {
            Claim::Owner(g) => Ok(Some(g)),
            Claim::Duplicate => {
                metrics::counter!("hookbridge_dedup_hits_total", "source" => source_name.to_owned())
                    .increment(1);
                Err(EventOutcome::Duplicate)
            }
        }
    }

    /// Spool mode: each event is durably appended (its id marked seen once it is safe on disk).
    pub async fn spool_all(
        self: &Arc<Self>,
        source_name: &str,
        events: &[Event],
        spool: &Spool,
    ) -> Vec<EventOutcome> {
        join_all(events.iter().map(|e| self.spool_one(source_name, e, spool))).await
    }

    async fn spool_one(&self, source_name: &str, event: &Event, spool: &Spool) -> EventOutcome {
        let targets = match self.router.route(source_name, &event.ty) {
            Decision::Drop => return EventOutcome::Dropped,
            Decision::Sinks(s) => s,
        };
        let guard = match self.claim(source_name, event).await {
            Ok(g) => g,
            Err(duplicate) => return duplicate,
        };
        let names: Vec<String> = targets
            .iter()
            .filter_map(|&i| self.sinks.get(i))
            .map(|s| s.name().to_owned())
            .collect();
        for name in &names {
            crate::metrics::routed(source_name, name);
        }
        match spool.append(&Record::new(event, names.clone())).await {
            Ok(seq) => {
                if let Some(g) = guard {
                    g.delivered();
                }
                EventOutcome::Spooled(
                    names
                        .iter()
                        .map(|n| Receipt::new(n).with("spooled", seq))
                        .collect(),
                )
            }
            Err(SpoolError::Full(m)) => {
                tracing::warn!(event_id = ?event.id, reason = %m, "the spool is full");
                EventOutcome::Refused {
                    code: crate::code::Code::Overloaded,
                }
            }
            Err(SpoolError::Io(m)) => {
                tracing::error!(event_id = ?event.id, error = %m, "spool append failed");
                EventOutcome::Refused {
                    code: crate::code::Code::SpoolUnavailable,
                }
            }
        }
    }

    async fn publish_one(&self, sink: &SinkHandle, event: &Event) -> Result<Receipt, SinkError> {
        let result = publish_timed(sink, event, self.publish_timeout).await;
        if let Err(e) = &result {
            tracing::warn!(sink = %sink.name(), event_id = ?event.id, error = %e, "publish failed");
        }
        result
    }
}
