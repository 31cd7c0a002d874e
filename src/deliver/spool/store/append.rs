//! Appends: room is reserved, then the writer thread commits every append waiting at that
//! moment in one transaction and one fsync (group commit) and answers each with its number.

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use tokio::sync::{mpsc, oneshot};

use super::Recovery;
use crate::deliver::spool::stats::{lock, Counts, Shared};
use crate::deliver::spool::{io, Record, Spool, SpoolError, EVENTS, LOG_TARGET, META, NEXT_SEQ};

/// Room reserved for one append. Dropped before its commit (the request was cancelled, or the
/// commit failed), it gives the room back; [`Reservation::commit`] turns it into usage.
struct Reservation {
    counts: Shared,
    bytes: u64,
    live: bool,
}

impl Reservation {
    fn commit(&mut self, counts: &mut Counts, targets: &[String]) {
        counts.reserved.sub(1, self.bytes);
        counts.committed.add(1, self.bytes);
        // Once per sink, even if a record (written by an older release) names one twice.
        for (i, t) in targets.iter().enumerate() {
            if !targets[..i].contains(t) {
                counts.backlog.entry(t.clone()).or_default().events += 1;
            }
        }
        self.live = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.live {
            lock(&self.counts).reserved.sub(1, self.bytes);
        }
    }
}

/// One append on its way to the writer thread.
pub(in crate::deliver::spool) struct Append {
    bytes: Vec<u8>,
    targets: Vec<String>,
    reservation: Reservation,
    reply: oneshot::Sender<Result<u64, SpoolError>>,
}

impl Spool {
    /// Durably appends a record; returns its sequence number once it is fsynced.
    pub async fn append(&self, record: &Record) -> Result<u64, SpoolError> {
        let bytes = serde_json::to_vec(record).map_err(io)?;
        let reservation = self.reserve(record, bytes.len() as u64)?;
        let (reply, rx) = oneshot::channel();
        let sender = self
            .appends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(sender) = sender else {
            return Err(SpoolError::Io("the spool is closed".into()));
        };
        let append = Append {
            bytes,
            targets: record.targets.clone(),
            reservation,
            reply,
        };
        // Cancelled while waiting for room in the queue: the append (and its reservation) is
        // dropped here. Cancelled after: the writer commits it and does the accounting.
        match sender.send(append).await {
            Ok(()) => rx
                .await
                .unwrap_or_else(|_| Err(SpoolError::Io("the spool writer stopped".into()))),
            Err(_) => Err(SpoolError::Io("the spool writer stopped".into())),
        }
    }

    /// Reserves room for a record of `len` bytes, or says which bound refuses it.
    fn reserve(&self, record: &Record, len: u64) -> Result<Reservation, SpoolError> {
        // Reserve room first so concurrent appends cannot overshoot the bounds.
        let mut c = lock(&self.counts);
        let events = c.committed.events + c.reserved.events;
        let used = c.committed.bytes + c.reserved.bytes;
        if events + 1 > self.limits.max_events {
            return Err(SpoolError::Full(format!("{events} events")));
        }
        // A replay (an operator's re-queue, carrying `hbreplay`) is not held back by the
        // parking it may be emptying.
        if c.parked >= self.limits.max_parked && !record.extensions.contains_key("hbreplay") {
            return Err(SpoolError::Full(format!(
                "{} parked events: replay or discard them (hookbridge replay/discard --parked)",
                c.parked
            )));
        }
        if used + len > self.limits.max_bytes {
            return Err(SpoolError::Full(format!("{used} bytes")));
        }
        c.reserved.add(1, len);
        Ok(Reservation {
            counts: self.counts.clone(),
            bytes: len,
            live: true,
        })
    }
}

/// The writer thread: group commit. Everything queued when a commit starts shares its fsync.
/// (It holds what a recovery touches: the store, counts, numbering and wake-ups.)
pub(super) struct Writer(pub(super) Recovery);

impl Writer {
    pub(super) fn run(self, mut rx: mpsc::Receiver<Append>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            if self.0.store.fault().is_some() {
                self.0.run();
            }
            let result = self.commit(&mut batch);
            self.answer(batch, result);
        }
    }

    /// Writes `batch` in one fsynced transaction; returns the first sequence number it took.
    fn commit(&self, batch: &mut [Append]) -> Result<u64, SpoolError> {
        let w = &self.0;
        w.store.write(|db| {
            let start = w.next_seq.load(Ordering::SeqCst);
            let next = start + batch.len() as u64;
            let txn = db.begin_write().map_err(io)?; // Durability::Immediate: fsync on commit
            {
                let mut table = txn.open_table(EVENTS).map_err(io)?;
                for (i, a) in batch.iter().enumerate() {
                    table.insert(start + i as u64, a.bytes.as_slice()).map_err(io)?;
                }
                let mut meta = txn.open_table(META).map_err(io)?;
                meta.insert(NEXT_SEQ, next).map_err(io)?;
            }
            txn.commit().map_err(io)?;
            w.next_seq.store(next, Ordering::SeqCst);
            let mut counts = lock(&w.counts);
            for a in batch.iter_mut() {
                a.reservation.commit(&mut counts, &a.targets);
            }
            Ok(start)
        })
    }

    /// Answers each append of `batch` with its sequence number, or the error.
    fn answer(&self, batch: Vec<Append>, result: Result<u64, SpoolError>) {
        match result {
            Ok(start) => {
                for (i, a) in batch.into_iter().enumerate() {
                    let _ = a.reply.send(Ok(start + i as u64));
                }
                self.0.new_data.notify_waiters();
            }
            Err(e) => {
                tracing::error!(target: LOG_TARGET, error = %e, "spool write failed");
                // Each append's reservation is given back as it drops.
                for a in batch {
                    let _ = a.reply.send(Err(e.clone()));
                }
            }
        }
    }
}
