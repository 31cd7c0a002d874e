//! The spool's redb file and what writes it: opening the file and counting its tables (`open`),
//! appends through the writer thread (`append`), cursors and the pruning of retained records
//! (`advance`), and parked dead letters (`parked`).
//!
//! The file is reopened after an I/O error: redb refuses every write after one has failed
//! (`PreviousIo`) until the database is reopened.
//! Every transaction runs under a read lock on the open database; a reopen takes the write lock,
//! so it waits for transactions in progress and none starts on a database being replaced.
//! Callers update their in-memory counts inside the closure they pass, under the same read lock,
//! so a reopen (which recounts everything from the tables) never falls between a commit and the
//! count it changes.

mod advance;
mod append;
mod open;
mod parked;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::Notify;

pub(super) use append::Append;
pub(super) use parked::parked_entries;

use super::stats::{lock, Counts, Shared};
use super::{io, Spool, SpoolError};

/// redb's page cache for the spool.
const SPOOL_CACHE_BYTES: usize = 4 << 20;

/// Least time between two reopen attempts while the file cannot be written.
pub const RETRY_EVERY: Duration = Duration::from_millis(250);

pub(super) struct Store {
    path: PathBuf,
    db: RwLock<Option<Database>>,
    /// Held over each write and the count update that follows it. redb runs one write
    /// transaction at a time anyway; this makes "commit, then update the counts" one step, so
    /// a count computed from the previous value is never computed from a stale one.
    writing: Mutex<()>,
    /// Why the file cannot be written now, and when a reopen was last tried.
    fault: Mutex<Option<(String, Option<Instant>)>>,
}

fn open_db(path: &Path) -> Result<Database, SpoolError> {
    // A small page cache (redb defaults to 1 GiB): records are read once, by the forwarders,
    // soon after they were written, and the kernel's page cache serves those reads anyway.
    // 4 MiB instead of 16 took ~11 MiB off peak RSS with a 35,000-event backlog and no
    // measurable loss of throughput (BENCHMARKS.md).
    hookbridge_sink_core::private::create_file(path)
        .map_err(|e| SpoolError::Io(format!("cannot create {}: {e}", path.display())))?;
    redb::Builder::new()
        .set_cache_size(SPOOL_CACHE_BYTES)
        .create(path)
        .map_err(|e| SpoolError::Io(format!("cannot open {}: {e}", path.display())))
}

impl Store {
    pub(super) fn open(path: PathBuf) -> Result<Store, SpoolError> {
        let db = open_db(&path)?;
        Ok(Store {
            path,
            db: RwLock::new(Some(db)),
            writing: Mutex::new(()),
            fault: Mutex::new(None),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn fault(&self) -> Option<String> {
        self.fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|(e, _)| e.clone())
    }

    /// Runs `f` with the open database.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let guard = self.db.read().unwrap_or_else(PoisonError::into_inner);
        match guard.as_ref() {
            Some(db) => f(db),
            None => Err(SpoolError::Io(
                self.fault().unwrap_or_else(|| "the spool is not open".into()),
            )),
        }
    }

    /// Runs `f` with no write in progress or starting meanwhile (a consistent view of the tables
    /// and of the counts each write updates).
    pub(super) fn paused<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        self.with(f)
    }

    /// Runs a write `f`; a failure marks the file faulty. While it is faulty, writes are refused
    /// (the fault is the error): only a successful [`Store::reopen`] clears it, because only
    /// the reopen reloads the counts — a reopen drops the commits made without fsync, and a
    /// write that slipped through on a fresh handle would build on counts that no longer hold.
    pub(super) fn write<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let _one = self.writing.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = self.fault() {
            return Err(SpoolError::Io(e));
        }
        let result = self.with(f);
        if let Err(SpoolError::Io(e)) = &result {
            let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
            let tried = fault.as_ref().and_then(|(_, at)| *at);
            *fault = Some((e.clone(), tried));
        }
        result
    }

    /// Closes and reopens the file, then runs `probe` (a small fsynced write that also reloads
    /// the counts). `Some` once the file is writable again; `None` if it is not, or if the last
    /// attempt was less than [`RETRY_EVERY`] ago.
    pub(super) fn reopen<T>(&self, probe: impl FnOnce(&Database) -> Result<T, SpoolError>) -> Option<T> {
        {
            let mut fault = self.fault.lock().unwrap_or_else(PoisonError::into_inner);
            let (_, tried) = fault.as_mut()?;
            if tried.is_some_and(|at| at.elapsed() < RETRY_EVERY) {
                return None;
            }
            *tried = Some(Instant::now());
        }
        let mut guard = self.db.write().unwrap_or_else(PoisonError::into_inner);
        // The old handle must be closed first: it holds the file lock.
        guard.take();
        let reopened = open_db(&self.path).and_then(|db| {
            let out = probe(&db)?;
            Ok((db, out))
        });
        match reopened {
            Ok((db, out)) => {
                *guard = Some(db);
                *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = None;
                tracing::info!(path = %self.path.display(), "spool reopened: writable again");
                Some(out)
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "spool still cannot be written");
                if let Some((text, _)) = self.fault.lock().unwrap_or_else(PoisonError::into_inner).as_mut() {
                    *text = e.to_string();
                }
                // Keep a handle for reads (forwarders drain what is there) if it opens at all.
                *guard = open_db(&self.path).ok();
                None
            }
        }
    }
}

impl Spool {
    /// Why the spool cannot be written now (`None`: it can).
    pub fn fault(&self) -> Option<String> {
        self.store.fault()
    }

    /// Reopens the spool if a write failed (at most every [`RETRY_EVERY`]); returns the
    /// fault that remains. `/readyz` calls it, so a spool recovers with no traffic too.
    pub async fn recover_if_faulty(&self) -> Option<String> {
        self.store.fault()?;
        let r = self.recovery();
        let _ = tokio::task::spawn_blocking(move || r.run()).await;
        self.store.fault()
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
    pub(super) async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, SpoolError> + Send + 'static,
    ) -> Result<T, SpoolError> {
        let store = self.store.clone();
        blocking(move || store.with(f)).await
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
            let loaded = open::prepare(db, at_least)?;
            self.next_seq.fetch_max(loaded.next_seq, Ordering::SeqCst);
            lock(&self.counts).apply(loaded);
            Ok(())
        });
        if reopened.is_some() {
            self.reopens.fetch_add(1, Ordering::SeqCst);
            self.new_data.notify_waiters();
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f).await.map_err(io)?
}
