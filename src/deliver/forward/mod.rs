//! One forwarder per sink: delivers spooled events in spool order — up to [`WINDOW`] publishes in
//! flight, so a broker whose acknowledgement takes milliseconds (Kafka's linger, fsync) is not
//! limited to one event per round trip; a broker may reorder within that window (RabbitMQ
//! across channels) — with exponential backoff and
//! full jitter between attempts (honouring a sink's `retry_after`), and records progress in the
//! spool so a restart resumes where it left off.
//!
//! An event the sink refuses permanently, or that used up `spool.max_attempts`, is
//! dead-lettered: sent to the dead-letter sink (retried like any publish while that sink is
//! unavailable) with the reason, or — with no dead-letter sink, or one that refuses it too —
//! parked in the spool. Either way it is counted and logged, never dropped, and the forwarder
//! moves on to the next event.
//!
//! Over 400 lines on purpose: one forwarder's state machine (cursor, attempts, probes, crash
//! accounting) is one struct whose steps read together; dead-lettering is in `dead`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use hookbridge_sink_core::{ErrorKind, Event, SinkError, SinkHandle};
use rand::Rng;
use tokio::sync::watch;

mod dead;

use super::spool::{Record, Spool};
use super::DeadReason;
use dead::{dead_letter, Dead};

/// Most publishes one forwarder has in flight (its events are still acknowledged, and its
/// cursor advanced, in spool order).
const WINDOW: usize = 64;

/// When and where events are dead-lettered.
#[derive(Clone, Default)]
pub struct DeadLetters {
    /// Attempts before a retryable failure is dead-lettered (`None`: never), counted toward
    /// only while the sink takes other events.
    pub max_attempts: Option<u32>,
    /// The dead-letter sink, if configured.
    pub sink: Option<SinkHandle>,
}

/// Backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First retry delay.
    pub initial: Duration,
    /// Largest retry delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): full jitter over an exponential cap.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let cap = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max);
        let jittered = rand::rng().random_range(cap / 2..=cap);
        retry_after.map_or(jittered, |r| jittered.max(r.min(self.max)))
    }
}

static RUNNING: std::sync::Mutex<BTreeMap<String, usize>> = std::sync::Mutex::new(BTreeMap::new());

/// Forwarders running now for `sink` in this process (never more than one; the tests check it
/// across panics and reloads). Also the gauge `hookbridge_forwarders_running{sink}`.
pub fn running(sink: &str) -> usize {
    RUNNING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(sink)
        .copied()
        .unwrap_or(0)
}

/// Counts a running forwarder while it lives (a panic unwinds through its drop too).
struct Running(String, Arc<std::sync::atomic::AtomicUsize>);

impl Running {
    fn new(sink: &str, alive: Arc<std::sync::atomic::AtomicUsize>) -> Running {
        Self::change(sink, |n| n + 1);
        alive.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Running(sink.to_owned(), alive)
    }

