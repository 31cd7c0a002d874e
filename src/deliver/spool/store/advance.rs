//! Progress: each sink's cursor, the records it has still to pass, and what happens to a record
//! once every configured sink has passed it (deleted, retained for replay and pruned, or parked
//! for a sink that is no longer configured).

use std::sync::PoisonError;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, Table, WriteTransaction};

use crate::deliver::spool::record::Targets;
use crate::deliver::spool::stats::{lock, Counts, Usage};
use crate::deliver::spool::{
    io, Parked, Record, Retention, Spool, SpoolError, CURSORS, EVENTS, LOG_TARGET, PARKED, RETAINED,
};

impl Spool {
    /// The last sequence `sink` has passed (0 if none).
    pub async fn cursor(&self, sink: &str) -> Result<u64, SpoolError> {
        let sink = sink.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let table = txn.open_table(CURSORS).map_err(io)?;
            Ok(table.get(sink.as_str()).map_err(io)?.map_or(0, |v| v.value()))
        })
        .await
    }

    /// Up to `max` records after `after` that target `sink`, in order, and the last sequence
    /// scanned.
    pub async fn next_batch_for(
        &self,
        sink: &str,
        after: u64,
        max: usize,
    ) -> Result<(Vec<(u64, Record)>, u64), SpoolError> {
        let sink = sink.to_owned();
        self.read(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let table = txn.open_table(EVENTS).map_err(io)?;
            let mut scanned = after;
            let mut out = Vec::new();
            for entry in table.range(after + 1..).map_err(io)?.take(1024) {
                let (k, v) = entry.map_err(io)?;
                let record: Record = serde_json::from_slice(v.value()).map_err(io)?;
                scanned = k.value();
                if record.targets.contains(&sink) {
                    out.push((k.value(), record));
                    if out.len() >= max {
                        break;
                    }
                }
            }
            Ok((out, scanned))
        })
        .await
    }

    /// Records that `sink` has passed `seq` (its records up to there are delivered, dead-lettered
    /// or parked), and deletes (or retains) records every configured sink ([`Spool::set_sinks`])
    /// has passed. A record still pending for a sink no longer configured is parked for it first,
    /// reason `sink_removed`. The backlog is counted from the records the cursor moves over, in
    /// the same transaction, so a cursor update lost to a crash or a reopen never skews it.
    pub async fn advance(&self, sink: &str, seq: u64) -> Result<(), SpoolError> {
        let sink = sink.to_owned();
        let retention = *self.retention.lock().unwrap_or_else(PoisonError::into_inner);
        let sinks = self.sinks.clone();
        let done = self
            .write(move |db, counts| {
                // Read under the write lock: a forwarder of an older configuration whose advance
                // runs late still applies the current list.
                let all = sinks.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let retained_now = lock(counts).retained;
                let done = advance_txn(db, &sink, seq, &all, retention, retained_now)?;
                count(&mut lock(counts), &sink, &done);
                Ok(done)
            })
            .await?;
        for (seq, sink) in &done.orphans {
            tracing::warn!(target: LOG_TARGET, sink = %sink, seq, "spooled event pending for a sink that is no longer configured: parked (reason sink_removed); `hookbridge replay --parked --to SINK` re-sends it");
        }
        if !done.orphans.is_empty() {
            metrics::counter!("hookbridge_dead_letters_total", "sink" => done.orphans[0].1.clone(), "reason" => "sink_removed")
                .increment(done.orphans.len() as u64);
        }
        Ok(())
    }
}

/// What one advance did.
struct Advanced {
    /// Records of this sink the cursor moved over.
    passed: u64,
    freed: Usage,
    retained: Usage,
    /// (sequence, sink) parked because the sink is no longer configured.
    orphans: Vec<(u64, String)>,
}

/// Applies an advance of `sink` to the counts (after its commit).
fn count(counts: &mut Counts, sink: &str, done: &Advanced) {
    if done.passed > 0 {
        counts.passed(sink, done.passed);
    }
    counts.retained = done.retained;
    counts.committed.sub(done.freed.events, done.freed.bytes);
    counts.parked += done.orphans.len() as u64;
    for (_, sink) in &done.orphans {
        counts.passed(sink, 1);
    }
}

/// The transaction of [`Spool::advance`]: moves the cursor, then releases the records every
/// sink in `all` has passed (parking those a removed sink still had to pass, retaining them
/// when `retention` says so).
fn advance_txn(
    db: &Database,
    sink: &str,
    seq: u64,
    all: &[String],
    retention: Retention,
    retained_now: Usage,
) -> Result<Advanced, SpoolError> {
    let mut txn = db.begin_write().map_err(io)?;
    // Durable with the next append's commit; a lagging cursor only means a re-send.
    txn.set_durability(Durability::None).map_err(io)?;
    let mut done = Advanced {
        passed: 0,
        freed: Usage::default(),
        retained: retained_now,
        orphans: Vec::new(),
    };
    {
        let mut cursors = txn.open_table(CURSORS).map_err(io)?;
        done.passed = move_cursor(&txn, &mut cursors, sink, seq)?;
        let min = min_cursor(&cursors, all)?;
        if min > 0 && min != u64::MAX {
            let released = release(&txn, &cursors, min, all, retention, &mut done.freed)?;
            done.orphans = park_orphans(&txn, released.orphaned)?;
            retain(&txn, released.moved, retention, &mut done.retained)?;
        }
    }
    txn.commit().map_err(io)?;
    Ok(done)
}

