//! Writes a stored answer to the client, with `X-Cache` and `Age`.

use super::entry::Entry;
use super::Outcome;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::time::Duration;

/// The head of a stored answer as served now: its headers, its length, `X-Cache`, `Age`,
/// the request id and whatever else the gateway adds (`extra`).
pub fn head(
    entry: &Entry,
    outcome: Outcome,
    age: Duration,
    request_id: &HeaderValue,
    extra: &[(&'static str, String)],
) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(entry.headers.len() + 4 + extra.len()))?;
    for (name, value) in &entry.headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, entry.body.len())?;
    resp.insert_header("x-cache", outcome.header())?;
    resp.insert_header(http::header::AGE, age.as_secs())?;
    resp.insert_header(crate::request_id::HEADER, request_id.clone())?;
    for (name, value) in extra {
        resp.insert_header(*name, value.as_str())?;
    }
    Ok(resp)
}

/// Writes `entry` as the answer; returns false if the client is already gone.
pub async fn write(session: &mut Session, resp: ResponseHeader, entry: &Entry) -> bool {
    if session
        .write_response_header(Box::new(resp), false)
        .await
        .is_err()
    {
        return false;
    }
    session
        .write_response_body(Some(entry.body.clone()), true)
        .await
        .is_ok()
}
