//! Backend health: the state machine (pure) and the active checker that feeds it.
//!
//! A backend is taken out after `unhealthy_threshold` consecutive failed checks and back in
//! after `healthy_threshold` consecutive good ones. The verdict is part of each backend's
//! live state (`backend.rs`), so it survives a policy reload for backends that stay.

pub mod active;
pub mod grpc;
pub mod outlier;

use crate::config::policy::HealthCheck;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Consecutive results and the verdict they lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub healthy: bool,
    pub successes: u32,
    pub failures: u32,
}

impl Default for HealthState {
    /// A new backend is taken as healthy until checks say otherwise, so a starting
    /// gateway serves at once (failover covers a backend that is in fact down).
    fn default() -> Self {
        HealthState {
            healthy: true,
            successes: 0,
            failures: 0,
        }
    }
}

/// A change of verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Down,
    Up,
}

impl HealthState {
    /// Records one check result; returns the transition it causes, if any.
    pub fn observe(&mut self, ok: bool, check: &HealthCheck) -> Option<Transition> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
            if !self.healthy && self.successes >= check.healthy_threshold.get() {
                self.healthy = true;
                return Some(Transition::Up);
            }
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.healthy && self.failures >= check.unhealthy_threshold.get() {
                self.healthy = false;
                return Some(Transition::Down);
            }
        }
        None
    }
}

/// One backend's health as the data plane reads it (lock-free) and the checker writes it.
#[derive(Debug)]
pub struct BackendHealth {
    healthy: AtomicBool,
    state: Mutex<HealthState>,
    /// Checks run, for the status page.
    pub checks: AtomicU64,
}

impl BackendHealth {
    pub fn new() -> Self {
        BackendHealth {
            healthy: AtomicBool::new(true),
            state: Mutex::new(HealthState::default()),
            checks: AtomicU64::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn observe(&self, ok: bool, check: &HealthCheck) -> Option<Transition> {
        self.checks.fetch_add(1, Ordering::Relaxed);
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let t = st.observe(ok, check);
        self.healthy.store(st.healthy, Ordering::Relaxed);
        t
    }
}

impl Default for BackendHealth {
    fn default() -> Self {
        BackendHealth::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            healthy_threshold: NonZeroU32::new(healthy).unwrap(),
            unhealthy_threshold: NonZeroU32::new(unhealthy).unwrap(),
            ..HealthCheck::default()
        }
    }

    #[test]
    fn a_backend_goes_down_on_the_nth_consecutive_failure_not_before() {
        let c = check(2, 3);
        let mut s = HealthState::default();
        assert_eq!(s.observe(false, &c), None);
        assert_eq!(s.observe(false, &c), None, "2 of 3 failures: still in");
        assert!(s.healthy);
        assert_eq!(s.observe(false, &c), Some(Transition::Down));
        assert!(!s.healthy);
        assert_eq!(s.observe(false, &c), None, "no second transition");
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let c = check(2, 2);
        let mut s = HealthState::default();
        s.observe(false, &c);
        s.observe(true, &c);
        assert_eq!(s.observe(false, &c), None, "the count restarted");
        assert_eq!(s.observe(false, &c), Some(Transition::Down));
    }

    #[test]
    fn a_down_backend_comes_back_after_the_healthy_threshold() {
        let c = check(2, 1);
        let mut s = HealthState::default();
        assert_eq!(s.observe(false, &c), Some(Transition::Down));
        assert_eq!(s.observe(true, &c), None, "1 of 2 successes: still out");
        assert_eq!(s.observe(true, &c), Some(Transition::Up));
    }
}
