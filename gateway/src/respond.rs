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
    let body = error_body(message, request_id.to_str().unwrap_or_default());
    let Ok(mut resp) = ResponseHeader::build(code, Some(5)) else {
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
        && challenge.is_none_or(|c| resp.insert_header("www-authenticate", c).is_ok());
    if !ok {
        return false;
    }
    session
        .as_downstream_mut()
        .write_error_response(resp, body)
        .await
        .is_ok()
}
