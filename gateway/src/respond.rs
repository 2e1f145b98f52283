//! Answers to the client: the headers every answer carries, whoever made it (a backend,
//! the cache, the gateway), and the gateway's own answers ([`Refusal`]s) as JSON.

use crate::cache::Outcome;
use crate::ratelimit::headers::{self as limit_headers, Quota};
use crate::refusal::{grpc_message, is_grpc, Refusal};
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;

/// What every answer to a client carries: the request id, the gateway's `traceparent`
/// (`trace_context.rs`; empty before the head is read), what the route's cache did
/// (`X-Cache`), the route's rate limits as the request left them (`RateLimit-Policy`,
/// `RateLimit`), and the sticky cookie of the backend that answered.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    pub request_id: &'a HeaderValue,
    pub traceparent: &'a HeaderValue,
    pub cache: Option<Outcome>,
    pub quotas: &'a [Quota],
    pub sticky_cookie: Option<&'a str>,
}

/// Adds the common headers to an answer's head; the one place they are set.
pub fn add_common(resp: &mut ResponseHeader, c: &Common<'_>) -> pingora::Result<()> {
    resp.insert_header(crate::request_id::HEADER, c.request_id.clone())?;
    if !c.traceparent.is_empty() {
        resp.insert_header(crate::trace_context::TRACEPARENT, c.traceparent.clone())?;
    }
    if let Some(outcome) = c.cache {
        resp.insert_header("x-cache", outcome.header())?;
    }
    if !c.quotas.is_empty() {
        resp.insert_header("ratelimit-policy", limit_headers::policy(c.quotas))?;
        if let Some(current) = limit_headers::current(c.quotas) {
            resp.insert_header("ratelimit", current)?;
        }
    }
    if let Some(cookie) = c.sticky_cookie {
        resp.append_header(http::header::SET_COOKIE, cookie)?;
    }
    Ok(())
}

/// Answers a refusal: its status, JSON body and headers (`refusal.rs`), and the common
/// ones; to a gRPC call, its gRPC status instead ([`grpc_refusal`]). Returns false if the
/// client is already gone.
pub async fn refusal(session: &mut Session, refusal: &Refusal, common: &Common<'_>) -> bool {
    if refusal.closes_connection() {
        session.set_keepalive(None);
    }
    let content_type = session.req_header().headers.get(http::header::CONTENT_TYPE);
    if let Some(ct) = content_type
        .filter(|v| is_grpc(Some(v.as_bytes())))
        .cloned()
    {
        return grpc_refusal(session, refusal, common, ct).await;
    }
    let body = refusal.body(common.request_id.to_str().unwrap_or_default());
    let extra = refusal.headers();
    let Ok(mut resp) = ResponseHeader::build(refusal.status(), Some(6 + extra.len())) else {
        return false;
    };
    let ok = resp
        .insert_header("content-type", "application/json")
        .is_ok()
        && resp
            .insert_header("content-length", body.len().to_string())
            .is_ok()
        && add_common(&mut resp, common).is_ok()
        && extra.iter().enumerate().all(|(i, (k, v))| {
            // A name listed again is another field of it (one challenge per
            // WWW-Authenticate), not a replacement.
            if extra[..i].iter().any(|(seen, _)| seen == k) {
                resp.append_header(*k, v.as_str()).is_ok()
            } else {
                resp.insert_header(*k, v.as_str()).is_ok()
            }
        });
    if !ok {
        return false;
    }
    session
        .as_downstream_mut()
        .write_error_response(resp, body)
        .await
        .is_ok()
}

/// The body of an error answer: `{"error":"...","request_id":"..."}`.
pub fn error_body(message: &str, request_id: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": message, "request_id": request_id }).to_string())
}

/// Answers a gRPC call's refusal as gRPC's "trailers-only" response: HTTP 200, the call's
/// `content-type`, `grpc-status` (`refusal.rs`: 401 UNAUTHENTICATED, 429
/// RESOURCE_EXHAUSTED, 503 UNAVAILABLE, ...) and `grpc-message` in the headers, and no
/// body; over HTTP/2 one HEADERS frame that ends the stream. gRPC clients read the HTTP
/// status of a 4xx or 5xx only as a bare transport failure, so the refusal's reason would
/// be lost in one. The refusal's own headers (`WWW-Authenticate`, `Retry-After`) and the
/// common ones go along.
pub async fn grpc_refusal(
    session: &mut Session,
    refusal: &Refusal,
    common: &Common<'_>,
    content_type: HeaderValue,
) -> bool {
    let extra = refusal.headers();
    let Ok(mut resp) = ResponseHeader::build(200, Some(8 + extra.len())) else {
        return false;
    };
    let ok = resp.insert_header("content-type", content_type).is_ok()
        && resp
            .insert_header("grpc-status", refusal.grpc_code().as_str())
            .is_ok()
        && resp
            .insert_header("grpc-message", grpc_message(&refusal.to_string()))
            .is_ok()
        && add_common(&mut resp, common).is_ok()
        && extra
            .iter()
            .all(|(k, v)| resp.insert_header(*k, v.as_str()).is_ok());
    if !ok {
        return false;
    }
    match session.as_downstream_mut() {
        ServerSession::H2(h2) => h2.write_response_header(Box::new(resp), true).is_ok(),
        other => {
            // gRPC-Web over HTTP/1.1: the same headers and an empty body.
            if resp.insert_header("content-length", "0").is_err() {
                return false;
            }
            other.write_error_response(resp, Bytes::new()).await.is_ok()
        }
    }
}
