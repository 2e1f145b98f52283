//! Why the gateway answers a request itself, as one type, and how each reason is answered.
//!
//! The steps of the pipeline fail with their own errors (`normalize::Rejected`,
//! `auth::AuthError`, `ratelimit::Limited`, `runtime::NoBackend`, Pingora's errors for the
//! upstream tries); they become a [`Refusal`] here, and the status, the JSON body and the
//! headers of each are decided here and nowhere else, as linkerd's proxy maps its errors to
//! responses. The headers every answer carries (request id, `X-Cache`, rate-limit state)
//! are added by `respond.rs`.

use crate::auth::AuthError;
use crate::normalize::Rejected;
use crate::ratelimit::Limited;
use crate::runtime::NoBackend;
use crate::websocket::NotAllowed;
use bytes::Bytes;
use pingora::{Error, ErrorSource, ErrorType};

/// Why the gateway answered instead of a backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The listener's hardening refused the request head (400, 414, 431, 501, ...).
    #[error("{}", .0.message)]
    Malformed(Rejected),
    /// No route matches: 404.
    #[error("no route for {method} {path}")]
    NoRoute { method: String, path: String },
    /// The body is larger than the route takes (declared, or counted as it passed): 413.
    #[error("the request body is larger than route {route}'s max_body_size ({max} bytes)")]
    BodyTooLarge { route: String, max: u64 },
    /// No acceptable credentials (401), or not every role the route requires (403).
    #[error("{}", .0.message())]
    Unauthenticated(AuthError),
    /// A rate limit refused the request, or its store did not answer: 429.
    #[error("{}", .0.message())]
    Limited(Limited),
    /// Every backend of the pool has its limit of requests in flight: 503.
    #[error("every backend is at its limit of requests in flight")]
    PoolFull,
    /// No backend of the pool is healthy, untried and not ejected: 503.
    #[error("no healthy backend available")]
    NoHealthyBackend,
    /// The backend did not answer in time: 504.
    #[error("upstream timed out")]
    UpstreamTimeout,
    /// The backend failed otherwise (connection refused or reset, a malformed answer):
    /// 502, or the status the failure was given.
    #[error("upstream error: {kind}")]
    Upstream { status: u16, kind: &'static str },
    /// The client stopped sending its body for longer than `body_idle_timeout`: 408.
    #[error("the request body stopped arriving (body_idle_timeout)")]
    BodyStalled,
    /// An upgrade the route does not take (a WebSocket on a route without `websocket:`,
    /// or a protocol the gateway does not pass): 403, as Envoy answers it.
    #[error("{0}")]
    UpgradeRefused(NotAllowed),
    /// The client's request could not be read: 400.
    #[error("bad request: {kind}")]
    BadRequest { kind: &'static str },
    /// A bug of the gateway's, contained (a panic in a phase, an answer it cannot write).
    #[error("{message}")]
    Internal { message: &'static str },
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(r) => r.status,
            Refusal::NoRoute { .. } => 404,
            Refusal::BodyTooLarge { .. } => 413,
            Refusal::Unauthenticated(e) => e.status(),
            Refusal::UpgradeRefused(_) => 403,
            Refusal::Limited(_) => 429,
            Refusal::PoolFull | Refusal::NoHealthyBackend => 503,
            Refusal::UpstreamTimeout => 504,
            Refusal::Upstream { status, .. } => *status,
            Refusal::BodyStalled => 408,
            Refusal::BadRequest { .. } => 400,
            Refusal::Internal { .. } => 500,
        }
    }

    /// The label of `gateway_refusals_total` for refusals of the listener's rules.
    pub fn counted_as(&self) -> Option<&'static str> {
        match self {
            Refusal::Malformed(r) => Some(r.reason),
            Refusal::BodyTooLarge { .. } => Some("body_too_large"),
            Refusal::BodyStalled => Some("body_timeout"),
            // A WebSocket refused is counted with the route's handshakes.
            Refusal::UpgradeRefused(n) if n.protocol != "websocket" => {
                Some("upgrade_not_supported")
            }
            _ => None,
        }
    }

    /// Whether the connection closes after the answer: what follows a refused head cannot
    /// be trusted to be framed as the client meant (nor, after a refused upgrade, to be
    /// HTTP at all).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Refusal::Malformed(_) | Refusal::BodyTooLarge { .. } | Refusal::UpgradeRefused(_)
        )
    }

    /// The headers of this answer besides the common ones.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Refusal::Unauthenticated(e) => e
                .challenges()
                .into_iter()
                .map(|c| ("www-authenticate", c))
                .collect(),
            Refusal::Limited(l) => {
                let mut h = vec![("retry-after", l.retry_after.clone())];
                h.extend(l.headers.iter().cloned());
                h
            }
            _ => Vec::new(),
        }
    }

    /// The JSON body: `{"error": ..., "request_id": ...}`, and for a 429 the limit and its
    /// wait.
    pub fn body(&self, request_id: &str) -> Bytes {
        let message = self.to_string();
        let json = match self {
            Refusal::Limited(l) => serde_json::json!({
                "error": message,
                "limit": l.limit,
                "retry_after_s": l.retry_after.parse::<u64>().unwrap_or(1),
                "request_id": request_id,
            }),
            _ => serde_json::json!({ "error": message, "request_id": request_id }),
        };
        Bytes::from(json.to_string())
    }

    /// The refusal of a failed proxy attempt, or `None` when there is nobody to answer (the
    /// client left, or stopped reading).
    pub fn of_proxy_error(e: &Error) -> Option<Refusal> {
        if let Some(r) = e.root_cause().downcast_ref::<Refusal>() {
            return Some(r.clone());
        }
        let kind = e.etype().as_str();
        Some(match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => match code {
                503 => Refusal::NoHealthyBackend,
                504 => Refusal::UpstreamTimeout,
                // A contained panic.
                500 => Refusal::Internal {
                    message: "internal error",
                },
                code => Refusal::Upstream {
                    status: *code,
                    kind,
                },
            },
            (ErrorType::ReadTimedout, ErrorSource::Downstream) => Refusal::BodyStalled,
            (ErrorType::WriteTimedout, ErrorSource::Downstream) => return None,
            (
                ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout,
                _,
            ) => Refusal::UpstreamTimeout,
            (_, ErrorSource::Upstream) => Refusal::Upstream { status: 502, kind },
            (
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed,
                ErrorSource::Downstream,
            ) => return None,
            (_, ErrorSource::Downstream) => Refusal::BadRequest { kind },
            (_, ErrorSource::Internal | ErrorSource::Unset) => {
                Refusal::Upstream { status: 500, kind }
            }
        })
    }

    /// As a Pingora error of the phase that found it, the refusal kept as its cause (so
    /// `fail_to_proxy` answers it as it is).
    pub fn into_error(self) -> Box<Error> {
        let status = self.status();
        Error::because(ErrorType::HTTPStatus(status), self.to_string(), self)
    }
}

