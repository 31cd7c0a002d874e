//! Bounded deduplication keyed `(source name, CE source, CE id)`, in memory and optionally
//! persisted (`dedup.path`) so it survives restarts.
//!
//! An id counts as seen only once its event is safe (every chosen sink acked). A request whose id
//! is in flight waits for that outcome: if the first attempt succeeded the waiter answers
//! `duplicate`; if it failed, the waiter takes over and publishes itself. Bounded by a maximum
//! number of remembered ids (oldest forgotten first) and a time window.
//!
//! Persistence: each delivered key is handed to a writer thread that group-commits them to a
//! redb file (fsynced), and prunes the file by the same window and bound. The answer to the
//! request does not wait for that commit: a crash can forget the last few milliseconds of keys,
//! which only means a provider's retry is published again (at-least-once), never a lost event.
//! At start, the keys still inside the window are loaded back.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::watch;

/// Key digest (hex) → unix milliseconds it was delivered.
const KEYS: TableDefinition<&str, u64> = TableDefinition::new("keys");
/// (unix milliseconds, key) → (): delivery order, for pruning.
const ORDER: TableDefinition<(u64, &str), ()> = TableDefinition::new("order");

/// `(source name, CE source, CE id)`.
pub type Key = (String, String, String);

/// What is remembered of a key: 128 bits of SHA-256 over its length-prefixed parts. 16 bytes per
/// id instead of three strings (a full table of 100,000 ids is ~10 MB, not ~45 MB); stable across
/// restarts for the persisted file; a chance collision needs ~2^64 ids, a targeted one (making a
/// victim's event look like a duplicate) a SHA-256 preimage.
type Digest = [u8; 16];

