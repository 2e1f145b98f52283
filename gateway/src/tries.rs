//! One request's tries at the backends of its pool: which were tried, how each try ended
//! (fed to the backend's recent outcomes and to outlier detection, once per try), and
//! whether another try is allowed. The proxy calls in at each phase; the rules live here.

use crate::backend::InFlight;
use crate::config::policy::Route;
use crate::config::resilience::RetryPolicy;
use crate::health::outlier::Ejection;
use crate::retry::condition::{Cause, Request};
use crate::route::Routed;
use crate::runtime::PoolState;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The try in progress.
#[derive(Debug)]
struct Current {
    /// The backend's position in the pool.
    index: usize,
    guard: InFlight,
    /// Its outcome was recorded (a try counts once, however many phases see it end).
    recorded: bool,
}

/// Why a failed try is not tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRetry {
    /// The policy does not retry this failure, or not for this request (method, body).
    NotRetryable,
    /// The answer had begun reaching the client.
    Answered,
    /// The route's attempts are used up.
    Attempts,
    /// No backend is left that the request has not tried.
    NoBackend,
    /// The request's timeout has run out.
    Deadline,
    /// The pool's retry budget is spent.
    Budget,
}

/// One request's tries.
#[derive(Debug, Default)]
pub struct Tries {
    tried: Vec<SocketAddr>,
    current: Option<Current>,
    /// Set once the backend's answer began going to the client: nothing is retried after.
    answered: bool,
    /// The current try's answer was held back to be retried (see `hold_for_retry`).
    held: bool,
}

impl Tries {
    /// Backends tried so far, in order (the current one last).
    pub fn tried(&self) -> &[SocketAddr] {
        &self.tried
    }

    /// Whether this is the first try.
    pub fn is_first(&self) -> bool {
        self.tried.is_empty()
    }

    /// A try begins at backend `index` (`address`); the guard counts it in flight. The
    /// previous try's guard is dropped here, ending its count.
    pub fn start(&mut self, index: usize, address: SocketAddr, guard: InFlight) {
        self.tried.push(address);
        self.current = Some(Current {
            index,
            guard,
            recorded: false,
        });
        self.held = false;
    }

    /// The current try's backend position.
    pub fn current_index(&self) -> Option<usize> {
        self.current.as_ref().map(|c| c.index)
    }

    /// Feeds the current backend's latency estimate (once per try): the time from sending
    /// to `now`, when its answer began or the try failed.
    pub fn observe_latency(&mut self, now: Instant) -> Option<(usize, Duration)> {
        let c = self.current.as_mut()?;
        let took = c.guard.observe(now)?;
        Some((c.index, took))
    }

    /// Records how the current try ended, once: in the backend's recent outcomes and in its
    /// pool's outlier detection. Returns the ejection this outcome caused, if any.
    pub fn record(&mut self, pool: &PoolState, ok: bool, now: Instant) -> Option<Ejection> {
        let c = self.current.as_mut().filter(|c| !c.recorded)?;
        c.recorded = true;
        pool.backends.get(c.index)?.record_outcome(ok);
        pool.live.outlier.as_ref()?.record(c.index, ok, now)
    }

    /// The answer begins going to the client.
    pub fn answer_started(&mut self) {
        self.answered = true;
    }

    pub fn answered(&self) -> bool {
        self.answered
    }

    /// Whether a try that failed with `cause` may be tried again on another backend, and
    /// if so takes a retry from the pool's budget (the budget is asked last, so only a
    /// retry that happens spends it). `elapsed` is the request's age.
    pub fn may_retry(
        &self,
        routed: &Routed,
        cause: Cause,
        request: Request,
        elapsed: Duration,
        now: Instant,
    ) -> Result<(), NoRetry> {
        let (route, policy) = (routed.route(), routed.retries());
        let Some(pool) = routed.pool() else {
            return Err(NoRetry::NoBackend);
        };
        if self.answered {
            return Err(NoRetry::Answered);
        }
        if !policy.on.allows(cause, request) {
            return Err(NoRetry::NotRetryable);
        }
        if self.tried.len() >= policy.attempts.get() as usize {
            return Err(NoRetry::Attempts);
        }
        if !pool.has_untried(&self.tried) {
            return Err(NoRetry::NoBackend);
        }
        if elapsed >= route.request_timeout {
            return Err(NoRetry::Deadline);
        }
        if !pool.live.budget.try_retry(now) {
            return Err(NoRetry::Budget);
        }
        Ok(())
    }

    /// The current try's answer is held back (not sent to the client) because it will be
    /// retried; the proxy's error hook reads it back with [`Tries::take_held`].
    pub fn hold_for_retry(&mut self) {
        self.held = true;
    }

    pub fn take_held(&mut self) -> bool {
        std::mem::take(&mut self.held)
    }

    /// Ends the current try's in-flight count (the request is over).
    pub fn end(&mut self) {
        self.current = None;
    }
}

