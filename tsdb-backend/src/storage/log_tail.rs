//! The tail of the log: the entries this node accepted from clients, kept in memory for
//! whoever ships them (the replication's shippers, one per peer).
//!
//! The WAL writer appends each local entry once it is durable; a reader takes the entries
//! after its cursor. Storage knows nothing of peers: this is the interface they read. The backlog is bounded in bytes: when it is full
//! the oldest entries go, and a peer whose cursor is older than what is left has a gap that
//! only a full resynchronisation can fill.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

/// One local entry, as logged.
#[derive(Debug, Clone)]
pub struct Item {
    /// Its sequence number in this node's WAL (its origin sequence number).
    pub seq: u64,
    /// Wall-clock time it became durable, for lag in seconds.
    pub at_ns: i64,
    pub payload: Arc<Vec<u8>>,
}

/// A peer's cursor is older than the oldest entry kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Entries up to this sequence number are no longer kept.
    pub evicted_upto: u64,
}

#[derive(Debug, Default)]
struct Inner {
    items: VecDeque<Item>,
    bytes: u64,
    evicted_upto: u64,
    last_seq: u64,
}

#[derive(Debug)]
pub struct Backlog {
    inner: Mutex<Inner>,
    changed: Condvar,
    max_bytes: u64,
}

/// What a peer has not acknowledged yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub entries: u64,
    pub bytes: u64,
    /// When the oldest of them became durable.
    pub oldest_at_ns: Option<i64>,
}

impl Backlog {
    /// An empty backlog; entries up to `evicted_upto` count as already gone (they were
    /// trimmed from the WAL before this start).
    pub fn new(max_bytes: u64, evicted_upto: u64) -> Self {
        Backlog {
            inner: Mutex::new(Inner {
                evicted_upto,
                last_seq: evicted_upto,
                ..Inner::default()
            }),
            changed: Condvar::new(),
            max_bytes: max_bytes.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a durable local entry and wakes the shippers.
    pub fn push(&self, item: Item) {
        let mut inner = self.lock();
        inner.bytes += item.payload.len() as u64;
        inner.last_seq = inner.last_seq.max(item.seq);
        inner.items.push_back(item);
        // Keep at least the newest entry, however large.
        while inner.bytes > self.max_bytes && inner.items.len() > 1 {
            if let Some(old) = inner.items.pop_front() {
                inner.bytes -= old.payload.len() as u64;
                inner.evicted_upto = old.seq;
            }
        }
        drop(inner);
        self.changed.notify_all();
    }

    /// Entries after `cursor`, up to about `max_bytes` (at least one), or the gap if some
    /// of them are gone.
    pub fn after(&self, cursor: u64, max_bytes: u64) -> Result<Vec<Item>, Gap> {
        let inner = self.lock();
        if cursor < inner.evicted_upto {
            return Err(Gap {
                evicted_upto: inner.evicted_upto,
            });
        }
        let start = inner.items.partition_point(|i| i.seq <= cursor);
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in inner.items.range(start..) {
            if !out.is_empty() && bytes + item.payload.len() as u64 > max_bytes {
                break;
            }
            bytes += item.payload.len() as u64;
            out.push(item.clone());
        }
        Ok(out)
    }

    /// Waits until there is an entry after `cursor`, or `timeout`.
    pub fn wait_after(&self, cursor: u64, timeout: Duration) {
        let inner = self.lock();
        if inner.last_seq > cursor {
            return;
        }
        let _ = self
            .changed
            .wait_timeout_while(inner, timeout, |i| i.last_seq <= cursor);
    }

    /// Wakes every waiting shipper (at shutdown).
    pub fn wake_all(&self) {
        self.changed.notify_all();
    }

    /// What a peer at `cursor` still lacks.
    pub fn pending(&self, cursor: u64) -> Pending {
        let inner = self.lock();
        let start = inner.items.partition_point(|i| i.seq <= cursor);
        let mut p = Pending::default();
        for item in inner.items.range(start..) {
            p.entries += 1;
            p.bytes += item.payload.len() as u64;
            p.oldest_at_ns.get_or_insert(item.at_ns);
        }
        p
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// The highest sequence number pushed (or evicted).
    pub fn last_seq(&self) -> u64 {
        self.lock().last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(seq: u64, len: usize) -> Item {
        Item {
            seq,
            at_ns: seq as i64 * 10,
            payload: Arc::new(vec![0; len]),
        }
    }

    #[test]
    fn entries_after_a_cursor_come_in_order_and_within_the_byte_budget() {
        let b = Backlog::new(1000, 0);
        for seq in [2, 5, 9] {
            b.push(item(seq, 10));
        }
        let got: Vec<u64> = b.after(2, 15).unwrap().iter().map(|i| i.seq).collect();
        assert_eq!(got, vec![5], "15 bytes allow one 10-byte entry");
        let got: Vec<u64> = b.after(0, 1000).unwrap().iter().map(|i| i.seq).collect();
        assert_eq!(got, vec![2, 5, 9]);
        assert!(b.after(9, 1000).unwrap().is_empty());
    }

    #[test]
    fn a_full_backlog_drops_the_oldest_and_reports_the_gap() {
        let b = Backlog::new(25, 0);
        for seq in 1..=4 {
            b.push(item(seq, 10));
        }
        // 40 bytes pushed, 25 allowed: entries 1 and 2 went.
        assert_eq!(b.after(1, 100).unwrap_err(), Gap { evicted_upto: 2 });
        assert_eq!(b.after(2, 100).unwrap().len(), 2);
    }

    #[test]
    fn pending_counts_what_a_peer_lacks_and_since_when() {
        let b = Backlog::new(1000, 0);
        for seq in [3, 4, 7] {
            b.push(item(seq, 5));
        }
        assert_eq!(
            b.pending(3),
            Pending {
                entries: 2,
                bytes: 10,
                oldest_at_ns: Some(40)
            }
        );
        assert_eq!(b.pending(7), Pending::default());
    }

    #[test]
    fn a_restart_without_the_trimmed_entries_starts_with_a_gap_below_them() {
        let b = Backlog::new(1000, 50);
        assert_eq!(b.after(10, 100).unwrap_err(), Gap { evicted_upto: 50 });
        assert!(b.after(50, 100).unwrap().is_empty());
    }
}