/// The gRPC status codes a gateway refusal is answered with (gRPC's `doc/statuscodes.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcCode {
    Unknown = 2,
    DeadlineExceeded = 4,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code of a gateway answer with HTTP status `status`, as gRPC maps the statuses of
    /// intermediaries (`doc/http-grpc-status-mapping.md`: 400 INTERNAL, 401 UNAUTHENTICATED,
    /// 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 502, 503 and 504 UNAVAILABLE, anything
    /// else UNKNOWN), made precise where the gateway knows more: a rate limit (429) and a
    /// body over the route's limit (413) are RESOURCE_EXHAUSTED, as gRPC says of quotas
    /// and oversized messages (that table's 429 UNAVAILABLE would invite an immediate
    /// retry); a stalled request body (408) DEADLINE_EXCEEDED; the gateway's own failure
    /// (500) INTERNAL and a method it does not implement (501) UNIMPLEMENTED. A backend
    /// timeout (504) stays UNAVAILABLE: the caller's deadline is its own `grpc-timeout`,
    /// and the try may well succeed elsewhere.
    pub fn of_status(status: u16) -> GrpcCode {
        match status {
            400 | 500 => GrpcCode::Internal,
            401 => GrpcCode::Unauthenticated,
            403 => GrpcCode::PermissionDenied,
            404 | 501 => GrpcCode::Unimplemented,
            408 => GrpcCode::DeadlineExceeded,
            413 | 429 => GrpcCode::ResourceExhausted,
            502..=504 => GrpcCode::Unavailable,
            _ => GrpcCode::Unknown,
        }
    }

    /// The `grpc-status` value.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::Unknown => "2",
            GrpcCode::DeadlineExceeded => "4",
            GrpcCode::PermissionDenied => "7",
            GrpcCode::ResourceExhausted => "8",
            GrpcCode::Unimplemented => "12",
            GrpcCode::Internal => "13",
            GrpcCode::Unavailable => "14",
            GrpcCode::Unauthenticated => "16",
        }
    }
}

