//! The spool: a durable local queue of events (delivery mode `spool`), on redb.
//!
//! Why redb: a well-kept, pure-Rust embedded store with ACID transactions whose `Immediate`
//! commits are fsynced before they return — exactly "safe before the 202" — and a file lock that
//! keeps a second process off the same spool. It needs no compaction thread and no C library.
//!
//! - **Appends** go through one writer thread that gathers every append waiting at that moment
//!   into one transaction and one fsync (group commit), then answers each caller with its
//!   sequence number. Room is reserved before an append is queued and turned into usage when it
//!   commits; an append dropped before it reached the writer (a cancelled request) gives its
//!   reservation back, one that reached it is committed. No cancellation can skew the counts.
//! - **Numbering** is monotone for the life of the file: every append commit stores the next
//!   sequence number (the `meta` table), and opening takes the largest of it, every key and every
//!   cursor, so a drained spool never numbers new events below a sink's cursor.
//! - **Progress** is one cursor per sink (last sequence it has passed). Cursor updates are
//!   committed without their own fsync; they become durable with the next append's commit. After
//!   a crash a cursor may lag, so a sink may see an event again — never miss one
//!   (at-least-once).
//! - **Removed sinks**: a record is deleted once every configured sink has passed it; a record
//!   still pending for a sink that is no longer configured is parked first (reason
//!   `sink_removed`, with a warning), never deleted unannounced.
//! - **Retention**: records every sink has passed move to the `retained` table, kept for
//!   `hookbridge replay` by age and size (`spool.retain`, `spool.retain_max_bytes`), oldest
//!   dropped first; with `retain = "0s"` they are deleted.
//! - **Parked**: dead letters with nowhere to go (no dead-letter sink, or it refused them) are
//!   kept per `(sequence, sink)` with the reason, until replayed with `--parked`.
//! - **Bounds**: `max_events` and `max_bytes` (of records still to deliver); past either, appends
//!   are refused (503). `max_parked` parked dead letters: at it, appends are refused too until
//!   an operator replays or discards some (records already spooled are still parked, so the
//!   parking holds at most `max_parked + max_events`). Retained records are bounded by
//!   `retain` and `retain_max_bytes`.
//! - **I/O errors** (a full disk): redb refuses every write after one until the database is
//!   reopened. A failed write marks the spool faulty (`/readyz` says why, appends answer 503
//!   `spool_unavailable`); the next append, or readiness check, reopens the file, reloads the
//!   counts from the tables and probes with a small fsynced write before accepting again.
//!
//! The spool belongs to one process: redb locks the file. Tools that read it go through the
//! running server, or run while it is stopped.

mod record;
mod replay;
mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, Notify};

use record::Targets;
pub use record::{Parked, Record, ReplayFilter, Replayed};
use store::Store;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
/// Delivered records kept for replay (same encoding as `events`).
const RETAINED: TableDefinition<u64, &[u8]> = TableDefinition::new("retained");
/// (sequence, sink) → [`Parked`] JSON.
const PARKED: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("parked");
/// `next_seq` → the sequence number the next append gets (a durable high-water mark).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";

/// Why an append failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// `max_events` or `max_bytes` reached.
    #[error("the spool is full ({0})")]
    Full(String),
    /// The store could not be written.
    #[error("the spool cannot be written: {0}")]
    Io(String),
}

/// Spool limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most events held.
    pub max_events: u64,
    /// Most parked dead letters: at the bound, new events are refused (503) until an operator
    /// replays or discards some; events already spooled are still parked (never dropped).
    pub max_parked: u64,
    /// Most record bytes held.
    pub max_bytes: u64,
}

/// Retention of delivered records.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention {
    /// How long (zero: not kept).
    pub age: std::time::Duration,
    /// Most bytes kept.
    pub max_bytes: u64,
}

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
struct Usage {
    events: u64,
    bytes: u64,
}

impl Usage {
    fn add(&mut self, events: u64, bytes: u64) {
        self.events += events;
        self.bytes += bytes;
    }

