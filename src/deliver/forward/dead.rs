//! Dead-lettering a spooled event: to the dead-letter sink (retried while it is unavailable),
//! else parked in the spool.

use std::time::Duration;

use hookbridge_sink_core::{Event, SinkError};
use tokio::sync::watch;

use super::{publish, sleep_or_stop, Backoff, DeadLetters};
use crate::deliver::spool::{Parked, Record, Spool};
use crate::deliver::{dead_letter_event, DeadReason};

/// An event being dead-lettered.
pub(super) struct Dead<'a> {
    pub(super) seq: u64,
    pub(super) record: &'a Record,
    pub(super) event: &'a Event,
    pub(super) reason: DeadReason,
    pub(super) attempts: u32,
    pub(super) error: &'a SinkError,
}

/// Sends `dead` to the dead-letter sink (retrying while it is unavailable), or parks it in the
/// spool when there is none or it refuses. `None` when told to stop first (the event stays
/// where it was and is tried again after a restart).
pub(super) async fn dead_letter(
    spool: &Spool,
    sink: &str,
    dead: &Dead<'_>,
    policy: &DeadLetters,
    publish_timeout: Duration,
    backoff: Backoff,
    stop: &mut watch::Receiver<bool>,
) -> Option<()> {
    let reason = dead.reason.as_str();
    let target = policy.sink.as_ref().filter(|dl| dl.name() != sink);
    let mut last_error = dead.error.to_string();
    if let Some(dl) = target {
        let letter = dead_letter_event(dead.event, sink, dead.reason, dead.attempts, dead.error);
        let mut tries = 0;
        loop {
            match publish(dl, &letter, publish_timeout).await {
                Ok(()) => {
                    metrics::counter!("hookbridge_dead_letters_total", "sink" => sink.to_owned(), "reason" => reason)
                        .increment(1);
                    tracing::warn!(sink = %sink, event_id = ?dead.event.id, seq = dead.seq, reason, attempts = dead.attempts,
                        error = %dead.error, dead_letter = %dl.name(), "spooled event sent to the dead-letter sink");
                    return Some(());
                }
                Err(e) if e.is_retryable() => {
                    tries += 1;
                    tracing::warn!(sink = %sink, dead_letter = %dl.name(), error = %e, "dead-letter sink unavailable; retrying");
                    if sleep_or_stop(stop, backoff.delay(tries, e.retry_after())).await {
                        return None;
                    }
                }
                Err(e) => {
                    last_error = format!(
                        "{}; the dead-letter sink {} refused it too: {e}",
                        dead.error,
                        dl.name()
                    );
                    break;
                }
            }
        }
    }
    let parked = Parked {
        reason: reason.to_owned(),
        attempts: dead.attempts,
        error: last_error,
        record: dead.record.clone(),
    };
    loop {
        match spool.park(dead.seq, sink, &parked).await {
            Ok(()) => break,
            Err(e) => {
                tracing::error!(sink = %sink, error = %e, "cannot park a dead letter; retrying");
                if sleep_or_stop(stop, backoff.max).await {
                    return None;
                }
            }
        }
    }
    metrics::counter!("hookbridge_dead_letters_total", "sink" => sink.to_owned(), "reason" => reason)
        .increment(1);
    metrics::gauge!("hookbridge_spool_parked").set(spool.parked() as f64);
    tracing::error!(sink = %sink, event_id = ?dead.event.id, seq = dead.seq, reason, attempts = dead.attempts,
        error = %parked.error, "spooled event parked in the spool (no dead-letter sink took it); `hookbridge replay --parked` re-sends it");
    Some(())
}
