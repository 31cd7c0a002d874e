//! `replay`: re-queue retained, partly delivered or parked events; `discard`: delete parked
//! ones. The selection ([`ReplayFilter`]), its check against the configuration
//! ([`check_filter`]) and the answer's shape ([`replay_answer`], [`discard_answer`]) are the
//! same whether the admin API or the command line on a stopped server runs them.

mod filter;

use redb::{ReadTransaction, ReadableDatabase, ReadableTable};
use serde_json::json;

use super::store::parked_entries;
use super::{io, Record, Replayed, Spool, SpoolError, CURSORS, EVENTS, RETAINED};
use filter::Matcher;
pub use filter::{check_filter, ReplayFilter};

/// Most replayed events listed one by one in an answer (all are counted).
const LISTED: usize = 1000;

/// (seq, record with the sinks to replay to, the sink it was parked for)
type Found = Vec<(u64, Record, Option<String>)>;

impl Spool {
    /// Re-publishes what `filter` selects by appending it again (the forwarders deliver it like
    /// any new event); a dry run only lists it. Delivered events come from the retained records
    /// and from records some sinks have already passed; `filter.parked` takes the parked dead
    /// letters instead (removed once re-queued).
    pub async fn replay(&self, filter: &ReplayFilter) -> Result<Vec<Replayed>, SpoolError> {
        // The filter runs inside the scan, so only the selected records are held in memory, not
        // every record the spool retains (up to `retain_max_bytes`).
        let matcher = Matcher::new(filter)?;
        let parked = filter.parked;
        let found = self
            .read(move |db| {
                let txn = db.begin_read().map_err(io)?;
                if parked {
                    return scan_parked(&txn, |r, sink| matcher.to_replay(r, Some(sink)));
                }
                let mut out = scan_retained(&txn, |r| matcher.to_replay(r, None))?;
                out.extend(scan_passed(&txn, |r| matcher.to_replay(r, None))?);
                Ok(out)
            })
            .await?;
        self.requeue(found, filter.dry_run).await
    }

    /// Appends each record found again, marked as a replayed copy, and takes the parked ones
    /// out of the parking; a dry run only lists them.
    async fn requeue(&self, found: Found, dry_run: bool) -> Result<Vec<Replayed>, SpoolError> {
        let mut selected = Vec::new();
        let replayed_at = serde_json::Value::String(crate::normalize::now_rfc3339());
        for (seq, mut record, parked_sink) in found {
            let mut item = Replayed::of(seq, &record);
            if !dry_run {
                // Consumers can tell a replayed copy by its `hbreplay` extension (replay time).
                record.extensions.insert("hbreplay".into(), replayed_at.clone());
                item.requeued_as = Some(self.append(&record).await?);
                if let Some(sink) = parked_sink {
                    self.unpark(seq, &sink).await?;
                }
            }
            selected.push(item);
        }
        Ok(selected)
    }

    /// Deletes the parked dead letters `filter` selects (its time window, source, type and
    /// sink); a dry run only lists them. The only way out of the parking besides a replay.
    pub async fn discard(&self, filter: &ReplayFilter) -> Result<Vec<Replayed>, SpoolError> {
        if !filter.dry_run && !filter.all && !filter.selects_something() {
            return Err(SpoolError::Io(
                "say which parked events to discard (a time window, source, type or sink), or all".into(),
            ));
        }
        let matcher = Matcher::new(filter)?;
        let found = self
            .read(move |db| {
                scan_parked(&db.begin_read().map_err(io)?, |r, sink| {
                    matcher.to_discard(r, sink)
                })
            })
            .await?;
        let mut out = Vec::with_capacity(found.len());
        for (seq, record, sink) in found {
            if !filter.dry_run {
                if let Some(sink) = &sink {
                    self.unpark(seq, sink).await?;
                }
            }
            out.push(Replayed::of(seq, &record));
        }
        if !filter.dry_run && !out.is_empty() {
            tracing::warn!(count = out.len(), "parked events discarded by the operator");
        }
        Ok(out)
    }
}

/// The retained records (delivered to every sink) `select` keeps.
fn scan_retained(
    txn: &ReadTransaction,
    select: impl Fn(Record) -> Option<Record>,
) -> Result<Found, SpoolError> {
    let mut out = Vec::new();
    let retained = txn.open_table(RETAINED).map_err(io)?;
    for entry in retained.iter().map_err(io)? {
        let (k, v) = entry.map_err(io)?;
        if let Some(record) = serde_json::from_slice::<Record>(v.value()).ok().and_then(&select) {
            out.push((k.value(), record, None));
        }
    }
    Ok(out)
}

/// The records still pending for some sinks, targeted at the sinks that have passed them, that
/// `select` keeps.
fn scan_passed(
    txn: &ReadTransaction,
    select: impl Fn(Record) -> Option<Record>,
) -> Result<Found, SpoolError> {
    let mut out = Vec::new();
    let cursors = txn.open_table(CURSORS).map_err(io)?;
    let events = txn.open_table(EVENTS).map_err(io)?;
    for entry in events.iter().map_err(io)? {
        let (k, v) = entry.map_err(io)?;
        let Ok(mut record) = serde_json::from_slice::<Record>(v.value()) else {
            continue;
        };
        let mut passed = Vec::new();
        for t in &record.targets {
            if cursors
                .get(t.as_str())
                .map_err(io)?
                .is_some_and(|c| c.value() >= k.value())
            {
                passed.push(t.clone());
            }
        }
        record.targets = passed;
        if let Some(record) = select(record) {
            out.push((k.value(), record, None));
        }
    }
    Ok(out)
}

/// The parked dead letters `select` keeps (given the record, targeted at the sink it was
/// parked for, and that sink's name), oldest first.
fn scan_parked(
    txn: &ReadTransaction,
    select: impl Fn(Record, &str) -> Option<Record>,
) -> Result<Found, SpoolError> {
    let mut out = Vec::new();
    for (seq, sink, p) in parked_entries(txn)? {
        let mut record = p.record;
        record.targets = vec![sink.clone()];
        if let Some(record) = select(record, &sink) {
            out.push((seq, record, Some(sink)));
        }
    }
    Ok(out)
}

/// The answer to a replay, from the admin endpoint or the CLI on the spool: counts and the first
/// [`LISTED`] events.
pub fn replay_answer(items: &[Replayed], dry_run: bool) -> serde_json::Value {
    answer(items, dry_run, "replayed")
}

/// The answer to a discard: counts and the first [`LISTED`] events.
pub fn discard_answer(items: &[Replayed], dry_run: bool) -> serde_json::Value {
    answer(items, dry_run, "discarded")
}

/// Counts (`done`: how many were acted on) and the first [`LISTED`] events.
fn answer(items: &[Replayed], dry_run: bool, done: &str) -> serde_json::Value {
    json!({
        "matched": items.len(),
        done: if dry_run { 0 } else { items.len() },
        "dry_run": dry_run,
        "events": items.iter().take(LISTED).collect::<Vec<_>>(),
        "truncated": items.len() > LISTED,
    })
}
