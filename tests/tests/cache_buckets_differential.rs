//! The bucket cache's planning and assembly (`gateway::cache::{shape, buckets, assemble}`)
//! against a real node: dashboard queries over sliding windows, with writes in between (new
//! points at the moving end, late points into old buckets), each answer put together from
//! the buckets kept so far and the node's answers for the planned ranges, and compared with
//! the node's own answer for the whole range. Every answer must be identical.

use gateway::cache::assemble::{apply_fill, assemble, with_times, Stored};
use gateway::cache::buckets::plan;
use gateway::cache::shape::shape;
use serde_json::Value;
use tests::{http, TsdbProcess};

const S: i64 = 1_000_000_000;
/// The data's first second (a whole minute).
const BASE_S: i64 = 1_700_000_040;
const SETTLE_NS: i64 = 60 * S;

/// `results` of `q` (statements separated by `;`) on the node, times in nanoseconds.
fn results(node: &TsdbProcess, q: &str) -> Vec<Value> {
    results_as(node, q, Some("ns"))
}

/// `results` of `q` with times as `epoch` says (`None`: RFC 3339).
fn results_as(node: &TsdbProcess, q: &str, epoch: Option<&str>) -> Vec<Value> {
    let epoch = epoch.map(|e| format!("&epoch={e}")).unwrap_or_default();
    let url = format!("{}/query?db=d{epoch}&q={}", node.url(), http::urlencode(q));
    let r = http::request("GET", &url, &[], None).unwrap_or_else(|e| panic!("{q}: {e:#}"));
    assert_eq!(r.status, 200, "{q}: {}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{q}: {e}: {}", r.body));
    let results = v["results"].as_array().cloned().unwrap_or_default();
    for res in &results {
        assert!(res.get("error").is_none(), "{q}: {res}");
    }
    results
}

fn series(result: &Value) -> Vec<Value> {
    result["series"].as_array().cloned().unwrap_or_default()
}

/// Points of three hosts in two regions, one every 7 s (host c has a gap), from `from_s`
/// to `to_s`.
fn points(from_s: i64, to_s: i64) -> String {
    let mut out = String::new();
    let mut t = from_s;
    while t < to_s {
        for (i, (host, region)) in [("a", "eu"), ("b", "eu"), ("c", "us")].iter().enumerate() {
            if *host == "c" && (t - BASE_S) % 900 < 120 {
                continue;
            }
            let v = ((t * 31 + i as i64 * 17) % 97) as f64 / 4.0;
            out += &format!("cpu,host={host},region={region} v={v} {}\n", t * S);
        }
        t += 7;
    }
    out
}

fn write(node: &TsdbProcess, lines: &str) {
    let (status, body) =
        http::write(node.addr, "d", lines, Some("ns")).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(status, 204, "{body}");
}