/// Whether a request is gRPC (or gRPC-Web): its `content-type` is `application/grpc`,
/// alone or with a `+format` or `-web` suffix. Its refusals are then answered in gRPC's
/// trailers-only form.
pub fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|v| {
        let prefix = b"application/grpc";
        v.len() >= prefix.len()
            && v[..prefix.len()].eq_ignore_ascii_case(prefix)
            && matches!(v.get(prefix.len()), None | Some(b'+' | b'-' | b';'))
    })
}

/// A `grpc-message` value: the message percent-encoded as gRPC's HTTP/2 mapping says
/// (every byte outside printable ASCII, and `%`).
pub fn grpc_message(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Refusal {
    /// The gRPC status of this refusal (see [`GrpcCode::of_status`]).
    pub fn grpc_code(&self) -> GrpcCode {
        GrpcCode::of_status(self.status())
    }
}

impl From<Rejected> for Refusal {
    fn from(r: Rejected) -> Self {
        Refusal::Malformed(r)
    }
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        Refusal::Unauthenticated(e)
    }
}

impl From<Limited> for Refusal {
    fn from(l: Limited) -> Self {
        Refusal::Limited(l)
    }
}

impl From<NotAllowed> for Refusal {
    fn from(n: NotAllowed) -> Self {
        Refusal::UpgradeRefused(n)
    }
}

