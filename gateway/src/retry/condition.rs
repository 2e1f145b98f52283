//! When a failed try may be tried again on another backend: the policy's conditions
//! (`retries.on`) and the rules no policy can lift.
//!
//! A try that never reached a backend (`connect`) may be retried whatever the method: the
//! backend did nothing. Once the request went out, the backend may have acted on it, so a
//! retry is only for idempotent methods (RFC 9110 §9.2.2), and only if the gateway still
//! holds the whole body to send again. Once any byte of the answer went to the client
//! nothing is retried; the caller checks that before asking.

/// The conditions a policy retries on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOn {
    /// The connection to the backend failed (refused, unreachable, TLS, connect timeout).
    pub connect: bool,
    /// The backend closed or reset the connection before its answer began.
    pub reset: bool,
    /// The try's timeout passed before the answer began.
    pub timeout: bool,
    /// Answer statuses that are retried instead of passed on, sorted.
    pub statuses: Vec<u16>,
}

impl Default for RetryOn {
    /// What is safe without asking: the failures that produced no answer at all.
    fn default() -> Self {
        RetryOn {
            connect: true,
            reset: true,
            timeout: false,
            statuses: Vec::new(),
        }
    }
}

/// How a try failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Connect,
    Reset,
    Timeout,
    /// The backend answered with this status (the answer is held back, not yet sent).
    Status(u16),
}

/// What the gateway knows of the request when a try fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub idempotent: bool,
    /// The body sent so far is still buffered whole, so it can be sent again.
    pub replayable: bool,
}

impl RetryOn {
    /// Whether the policy names this cause.
    pub fn names(&self, cause: Cause) -> bool {
        match cause {
            Cause::Connect => self.connect,
            Cause::Reset => self.reset,
            Cause::Timeout => self.timeout,
            Cause::Status(s) => self.statuses.binary_search(&s).is_ok(),
        }
    }

    /// Whether a try that failed with `cause` may be retried, before counting attempts and
    /// the budget.
    pub fn allows(&self, cause: Cause, request: Request) -> bool {
        if !self.names(cause) {
            return false;
        }
        match cause {
            Cause::Connect => true,
            Cause::Reset | Cause::Timeout | Cause::Status(_) => {
                request.idempotent && request.replayable
            }
        }
    }

    /// The names as a policy writes them, for the status page and errors.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (on, name) in [
            (self.connect, "connect"),
            (self.reset, "reset"),
            (self.timeout, "timeout"),
        ] {
            if on {
                out.push(name.to_string());
            }
        }
        out.extend(self.statuses.iter().map(u16::to_string));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Request = Request {
        idempotent: true,
        replayable: true,
    };
    const POST: Request = Request {
        idempotent: false,
        replayable: true,
    };

    fn all() -> RetryOn {
        RetryOn {
            connect: true,
            reset: true,
            timeout: true,
            statuses: vec![502, 503, 504],
        }
    }

    #[test]
    fn a_connect_failure_is_retried_for_any_method() {
        assert!(all().allows(Cause::Connect, POST));
        let body_gone = Request {
            idempotent: false,
            replayable: false,
        };
        assert!(all().allows(Cause::Connect, body_gone), "nothing was sent");
    }

    #[test]
    fn after_the_request_went_out_only_idempotent_replayable_requests_are_retried() {
        for cause in [
            Cause::Reset,
            Cause::Timeout,
            Cause::Status(502),
            Cause::Status(503),
        ] {
            assert!(all().allows(cause, GET), "{cause:?}");
            assert!(!all().allows(cause, POST), "{cause:?}: POST");
            let truncated = Request {
                idempotent: true,
                replayable: false,
            };
            assert!(!all().allows(cause, truncated), "{cause:?}: body gone");
        }
    }

    #[test]
    fn only_the_named_conditions_are_retried() {
        let on = RetryOn::default();
        assert!(on.allows(Cause::Connect, GET));
        assert!(on.allows(Cause::Reset, GET));
        assert!(!on.allows(Cause::Timeout, GET));
        assert!(!on.allows(Cause::Status(503), GET));
        assert!(!all().allows(Cause::Status(500), GET), "500 is not listed");
        assert_eq!(
            all().describe(),
            ["connect", "reset", "timeout", "502", "503", "504"]
        );
    }
}