#[test]
fn answers_put_together_from_kept_buckets_and_fetches_equal_the_nodes_over_sliding_windows() {
    let node = TsdbProcess::builder()
        .arg("--create-database")
        .arg("d")
        .start()
        .unwrap();
    write(&node, &points(BASE_S, BASE_S + 40 * 60));
    let corpus = [
        "SELECT mean(v) FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(1m), host",
        "SELECT max(v), count(v) FROM cpu WHERE time >= {from} AND time < {to} GROUP BY time(30s) fill(none)",
        "SELECT count(v) FROM cpu WHERE region = 'eu' AND time >= {from} AND time <= {to} GROUP BY time(1m), host",
        "SELECT percentile(v, 90) FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(2m), region fill(null)",
        "SELECT min(v), sum(v) AS total FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(10s), host, region fill(none)",
        "SELECT last(v), first(v) FROM cpu WHERE host =~ /a|c/ AND time >= {from} AND time <= {to} GROUP BY time(1m, 20s), *",
        "SELECT mean(v), count(v) FROM cpu WHERE host = 'c' AND time >= {from} AND time <= {to} GROUP BY time(30s) fill(previous)",
        "SELECT count(v), max(v) FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(1m), host fill(0)",
        "SELECT min(v) FROM cpu WHERE time >= {from} AND time <= {to} GROUP BY time(1m), region fill(-2.5)",
    ];
    // Shifts between refreshes: Grafana's 5 s, a step, half a step, odd ones, more than
    // the window.
    let shifts_s = [5, 5, 30, 7, 60, 45, 5, 1200, 5, 13, 90, 5];
    let mut written_until = BASE_S + 40 * 60;
    let (mut cached_buckets, mut partial, mut hits) = (0u64, 0u64, 0u64);
    let mut rows_compared = 0u64;
    for (qi, template) in corpus.iter().enumerate() {
        let mut stored = Stored::default();
        let mut now_s = BASE_S + 25 * 60;
        for (i, shift) in shifts_s.iter().enumerate() {
            now_s += shift;
            // New points at the moving end, and now and then a late one into an old bucket.
            if now_s > written_until {
                write(&node, &points(written_until, now_s + 1));
                written_until = now_s + 1;
            }
            let now_ns = now_s * S + 123_000_000;
            if i % 4 == 3 {
                let late_s = now_s - 11 * 60 + 3;
                write(
                    &node,
                    &format!("cpu,host=a,region=eu v=1000 {}\n", late_s * S + 1),
                );
                // What the gateway does for a write through it: forget that bucket.
                let probe = shape(
                    &template.replace("{from}", "0").replace("{to}", "1"),
                    now_ns,
                )
                .unwrap();
                let k = probe.grid.bucket_of(late_s * S + 1);
                stored.invalidate(k, k);
            }
            // Grafana's bounds: milliseconds, the last 15 minutes.
            let to_ms = now_ns / 1_000_000;
            let text = template
                .replace("{from}", &format!("{}ms", to_ms - 15 * 60 * 1000))
                .replace("{to}", &format!("{to_ms}ms"));
            let sh = shape(&text, now_ns).unwrap_or_else(|e| panic!("{text}: {e}"));
            let p = plan(sh.grid, sh.range, &stored.usable(now_ns), now_ns, SETTLE_NS).unwrap();
            let fetched: Vec<Vec<Value>> = if p.fetch.is_empty() {
                Vec::new()
            } else {
                let statements: Vec<String> =
                    p.fetch.iter().map(|r| sh.statement_for(*r)).collect();
                results(&node, &statements.join("; "))
                    .iter()
                    .map(series)
                    .collect()
            };
            assert_eq!(fetched.len(), p.fetch.len());
            let mut assembled = assemble(&sh, sh.range, &p, &stored, &fetched).unwrap();
            apply_fill(&mut assembled, &sh);
            // Young buckets are not reused here (the writes above go to the node directly,
            // past the gateway): kept briefly until now, which has passed.
            stored
                .absorb(&sh, &fetched, &p.keep, &p.keep_briefly, now_ns)
                .unwrap();
            // The time formats a client may ask for, from the same assembled rows.
            if i % 3 == 0 {
                for epoch in [Some("ms"), Some("s"), Some("u"), None] {
                    let mut as_asked = assembled.clone();
                    assert!(with_times(&mut as_asked, epoch));
                    let node_as_asked = series(&results_as(&node, &text, epoch)[0]);
                    assert_eq!(
                        Value::Array(as_asked),
                        Value::Array(node_as_asked),
                        "query {qi}, refresh {i}, epoch {epoch:?}: {text}"
                    );
                }
            }
            let whole = series(&results(&node, &text)[0]);
            rows_compared += whole
                .iter()
                .map(|s| s["values"].as_array().map_or(0, Vec::len) as u64)
                .sum::<u64>();
            assert_eq!(
                Value::Array(assembled),
                Value::Array(whole),
                "query {qi}, refresh {i} ({}): {text}\nplan {p:?}",
                p.outcome()
            );
            cached_buckets += p
                .cached
                .iter()
                .map(|(f, l)| (l - f + 1) as u64)
                .sum::<u64>();
            match p.outcome() {
                "PARTIAL" => partial += 1,
                "HIT" => hits += 1,
                _ => {}
            }
        }
    }
    eprintln!(
        "{rows_compared} rows compared; {partial} partial answers, {hits} hits, {cached_buckets} buckets from the cache"
    );
    assert!(
        rows_compared > 3_000,
        "the answers hold data: {rows_compared} rows"
    );
    assert!(
        partial >= 30 && cached_buckets > 1000,
        "the cache was used: {partial} partial answers, {hits} hits, {cached_buckets} buckets from it"
    );
}