    fn sub(&mut self, events: u64, bytes: u64) {
        self.events = self.events.saturating_sub(events);
        self.bytes = self.bytes.saturating_sub(bytes);
    }
}

/// Counts kept in memory, changed only when the change commits.
#[derive(Debug, Default)]
struct Counts {
    /// Records in `events`.
    committed: Usage,
    /// Appends on their way to the writer or in its current batch.
    reserved: Usage,
    retained: Usage,
    parked: u64,
    backlog: BTreeMap<String, Backlog>,
}

type Shared = Arc<Mutex<Counts>>;

fn lock(counts: &Mutex<Counts>) -> MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

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

struct Append {
    bytes: Vec<u8>,
    targets: Vec<String>,
    reservation: Reservation,
    reply: oneshot::Sender<Result<u64, SpoolError>>,
}

/// A durable spool.
pub struct Spool {
    store: Arc<Store>,
    limits: Limits,
    counts: Shared,
    next_seq: Arc<AtomicU64>,
    appends: Mutex<Option<mpsc::Sender<Append>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Woken on every commit of new records.
    pub new_data: Arc<Notify>,
    retention: Mutex<Retention>,
    /// The sinks configured now.
    sinks: Arc<Mutex<Vec<String>>>,
    /// Bumped by every successful reopen: cursor updates committed without fsync before it may
    /// be gone, so forwarders store their cursors again ([`Spool::reopens`]).
    reopens: Arc<AtomicU64>,
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Close the queue, then wait for the writer so the file lock is released on return.
        self.appends.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = w.join();
        }
    }
}

fn io<E: std::fmt::Display>(e: E) -> SpoolError {
    SpoolError::Io(e.to_string())
}

/// What the tables hold, counted at open and after a reopen.
struct Loaded {
    committed: Usage,
    retained: Usage,
    parked: u64,
    backlog: BTreeMap<String, u64>,
    next_seq: u64,
}

/// Creates the tables if missing, counts them and stores the high-water mark, in one fsynced
/// transaction: the first write after an open, and the probe that proves the file can be
/// written again after an I/O error.
fn prepare(db: &Database, at_least: u64) -> Result<Loaded, SpoolError> {
    let txn = db.begin_write().map_err(io)?; // Durability::Immediate: fsynced
    let loaded = {
        let mut meta = txn.open_table(META).map_err(io)?;
        let loaded = load(
            &txn.open_table(CURSORS).map_err(io)?,
            &meta,
            &txn.open_table(EVENTS).map_err(io)?,
            &txn.open_table(RETAINED).map_err(io)?,
            &txn.open_table(PARKED).map_err(io)?,
            at_least,
        )?;
        meta.insert(NEXT_SEQ, loaded.next_seq).map_err(io)?;
        loaded
    };
    txn.commit().map_err(io)?;
    Ok(loaded)
}