/// Moves the cursor of `sink` up to `seq` (never back); returns how many of its records it
/// moved over.
fn move_cursor(
    txn: &WriteTransaction,
    cursors: &mut Table<'_, &'static str, u64>,
    sink: &str,
    seq: u64,
) -> Result<u64, SpoolError> {
    let current = cursors.get(sink).map_err(io)?.map_or(0, |v| v.value());
    if seq <= current {
        return Ok(0);
    }
    cursors.insert(sink, seq).map_err(io)?;
    let events = txn.open_table(EVENTS).map_err(io)?;
    let mut passed = 0;
    for entry in events.range(current + 1..=seq).map_err(io)? {
        let (_, v) = entry.map_err(io)?;
        if serde_json::from_slice::<Targets>(v.value()).is_ok_and(|t| t.targets.iter().any(|t| t == sink)) {
            passed += 1;
        }
    }
    Ok(passed)
}

/// The lowest cursor of the sinks in `all` (`u64::MAX` when there are none).
fn min_cursor(cursors: &impl ReadableTable<&'static str, u64>, all: &[String]) -> Result<u64, SpoolError> {
    let mut min = u64::MAX;
    for s in all {
        let c = cursors.get(s.as_str()).map_err(io)?.map_or(0, |v| v.value());
        min = min.min(c);
    }
    Ok(min)
}

/// The records taken out of `events` by [`release`].
struct Released {
    /// (sequence, record) to retain.
    moved: Vec<(u64, Vec<u8>)>,
    /// (sequence, sink no longer configured that had not passed it, record).
    orphaned: Vec<(u64, String, Vec<u8>)>,
}

/// Takes the records up to `min` out of `events`, counting them in `freed`.
fn release(
    txn: &WriteTransaction,
    cursors: &impl ReadableTable<&'static str, u64>,
    min: u64,
    all: &[String],
    retention: Retention,
    freed: &mut Usage,
) -> Result<Released, SpoolError> {
    let mut events = txn.open_table(EVENTS).map_err(io)?;
    let mut out = Released {
        moved: Vec::new(),
        orphaned: Vec::new(),
    };
    for entry in events.extract_from_if(..=min, |_, _| true).map_err(io)? {
        let (k, v) = entry.map_err(io)?;
        let (k, v) = (k.value(), v.value());
        freed.add(1, v.len() as u64);
        let targets = serde_json::from_slice::<Targets>(v).map_or_else(|_| Vec::new(), |t| t.targets);
        for t in targets.into_iter().filter(|t| !all.contains(t)) {
            if cursors.get(t.as_str()).map_err(io)?.map_or(0, |c| c.value()) < k {
                out.orphaned.push((k, t, v.to_vec()));
            }
        }
        if !retention.age.is_zero() {
            out.moved.push((k, v.to_vec()));
        }
    }
    Ok(out)
}

/// Parks each orphaned record for the sink that is gone (reason `sink_removed`); returns the
/// (sequence, sink) of those not parked already.
fn park_orphans(
    txn: &WriteTransaction,
    orphaned: Vec<(u64, String, Vec<u8>)>,
) -> Result<Vec<(u64, String)>, SpoolError> {
    let mut out = Vec::new();
    if orphaned.is_empty() {
        return Ok(out);
    }
    let mut parked = txn.open_table(PARKED).map_err(io)?;
    for (k, t, v) in orphaned {
        let Ok(mut record) = serde_json::from_slice::<Record>(&v) else {
            continue;
        };
        record.targets = vec![t.clone()];
        let letter = Parked {
            reason: "sink_removed".into(),
            attempts: 0,
            error: format!("sink {t:?} is no longer configured"),
            record,
        };
        let bytes = serde_json::to_vec(&letter).map_err(io)?;
        if parked
            .insert((k, t.as_str()), bytes.as_slice())
            .map_err(io)?
            .is_none()
        {
            out.push((k, t));
        }
    }
    Ok(out)
}

/// Moves released records into `retained`, then prunes it; `kept` follows its size.
fn retain(
    txn: &WriteTransaction,
    moved: Vec<(u64, Vec<u8>)>,
    retention: Retention,
    kept: &mut Usage,
) -> Result<(), SpoolError> {
    if moved.is_empty() {
        return Ok(());
    }
    let mut retained = txn.open_table(RETAINED).map_err(io)?;
    for (k, v) in moved {
        kept.add(1, v.len() as u64);
        retained.insert(k, v.as_slice()).map_err(io)?;
    }
    prune_retained(&mut retained, retention, kept)
}

/// Drops retained records older than the retention age, then the oldest past its size.
fn prune_retained(
    table: &mut Table<'_, u64, &'static [u8]>,
    retention: Retention,
    kept: &mut Usage,
) -> Result<(), SpoolError> {
    // A retention too long to subtract from now (`retain = "100000y"`) keeps everything.
    let cutoff = time::Duration::try_from(retention.age)
        .ok()
        .and_then(|age| time::OffsetDateTime::now_utc().checked_sub(age));
    loop {
        let Some((k, len, old)) = table.first().map_err(io)?.map(|(k, v)| {
            let received = serde_json::from_slice::<Record>(v.value())
                .ok()
                .and_then(|r| r.received());
            (
                k.value(),
                v.value().len() as u64,
                received.is_none_or(|r| cutoff.is_some_and(|c| r < c)),
            )
        }) else {
            return Ok(());
        };
        if !old && kept.bytes <= retention.max_bytes {
            return Ok(());
        }
        table.remove(k).map_err(io)?;
        kept.sub(1, len);
    }
}