fn digest(key: &Key) -> Digest {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for part in [&key.0, &key.1, &key.2] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

enum Entry {
    /// Someone is publishing this event; dropping the sender wakes the waiters. The channel is
    /// made by the first waiter: most events never have one, and a channel per claim cost more
    /// than the rest of the claim (allocation, and waking its notifiers on drop).
    InFlight(Option<watch::Sender<()>>),
    /// Delivered at this instant.
    Done(Instant),
}

struct Inner {
    map: HashMap<Digest, Entry>,
    /// Delivered ids in delivery order, for eviction.
    order: VecDeque<(Digest, Instant)>,
    /// Keys whose last attempt failed (answered 503), oldest first, bounded like `order`: a claim
    /// of one of them is the provider's retry.
    failed: std::collections::HashSet<Digest>,
    failed_order: VecDeque<Digest>,
}

/// The dedup table. Cheap to clone (shared).
#[derive(Clone)]
pub struct Dedup {
    inner: Arc<Mutex<Inner>>,
    window: Duration,
    max_entries: usize,
    store: Option<Arc<Store>>,
}

/// The result of claiming a key.
pub enum Claim {
    /// This request owns the key and must publish; report the outcome through the guard.
    Owner(Guard),
    /// Already delivered within the window.
    Duplicate,
}

impl Claim {
    /// Whether the key's previous attempt failed: this request is a retry of an event answered
    /// with a 503 (counted in `hookbridge_provider_retries_total`).
    pub fn is_retry(&self) -> bool {
        matches!(self, Claim::Owner(g) if g.retry)
    }
}

/// Ownership of an in-flight key. Dropping it without [`Guard::delivered`] releases the key so a
/// retry (or a waiting duplicate) can publish.
pub struct Guard {
    dedup: Dedup,
    key: Option<Digest>,
    retry: bool,
}

impl Dedup {
    /// A table remembering up to `max_entries` delivered ids for `window`.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Dedup {
            inner: Arc::new(Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                failed: Default::default(),
                failed_order: VecDeque::new(),
            })),
            window,
            max_entries: max_entries.max(1),
            store: None,
        }
    }

    /// A table persisted in the redb file `path` (created if missing): keys delivered within
    /// `window` before a restart are still duplicates after it.
    pub fn open(window: Duration, max_entries: usize, path: &Path) -> Result<Self, String> {
        let mut dedup = Dedup::new(window, max_entries);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            hookbridge_sink_core::private::create_dir(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        hookbridge_sink_core::private::create_file(path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let db = redb::Builder::new()
            .set_cache_size(4 << 20)
            .create(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let max = dedup.max_entries;
        let loaded = load(&db, window, max).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        {
            let mut inner = dedup.lock();
            let now_ms = unix_ms();
            let now = Instant::now();
            for (key, ms) in loaded {
                let Some(at) = now.checked_sub(Duration::from_millis(now_ms.saturating_sub(ms))) else {
                    continue;
                };
                inner.map.insert(key, Entry::Done(at));
                inner.order.push_back((key, at));
            }
        }
        let (tx, rx) = mpsc::sync_channel::<Msg>(65_536);
        let handle = std::thread::Builder::new()
            .name("hookbridge-dedup".into())
            .spawn(move || store_writer(db, rx, window, max))
            .map_err(|e| e.to_string())?;
        dedup.store = Some(Arc::new(Store {
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
        }));
        Ok(dedup)
    }

    /// Waits until every key marked so far is on disk (no-op when not persisted).
    pub fn flush(&self) {
        let Some(store) = &self.store else { return };
        let (tx, rx) = mpsc::channel();
        let sender = store.tx.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(sender) = sender {
            if sender.send(Msg::Flush(tx)).is_ok() {
                let _ = rx.recv_timeout(Duration::from_secs(10));
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections cannot panic half-way; a poisoned lock still holds a
        // consistent table.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `key`, waiting while another request has it in flight.
    pub async fn claim(&self, key: Key) -> Claim {
        let key = digest(&key);
        loop {
            let mut rx = {
                let mut inner = self.lock();
                match inner.map.get_mut(&key) {
                    Some(Entry::Done(at)) if at.elapsed() < self.window => {
                        return Claim::Duplicate;
                    }
                    Some(Entry::InFlight(tx)) => tx.get_or_insert_with(|| watch::channel(()).0).subscribe(),
                    _ => {
                        inner.map.insert(key, Entry::InFlight(None));
                        let retry = inner.failed.remove(&key);
                        return Claim::Owner(Guard {
                            dedup: self.clone(),
                            key: Some(key),
                            retry,
                        });
                    }
                }
            };
            // Returns once the owner finished either way (its sender was dropped).
            while rx.changed().await.is_ok() {}
        }
    }

    /// Whether `key` was delivered within the window (a look, not a claim).
    pub fn delivered(&self, key: &Key) -> bool {
        let key = digest(key);
        matches!(self.lock().map.get(&key), Some(Entry::Done(at)) if at.elapsed() < self.window)
    }

    /// Number of delivered ids remembered.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn finish(&self, key: Digest, delivered: bool) {
        let mut inner = self.lock();
        if delivered {
            let now = Instant::now();
            if let Some(store) = &self.store {
                store.mark(&key);
            }
            inner.map.insert(key, Entry::Done(now));
            inner.order.push_back((key, now));
            self.evict(&mut inner, now);
        } else {
            inner.map.remove(&key);
            if inner.failed.insert(key) {
                inner.failed_order.push_back(key);
            }
            // Bounded like the delivered ids; a key already retried (taken out of `failed`) just
            // leaves its stale place in the queue.
            while inner.failed_order.len() > self.max_entries {
                if let Some(old) = inner.failed_order.pop_front() {
                    inner.failed.remove(&old);
                }
            }
        }
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((key, at)) = inner.order.front() {
            let expired = now.duration_since(*at) >= self.window;
            if !expired && inner.order.len() <= self.max_entries {
                break;
            }
            let (key, at) = (*key, *at);
            inner.order.pop_front();
            // Only forget the entry this record describes (not a newer delivery of the same key).
            if matches!(inner.map.get(&key), Some(Entry::Done(t)) if *t == at) {
                inner.map.remove(&key);
            }
        }
    }
}

/// The persisted side: a writer thread owning the redb file.
struct Store {
    tx: Mutex<Option<mpsc::SyncSender<Msg>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Msg {
    Mark(String, u64),
    Flush(mpsc::Sender<()>),
}

impl Store {
    fn mark(&self, key: &Digest) {
        let text = hex::encode(key);
        let sender = self.tx.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if let Some(sender) = sender {
            if sender.try_send(Msg::Mark(text, unix_ms())).is_err() {
                // The disk is far behind: this key stays in memory only (a restart may publish
                // a retry of it again — at-least-once, nothing lost).
                metrics::counter!("hookbridge_dedup_persist_dropped_total").increment(1);
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Close the queue; the writer commits what is queued, then exits.
        self.tx.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(w) = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = w.join();
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Prunes the file and returns the keys it still holds, oldest first.
fn load(db: &Database, window: Duration, max: usize) -> Result<Vec<(Digest, u64)>, redb::Error> {
    let txn = db.begin_write()?;
    {
        txn.open_table(KEYS)?;
        txn.open_table(ORDER)?;
    }
    prune(&txn, window, max)?;
    txn.commit()?;
    let txn = db.begin_read()?;
    let order = txn.open_table(ORDER)?;
    let mut out = Vec::new();
    for entry in order.iter()? {
        let (k, _) = entry?;
        let (ms, text) = k.value();
        if let Some(key) = hex::decode(text).ok().and_then(|b| Digest::try_from(b).ok()) {
            out.push((key, ms));
        }
    }
    Ok(out)
}

/// Deletes keys older than the window, then the oldest beyond `max`.
fn prune(txn: &redb::WriteTransaction, window: Duration, max: usize) -> Result<(), redb::Error> {
    let cutoff = unix_ms().saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
    let mut keys = txn.open_table(KEYS)?;
    let mut order = txn.open_table(ORDER)?;
    let excess = usize::try_from(order.len()?)
        .unwrap_or(usize::MAX)
        .saturating_sub(max);
    let mut doomed: Vec<(u64, String)> = Vec::new();
    for (i, entry) in order.iter()?.enumerate() {
        let (k, _) = entry?;
        let (ms, text) = k.value();
        if ms >= cutoff && i >= excess {
            break;
        }
        doomed.push((ms, text.to_owned()));
    }
    for (ms, text) in doomed {
        order.remove((ms, text.as_str()))?;
        let current = keys.get(text.as_str())?.map(|v| v.value());
        if current == Some(ms) {
            keys.remove(text.as_str())?;
        }
    }
    Ok(())
}

/// Group commit: every mark queued when a commit starts shares its fsync.
fn store_writer(db: Database, rx: mpsc::Receiver<Msg>, window: Duration, max: usize) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let result = (|| -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            {
                let mut keys = txn.open_table(KEYS)?;
                let mut order = txn.open_table(ORDER)?;
                for m in &batch {
                    if let Msg::Mark(text, ms) = m {
                        if let Some(old) = keys.insert(text.as_str(), *ms)?.map(|v| v.value()) {
                            order.remove((old, text.as_str()))?;
                        }
                        order.insert((*ms, text.as_str()), ())?;
                    }
                }
            }
            prune(&txn, window, max)?;
            txn.commit()?;
            Ok(())
        })();
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot persist dedup keys; they stay in memory only");
        }
        for m in batch {
            if let Msg::Flush(done) = m {
                let _ = done.send(());
            }
        }
    }
}

impl Guard {
    /// Marks the event delivered: later requests with the same key answer `duplicate`.
    pub fn delivered(mut self) {
        if let Some(key) = self.key.take() {
            self.dedup.finish(key, true);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.dedup.finish(key, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_claim_after_a_failed_attempt_is_a_retry_and_the_record_is_bounded() {
        let d = Dedup::new(Duration::from_secs(60), 2);
        let first = d.claim(key("a")).await;
        assert!(!first.is_retry());
        drop(first); // failed: the guard is dropped without `delivered`
        let again = d.claim(key("a")).await;
        assert!(again.is_retry(), "the provider's retry of a failed event");
        let Claim::Owner(g) = again else { panic!("owner") };
        g.delivered();
        assert!(matches!(d.claim(key("a")).await, Claim::Duplicate));
        assert!(d.delivered(&key("a")) && !d.delivered(&key("b")));
        // Failures beyond the bound forget the oldest.
        for id in ["b", "c", "e"] {
            drop(d.claim(key(id)).await);
        }
        assert!(!d.claim(key("b")).await.is_retry(), "forgotten past the bound");
        assert!(d.claim(key("e")).await.is_retry());
    }

    #[tokio::test]
    async fn persisted_keys_survive_a_reopen_within_the_window() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("dedup.redb");
        {
            let d = Dedup::open(Duration::from_secs(60), 10, &path).expect("open");
            for id in ["a", "b", "c"] {
                let Claim::Owner(g) = d.claim(key(id)).await else {
                    panic!("owner")
                };
                g.delivered();
                // Distinct delivery milliseconds: the file orders (and prunes) by them.
                std::thread::sleep(Duration::from_millis(3));
            }
            let Claim::Owner(g) = d.claim(key("failed")).await else {
                panic!("owner")
            };
            drop(g);
            d.flush();
        }
        let d = Dedup::open(Duration::from_secs(60), 2, &path).expect("reopen");
        assert_eq!(d.len(), 2, "bounded to max_entries on load");
        assert!(matches!(d.claim(key("c")).await, Claim::Duplicate));
        assert!(matches!(d.claim(key("b")).await, Claim::Duplicate));
        assert!(
            matches!(d.claim(key("a")).await, Claim::Owner(_)),
            "oldest pruned"
        );
        assert!(
            matches!(d.claim(key("failed")).await, Claim::Owner(_)),
            "never marked"
        );
        drop(d);
        // A window that has passed: nothing is loaded back.
        std::thread::sleep(Duration::from_millis(30));
        let d = Dedup::open(Duration::from_millis(20), 10, &path).expect("reopen");
        assert!(d.is_empty());
    }

    fn key(id: &str) -> Key {
        ("s".into(), "src".into(), id.into())
    }

    #[tokio::test]
    async fn delivered_ids_are_duplicates_and_failures_are_not() {
        let d = Dedup::new(Duration::from_secs(60), 10);
        let Claim::Owner(g) = d.claim(key("a")).await else {
            panic!("owner")
        };
        g.delivered();
        assert!(matches!(d.claim(key("a")).await, Claim::Duplicate));
        let Claim::Owner(g) = d.claim(key("b")).await else {
            panic!("owner")
        };
        drop(g); // failed
        assert!(matches!(d.claim(key("b")).await, Claim::Owner(_)));
    }

    #[tokio::test]
    async fn concurrent_duplicate_waits_for_the_outcome() {
        let d = Dedup::new(Duration::from_secs(60), 10);
        let Claim::Owner(g) = d.claim(key("a")).await else {
            panic!("owner")
        };
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { matches!(d2.claim(key("a")).await, Claim::Duplicate) });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        g.delivered();
        assert!(waiter.await.expect("join"));

        // A failed owner hands the key to the waiter.
        let Claim::Owner(g) = d.claim(key("b")).await else {
            panic!("owner")
        };
        let d2 = d.clone();
        let waiter = tokio::spawn(async move { matches!(d2.claim(key("b")).await, Claim::Owner(_)) });
        tokio::task::yield_now().await;
        drop(g);
        assert!(waiter.await.expect("join"));
    }

    #[tokio::test]
    async fn bounded_by_entries_and_window() {
        let d = Dedup::new(Duration::from_secs(60), 2);
        for id in ["a", "b", "c"] {
            let Claim::Owner(g) = d.claim(key(id)).await else {
                panic!("owner")
            };
            g.delivered();
        }
        assert_eq!(d.len(), 2);
        assert!(
            matches!(d.claim(key("a")).await, Claim::Owner(_)),
            "oldest forgotten"
        );
        assert!(matches!(d.claim(key("c")).await, Claim::Duplicate));

        let d = Dedup::new(Duration::from_millis(20), 10);
        let Claim::Owner(g) = d.claim(key("x")).await else {
            panic!("owner")
        };
        g.delivered();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            matches!(d.claim(key("x")).await, Claim::Owner(_)),
            "window expired"
        );
    }
}
