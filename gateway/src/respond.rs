//! The gateway's own answers (no route, no backend, upstream failures) as JSON errors.

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// The body of an error answer: `{"error":"...","request_id":"..."}`.
pub fn error_body(message: &str, request_id: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "error": message, "request_id": request_id }).to_string())
}

/// Writes a JSON error answer; returns false if the client is already gone.
pub async fn json_error(
    session: &mut Session,
    code: u16,
    message: &str,
    request_id: &HeaderValue,
) -> bool {
    json_error_with(session, code, message, request_id, None).await
}

/// [`json_error`] with a `WWW-Authenticate` challenge (RFC 6750).
pub async fn json_error_with(
    session: &mut Session,
    code: u16,
    message: &str,
    request_id: &HeaderValue,
    challenge: Option<String>,
) -> bool {
    let headers: Vec<(&'static str, String)> = challenge
        .map(|c| ("www-authenticate", c))
        .into_iter()
        .collect();
    let body = error_body(message, request_id.to_str().unwrap_or_default());
    json_answer(session, code, body, request_id, &headers).await
}

/// The 429 of a rate limit: its name and wait in the body, `Retry-After` and the
/// `RateLimit-*` headers.
pub async fn rate_limited(
    session: &mut Session,
    request_id: &HeaderValue,
    limit: &str,
    retry_after: &str,
    unavailable: bool,
    headers: &[(&'static str, String)],
) -> bool {
    let message = if unavailable {
        format!("rate limit {limit} unavailable (its store does not answer)")
    } else {
        format!("rate limited by {limit}")
    };
    let body = Bytes::from(
        serde_json::json!({
            "error": message,
            "limit": limit,
            "retry_after_s": retry_after.parse::<u64>().unwrap_or(1),
            "request_id": request_id.to_str().unwrap_or_default(),
        })
        .to_string(),
    );
    let mut all = vec![("retry-after", retry_after.to_string())];
    all.extend(headers.iter().cloned());
    json_answer(session, 429, body, request_id, &all).await
}

/// Writes a JSON answer with extra headers; returns false if the client is already gone.
async fn json_answer(
    session: &mut Session,
    code: u16,
    body: Bytes,
    request_id: &HeaderValue,
    headers: &[(&'static str, String)],
) -> bool {
    let Ok(mut resp) = ResponseHeader::build(code, Some(4 + headers.len())) else {
        return false;
    };
    let ok = resp
        .insert_header("content-type", "application/json")
        .is_ok()
        && resp
            .insert_header("content-length", body.len().to_string())
            .is_ok()
        && resp
            .insert_header(crate::request_id::HEADER, request_id.clone())
            .is_ok()
        && headers
            .iter()
            .all(|(k, v)| resp.insert_header(*k, v.as_str()).is_ok());
    if !ok {
        return false;
    }
    session
        .as_downstream_mut()
        .write_error_response(resp, body)
        .await
        .is_ok()
}
