//! Traces end to end: a client's `traceparent` goes through the gateway into a TSDB node,
//! and both export their spans over OTLP to a receiver the test runs, which decodes them
//! with the protocol's own types. The gateway's hop is a child of the client's span, each
//! try a child of the hop, the node's request a child of the try that reached it, and the
//! node's steps (parse, WAL commit, query) children of its request: one trace. The node's
//! access log names the same trace and never the password the client sent.
//!
//! A collector that refuses every export costs the gateway a counter, not answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tests::gateway::{tsdb_policy, GatewayProcess};
use tests::http::request;
use tests::otlp::{OtlpReceiver, ReceivedSpan};
use tests::process::TsdbProcess;
use tests::wait::eventually;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const OTHER_CLIENT_SPAN: &str = "00f067aa0ba902b8";
const PASSWORD: &str = "hunter2-in-the-query";

const SERVER: i32 = 2;
const CLIENT: i32 = 3;

fn one<'a>(
    spans: &'a [ReceivedSpan],
    what: &str,
    f: impl Fn(&ReceivedSpan) -> bool,
) -> &'a ReceivedSpan {
    let found: Vec<_> = spans.iter().filter(|s| f(s)).collect();
    assert_eq!(found.len(), 1, "{what}: {found:#?}\nall spans: {spans:#?}");
    found[0]
}