/// How long the next try may wait for its answer: the per-try timeout of `retries`, but
/// never past the route's request timeout.
pub fn try_timeout(route: &Route, retries: &RetryPolicy, elapsed: Duration) -> Duration {
    let left = route.request_timeout.saturating_sub(elapsed);
    let per_try = retries.per_try_timeout.unwrap_or(left);
    // At least a millisecond: a zero timeout means "none" to some clients.
    per_try.min(left).max(Duration::from_millis(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Registry;
    use crate::clock::{Clock, ManualClock};
    use crate::config::parse_policy;
    use crate::route::resolve;
    use crate::runtime::Snapshot;
    use pingora::http::RequestHeader;
    use std::path::Path;
    use std::sync::Arc;

    const GET: Request = Request {
        idempotent: true,
        replayable: true,
    };

    fn snapshot(retries: &str) -> Arc<Snapshot> {
        let text = format!(
            "pools:\n  p:\n    backends:\n      - {{ address: 127.0.0.1:1 }}\n      - {{ address: 127.0.0.1:2 }}\n      - {{ address: 127.0.0.1:3 }}\n    retries: {retries}\nroutes:\n  - name: r\n    match: {{ path_prefix: / }}\n    pool: p\n    timeouts: {{ request: 10s }}\n"
        );
        let policy = parse_policy(&text, Path::new("p.yaml")).unwrap();
        Snapshot::new(policy, 1, &Registry::default())
    }

    /// The request `GET /` routed in `snap`.
    fn routed(snap: &Arc<Snapshot>) -> Routed {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("host", "gateway").unwrap();
        resolve(snap.clone(), &req).unwrap()
    }

    fn start(t: &mut Tries, snap: &Snapshot, i: usize, now: Instant) {
        let p = &snap.pools["p"];
        let guard = p.backends[i].start_request(now);
        t.start(i, p.pool.backends[i].address, guard);
    }

    #[test]
    fn retries_stop_at_the_attempts_the_answer_and_the_deadline() {
        let snap = snapshot(
            "{ attempts: 3, on: [connect, 503], budget: { ratio: 100%, min_per_second: 100 } }",
        );
        let route = &routed(&snap);
        let clock = ManualClock::new();
        let now = clock.now();
        let mut t = Tries::default();
        let s = Duration::ZERO;
        start(&mut t, &snap, 0, now);
        assert_eq!(t.may_retry(route, Cause::Status(503), GET, s, now), Ok(()));
        assert_eq!(
            t.may_retry(route, Cause::Status(502), GET, s, now),
            Err(NoRetry::NotRetryable)
        );
        assert_eq!(
            t.may_retry(route, Cause::Connect, GET, Duration::from_secs(10), now),
            Err(NoRetry::Deadline)
        );
        start(&mut t, &snap, 1, now);
        start(&mut t, &snap, 2, now);
        assert_eq!(
            t.may_retry(route, Cause::Connect, GET, s, now),
            Err(NoRetry::Attempts)
        );
        let mut answered = Tries::default();
        start(&mut answered, &snap, 0, now);
        answered.answer_started();
        assert_eq!(
            answered.may_retry(route, Cause::Connect, GET, s, now),
            Err(NoRetry::Answered)
        );
    }

    #[test]
    fn only_a_retry_that_happens_spends_the_budget() {
        // No reserve and a 50% share: two requests earn one retry.
        let snap = snapshot(
            "{ attempts: 3, on: [connect, reset], budget: { ratio: 50%, min_per_second: 0 } }",
        );
        let (route, pool) = (&routed(&snap), &snap.pools["p"]);
        let clock = ManualClock::new();
        let now = clock.now();
        pool.live.budget.record_request(now);
        pool.live.budget.record_request(now);
        let mut t = Tries::default();
        start(&mut t, &snap, 0, now);
        let post = Request {
            idempotent: false,
            replayable: true,
        };
        let s = Duration::ZERO;
        assert_eq!(
            t.may_retry(route, Cause::Reset, post, s, now),
            Err(NoRetry::NotRetryable)
        );
        assert_eq!(t.may_retry(route, Cause::Reset, GET, s, now), Ok(()));
        assert_eq!(
            t.may_retry(route, Cause::Reset, GET, s, now),
            Err(NoRetry::Budget)
        );
    }

    #[test]
    fn a_try_is_recorded_once_and_a_try_timeout_never_outlasts_the_request() {
        let snap = snapshot("{ attempts: 2, per_try_timeout: 3s }");
        let (route, pool) = (&snap.policy.routes[0], &snap.pools["p"]);
        let clock = ManualClock::new();
        let mut t = Tries::default();
        start(&mut t, &snap, 1, clock.now());
        t.record(pool, false, clock.now());
        t.record(pool, true, clock.now());
        assert_eq!(pool.backends[1].recent_outcomes(), (1, 1));
        let retries = &route.targets[0].retries;
        assert_eq!(
            try_timeout(route, retries, Duration::ZERO),
            Duration::from_secs(3)
        );
        assert_eq!(
            try_timeout(route, retries, Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(
            try_timeout(route, retries, Duration::from_secs(11)),
            Duration::from_millis(1)
        );
    }
}