/// Counts the tables (of a read or a write transaction).
fn load(
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
    /// Opens (or creates) the spool in `dir` and starts its writer thread.
    pub fn open(dir: &Path, limits: Limits) -> Result<Arc<Spool>, SpoolError> {
        hookbridge_sink_core::private::create_dir(dir)
            .map_err(|e| SpoolError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let store = Arc::new(Store::open(dir.join("spool.redb"))?);
        let loaded = store.with(|db| prepare(db, 1))?;
        let counts: Shared = Arc::default();
        let next_seq = Arc::new(AtomicU64::new(loaded.next_seq));
        apply(&mut lock(&counts), loaded);
        let (tx, rx) = mpsc::channel::<Append>(4096);
        let new_data = Arc::new(Notify::new());
        let reopens = Arc::new(AtomicU64::new(0));
        let writer = Writer(Recovery {
            store: store.clone(),
            counts: counts.clone(),
            next_seq: next_seq.clone(),
            new_data: new_data.clone(),
            reopens: reopens.clone(),
        });
        let handle = std::thread::Builder::new()
            .name("hookbridge-spool".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(Arc::new(Spool {
            store,
            limits,
            counts,
            next_seq,
            appends: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            new_data,
            retention: Mutex::new(Retention::default()),
            sinks: Arc::default(),
            reopens,
        }))
    }

    /// Keeps delivered records for replay (default: not kept).
    pub fn set_retention(&self, retention: Retention) {
        *self.retention.lock().unwrap_or_else(PoisonError::into_inner) = retention;
    }

    /// Retained (events, bytes).
    pub fn retained(&self) -> (u64, u64) {
        let u = lock(&self.counts).retained;
        (u.events, u.bytes)
    }

    /// Dead letters parked in the spool.
    pub fn parked(&self) -> u64 {
        lock(&self.counts).parked
    }

    /// Why the spool cannot be written now (`None`: it can).
    pub fn fault(&self) -> Option<String> {
        self.store.fault()
    }

    /// Reopens the spool if a write failed (at most every [`store::RETRY_EVERY`]); returns the
    /// fault that remains. `/readyz` calls it, so a spool recovers with no traffic too.
    pub async fn recover_if_faulty(&self) -> Option<String> {
        self.store.fault()?;
        let r = self.recovery();
        let _ = tokio::task::spawn_blocking(move || r.run()).await;
        self.store.fault()
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
        lock(&self.counts)
            .backlog
            .entry(sink.to_owned())
            .or_default()
            .head_received = received;
    }

    /// A publish to `sink` panicked.
    pub fn note_crash(&self, sink: &str) {
        lock(&self.counts)
            .backlog
            .entry(sink.to_owned())
            .or_default()
            .crashes += 1;
    }

    /// The forwarder of `sink` ended by a panic and is being restarted.
    pub fn note_restart(&self, sink: &str) {
        lock(&self.counts)
            .backlog
            .entry(sink.to_owned())
            .or_default()
            .restarts += 1;
    }

    /// Runs `f` (a write transaction, then the count updates it makes) on the blocking pool with
    /// the counts; a failure marks the store faulty.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database, &Mutex<Counts>) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let store = self.store.clone();
        let counts = self.counts.clone();
        let recovery = self.recovery();
        blocking(move || {
            if store.fault().is_some() {
                recovery.run();
            }
            let result = store.write(|db| f(db, &counts));
            if result.is_err() {
                // A forwarder's failed write starts the recovery too (throttled), so progress is
                // saved again once space returns even with no new events arriving.
                recovery.run();
            }
            result
        })
        .await
    }

    /// Runs `f` with the database on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let store = self.store.clone();
        blocking(move || store.with(f)).await
    }

    /// Keeps a dead letter of `sink` in the spool.
    pub async fn park(&self, seq: u64, sink: &str, parked: &Parked) -> Result<(), SpoolError> {
        let sink = sink.to_owned();
        let bytes = serde_json::to_vec(parked).map_err(io)?;
        self.write(move |db, counts| {
            let txn = db.begin_write().map_err(io)?; // fsynced: a dead letter is never lost
            let added = {
                let mut table = txn.open_table(PARKED).map_err(io)?;
                let old = table.insert((seq, sink.as_str()), bytes.as_slice()).map_err(io)?;
                old.is_none()
            };
            txn.commit().map_err(io)?;
            if added {
                lock(counts).parked += 1;
            }
            Ok(())
        })
        .await
    }

    /// The parked dead letters, oldest first.
    pub async fn list_parked(&self) -> Result<Vec<(u64, String, Parked)>, SpoolError> {
        self.read(|db| replay::parked_entries(&db.begin_read().map_err(io)?))
            .await
    }

    async fn unpark(&self, seq: u64, sink: &str) -> Result<(), SpoolError> {
        let sink = sink.to_owned();
        self.write(move |db, counts| {
            let txn = db.begin_write().map_err(io)?;
            let removed = {
                let mut table = txn.open_table(PARKED).map_err(io)?;
                let removed = table.remove((seq, sink.as_str())).map_err(io)?.is_some();
                removed
            };
            txn.commit().map_err(io)?;
            if removed {
                let mut counts = lock(counts);
                counts.parked = counts.parked.saturating_sub(1);
            }
            Ok(())
        })
        .await
    }

    /// Where the spool file is.
    pub fn path(&self) -> &Path {
        self.store.path()
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

    /// Durably appends a record; returns its sequence number once it is fsynced.
    pub async fn append(&self, record: &Record) -> Result<u64, SpoolError> {
        let bytes = serde_json::to_vec(record).map_err(io)?;
        let len = bytes.len() as u64;
        let reservation = {
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
            Reservation {
                counts: self.counts.clone(),
                bytes: len,
                live: true,
            }
        };
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

    /// The sinks configured now: records all of them have passed are deleted (or retained), and
    /// records still pending for a sink not among them are parked (`sink_removed`). Set before
    /// the forwarders start; until it is, nothing is deleted.
    pub fn set_sinks(&self, sinks: Vec<String>) {
        *self.sinks.lock().unwrap_or_else(PoisonError::into_inner) = sinks;
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
                let mut counts = lock(counts);
                if done.passed > 0 {
                    let b = counts.backlog.entry(sink.clone()).or_default();
                    b.events = b.events.saturating_sub(done.passed);
                }
                counts.retained = done.retained;
                counts.committed.sub(done.freed.events, done.freed.bytes);
                counts.parked += done.orphans.len() as u64;
                for (_, sink) in &done.orphans {
                    let b = counts.backlog.entry(sink.clone()).or_default();
                    b.events = b.events.saturating_sub(1);
                }
                Ok(done)
            })
            .await?;
        for (seq, sink) in &done.orphans {
            tracing::warn!(sink = %sink, seq, "spooled event pending for a sink that is no longer configured: parked (reason sink_removed); `hookbridge replay --parked --to SINK` re-sends it");
        }
        if !done.orphans.is_empty() {
            metrics::counter!("hookbridge_dead_letters_total", "sink" => done.orphans[0].1.clone(), "reason" => "sink_removed")
                .increment(done.orphans.len() as u64);
        }
        Ok(())
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
            let c = lock(&self.counts);
            let tracked = Audit {
                events: (c.committed.events, c.committed.bytes),
                retained: (c.retained.events, c.retained.bytes),
                parked: c.parked,
                backlog: c
                    .backlog
                    .iter()
                    .filter(|(_, b)| b.events > 0)
                    .map(|(k, b)| (k.clone(), b.events))
                    .collect(),
            };
            Ok((counted, tracked))
        })
    }

    /// How many times the file was reopened after an I/O error. A forwarder that sees it change
    /// stores its cursor again: a reopen drops cursor updates that were not yet fsynced.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::SeqCst)
    }

    fn recovery(&self) -> Recovery {
        Recovery {
            store: self.store.clone(),
            next_seq: self.next_seq.clone(),
            counts: self.counts.clone(),
            reopens: self.reopens.clone(),
            new_data: self.new_data.clone(),
        }
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }
}

