//! Answers to the client: the headers every answer carries, whoever made it (a backend,
//! the cache, the gateway), and the gateway's own answers ([`Refusal`]s) as JSON.

use crate::cache::Outcome;
use crate::ratelimit::headers::{self as limit_headers, Quota};
use crate::refusal::Refusal;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// What every answer to a client carries: the request id, what the route's cache did
/// (`X-Cache`), the route's rate limits as the request left them (`RateLimit-Policy`,
/// `RateLimit`), and the sticky cookie of the backend that answered.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    pub request_id: &'a HeaderValue,
    pub cache: Option<Outcome>,
    pub quotas: &'a [Quota],
    pub sticky_cookie: Option<&'a str>,
}

/// Adds the common headers to an answer's head; the one place they are set.
pub fn add_common(resp: &mut ResponseHeader, c: &Common<'_>) -> pingora::Result<()> {
    resp.insert_header(crate::request_id::HEADER, c.request_id.clone())?;
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
/// ones. Returns false if the client is already gone.
pub async fn refusal(session: &mut Session, refusal: &Refusal, common: &Common<'_>) -> bool {
    if refusal.closes_connection() {
        session.set_keepalive(None);
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
