//! Opening the spool: the tables are created if missing and counted (also the probe of a reopen
//! after an I/O error), then the writer thread starts.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use redb::Database;
use tokio::sync::{mpsc, Notify};

use super::append::{Append, Writer};
use super::{Recovery, Store};
use crate::deliver::spool::stats::{load, lock, Loaded, Shared};
use crate::deliver::spool::{
    io, Limits, Retention, Spool, SpoolError, CURSORS, EVENTS, META, NEXT_SEQ, PARKED, RETAINED,
};

/// Creates the tables if missing, counts them and stores the high-water mark, in one fsynced
/// transaction: the first write after an open, and the probe that proves the file can be
/// written again after an I/O error.
pub(super) fn prepare(db: &Database, at_least: u64) -> Result<Loaded, SpoolError> {
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

impl Spool {
    /// Opens (or creates) the spool in `dir` and starts its writer thread.
    pub fn open(dir: &Path, limits: Limits) -> Result<Arc<Spool>, SpoolError> {
        hookbridge_sink_core::private::create_dir(dir)
            .map_err(|e| SpoolError::Io(format!("cannot create {}: {e}", dir.display())))?;
        let store = Arc::new(Store::open(dir.join("spool.redb"))?);
        let loaded = store.with(|db| prepare(db, 1))?;
        let counts: Shared = Arc::default();
        let next_seq = Arc::new(AtomicU64::new(loaded.next_seq));
        lock(&counts).apply(loaded);
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
}