/// Replaces the table-derived counts (reservations and forwarder notes are kept).
fn apply(counts: &mut Counts, loaded: Loaded) {
    counts.committed = loaded.committed;
    counts.retained = loaded.retained;
    counts.parked = loaded.parked;
    for b in counts.backlog.values_mut() {
        b.events = 0;
    }
    for (sink, n) in loaded.backlog {
        counts.backlog.entry(sink).or_default().events = n;
    }
}

struct Advanced {
    /// Records of this sink the cursor moved over.
    passed: u64,
    freed: Usage,
    retained: Usage,
    /// (sequence, sink) parked because the sink is no longer configured.
    orphans: Vec<(u64, String)>,
}

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
        let current = cursors.get(sink).map_err(io)?.map_or(0, |v| v.value());
        if seq > current {
            cursors.insert(sink, seq).map_err(io)?;
            let events = txn.open_table(EVENTS).map_err(io)?;
            for entry in events.range(current + 1..=seq).map_err(io)? {
                let (_, v) = entry.map_err(io)?;
                if serde_json::from_slice::<Targets>(v.value())
                    .is_ok_and(|t| t.targets.iter().any(|t| t == sink))
                {
                    done.passed += 1;
                }
            }
        }
        let mut min = u64::MAX;
        for s in all {
            let c = cursors.get(s.as_str()).map_err(io)?.map_or(0, |v| v.value());
            min = min.min(c);
        }
        if min > 0 && min != u64::MAX {
            let mut events = txn.open_table(EVENTS).map_err(io)?;
            let mut moved: Vec<(u64, Vec<u8>)> = Vec::new();
            let mut orphaned: Vec<(u64, String, Vec<u8>)> = Vec::new();
            for entry in events.extract_from_if(..=min, |_, _| true).map_err(io)? {
                let (k, v) = entry.map_err(io)?;
                let (k, v) = (k.value(), v.value());
                done.freed.add(1, v.len() as u64);
                let targets = serde_json::from_slice::<Targets>(v).map_or_else(|_| Vec::new(), |t| t.targets);
                for t in targets.into_iter().filter(|t| !all.contains(t)) {
                    if cursors.get(t.as_str()).map_err(io)?.map_or(0, |c| c.value()) < k {
                        orphaned.push((k, t, v.to_vec()));
                    }
                }
                if !retention.age.is_zero() {
                    moved.push((k, v.to_vec()));
                }
            }
            if !orphaned.is_empty() {
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
                        done.orphans.push((k, t));
                    }
                }
            }
            if !moved.is_empty() {
                let mut retained = txn.open_table(RETAINED).map_err(io)?;
                for (k, v) in moved {
                    done.retained.add(1, v.len() as u64);
                    retained.insert(k, v.as_slice()).map_err(io)?;
                }
                prune_retained(&mut retained, retention, &mut done.retained)?;
            }
        }
    }
    txn.commit().map_err(io)?;
    Ok(done)
}

