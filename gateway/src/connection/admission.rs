//! Which connections a listener takes: at most `max_connections` in all and
//! `max_connections_per_client` from one client address (nginx's `limit_conn`), counted
//! exactly while they are served.

use prometheus::IntGauge;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener serves `max_connections` already.
    Total,
    /// The client's address has `max_connections_per_client` already.
    PerClient,
}

impl Refused {
    /// The label of the refusal in metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerClient => "max_connections_per_client",
        }
    }
}

/// The connection counts of one listener.
#[derive(Debug)]
pub struct Admission {
    max_total: u32,
    max_per_client: u32,
    total: AtomicU32,
    per_client: Mutex<HashMap<IpAddr, u32>>,
    open: IntGauge,
}

/// A connection being served; dropping it frees its place.
#[derive(Debug)]
pub struct Admitted {
    admission: Arc<Admission>,
    client: Option<IpAddr>,
}

impl Admission {
    /// Limits of at least one connection each; `open` shows the count in metrics.
    pub fn new(max_total: u32, max_per_client: u32, open: IntGauge) -> Arc<Self> {
        Arc::new(Admission {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            total: AtomicU32::new(0),
            per_client: Mutex::new(HashMap::new()),
            open,
        })
    }

    /// Takes a place for a connection from `client` (unknown for a Unix socket), or says
    /// why there is none.
    pub fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Admitted, Refused> {
        self.total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_total).then_some(n + 1)
            })
            .map_err(|_| Refused::Total)?;
        if let Some(ip) = client {
            let mut counts = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
            let n = counts.entry(ip).or_insert(0);
            if *n >= self.max_per_client {
                drop(counts);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerClient);
            }
            *n += 1;
        }
        self.open.inc();
        Ok(Admitted {
            admission: self.clone(),
            client,
        })
    }

    /// Connections being served.
    pub fn open(&self) -> u32 {
        self.total.load(Ordering::Acquire)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let a = &self.admission;
        if let Some(ip) = self.client {
            let mut counts = a.per_client.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&ip);
                }
            }
        }
        a.total.fetch_sub(1, Ordering::AcqRel);
        a.open.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(total: u32, per_client: u32) -> Arc<Admission> {
        Admission::new(total, per_client, IntGauge::new("open", "open").unwrap())
    }

    #[test]
    fn a_client_gets_its_limit_of_connections_and_then_a_refusal() {
        let a = admission(10, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = a.admit(Some(ip)).unwrap();
        let _second = a.admit(Some(ip)).unwrap();
        assert_eq!(a.admit(Some(ip)).unwrap_err(), Refused::PerClient);
        // Another client is not affected, and the refusal took no place.
        let _other = a.admit(Some("10.0.0.2".parse().unwrap())).unwrap();
        assert_eq!(a.open(), 3);
        drop(first);
        assert!(a.admit(Some(ip)).is_ok());
    }

    #[test]
    fn the_listener_takes_its_limit_in_all_and_frees_places_as_connections_end() {
        let a = admission(2, 100);
        let one = a.admit(Some("10.0.0.1".parse().unwrap())).unwrap();
        let two = a.admit(None).unwrap();
        assert_eq!(
            a.admit(Some("10.0.0.3".parse().unwrap())).unwrap_err(),
            Refused::Total
        );
        assert_eq!(a.open.get(), 2);
        drop((one, two));
        assert_eq!((a.open(), a.open.get()), (0, 0));
        assert!(
            a.per_client.lock().unwrap().is_empty(),
            "no entry outlives its connections"
        );
    }
}
