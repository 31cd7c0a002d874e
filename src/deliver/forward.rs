//! One forwarder per sink: delivers spooled events in spool order, with exponential backoff and
//! full jitter between attempts (honouring a sink's `retry_after`), and records progress in the
//! spool so a restart resumes where it left off.
//!
//! A permanently failing event is not dropped: it stays at the head of the sink's queue, retried
//! at the maximum backoff and logged at error level (dead-letter sinks are a later addition).

use std::sync::Arc;
use std::time::Duration;

use hookbridge_sink_core::SinkHandle;
use rand::Rng;
use tokio::sync::watch;

use super::spool::Spool;

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

/// Runs until `stop` turns true. Returns after finishing (or abandoning) the current attempt.
pub async fn run(
    spool: Arc<Spool>,
    sink: SinkHandle,
    all_sinks: Vec<String>,
    publish_timeout: Duration,
    backoff: Backoff,
    mut stop: watch::Receiver<bool>,
) {
    let name = sink.name().to_owned();
    let mut cursor = match spool.cursor(&name).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(sink = %name, error = %e, "cannot read the spool cursor; forwarder not started");
            return;
        }
    };
    let mut attempt: u32 = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        // Register interest before looking, so an append between the look and the wait is not
        // missed.
        let notified = spool.new_data.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = match spool.next_for(&name, cursor).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "spool read failed");
                if sleep_or_stop(&mut stop, backoff.max).await {
                    return;
                }
                continue;
            }
        };
        let (record, scanned) = match next {
            (Some((seq, record)), _) => (Some((seq, record)), seq),
            (None, scanned) => (None, scanned),
        };
        let Some((seq, record)) = record else {
            if scanned > cursor {
                // Skip records meant for other sinks.
                cursor = scanned;
                let _ = spool.advance(&name, cursor, &all_sinks).await;
                continue;
            }
            tokio::select! {
                () = &mut notified => {}
                _ = stop.changed() => {}
            }
            continue;
        };
        let event = record.event();
        let result = match tokio::time::timeout(publish_timeout, sink.publish(&event)).await {
            Ok(r) => r,
            Err(_) => Err(hookbridge_sink_core::SinkError::timeout(
                "no acknowledgement within the publish deadline",
            )),
        };
        match result {
            Ok(_) => {
                attempt = 0;
                cursor = seq;
                if let Err(e) = spool.advance(&name, seq, &all_sinks).await {
                    tracing::error!(sink = %name, error = %e, "cannot record spool progress");
                }
                tracing::debug!(sink = %name, event_id = %event.id, seq, "spooled event delivered");
            }
            Err(e) => {
                attempt = attempt.saturating_add(1);
                metrics::counter!("hookbridge_retries_total", "sink" => name.clone()).increment(1);
                let delay = if e.is_retryable() {
                    tracing::warn!(sink = %name, event_id = %event.id, seq, attempt, error = %e, "spooled publish failed; retrying");
                    backoff.delay(attempt, e.retry_after())
                } else {
                    tracing::error!(sink = %name, event_id = %event.id, seq, attempt, error = %e,
                        "spooled event rejected permanently; it stays in the spool and blocks this sink");
                    backoff.max
                };
                if sleep_or_stop(&mut stop, delay).await {
                    return;
                }
            }
        }
    }
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
