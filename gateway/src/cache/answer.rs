//! Writes a stored answer to the client, with its `Age`.

use super::entry::Entry;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use std::time::Duration;

/// The head of a stored answer as served now: its headers, its length and `Age`. The
/// headers every answer carries (`X-Cache`, the request id, ...) are the pipeline's to add.
pub fn head(entry: &Entry, age: Duration) -> pingora::Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(200, Some(entry.headers.len() + 8))?;
    for (name, value) in &entry.headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    resp.insert_header(http::header::CONTENT_LENGTH, entry.body.len())?;
    resp.insert_header(http::header::AGE, age.as_secs())?;
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
