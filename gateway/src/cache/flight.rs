//! Request coalescing: of concurrent misses for one key, the first (the leader) goes to a
//! backend and the others wait for it, at most a bounded time. The leader holds a
//! [`Leader`] for as long as its answer is on the way; dropping it (the answer stored, or
//! not storable, or the request failed or was cancelled) wakes every waiter, who then looks
//! in the cache again and goes to a backend itself if the answer is not there.

use super::key::Key;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// The keys with a request on its way to a backend.
#[derive(Debug, Default)]
pub struct Flights {
    /// Per key: which flight it is (so a leader only removes its own) and how to wait for it.
    in_flight: Mutex<HashMap<Key, (u64, watch::Receiver<()>)>>,
    next: AtomicU64,
}

/// What a request does about a key.
#[derive(Debug)]
pub enum Join {
    /// Nobody is fetching it: this request does, and releases the others when done.
    Lead(Leader),
    /// Another request is fetching it: wait for that one.
    Wait(watch::Receiver<()>),
}

/// The leader's hold on a key; dropping it releases the waiters.
#[derive(Debug)]
pub struct Leader {
    flights: Arc<Flights>,
    key: Key,
    id: u64,
    _done: watch::Sender<()>,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The leader is done (stored or not: look again).
    Released,
    /// The leader took longer than the wait allows.
    TimedOut,
}

impl Flights {
    /// Leads the fetch of `key`, or waits for the request that does.
    pub fn join(self: &Arc<Self>, key: &Key) -> Join {
        let mut map = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, rx)) = map.get(key) {
            return Join::Wait(rx.clone());
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(());
        map.insert(key.clone(), (id, rx));
        Join::Lead(Leader {
            flights: self.clone(),
            key: key.clone(),
            id,
            _done: tx,
        })
    }

    /// Keys being fetched now.
    pub fn len(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
        }
        // The sender drops after this: every waiter's `changed()` ends.
    }
}

/// Waits until the leader of `rx` is done, at most `limit`.
pub async fn wait(mut rx: watch::Receiver<()>, limit: Duration) -> Waited {
    // The leader never sends: it only drops its sender, which ends `changed()` with an
    // error; either way it is done.
    match tokio::time::timeout(limit, rx.changed()).await {
        Ok(_) => Waited::Released,
        Err(_) => Waited::TimedOut,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Arc::from(s.as_bytes())
    }

    #[test]
    fn the_first_request_leads_and_the_others_wait() {
        let f = Arc::new(Flights::default());
        let lead = f.join(&key("a"));
        assert!(matches!(lead, Join::Lead(_)));
        assert!(matches!(f.join(&key("a")), Join::Wait(_)));
        // Another key has its own leader.
        assert!(matches!(f.join(&key("b")), Join::Lead(_)));
        drop(lead);
        assert!(f.is_empty());
        assert!(matches!(f.join(&key("a")), Join::Lead(_)));
    }

    #[tokio::test]
    async fn dropping_the_leader_wakes_every_waiter() {
        let f = Arc::new(Flights::default());
        let Join::Lead(leader) = f.join(&key("a")) else {
            panic!("first join must lead");
        };
        let waiters: Vec<_> = (0..10)
            .map(|_| match f.join(&key("a")) {
                Join::Wait(rx) => tokio::spawn(wait(rx, Duration::from_secs(30))),
                Join::Lead(_) => panic!("a second leader"),
            })
            .collect();
        drop(leader);
        for w in waiters {
            assert_eq!(w.await.unwrap(), Waited::Released);
        }
    }

    #[tokio::test]
    async fn a_wait_is_bounded() {
        let f = Arc::new(Flights::default());
        let _leader = f.join(&key("a"));
        let Join::Wait(rx) = f.join(&key("a")) else {
            panic!("second join must wait");
        };
        assert_eq!(wait(rx, Duration::from_millis(10)).await, Waited::TimedOut);
    }
}
