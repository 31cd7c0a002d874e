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

//!
//! Layout: `store` holds the file and what writes it (open and count the tables, append through
//! the writer thread, advance cursors, prune retained records, park); `record` is the record
//! codec; [`replay`] re-queues and discards, with the filter checks the CLI and the admin API
//! share; `stats` keeps the counts (usage, backlog, audit).

mod record;
pub mod replay;
mod stats;
mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use redb::TableDefinition;
use tokio::sync::{mpsc, Notify};

pub use record::{Parked, Record, Replayed};
pub use replay::ReplayFilter;
use stats::Shared;
pub use stats::{Audit, Backlog};
use store::{Append, Store};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("cursors");
/// Delivered records kept for replay (same encoding as `events`).
const RETAINED: TableDefinition<u64, &[u8]> = TableDefinition::new("retained");
/// (sequence, sink) → [`Parked`] JSON.
const PARKED: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("parked");
/// `next_seq` → the sequence number the next append gets (a durable high-water mark).
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NEXT_SEQ: &str = "next_seq";

/// The target of the spool's log lines, wherever in its submodules they are written.
const LOG_TARGET: &str = "hookbridge::deliver::spool";

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

impl Spool {
    /// Keeps delivered records for replay (default: not kept).
    pub fn set_retention(&self, retention: Retention) {
        *self.retention.lock().unwrap_or_else(PoisonError::into_inner) = retention;
    }

    /// The sinks configured now: records all of them have passed are deleted (or retained), and
    /// records still pending for a sink not among them are parked (`sink_removed`). Set before
    /// the forwarders start; until it is, nothing is deleted.
    pub fn set_sinks(&self, sinks: Vec<String>) {
        *self.sinks.lock().unwrap_or_else(PoisonError::into_inner) = sinks;
    }

    /// Where the spool file is.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// How many times the file was reopened after an I/O error. A forwarder that sees it change
    /// stores its cursor again: a reopen drops cursor updates that were not yet fsynced.
    pub fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::SeqCst)
    }

    /// The sequence number the next append gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests;