/// Drops retained records older than the retention age, then the oldest past its size.
fn prune_retained(
    table: &mut redb::Table<'_, u64, &'static [u8]>,
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f).await.map_err(io)?
}

/// The writer thread: group commit. Everything queued when a commit starts shares its fsync.
/// (It holds what a recovery touches: the store, counts, numbering and wake-ups.)
struct Writer(Recovery);

impl Writer {
    fn run(self, mut rx: mpsc::Receiver<Append>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < 1024 {
                match rx.try_recv() {
                    Ok(a) => batch.push(a),
                    Err(_) => break,
                }
            }
            let w = &self.0;
            if w.store.fault().is_some() {
                w.run();
            }
            let result = w.store.write(|db| {
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
                for a in &mut batch {
                    a.reservation.commit(&mut counts, &a.targets);
                }
                Ok(start)
            });
            match result {
                Ok(start) => {
                    for (i, a) in batch.into_iter().enumerate() {
                        let _ = a.reply.send(Ok(start + i as u64));
                    }
                    w.new_data.notify_waiters();
                }
                Err(e) => {
                    tracing::error!(error = %e, "spool write failed");
                    // Each append's reservation is given back as it drops.
                    for a in batch {
                        let _ = a.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// What reopening a faulty store touches.
struct Recovery {
    store: Arc<Store>,
    next_seq: Arc<AtomicU64>,
    counts: Shared,
    reopens: Arc<AtomicU64>,
    new_data: Arc<Notify>,
}

impl Recovery {
    /// Reopens the store if it is faulty; on success the counts and the high-water mark are
    /// reloaded, and forwarders are woken to store their cursors again.
    fn run(&self) {
        let at_least = self.next_seq.load(Ordering::SeqCst);
        let reopened = self.store.reopen(|db| {
            let loaded = prepare(db, at_least)?;
            self.next_seq.fetch_max(loaded.next_seq, Ordering::SeqCst);
            apply(&mut lock(&self.counts), loaded);
            Ok(())
        });
        if reopened.is_some() {
            self.reopens.fetch_add(1, Ordering::SeqCst);
            self.new_data.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests;
