//! W3C Trace Context end to end: a client's valid `traceparent` reaches the backend with
//! the same trace id and the gateway's own span as parent, with its `tracestate`; without
//! one (or with an invalid one) a new trace starts and a stray `tracestate` is dropped; the
//! answer echoes the gateway's `traceparent`, also when the gateway answers itself.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tests::gateway::{catch_all_policy, GatewayProcess, QUIET_HEALTH_CHECK};
use tests::http::request;
use tests::upstream::FakeUpstream;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// `(version, trace id, parent id, flags)` of a version-00 `traceparent`.
fn fields(value: &str) -> (String, String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    assert_eq!(
        (parts[1].len(), parts[2].len(), parts[3].len()),
        (32, 16, 2),
        "{value}"
    );
    assert!(
        value
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{value}"
    );
    (
        parts[0].to_string(),
        parts[1].to_string(),
        parts[2].to_string(),
        parts[3].to_string(),
    )
}

#[test]
fn a_clients_trace_is_continued_with_the_gateways_span_and_echoed() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[up.addr], "5s", 1)).unwrap();
    let sent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let res = request(
        "GET",
        &format!("{}/traced", gw.url()),
        &[("traceparent", &sent), ("tracestate", "vendor=abc")],
        None,
    )
    .unwrap();
    assert_eq!(res.status, 200, "{}", res.body);
    let seen = up.last_request().expect("the backend saw the request");
    let at_backend = seen
        .header("traceparent")
        .expect("traceparent at the backend");
    let (version, trace, parent, flags) = fields(at_backend);
    assert_eq!((version.as_str(), trace.as_str()), ("00", TRACE));
    assert_ne!(
        parent, CLIENT_SPAN,
        "the gateway's hop is a span of its own"
    );
    assert_ne!(parent, "0000000000000000");
    assert_eq!(flags, "01");
    assert_eq!(seen.header("tracestate"), Some("vendor=abc"));
    assert_eq!(
        res.header("traceparent"),
        Some(at_backend),
        "the answer echoes what the backend was sent"
    );
}

#[test]
fn without_a_valid_traceparent_a_new_trace_starts_and_stray_state_is_dropped() {
    let up = FakeUpstream::new().start().unwrap();
    let gw = GatewayProcess::start(&catch_all_policy(&[up.addr], "5s", 1)).unwrap();
    let mut traces = Vec::new();
    for sent in [
        None,
        Some(format!("00-{}-{CLIENT_SPAN}-01", TRACE.to_uppercase())),
        Some(format!("00-{TRACE}-0000000000000000-01")),
    ] {
        let mut headers = vec![("tracestate", "vendor=abc".to_string())];
        if let Some(t) = &sent {
            headers.push(("traceparent", t.clone()));
        }
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = request("GET", &format!("{}/fresh", gw.url()), &headers, None).unwrap();
        assert_eq!(res.status, 200, "{sent:?}: {}", res.body);
        let seen = up.last_request().unwrap();
        let at_backend = seen.header("traceparent").expect("a new traceparent");
        let (version, trace, _, flags) = fields(at_backend);
        assert_eq!(version, "00");
        assert_ne!(trace, TRACE.to_lowercase(), "{sent:?}");
        assert_eq!(
            flags, "00",
            "{sent:?}: a new trace is not sampled by anyone yet"
        );
        assert_eq!(seen.header("tracestate"), None, "{sent:?}");
        assert_eq!(res.header("traceparent"), Some(at_backend));
        traces.push(trace);
    }
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), 3, "each request its own trace: {traces:?}");
}

#[test]
fn the_gateways_own_answers_carry_the_trace_too() {
    let up = FakeUpstream::new().start().unwrap();
    let policy = format!(
        "pools:\n  up:\n    backends:\n      - {{ address: {} }}\n    {QUIET_HEALTH_CHECK}\nroutes:\n  - name: only\n    match: {{ path_prefix: /only }}\n    pool: up\n",
        up.addr
    );
    let gw = GatewayProcess::start(&policy).unwrap();
    let sent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let res = request(
        "GET",
        &format!("{}/elsewhere", gw.url()),
        &[("traceparent", &sent)],
        None,
    )
    .unwrap();
    assert_eq!(res.status, 404, "{}", res.body);
    let echoed = res.header("traceparent").expect("traceparent on a 404");
    let (_, trace, parent, _) = fields(echoed);
    assert_eq!(trace, TRACE);
    assert_ne!(parent, CLIENT_SPAN);
    assert_eq!(up.requests_for("/elsewhere"), 0);
}
