//! A panicking handler costs one request, not the connection or the node: it is answered
//! `500` in InfluxDB's error shape, naming the request id, counted in
//! `tsdb_http_panics_total`, and logged once at error with that id.
//!
//! The answer comes from tower-http's `CatchPanicLayer` ([`layer`]); the log line from the
//! process's panic hook ([`install_hook`], which `main` calls), because only the hook sees
//! where the panic happened. For a panic while a request is handled the hook logs instead of
//! printing; any other panic (a shipper thread, a blocking task) goes to the previous hook
//! as before.

use super::{error_response, request_id};
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use prometheus::IntCounter;
use std::any::Any;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};

/// Builds the answer to a panic and counts it.
#[derive(Debug, Clone)]
pub struct PanicAnswer {
    panics: IntCounter,
}

impl ResponseForPanic for PanicAnswer {
    type ResponseBody = Body;

    fn response_for_panic(&mut self, _payload: Box<dyn Any + Send + 'static>) -> Response<Body> {
        self.panics.inc();
        let id = request_id::current().unwrap_or_else(|| "unknown".into());
        error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("internal error: request {id} failed; the node's log names it"),
        )
    }
}

/// The layer that turns a panic below it into a `500`, counted in `panics`.
pub fn layer(panics: IntCounter) -> CatchPanicLayer<PanicAnswer> {
    CatchPanicLayer::custom(PanicAnswer { panics })
}

/// Logs a panic during a request once, at error, with the request id; leaves other panics
/// to the hook that was installed before.
pub fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| match request_id::current() {
        Some(id) => tracing::error!(
            request_id = %id,
            location = %info.location().map_or_else(|| "unknown".into(), |l| l.to_string()),
            "handler panicked: {}",
            info.payload_as_str().unwrap_or("(a non-text panic payload)")
        ),
        None => previous(info),
    }));
}