    fn change(sink: &str, f: impl FnOnce(usize) -> usize) {
        let mut map = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(sink.to_owned()).or_default();
        *n = f(*n);
        metrics::gauge!("hookbridge_forwarders_running", "sink" => sink.to_owned()).set(*n as f64);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        Self::change(&self.0, |n| n.saturating_sub(1));
        self.1.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How a forwarder runs (the same for every restart of it).
#[derive(Clone)]
pub struct Settings {
    /// Deadline of one publish.
    pub publish_timeout: Duration,
    /// Retry delays.
    pub backoff: Backoff,
    /// Where given-up events go.
    pub dead_letters: DeadLetters,
    /// One publish in flight (strict spool order, retries included), not [`WINDOW`].
    pub strict_order: bool,
    /// Counts the forwarders alive (its owner waits for zero before starting successors).
    pub alive: Arc<std::sync::atomic::AtomicUsize>,
}

/// Panics of one record's publish before it is parked with reason `crashed`.
pub const CRASH_LIMIT: u32 = 3;

/// What to do about a failed publish.
enum Verdict {
    /// It went through after all (on the confirming attempt after a probe).
    Delivered,
    /// Try the same event again after the delay.
    Retry(Duration),
    /// Give up on it: dead-letter sink or parked.
    Dead(DeadReason),
}

/// The forwarder of one sink: its position and the state of the event at its head.
struct Forwarder {
    spool: Arc<Spool>,
    sink: SinkHandle,
    name: String,
    settings: Settings,
    cursor: u64,
    /// Failed attempts of the head event.
    attempt: u32,
    /// Panics of the head event's publish.
    crashes: u32,
    /// Probes made for the head event (each takes the next later event in turn).
    probes: usize,
    /// `cursor` is ahead of the stored one (an advance failed): retried on a timer, since an
    /// idle forwarder otherwise waits for an append that a full spool never commits.
    unsaved: bool,
    /// [`Spool::reopens`] when the cursor was last stored: a reopen since may have dropped it.
    reopens: u64,
}

/// How far behind a stuck event the probes look (one per attempt, in turn): two or more poison
/// events in a row do not pass for an outage. With `strict_order` nothing is probed (see
/// [`Forwarder::judge`]).
const PROBE_SPAN: usize = 16;

/// Runs until `stop` turns true. Returns after finishing (or abandoning) the current attempt.
pub async fn run(spool: Arc<Spool>, sink: SinkHandle, settings: Settings, mut stop: watch::Receiver<bool>) {
    let name = sink.name().to_owned();
    let _running = Running::new(&name, settings.alive.clone());
    // Retried until it works or we are told to stop: returning here would leave the sink with
    // no forwarder (the supervisor restarts only after a panic).
    let mut tries = 0;
    let cursor = loop {
        match spool.cursor(&name).await {
            Ok(c) => break c,
            Err(e) => {
                tries += 1;
                tracing::error!(sink = %name, error = %e, "cannot read the spool cursor; retrying");
                if sleep_or_stop(&mut stop, settings.backoff.delay(tries, None)).await {
                    return;
                }
            }
        }
    };
    let mut sweep_failed = false;
    if cursor > 0 {
        // Sweep at start: records every configured sink has passed are deleted now, and those
        // still pending for a sink that was removed are parked (`sink_removed`), even if no
        // new event ever makes a forwarder advance again.
        if let Err(e) = spool.advance(&name, cursor).await {
            tracing::error!(sink = %name, error = %e, "cannot sweep the spool; retrying");
            sweep_failed = true;
        }
    }
    let mut f = Forwarder {
        unsaved: sweep_failed,
        reopens: spool.reopens(),
        spool,
        sink,
        name,
        settings,
        cursor,
        attempt: 0,
        crashes: 0,
        probes: 0,
    };
    loop {
        if *stop.borrow() {
            return;
        }
        if f.step(&mut stop).await.is_none() {
            return;
        }
    }
}

impl Forwarder {
    /// One round: publish the next batch (or wait for one). `None` when told to stop.
    /// Nothing for this sink at the cursor: skip past records meant for other sinks, or wait
    /// for an append, a stop, or (with an unsaved cursor) the time to retry the save.
    async fn idle(
        &mut self,
        notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
        scanned: u64,
        stop: &mut watch::Receiver<bool>,
    ) {
        if scanned > self.cursor {
            self.cursor = scanned;
            self.save().await;
            return;
        }
        let backoff = self.settings.backoff;
        let retry_save = async {
            if self.unsaved {
                tokio::time::sleep(backoff.max.min(Duration::from_secs(1))).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = notified => {}
            () = retry_save => {}
            _ = stop.changed() => {}
        }
    }

    /// A batch's results, in spool order: `(the last sequence passed, the delay before the
    /// failure that will be retried)`. Progress stops at that failure (events after it that did
    /// get through are sent again later: at-least-once); dead ones are dead-lettered and passed.
    /// `None`: stopped while dead-lettering.
    async fn settle(
        &mut self,
        batch: &[(u64, Record)],
        events: &[Event],
        results: Vec<Result<(), SinkError>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(Option<u64>, Option<Duration>)> {
        let (spool, name) = (self.spool.clone(), self.name.clone());
        let (timeout, backoff) = (self.settings.publish_timeout, self.settings.backoff);
        let mut passed = None;
        let mut retry = None;
        for (((seq, record), event), result) in batch.iter().zip(events).zip(results) {
            let seq = *seq;
            if let Err(e) = result {
                match self.judge(seq, event, &e).await {
                    Verdict::Delivered => {
                        tracing::debug!(sink = %name, event_id = ?event.id, seq, "spooled event delivered");
                    }
                    Verdict::Retry(delay) => {
                        retry = Some(delay);
                        break;
                    }
                    Verdict::Dead(reason) => {
                        let dead = Dead {
                            seq,
                            record,
                            event,
                            reason,
                            attempts: self.attempt,
                            error: &e,
                        };
                        let policy = self.settings.dead_letters.clone();
                        dead_letter(&spool, &name, &dead, &policy, timeout, backoff, stop).await?;
                    }
                }
            } else {
                tracing::debug!(sink = %name, event_id = ?event.id, seq, "spooled event delivered");
            }
            self.attempt = 0;
            self.crashes = 0;
            self.probes = 0;
            passed = Some(seq);
        }
        Some((passed, retry))
    }

    async fn step(&mut self, stop: &mut watch::Receiver<bool>) -> Option<()> {
        let (spool, name) = (self.spool.clone(), self.name.clone());
        let backoff = self.settings.backoff;
        // Register interest before looking (at the data and at `reopens`), so an append or a
        // reopen between the look and the wait is not missed.
        let notified = spool.new_data.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.unsaved || spool.reopens() != self.reopens {
            self.save().await;
        }
        // Up to WINDOW publishes in flight; one at a time while a failure is being retried, so
        // an outage is probed with one event rather than re-sending a window each time.
        let window = if self.attempt > 0 || self.settings.strict_order {
            1
        } else {
            WINDOW
        };
        let (batch, scanned) = match spool.next_batch_for(&name, self.cursor, window).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "spool read failed");
                return (!sleep_or_stop(stop, backoff.max).await).then_some(());
            }
        };
        let Some((_, first)) = batch.first() else {
            spool.set_head(&name, None);
            self.idle(notified, scanned, stop).await;
            return Some(());
        };
        if self.attempt == 0 {
            spool.set_head(&name, first.received());
        }
        let events: Vec<Event> = batch.iter().map(|(_, r)| r.event()).collect();
        let timeout = self.settings.publish_timeout;
        let results = join_all(events.iter().map(|e| publish(&self.sink, e, timeout))).await;
        let (passed, retry) = self.settle(&batch, &events, results, stop).await?;
        if let Some(seq) = passed {
            self.cursor = seq;
            self.save().await;
        }
        match retry {
            Some(delay) if sleep_or_stop(stop, delay).await => None,
            _ => Some(()),
        }
    }

    /// Stores the cursor (and deletes what every sink has passed); on failure, remembers to try
    /// again.
    async fn save(&mut self) {
        let reopens = self.spool.reopens();
        match self.spool.advance(&self.name, self.cursor).await {
            Ok(()) => {
                self.unsaved = false;
                self.reopens = reopens;
            }
            Err(e) => {
                if !self.unsaved {
                    tracing::error!(sink = %self.name, error = %e, "cannot record spool progress; retrying");
                }
                self.unsaved = true;
            }
        }
    }

    /// Decides about a failed publish of the event at `seq` (the head of the queue).
    async fn judge(&mut self, seq: u64, event: &Event, e: &SinkError) -> Verdict {
        let name = self.name.clone();
        let name = &name;
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.settings.backoff.delay(self.attempt, e.retry_after());
        if e.kind() == ErrorKind::Crashed {
            self.crashes += 1;
            self.spool.note_crash(name);
            if self.crashes >= CRASH_LIMIT {
                return Verdict::Dead(DeadReason::Crashed);
            }
            tracing::error!(sink = %name, event_id = ?event.id, seq, crashes = self.crashes, "publishing a spooled event panicked the sink; retrying");
            return Verdict::Retry(delay);
        }
        if !e.is_retryable() {
            return Verdict::Dead(DeadReason::Rejected);
        }
        metrics::counter!("hookbridge_retries_total", "sink" => name.clone()).increment(1);
        // With `strict_order` a retryable failure is never given up: the probe that tells a
        // poison event from an outage is a later event, which would arrive first (seen when an
        // outage ended between the head's attempt and the probe), and parking the head would put
        // it after later ones too. The backlog's age shows a stuck queue.
        let limit = self
            .settings
            .dead_letters
            .max_attempts
            .filter(|_| !self.settings.strict_order);
        if limit.is_some_and(|m| self.attempt >= m) {
            // Used up its attempts. Give it up only if the sink takes other events: during an
            // outage every event fails, and parking them one by one would lose their order.
            if self.sink_takes_a_later_event(seq).await {
                // The sink took another event; try this one once more before giving it up: if
                // an outage ended between its last attempt and the probe, it goes through now.
                if publish(&self.sink, event, self.settings.publish_timeout)
                    .await
                    .is_ok()
                {
                    return Verdict::Delivered;
                }
                self.attempt = self.attempt.saturating_add(1);
                return Verdict::Dead(DeadReason::Exhausted);
            }
            tracing::warn!(sink = %name, event_id = ?event.id, seq, attempt = self.attempt, error = %e,
                "spooled publish failed its last attempt, but the sink takes no other event either (an outage): not parked; retrying");
            return Verdict::Retry(delay);
        }
        tracing::warn!(sink = %name, event_id = ?event.id, seq, attempt = self.attempt, error = %e, "spooled publish failed; retrying");
        Verdict::Retry(delay)
    }

    /// Publishes a later event than `seq` (if there is one) as a probe: whether the sink accepts
    /// other events while the one at `seq` keeps failing. Successive probes take successive
    /// later events (up to [`PROBE_SPAN`] on), so a second poison event right behind the first
    /// is not taken for an outage. The probe may be published again later in its turn
    /// (at-least-once).
    async fn sink_takes_a_later_event(&mut self, seq: u64) -> bool {
        let span = PROBE_SPAN;
        // One scan reads at most 1,024 records of any sink: go on until this sink's next ones,
        // or the end.
        let mut after = seq;
        let later = loop {
            let Ok((found, scanned)) = self.spool.next_batch_for(&self.name, after, span).await else {
                return false;
            };
            if !found.is_empty() || scanned == after {
                break found;
            }
            after = scanned;
        };
        if later.is_empty() {
            return false;
        }
        let (_, record) = &later[self.probes % later.len()];
        self.probes += 1;
        publish(&self.sink, &record.event(), self.settings.publish_timeout)
            .await
            .is_ok()
    }
}

async fn publish(sink: &SinkHandle, event: &Event, deadline: Duration) -> Result<(), SinkError> {
    super::publish_timed(sink, event, deadline).await.map(|_| ())
}

/// Sleeps for `d`; returns true if told to stop meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
        };
        for attempt in 1..20 {
            let cap = Duration::from_millis(100)
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(b.max);
            let d = b.delay(attempt, None);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d:?} vs {cap:?}");
        }
        assert!(b.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert!(b.delay(1, Some(Duration::from_secs(300))) <= b.max);
    }
}
