use super::*;
use crate::cache::buckets::Range;
use crate::config::cache::Buckets;
use std::time::Duration;

const S: i64 = 1_000_000_000;
const NOW: i64 = 1_700_000_000 * S;

fn settings() -> RouteCache {
    RouteCache {
        cache: "q".into(),
        key: vec![
            KeyPart::Method,
            KeyPart::Path,
            KeyPart::Query,
            KeyPart::Body,
        ],
        ttl: Duration::from_secs(5),
        stale_while_revalidate: Duration::ZERO,
        per_caller: true,
        buckets: Some(Buckets {
            settle: Duration::from_secs(60),
            ttl: Duration::from_secs(600),
        }),
    }
}

fn get(q: &str, extra: &str) -> RequestHeader {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("db", "telemetry").append_pair("q", q);
    let uri = format!("/query?{}{extra}", query.finish());
    RequestHeader::build("GET", uri.as_bytes(), None).unwrap()
}

fn panel(from_ms: i64, to_ms: i64) -> String {
    format!("SELECT mean(v) FROM cpu WHERE time >= {from_ms}ms AND time <= {to_ms}ms GROUP BY time(10s), host")
}

fn tenant(t: &str) -> Caller<'_> {
    Caller {
        tenant: Some(t),
        identity: Some("someone"),
    }
}

#[test]
fn refreshes_of_a_panel_share_a_key_and_tenants_epochs_and_databases_do_not() {
    let now_ms = NOW / 1_000_000;
    let a = ask(
        &settings(),
        "tsdb",
        &get(&panel(now_ms - 3_600_000, now_ms), "&epoch=ms"),
        None,
        tenant("t1"),
        NOW,
    )
    .unwrap();
    let later = ask(
        &settings(),
        "tsdb",
        &get(&panel(now_ms - 3_595_000, now_ms + 5_000), "&epoch=ms"),
        None,
        tenant("t1"),
        NOW,
    )
    .unwrap();
    assert_eq!(a.key, later.key, "the time range is not in the key");
    assert_eq!(a.epoch.as_deref(), Some("ms"));
    let other_tenant = ask(
        &settings(),
        "tsdb",
        &get(&panel(now_ms - 3_600_000, now_ms), "&epoch=ms"),
        None,
        tenant("t2"),
        NOW,
    )
    .unwrap();
    assert_ne!(a.key, other_tenant.key);
    let rfc3339 = ask(
        &settings(),
        "tsdb",
        &get(&panel(now_ms - 3_600_000, now_ms), ""),
        None,
        tenant("t1"),
        NOW,
    )
    .unwrap();
    assert_eq!(
        a.key, rfc3339.key,
        "times are written per request, the buckets are shared"
    );
    let other_db = ask(
        &settings(),
        "tsdb",
        &get(&panel(now_ms - 3_600_000, now_ms), "&db=other"),
        None,
        tenant("t1"),
        NOW,
    )
    .unwrap();
    assert_ne!(a.key, other_db.key);
    let other_pool = ask(
        &settings(),
        "tsdb-b",
        &get(&panel(now_ms - 3_600_000, now_ms), "&epoch=ms"),
        None,
        tenant("t1"),
        NOW,
    )
    .unwrap();
    assert_ne!(a.key, other_pool.key);
}

#[test]
fn what_the_path_cannot_write_or_split_stays_on_the_text_cache() {
    let q = panel(0, 3_600_000);
    let no = |req: RequestHeader, s: &RouteCache| {
        ask(s, "tsdb", &req, None, tenant("t"), NOW).unwrap_err()
    };
    assert_eq!(
        no(get(&q, "&chunked=true"), &settings()),
        "chunked answers or bound parameters"
    );
    assert_eq!(no(get(&q, "&pretty=true"), &settings()), "pretty answers");
    assert_eq!(
        no(get(&q, "&epoch=fortnight"), &settings()),
        "an epoch InfluxDB does not know"
    );
    let mut csv = get(&q, "");
    csv.insert_header("accept", "application/csv").unwrap();
    assert_eq!(no(csv, &settings()), "an answer other than JSON asked for");
    let raw = get("SELECT v FROM cpu WHERE time >= 0 AND time <= 10", "");
    assert_eq!(
        no(raw, &settings()),
        "the query does not split into buckets"
    );
    let mut off = settings();
    off.buckets = None;
    assert_eq!(no(get(&q, ""), &off), "buckets off on this route");
    let mut no_query = settings();
    no_query.key = vec![KeyPart::Path];
    assert_eq!(
        no(get(&q, ""), &no_query),
        "the route's key does not hold the query"
    );
}

