//! `replay`: re-queue retained, partly delivered or parked events.

use redb::{ReadableDatabase, ReadableTable};

use super::{
    io, Parked, Record, ReplayFilter, Replayed, Spool, SpoolError, CURSORS, EVENTS, PARKED, RETAINED,
};

impl Spool {
    /// Re-publishes what `filter` selects by appending it again (the forwarders deliver it like
    /// any new event); a dry run only lists it. Delivered events come from the retained records
    /// and from records some sinks have already passed; `filter.parked` takes the parked dead
    /// letters instead (removed once re-queued).
    pub async fn replay(&self, filter: &ReplayFilter) -> Result<Vec<Replayed>, SpoolError> {
        let pattern = match &filter.ty {
            Some(p) => Some(crate::route::Pattern::compile(p).map_err(SpoolError::Io)?),
            None => None,
        };
        // The filter runs inside the scan, so only the selected records are held in memory, not
        // every record the spool retains (up to `retain_max_bytes`).
        let f = filter.clone();
        let select = move |mut record: Record, parked_sink: Option<&str>| -> Option<Record> {
            // Copies made by an earlier replay are not selected again (their originals are).
            let copy = record.extensions.contains_key("hbreplay");
            let keep = selects(&f, pattern.as_ref(), &record) && !(copy && parked_sink.is_none());
            if !keep {
                return None;
            }
            if let Some(sink) = &f.sink {
                record.targets.retain(|t| t == sink);
            }
            if record.targets.is_empty() {
                return None;
            }
            if let Some(to) = &f.to {
                record.targets = vec![to.clone()];
            }
            Some(record)
        };
        let parked = filter.parked;
        // (seq, record with the sinks to replay to, parked key)
        let found: Vec<(u64, Record, Option<String>)> = self
            .read(move |db| {
                let txn = db.begin_read().map_err(io)?;
                if parked {
                    return scan_parked(&txn, |r, sink| select(r, Some(sink)));
                }
                let mut out = Vec::new();
                let retained = txn.open_table(RETAINED).map_err(io)?;
                for entry in retained.iter().map_err(io)? {
                    let (k, v) = entry.map_err(io)?;
                    if let Some(record) = serde_json::from_slice::<Record>(v.value())
                        .ok()
                        .and_then(|r| select(r, None))
                    {
                        out.push((k.value(), record, None));
                    }
                }
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
                    if let Some(record) = select(record, None) {
                        out.push((k.value(), record, None));
                    }
                }
                Ok(out)
            })
            .await?;
        let mut selected = Vec::new();
        let replayed_at = serde_json::Value::String(crate::normalize::now_rfc3339());
        for (seq, mut record, parked_sink) in found {
            let mut item = Replayed::of(seq, &record);
            if !filter.dry_run {
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
        let pattern = match &filter.ty {
            Some(p) => Some(crate::route::Pattern::compile(p).map_err(SpoolError::Io)?),
            None => None,
        };
        let f = filter.clone();
        let select = move |record: Record, sink: &str| -> Option<Record> {
            let keep = selects(&f, pattern.as_ref(), &record) && f.sink.as_deref().is_none_or(|s| s == sink);
            keep.then_some(record)
        };
        let found = self
            .read(move |db| scan_parked(&db.begin_read().map_err(io)?, select))
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

/// Whether `record` is in the filter's time window, source and type.
fn selects(f: &ReplayFilter, pattern: Option<&crate::route::Pattern>, record: &Record) -> bool {
    let received = record.received();
    f.since.is_none_or(|s| received.is_some_and(|r| r >= s))
        && f.until.is_none_or(|u| received.is_some_and(|r| r < u))
        && f.source
            .as_deref()
            .is_none_or(|s| record.source_name() == Some(s))
        && pattern.is_none_or(|p| p.matches(&record.ty))
}

/// The parked dead letters `select` keeps (given the record, targeted at the sink it was
/// parked for, and that sink's name), oldest first.
fn scan_parked(
    txn: &redb::ReadTransaction,
    select: impl Fn(Record, &str) -> Option<Record>,
) -> Result<Vec<(u64, Record, Option<String>)>, SpoolError> {
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

/// Every parked dead letter: (sequence, sink, what was parked), oldest first.
pub(super) fn parked_entries(txn: &redb::ReadTransaction) -> Result<Vec<(u64, String, Parked)>, SpoolError> {
    let table = txn.open_table(PARKED).map_err(io)?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(io)? {
        let (k, v) = entry.map_err(io)?;
        let (seq, sink) = k.value();
        if let Ok(p) = serde_json::from_slice::<Parked>(v.value()) {
            out.push((seq, sink.to_owned(), p));
        }
    }
    Ok(out)
}