#[test]
fn one_trace_runs_from_the_client_through_the_gateway_into_the_node() {
    let receiver = OtlpReceiver::start().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("node-access.log");
    let node = TsdbProcess::builder()
        .arg("--create-database")
        .arg("d")
        .arg("--otlp")
        .arg(receiver.url())
        .arg("--access-log")
        .arg(&log_path)
        .start()
        .unwrap();
    let gw = GatewayProcess::builder(&tsdb_policy(&[node.addr]))
        .bootstrap_line(&format!(
            "tracing: {{ otlp: \"{}\", sample: 100% }}",
            receiver.url()
        ))
        .start()
        .unwrap();

    let write = request(
        "POST",
        &format!("{}/write?db=d&u=alice&p={PASSWORD}", gw.url()),
        &[("traceparent", &format!("00-{TRACE}-{CLIENT_SPAN}-01"))],
        Some(b"m v=1 1000000000\nm v=2 2000000000\n"),
    )
    .unwrap();
    assert_eq!(write.status, 204, "{}", write.body);
    let echoed = write.header("traceparent").unwrap().to_string();
    assert!(echoed.starts_with(&format!("00-{TRACE}-")), "{echoed}");
    assert!(
        echoed.ends_with("-01"),
        "a recorded trace is echoed sampled: {echoed}"
    );
    let query = request(
        "GET",
        &format!("{}/query?db=d&q=SELECT+count(v)+FROM+m", gw.url()),
        &[("traceparent", &format!("00-{TRACE}-{OTHER_CLIENT_SPAN}-01"))],
        None,
    )
    .unwrap();
    assert_eq!(query.status, 200, "{}", query.body);

    // Two requests: per request a gateway hop and try, a node request; the write adds the
    // node's parse and WAL commit, the query its query step.
    let spans = eventually("the spans of both requests at the receiver", |last| {
        let spans: Vec<_> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == TRACE)
            .collect();
        *last = format!(
            "{} spans: {:?}",
            spans.len(),
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        Ok((spans.len() >= 9).then_some(spans))
    })
    .unwrap();

    // The write, hop by hop.
    let hop = one(&spans, "the gateway's hop of the write", |s| {
        s.service == "gateway" && s.kind == SERVER && s.parent_span_id == CLIENT_SPAN
    });
    assert_eq!(hop.name, "POST write");
    assert_eq!(hop.attribute("http.route"), Some("write"));
    assert_eq!(hop.attribute("http.response.status_code"), Some("204"));
    assert_eq!(hop.attribute("gateway.pool"), Some("tsdb"));
    assert!(!format!("{:?}", hop.attributes).contains(PASSWORD));
    assert_eq!(
        echoed,
        format!("00-{TRACE}-{}-01", hop.span_id),
        "the answer names the hop"
    );
    let try_ = one(&spans, "the write's try", |s| {
        s.service == "gateway" && s.kind == CLIENT && s.parent_span_id == hop.span_id
    });
    assert_eq!(
        try_.attribute("server.port"),
        Some(node.addr.port().to_string().as_str())
    );
    assert_eq!(try_.attribute("http.response.status_code"), Some("204"));
    let node_write = one(&spans, "the node's write", |s| {
        s.service == "tsdb-backend" && s.kind == SERVER && s.parent_span_id == try_.span_id
    });
    assert_eq!(node_write.name, "POST /write");
    for step in ["parse", "wal commit"] {
        one(&spans, step, |s| {
            s.service == "tsdb-backend" && s.name == step && s.parent_span_id == node_write.span_id
        });
    }

    // The query, hop by hop.
    let hop = one(&spans, "the gateway's hop of the query", |s| {
        s.service == "gateway" && s.kind == SERVER && s.parent_span_id == OTHER_CLIENT_SPAN
    });
    let try_ = one(&spans, "the query's try", |s| {
        s.kind == CLIENT && s.parent_span_id == hop.span_id
    });
    let node_query = one(&spans, "the node's query", |s| {
        s.service == "tsdb-backend" && s.kind == SERVER && s.parent_span_id == try_.span_id
    });
    one(&spans, "the query step", |s| {
        s.name == "query" && s.parent_span_id == node_query.span_id
    });

    // The node's access log: the same trace, the password redacted.
    let lines = eventually("the node's access-log lines", |last| {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        *last = text.clone();
        Ok((text.lines().count() >= 2).then_some(text))
    })
    .unwrap();
    assert!(!lines.contains(PASSWORD), "{lines}");
    let write_line: serde_json::Value = lines
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["method"] == "POST")
        .unwrap();
    assert_eq!(write_line["trace_id"], TRACE, "{write_line}");
    assert_eq!(write_line["status"], 204);
    assert_eq!(write_line["route"], "/write");
    assert!(
        write_line["path"].as_str().unwrap().contains("p=REDACTED"),
        "{write_line}"
    );
    assert!(write_line["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
}

#[test]
fn a_collector_that_refuses_costs_a_counter_not_answers() {
    let receiver = OtlpReceiver::refusing().unwrap();
    let node = TsdbProcess::builder()
        .arg("--create-database")
        .arg("d")
        .start()
        .unwrap();
    let gw = GatewayProcess::builder(&tsdb_policy(&[node.addr]))
        .bootstrap_line(&format!("tracing: {{ otlp: \"{}\" }}", receiver.url()))
        .start()
        .unwrap();
    for i in 0..20 {
        let r = request("GET", &format!("{}/ping", gw.url()), &[], None).unwrap();
        assert_eq!(r.status, 204, "request {i}: {}", r.body);
        assert!(r.header("traceparent").is_some_and(|t| t.ends_with("-01")));
    }
    eventually("failed span exports counted", |last| {
        let m = request("GET", &format!("{}/metrics", gw.admin_url()), &[], None)?.body;
        let failed = m
            .lines()
            .find(|l| l.starts_with("gateway_trace_spans_total{result=\"failed\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        *last = format!("failed spans: {failed}");
        Ok((failed >= 1.0).then_some(()))
    })
    .unwrap();
}

#[test]
fn the_last_requests_spans_go_out_when_the_gateway_stops() {
    let receiver = OtlpReceiver::start().unwrap();
    let up = tests::upstream::FakeUpstream::new().start().unwrap();
    let mut gw = GatewayProcess::builder(&tests::gateway::catch_all_policy(&[up.addr], "5s", 1))
        .bootstrap_line(&format!("tracing: {{ otlp: \"{}\" }}", receiver.url()))
        .start()
        .unwrap();
    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let r = request(
        "GET",
        &format!("{}/last", gw.url()),
        &[("traceparent", &format!("00-{trace}-{CLIENT_SPAN}-01"))],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    // Stopped at once: the drain exits within a fraction of the export's half-second delay.
    assert!(tests::process::signal(gw.pid(), libc::SIGTERM));
    let status = gw.wait_exit().unwrap();
    assert!(status.success(), "{status:?}");
    let spans = receiver.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.trace_id == trace && s.service == "gateway" && s.kind == SERVER),
        "the request's span was lost at the stop: {spans:#?}"
    );
}
