//! Answers shared between the dashboard's viewers. The page asks for `/admin/status?shared`
//! and `/metrics?shared`: an answer made less than [`FRESH_FOR`] ago is served again, so ten
//! open dashboards cost the gateway one render a second, not ten. Without `shared`
//! (Prometheus, scripts, tests), every read is made fresh.

use crate::clock::Clock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a shared answer is served again. Under the page's one-second refresh, so every
/// viewer still sees each second's figures.
pub const FRESH_FOR: Duration = Duration::from_millis(900);

/// The last shared answer of each endpoint.
#[derive(Debug)]
pub struct SharedAnswers {
    clock: Arc<dyn Clock>,
    kept: Mutex<HashMap<&'static str, (Instant, Arc<str>)>>,
}

impl SharedAnswers {
    pub fn new(clock: Arc<dyn Clock>) -> SharedAnswers {
        SharedAnswers {
            clock,
            kept: Mutex::new(HashMap::new()),
        }
    }

    /// The answer of `endpoint` made less than [`FRESH_FOR`] ago, if any.
    pub fn fresh(&self, endpoint: &'static str) -> Option<Arc<str>> {
        let now = self.clock.now();
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, body) = kept.get(endpoint)?;
        (now.saturating_duration_since(*at) < FRESH_FOR).then(|| body.clone())
    }

    /// Keeps `body` as `endpoint`'s answer from now.
    pub fn keep(&self, endpoint: &'static str, body: Arc<str>) {
        let now = self.clock.now();
        self.kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(endpoint, (now, body));
    }
}

/// Whether a request's query string asks for a shared answer (`shared`, `shared=1`, ...).
pub fn asked(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("shared"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn a_shared_answer_serves_again_for_less_than_its_time_only() {
        let clock = Arc::new(ManualClock::new());
        let shared = SharedAnswers::new(clock.clone());
        assert!(shared.fresh("metrics").is_none());
        shared.keep("metrics", Arc::from("a 1\n"));
        clock.advance(FRESH_FOR - Duration::from_millis(1));
        assert_eq!(shared.fresh("metrics").as_deref(), Some("a 1\n"));
        assert!(shared.fresh("status").is_none());
        clock.advance(Duration::from_millis(1));
        assert!(shared.fresh("metrics").is_none());
    }

    #[test]
    fn only_the_shared_parameter_asks_for_it() {
        assert!(asked(Some("shared")));
        assert!(asked(Some("x=1&shared=1")));
        assert!(!asked(None));
        assert!(!asked(Some("notshared=1")));
        assert!(!asked(Some("cache=shared")));
    }
}
