//! The spool's counts: usage (events and bytes pending, reserved, retained), parked dead
//! letters and each sink's backlog, kept in memory and changed only when the change commits;
//! the count of the tables (at open, after a reopen) and the audit that compares the two.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::{ReadableDatabase, ReadableTable};
use serde::Serialize;

use super::record::Targets;
use super::{io, Record, Spool, SpoolError, CURSORS, EVENTS, META, NEXT_SEQ, PARKED, RETAINED};

/// One sink's backlog and its forwarder's health.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Backlog {
    /// Records still to deliver to it.
    pub events: u64,
    /// Age in seconds of the record it is working on, if any.
    pub oldest_age_seconds: Option<f64>,
    /// Publishes to it that panicked (caught; the record is retried, then parked `crashed`).
    pub crashes: u64,
    /// Times its forwarder task ended by a panic and was restarted.
    pub restarts: u64,
    #[serde(skip)]
    head_received: Option<time::OffsetDateTime>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Usage {
    pub(super) events: u64,
    pub(super) bytes: u64,
}

impl Usage {
    pub(super) fn add(&mut self, events: u64, bytes: u64) {
        self.events += events;
        self.bytes += bytes;
    }

    pub(super) fn sub(&mut self, events: u64, bytes: u64) {
        self.events = self.events.saturating_sub(events);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// Counts kept in memory, changed only when the change commits.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Records in `events`.
    pub(super) committed: Usage,
    /// Appends on their way to the writer or in its current batch.
    pub(super) reserved: Usage,
    pub(super) retained: Usage,
    pub(super) parked: u64,
    pub(super) backlog: BTreeMap<String, Backlog>,
}

impl Counts {
    /// Replaces the table-derived counts (reservations and forwarder notes are kept).
    pub(super) fn apply(&mut self, loaded: Loaded) {
        self.committed = loaded.committed;
        self.retained = loaded.retained;
        self.parked = loaded.parked;
        for b in self.backlog.values_mut() {
            b.events = 0;
        }
        for (sink, n) in loaded.backlog {
            self.backlog.entry(sink).or_default().events = n;
        }
    }

    /// Takes `n` records off the backlog of `sink`.
    pub(super) fn passed(&mut self, sink: &str, n: u64) {
        let b = self.backlog.entry(sink.to_owned()).or_default();
        b.events = b.events.saturating_sub(n);
    }
}

pub(super) type Shared = Arc<Mutex<Counts>>;

pub(super) fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the tables hold, counted at open and after a reopen.
pub(super) struct Loaded {
    pub(super) committed: Usage,
    pub(super) retained: Usage,
    pub(super) parked: u64,
    pub(super) backlog: BTreeMap<String, u64>,
    pub(super) next_seq: u64,
}
/// Counts the tables (of a read or a write transaction).
pub(super) fn load(
    cursors: &impl ReadableTable<&'static str, u64>,
    meta: &impl ReadableTable<&'static str, u64>,
    events: &impl ReadableTable<u64, &'static [u8]>,
    retained: &impl ReadableTable<u64, &'static [u8]>,
    parked: &impl ReadableTable<(u64, &'static str), &'static [u8]>,
    at_least: u64,
) -> Result<Loaded, SpoolError> {
    let mut out = Loaded {
        committed: Usage::default(),
        retained: Usage::default(),
        parked: 0,
        backlog: BTreeMap::new(),
        next_seq: at_least.max(1),
    };
    let mut positions = BTreeMap::new();
    for entry in cursors.iter().map_err(io)? {
        let (k, v) = entry.map_err(io)?;
        positions.insert(k.value().to_owned(), v.value());
        out.next_seq = out.next_seq.max(v.value() + 1);
    }
    if let Some(v) = meta.get(NEXT_SEQ).map_err(io)? {
        out.next_seq = out.next_seq.max(v.value());
    }
    for entry in events.iter().map_err(io)? {
        let (k, v) = entry.map_err(io)?;
        let seq = k.value();
        out.committed.add(1, v.value().len() as u64);
        out.next_seq = out.next_seq.max(seq + 1);
        if let Ok(mut t) = serde_json::from_slice::<Targets>(v.value()) {
            t.targets.sort();
            t.targets.dedup();
            for t in t.targets {
                if positions.get(&t).copied().unwrap_or(0) < seq {
                    *out.backlog.entry(t).or_default() += 1;
                }
            }
        }
    }
    for entry in retained.iter().map_err(io)? {
        let (k, v) = entry.map_err(io)?;
        out.retained.add(1, v.value().len() as u64);
        out.next_seq = out.next_seq.max(k.value() + 1);
    }
    for entry in parked.iter().map_err(io)? {
        let (k, _) = entry.map_err(io)?;
        out.parked += 1;
        out.next_seq = out.next_seq.max(k.value().0 + 1);
    }
    Ok(out)
}
/// The counts as the tables have them and as the spool tracks them (for tests and audits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// (events, bytes) pending in the `events` table.
    pub events: (u64, u64),
    /// (events, bytes) retained.
    pub retained: (u64, u64),
    /// Parked dead letters.
    pub parked: u64,
    /// Records still to deliver, per sink.
    pub backlog: BTreeMap<String, u64>,
}

impl Spool {
    /// Retained (events, bytes).
    pub fn retained(&self) -> (u64, u64) {
        let u = lock(&self.counts).retained;
        (u.events, u.bytes)
    }

