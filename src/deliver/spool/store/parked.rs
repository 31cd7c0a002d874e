//! Parked dead letters: kept per `(sequence, sink)` with the reason, until replayed or
//! discarded.

use redb::{ReadableDatabase, ReadableTable};

use crate::deliver::spool::stats::lock;
use crate::deliver::spool::{io, Parked, Spool, SpoolError, PARKED};

impl Spool {
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
        self.read(|db| parked_entries(&db.begin_read().map_err(io)?))
            .await
    }

    /// Deletes the dead letter of `sink` parked at `seq` (replayed or discarded).
    pub(in crate::deliver::spool) async fn unpark(&self, seq: u64, sink: &str) -> Result<(), SpoolError> {
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
}

/// Every parked dead letter: (sequence, sink, what was parked), oldest first.
pub(in crate::deliver::spool) fn parked_entries(
    txn: &redb::ReadTransaction,
) -> Result<Vec<(u64, String, Parked)>, SpoolError> {
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