impl From<NoBackend> for Refusal {
    fn from(n: NoBackend) -> Self {
        match n {
            NoBackend::Full => Refusal::PoolFull,
            NoBackend::Unavailable => Refusal::NoHealthyBackend,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::challenge::Scheme;

    #[test]
    fn each_refusal_has_its_status_body_and_headers() {
        let cases: Vec<(Refusal, u16, &str)> = vec![
            (
                Refusal::NoRoute {
                    method: "GET".into(),
                    path: "/x".into(),
                },
                404,
                "no route for GET /x",
            ),
            (
                Refusal::BodyTooLarge {
                    route: "w".into(),
                    max: 10,
                },
                413,
                "the request body is larger than route w's max_body_size (10 bytes)",
            ),
            (
                Refusal::Unauthenticated(AuthError::Missing { schemes: vec![] }),
                401,
                "authentication required",
            ),
            (
                Refusal::Unauthenticated(AuthError::Forbidden {
                    required: vec!["admin".into()],
                }),
                403,
                "insufficient role: requires admin",
            ),
            (
                Refusal::PoolFull,
                503,
                "every backend is at its limit of requests in flight",
            ),
            (
                Refusal::NoHealthyBackend,
                503,
                "no healthy backend available",
            ),
            (Refusal::UpstreamTimeout, 504, "upstream timed out"),
            (
                Refusal::UpgradeRefused(NotAllowed {
                    route: "q".into(),
                    protocol: "websocket".into(),
                }),
                403,
                "route q does not take upgrades to websocket",
            ),
            (
                Refusal::BodyStalled,
                408,
                "the request body stopped arriving (body_idle_timeout)",
            ),
        ];
        for (r, status, message) in cases {
            assert_eq!(r.status(), status, "{r:?}");
            let body: serde_json::Value = serde_json::from_slice(&r.body("id-1")).unwrap();
            assert_eq!(body["error"], message, "{r:?}");
            assert_eq!(body["request_id"], "id-1");
        }
        let challenge = Refusal::Unauthenticated(AuthError::Missing { schemes: vec![] }).headers();
        assert_eq!(
            challenge,
            vec![("www-authenticate", "Bearer realm=\"gateway\"".to_string())]
        );
        let challenges = Refusal::Unauthenticated(AuthError::Missing {
            schemes: vec![Scheme::Token, Scheme::Basic],
        })
        .headers();
        assert_eq!(
            challenges,
            vec![
                ("www-authenticate", "Token realm=\"gateway\"".to_string()),
                (
                    "www-authenticate",
                    "Basic realm=\"gateway\", charset=\"UTF-8\"".to_string()
                )
            ],
            "one header per scheme"
        );
    }

    #[test]
    fn a_limit_answers_429_with_its_name_wait_and_headers() {
        let r = Refusal::from(Limited {
            limit: "per-ip".into(),
            retry_after: "3".into(),
            unavailable: false,
            headers: vec![("ratelimit", "\"per-ip\";r=0;t=3".into())],
        });
        assert_eq!(r.status(), 429);
        let body: serde_json::Value = serde_json::from_slice(&r.body("i")).unwrap();
        assert_eq!(body["error"], "rate limited by per-ip");
        assert_eq!(body["limit"], "per-ip");
        assert_eq!(body["retry_after_s"], 3);
        let headers = r.headers();
        assert_eq!(headers[0], ("retry-after", "3".to_string()));
        assert_eq!(headers[1].0, "ratelimit");
    }

    #[test]
    fn gateway_refusals_of_grpc_calls_map_to_grpc_status_codes() {
        let cases = [
            (
                Refusal::Unauthenticated(AuthError::Missing { schemes: vec![] }),
                "16",
            ),
            (
                Refusal::Unauthenticated(AuthError::Forbidden {
                    required: vec!["admin".into()],
                }),
                "7",
            ),
            (
                Refusal::from(Limited {
                    limit: "l".into(),
                    retry_after: "1".into(),
                    unavailable: false,
                    headers: vec![],
                }),
                "8",
            ),
            (Refusal::NoHealthyBackend, "14"),
            (Refusal::PoolFull, "14"),
            (
                Refusal::Upstream {
                    status: 502,
                    kind: "ConnectRefused",
                },
                "14",
            ),
            (Refusal::UpstreamTimeout, "14"),
            (
                Refusal::BodyTooLarge {
                    route: "r".into(),
                    max: 1,
                },
                "8",
            ),
            (Refusal::BadRequest { kind: "x" }, "13"),
            (
                Refusal::NoRoute {
                    method: "POST".into(),
                    path: "/a.B/C".into(),
                },
                "12",
            ),
            (Refusal::BodyStalled, "4"),
            (Refusal::Internal { message: "x" }, "13"),
        ];
        for (r, code) in cases {
            assert_eq!(r.grpc_code().as_str(), code, "{r:?}");
        }
        assert_eq!(GrpcCode::of_status(418), GrpcCode::Unknown);
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc-web+proto",
            "application/grpc; charset=x",
        ] {
            assert!(is_grpc(Some(yes.as_bytes())), "{yes}");
        }
        for no in ["application/json", "application/grpcx", "text/plain", ""] {
            assert!(!is_grpc(Some(no.as_bytes())), "{no}");
        }
        assert!(!is_grpc(None));
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(
            grpc_message("rate limited by per-ip: 100%"),
            "rate limited by per-ip: 100%25"
        );
        assert_eq!(grpc_message("é\n"), "%C3%A9%0A");
    }

    #[test]
    fn proxy_errors_map_to_statuses_and_a_kept_refusal_wins() {
        let e = Error::explain(ErrorType::ConnectTimedout, "x");
        assert_eq!(Refusal::of_proxy_error(&e).map(|r| r.status()), Some(504));
        let e = Error::new_up(ErrorType::ConnectRefused);
        assert_eq!(Refusal::of_proxy_error(&e).map(|r| r.status()), Some(502));
        let e = Error::new_down(ErrorType::WriteError);
        assert!(Refusal::of_proxy_error(&e).is_none(), "the client left");
        let e = Refusal::PoolFull.into_error();
        let r = Refusal::of_proxy_error(&e);
        assert!(matches!(r, Some(Refusal::PoolFull)), "{r:?}");
    }
}