    /// Dead letters parked in the spool.
    pub fn parked(&self) -> u64 {
        lock(&self.counts).parked
    }

    /// Each sink's backlog (records still to deliver, age of the one in progress).
    pub fn backlog(&self) -> BTreeMap<String, Backlog> {
        let now = time::OffsetDateTime::now_utc();
        let mut map = lock(&self.counts).backlog.clone();
        for b in map.values_mut() {
            b.oldest_age_seconds = b
                .head_received
                .filter(|_| b.events > 0)
                .map(|at| (now - at).as_seconds_f64().max(0.0));
        }
        map
    }

    /// The forwarder of `sink` is working on a record received at `received` (`None`: idle).
    pub fn set_head(&self, sink: &str, received: Option<time::OffsetDateTime>) {
        self.note(sink, |b| b.head_received = received);
    }

    /// A publish to `sink` panicked.
    pub fn note_crash(&self, sink: &str) {
        self.note(sink, |b| b.crashes += 1);
    }

    /// The forwarder of `sink` ended by a panic and is being restarted.
    pub fn note_restart(&self, sink: &str) {
        self.note(sink, |b| b.restarts += 1);
    }

    /// Changes the backlog entry of `sink` (created if missing).
    fn note(&self, sink: &str, change: impl FnOnce(&mut Backlog)) {
        change(lock(&self.counts).backlog.entry(sink.to_owned()).or_default());
    }

    /// Current (events, bytes): committed records still to deliver, plus appends in progress.
    pub fn depth(&self) -> (u64, u64) {
        let c = lock(&self.counts);
        (
            c.committed.events + c.reserved.events,
            c.committed.bytes + c.reserved.bytes,
        )
    }

    /// How long the oldest held record has waited (from its `hbreceived`), if any.
    pub fn oldest_age(&self) -> Option<std::time::Duration> {
        let record: Record = self
            .store
            .with(|db| {
                let txn = db.begin_read().map_err(io)?;
                let table = txn.open_table(EVENTS).map_err(io)?;
                let first = table.first().map_err(io)?;
                Ok(first.and_then(|(_, v)| serde_json::from_slice(v.value()).ok()))
            })
            .ok()??;
        let age = time::OffsetDateTime::now_utc() - record.received()?;
        std::time::Duration::try_from(age).ok()
    }

    /// Whether an append would be refused now (full, or the store cannot be written).
    pub fn is_full(&self) -> bool {
        let (events, bytes) = self.depth();
        events >= self.limits.max_events
            || bytes >= self.limits.max_bytes
            || self.parked() >= self.limits.max_parked
    }

    /// Recounts the tables and returns them beside the tracked counts: equal unless a count
    /// drifted. Blocking; for tests and audits.
    pub fn audit(&self) -> Result<(Audit, Audit), SpoolError> {
        self.store.paused(|db| {
            let txn = db.begin_read().map_err(io)?;
            let loaded = load(
                &txn.open_table(CURSORS).map_err(io)?,
                &txn.open_table(META).map_err(io)?,
                &txn.open_table(EVENTS).map_err(io)?,
                &txn.open_table(RETAINED).map_err(io)?,
                &txn.open_table(PARKED).map_err(io)?,
                1,
            )?;
            let counted = Audit {
                events: (loaded.committed.events, loaded.committed.bytes),
                retained: (loaded.retained.events, loaded.retained.bytes),
                parked: loaded.parked,
                backlog: loaded.backlog,
            };
            Ok((counted, self.tracked()))
        })
    }

    /// The counts as tracked, in the shape of an [`Audit`].
    fn tracked(&self) -> Audit {
        let c = lock(&self.counts);
        Audit {
            events: (c.committed.events, c.committed.bytes),
            retained: (c.retained.events, c.retained.bytes),
            parked: c.parked,
            backlog: c
                .backlog
                .iter()
                .filter(|(_, b)| b.events > 0)
                .map(|(k, b)| (k.clone(), b.events))
                .collect(),
        }
    }
}