#[test]
fn a_form_post_takes_the_path_with_its_parameters_sent_on() {
    let body = b"db=telemetry&rp=week&u=alice&q=SELECT+max%28v%29+FROM+cpu+WHERE+time+%3E%3D+0+AND+time+%3C%3D+60000000000+GROUP+BY+time%2810s%29";
    let mut req = RequestHeader::build("POST", b"/query?epoch=s", None).unwrap();
    req.insert_header("content-type", "application/x-www-form-urlencoded")
        .unwrap();
    let a = ask(&settings(), "tsdb", &req, Some(body), tenant("t"), NOW).unwrap();
    assert_eq!(a.epoch.as_deref(), Some("s"));
    assert_eq!(a.db.as_deref(), Some("telemetry"));
    let plan = buckets::Plan {
        cached: vec![],
        fetch: vec![
            Range {
                start_ns: 0,
                end_ns: 10 * S,
            },
            Range {
                start_ns: 50 * S,
                end_ns: 60 * S + 1,
            },
        ],
        keep: vec![],
        keep_briefly: vec![],
    };
    let out = fetch_request(req, &a, &plan).unwrap();
    assert_eq!(out.method, Method::GET);
    assert!(out.headers.get("content-type").is_none());
    let q = out.uri.query().unwrap();
    let params = Params::parse(q.as_bytes());
    assert_eq!(params.get("epoch"), Some("ns"));
    assert_eq!(params.get("rp"), Some("week"));
    assert_eq!(params.get("u"), Some("alice"));
    assert_eq!(
        params.get("q"),
        Some("SELECT max(v) FROM cpu WHERE time >= 0 AND time < 10000000000 GROUP BY time(10s);SELECT max(v) FROM cpu WHERE time >= 50000000000 AND time < 60000000001 GROUP BY time(10s)")
    );
}

#[test]
fn fetched_answers_are_read_per_statement_and_errors_are_not_used() {
    let ok = br#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","max"],"values":[[0,1]]}]},{"statement_id":1}]}"#;
    let read = read_fetched(ok, 2).unwrap();
    assert_eq!(read[0].len(), 1);
    assert!(read[1].is_empty());
    assert_eq!(read_fetched(ok, 1), Err(Unusable::Count(2, 1)));
    let failed = br#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#;
    assert_eq!(
        read_fetched(failed, 1),
        Err(Unusable::Statement("database not found: x".into()))
    );
    assert_eq!(
        read_fetched(br#"{"error":"authorization failed"}"#, 1),
        Err(Unusable::Statement("authorization failed".into()))
    );
    assert_eq!(read_fetched(b"<html>", 1), Err(Unusable::NotJson));
}

#[test]
fn answers_are_rendered_as_influxdb_writes_them() {
    let series = vec![serde_json::json!({
        "values": [[0, 1.5]],
        "columns": ["time", "mean"],
        "tags": {"host": "a"},
        "name": "cpu",
    })];
    assert_eq!(
        String::from_utf8(render(&series)).unwrap(),
        "{\"results\":[{\"statement_id\":0,\"series\":[{\"name\":\"cpu\",\"tags\":{\"host\":\"a\"},\"columns\":[\"time\",\"mean\"],\"values\":[[0,1.5]]}]}]}\n"
    );
    assert_eq!(
        String::from_utf8(render(&[])).unwrap(),
        "{\"results\":[{\"statement_id\":0}]}\n"
    );
}
