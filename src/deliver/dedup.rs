//! In-memory, bounded deduplication keyed `(source name, CE source, CE id)`.
//!
//! An id counts as seen only once its event is safe (every chosen sink acked). A request whose id
//! is in flight waits for that outcome: if the first attempt succeeded the waiter answers
//! `duplicate`; if it failed, the waiter takes over and publishes itself. Bounded by a maximum
//! number of remembered ids (oldest forgotten first) and a time window.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// `(source name, CE source, CE id)`.
pub type Key = (String, String, String);

enum Entry {
    /// Someone is publishing this event; dropping the sender wakes the waiters.
    InFlight(watch::Sender<()>),
    /// Delivered at this instant.
    Done(Instant),
}

struct Inner {
    map: HashMap<Key, Entry>,
    /// Delivered ids in delivery order, for eviction.
    order: VecDeque<(Key, Instant)>,
}

/// The dedup table. Cheap to clone (shared).
#[derive(Clone)]
pub struct Dedup {
    inner: Arc<Mutex<Inner>>,
    window: Duration,
    max_entries: usize,
}

/// The result of claiming a key.
pub enum Claim {
    /// This request owns the key and must publish; report the outcome through the guard.
    Owner(Guard),
    /// Already delivered within the window.
    Duplicate,
}

/// Ownership of an in-flight key. Dropping it without [`Guard::delivered`] releases the key so a
/// retry (or a waiting duplicate) can publish.
pub struct Guard {
    dedup: Dedup,
    key: Option<Key>,
}

impl Dedup {
    /// A table remembering up to `max_entries` delivered ids for `window`.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Dedup {
            inner: Arc::new(Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            })),
            window,
            max_entries: max_entries.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections cannot panic half-way; a poisoned lock still holds a
        // consistent table.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claims `key`, waiting while another request has it in flight.
    pub async fn claim(&self, key: Key) -> Claim {
        loop {
            let mut rx = {
                let mut inner = self.lock();
                let now = Instant::now();
                match inner.map.get(&key) {
                    Some(Entry::Done(at)) if now.duration_since(*at) < self.window => {
                        return Claim::Duplicate;
                    }
                    Some(Entry::InFlight(tx)) => tx.subscribe(),
                    _ => {
                        let (tx, _) = watch::channel(());
                        inner.map.insert(key.clone(), Entry::InFlight(tx));
                        return Claim::Owner(Guard {
                            dedup: self.clone(),
                            key: Some(key),
                        });
                    }
                }
            };
            // Returns once the owner finished either way (its sender was dropped).
            while rx.changed().await.is_ok() {}
        }
    }

    /// Number of delivered ids remembered.
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn finish(&self, key: Key, delivered: bool) {
        let mut inner = self.lock();
        if delivered {
            let now = Instant::now();
            inner.map.insert(key.clone(), Entry::Done(now));
            inner.order.push_back((key, now));
            self.evict(&mut inner, now);
        } else {
            inner.map.remove(&key);
        }
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((key, at)) = inner.order.front() {
            let expired = now.duration_since(*at) >= self.window;
            if !expired && inner.order.len() <= self.max_entries {
                break;
            }
            let (key, at) = (key.clone(), *at);
            inner.order.pop_front();
            // Only forget the entry this record describes (not a newer delivery of the same key).
            if matches!(inner.map.get(&key), Some(Entry::Done(t)) if *t == at) {
                inner.map.remove(&key);
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
