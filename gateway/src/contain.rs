//! A panic inside a pipeline phase is contained: it becomes an error the pipeline answers
//! (500, with the request id, through `fail_to_proxy`), counted in `gateway_panics_total`
//! and logged once with its phase, instead of a connection dropped without a word.
//!
//! A panic is a bug, never an answer to input; this is the last line behind the parsers'
//! own checks and their fuzz targets, so one bad request cannot take its connection (or,
//! with HTTP/2, its neighbours) down silently.

use crate::metrics::Metrics;
use futures_util::FutureExt;
use http::HeaderValue;
use pingora::{Error, ErrorType};
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

/// Which request a phase runs for, so a panic's log event names it and its trace. Cheap to
/// make per phase: the id's bytes are shared, the trace id is formatted only for a panic.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: HeaderValue,
    pub trace_id: Option<u128>,
}

impl RequestIds {
    /// The trace id as a `traceparent` writes it, or empty.
    pub fn trace_hex(&self) -> String {
        self.trace_id
            .map(|t| format!("{t:032x}"))
            .unwrap_or_default()
    }
}

/// Runs an async phase; a panic in it becomes a 500 error naming the phase.
///
/// A plain function returning the wrapped future, not an `async fn`: the phase's future is
/// large, and an `async fn` would hold it twice in its own state (the argument and the
/// value it awaits), copying both into each boxed phase of every request.
pub fn phase<'a, T: 'a>(
    name: &'static str,
    metrics: &'a Metrics,
    ids: RequestIds,
    run: impl Future<Output = pingora::Result<T>> + 'a,
) -> impl Future<Output = pingora::Result<T>> + 'a {
    AssertUnwindSafe(run)
        .catch_unwind()
        .map(move |caught| caught.unwrap_or_else(|panic| Err(panicked(name, metrics, &ids, panic))))
}

/// Runs a phase that cannot fail; after a panic, `or` stands in for its result.
pub fn sync_phase<T>(
    name: &'static str,
    metrics: &Metrics,
    ids: RequestIds,
    run: impl FnOnce() -> T,
    or: impl FnOnce(Box<Error>) -> T,
) -> T {
    match std::panic::catch_unwind(AssertUnwindSafe(run)) {
        Ok(result) => result,
        Err(panic) => or(panicked(name, metrics, &ids, panic)),
    }
}

/// Counts and logs a caught panic, and makes the error the client's 500 is made of.
fn panicked(
    name: &'static str,
    metrics: &Metrics,
    ids: &RequestIds,
    panic: Box<dyn Any + Send>,
) -> Box<Error> {
    metrics.panic(name);
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    tracing::error!(
        phase = name,
        panic = %message,
        request_id = ids.request_id.to_str().unwrap_or_default(),
        trace_id = %ids.trace_hex(),
        "panic in the request pipeline: answered 500"
    );
    Error::explain(
        ErrorType::HTTPStatus(500),
        format!("internal error in {name}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> RequestIds {
        RequestIds {
            request_id: HeaderValue::from_static("r-1"),
            trace_id: Some(7),
        }
    }

    #[tokio::test]
    async fn a_panicking_phase_becomes_a_500_and_is_counted() {
        let metrics = Metrics::new().unwrap();
        let result: pingora::Result<bool> = phase("request_filter", &metrics, ids(), async {
            let parts: Vec<&str> = "no-colon".split(':').collect();
            // An index out of bounds, as a parser bug would make one.
            Ok(parts[1].is_empty())
        })
        .await;
        let e = result.unwrap_err();
        assert_eq!(e.etype(), &ErrorType::HTTPStatus(500));
        assert!(e.to_string().contains("request_filter"), "{e}");
        assert_eq!(metrics.panics_of("request_filter"), 1);

        let ok: pingora::Result<u8> =
            phase("request_filter", &metrics, ids(), async { Ok(7) }).await;
        assert_eq!(ok.unwrap(), 7);
        assert_eq!(metrics.panics_of("request_filter"), 1);
    }

    #[test]
    fn a_panicking_sync_phase_gives_its_stand_in() {
        let metrics = Metrics::new().unwrap();
        let got = sync_phase(
            "logging",
            &metrics,
            ids(),
            || -> u8 { panic!("boom") },
            |e| {
                assert_eq!(e.etype(), &ErrorType::HTTPStatus(500));
                9
            },
        );
        assert_eq!(got, 9);
        assert_eq!(metrics.panics_of("logging"), 1);
    }
}
