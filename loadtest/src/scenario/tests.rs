//! Scenario tests: a valid scenario compiles to exact values; every kind of mistake is
//! named with its file, line, column and field, all of them at once.

use super::compile::parse_target;
use super::*;
use crate::slo::{Metric, Op};
use std::collections::BTreeMap;

const FULL: &str = "\
name: steady-query
target: http://127.0.0.1:8080/api/
stages:
  - { duration: 5s, rate: 200 }
  - { duration: 20s, rate: 2000, warmup: false }
  - { duration: 10s, ramp_to: 8000 }
  - { duration: 10s, rate: 0.5, ramp_to: 500 }
requests:
  - { weight: 9, method: GET, path: \"/query?db=telemetry&q=SELECT%20*%20FROM%20cpu\" }
  - { weight: 1, method: POST, path: \"/write?db=telemetry\", body_file: lines.txt, headers: { Content-Type: text/plain } }
  - { method: POST, path: /write, body: \"m,client=c${client} v=1\", client: 0 }
headers: { Authorization: \"Bearer ${token}\", X-Client: \"c${client}\" }
clients: 200
client_tokens_file: tokens.txt
max_connections: 64
timeout: 2s
seed: 42
events:
  - { at: 12s, run: \"kill -9 $(cat data/n1.pid)\" }
  - { at: 1s, run: \"echo ${GREETING:-hi}\" }
slo:
  - p99 < 20ms
  - error_rate < 0.1%
";

/// A folder with the files FULL names, and the path of the scenario in it.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("lines.txt"),
            "cpu,host=a v=1\ncpu,host=b v=2\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("tokens.txt"), "alpha\nbeta\r\ngamma\n\n").unwrap();
        Dir { dir }
    }

    fn origin(&self) -> PathBuf {
        self.dir.path().join("scenario.yaml")
    }

    fn parse(&self, text: &str) -> Result<Scenario, ScenarioErrors> {
        parse_str(text, &self.origin(), &[], &no_env)
    }

    /// Every error as displayed, the folder shown as `DIR`.
    fn errors(&self, text: &str) -> Vec<String> {
        let errors = match self.parse(text) {
            Ok(_) => panic!("expected errors for:\n{text}"),
            Err(e) => e,
        };
        let dir = self.dir.path().display().to_string();
        errors
            .0
            .iter()
            .map(|e| e.to_string().replace(&dir, "DIR"))
            .collect()
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn errors_of(text: &str) -> Vec<String> {
    Dir::new().errors(text)
}

const MINIMAL: &str = "\
name: smoke
target: http://gw.example
concurrency: 8
duration: 30s
requests:
  - { path: /ping }
";

fn render(t: &Template, client: u32, token: &str) -> String {
    render_at(t, client, token, 0)
}

fn render_at(t: &Template, client: u32, token: &str, now_ns: i64) -> String {
    let mut out = Vec::new();
    t.render(client, token, now_ns, &mut out);
    String::from_utf8(out).unwrap()
}

fn header_names(h: &[(HeaderName, Template)]) -> Vec<&str> {
    h.iter().map(|(n, _)| n.as_str()).collect()
}

#[test]
fn a_full_scenario_compiles_to_exact_values() {
    let dir = Dir::new();
    let s = dir.parse(FULL).unwrap();
    assert_eq!(s.name, "steady-query");
    assert_eq!(
        s.target,
        Target {
            host: "127.0.0.1".into(),
            port: 8080,
            base_path: "/api".into(),
            authority: "127.0.0.1:8080".into(),
            https: false,
        }
    );
    assert_eq!(s.target.to_string(), "http://127.0.0.1:8080/api");
    let stage = |secs, start_rate, end_rate, warmup, label: &str| Stage {
        duration: Duration::from_secs(secs),
        start_rate,
        end_rate,
        warmup,
        label: label.into(),
    };
    assert_eq!(
        s.load,
        Load::Open(vec![
            stage(5, 200.0, 200.0, true, "5s at 200/s"),
            stage(20, 2000.0, 2000.0, false, "20s at 2000/s"),
            stage(10, 2000.0, 8000.0, false, "10s ramp 2000→8000/s"),
            stage(10, 0.5, 500.0, false, "10s ramp 0.5→500/s"),
        ])
    );
    assert_eq!(s.load.total_duration(), Duration::from_secs(45));
    assert_eq!(s.load.mode(), crate::report::Mode::Open);

    assert_eq!(s.requests.len(), 3);
    let [query, write, pinned] = [&s.requests[0], &s.requests[1], &s.requests[2]];
    assert_eq!(
        (query.weight.get(), &query.method, query.path.to_string()),
        (
            9,
            &Method::GET,
            "/query?db=telemetry&q=SELECT%20*%20FROM%20cpu".to_string()
        )
    );
    assert!(query.body.is_empty() && query.headers.is_empty() && query.client.is_none());
    assert_eq!((write.weight.get(), &write.method), (1, &Method::POST));
    assert_eq!(
        write.body.as_static(),
        Some(&b"cpu,host=a v=1\ncpu,host=b v=2\n"[..])
    );
    assert_eq!(header_names(&write.headers), ["content-type"]);
    assert_eq!(write.headers[0].1.as_static(), Some(&b"text/plain"[..]));
    assert_eq!(pinned.weight.get(), 1, "the default weight");
    assert_eq!(pinned.client, Some(0));
    assert_eq!(render(&pinned.body, 7, ""), "m,client=c7 v=1");

    assert_eq!(header_names(&s.headers), ["authorization", "x-client"]);
    assert_eq!(render(&s.headers[0].1, 1, s.token_for(1)), "Bearer beta");
    assert_eq!(render(&s.headers[1].1, 12, ""), "c12");
    assert_eq!(s.clients.get(), 200);
    assert_eq!(
        s.tokens,
        ["alpha", "beta", "gamma"],
        "the \\r is not part of a token"
    );
    assert_eq!(s.max_connections.get(), 64);
    assert_eq!(s.timeout, Duration::from_secs(2));
    assert_eq!(s.seed, 42);
    assert_eq!(
        s.events,
        [
            Event {
                at: Duration::from_secs(1),
                run: "echo hi".into()
            },
            Event {
                at: Duration::from_secs(12),
                run: "kill -9 $(cat data/n1.pid)".into()
            },
        ],
        "in the order of `at`, the default filled in"
    );
    assert_eq!(
        s.slo
            .iter()
            .map(|x| (x.text.as_str(), x.metric, x.op, x.threshold))
            .collect::<Vec<_>>(),
        [
            ("p99 < 20ms", Metric::P99, Op::Lt, 20.0),
            ("error_rate < 0.1%", Metric::ErrorRate, Op::Lt, 0.1),
        ]
    );
    assert_eq!(s.yaml, FULL.replace("${GREETING:-hi}", "hi"));
    assert_eq!(s.origin, dir.origin());
    assert_eq!(s.mix().total(), 11);
}

#[test]
fn a_minimal_closed_loop_scenario_gets_the_defaults() {
    let s = errors_free(MINIMAL);
    assert_eq!(
        s.load,
        Load::Closed {
            concurrency: NonZeroUsize::new(8).unwrap(),
            duration: Duration::from_secs(30),
            warmup: Duration::ZERO,
        }
    );
    assert_eq!(s.load.mode(), crate::report::Mode::Closed);
    assert_eq!(
        s.target,
        Target {
            host: "gw.example".into(),
            port: 80,
            base_path: String::new(),
            authority: "gw.example".into(),
            https: false,
        }
    );
    let r = &s.requests[0];
    assert_eq!((r.weight.get(), &r.method), (1, &Method::GET));
    assert_eq!(s.clients.get(), 1);
    assert!(s.tokens.is_empty());
    assert_eq!(s.max_connections.get(), 256);
    assert_eq!(s.timeout, Duration::from_secs(10));
    assert_eq!(s.seed, 1);
    assert!(s.events.is_empty() && s.slo.is_empty() && s.headers.is_empty());
}

fn errors_free(text: &str) -> Scenario {
    match Dir::new().parse(text) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_closed_loop_warmup_is_the_first_part_of_its_duration() {
    let s = errors_free(&MINIMAL.replace("duration: 30s", "duration: 30s\nwarmup: 5s"));
    assert!(matches!(s.load, Load::Closed { warmup, .. } if warmup == Duration::from_secs(5)));
    assert_eq!(s.load.total_duration(), Duration::from_secs(30));
    assert_eq!(
        errors_of(&MINIMAL.replace("duration: 30s", "duration: 30s\nwarmup: 30s")),
        ["DIR/scenario.yaml:5:9: warmup: must be shorter than duration (30s)"]
    );
}

fn stages(list: &str) -> String {
    format!("name: s\ntarget: http://h\nstages:\n{list}requests:\n  - {{ path: / }}\n")
}

#[test]
fn only_the_first_of_several_stages_is_a_warmup_by_default() {
    let warmups = |text: &str| match errors_free(text).load {
        Load::Open(st) => st.iter().map(|s| s.warmup).collect::<Vec<_>>(),
        Load::Closed { .. } => panic!("open loop expected"),
    };
    assert_eq!(warmups(&stages("  - { duration: 5s, rate: 1 }\n")), [false]);
    assert_eq!(
        warmups(&stages(
            "  - { duration: 5s, rate: 1 }\n  - { duration: 5s, rate: 2 }\n"
        )),
        [true, false]
    );
    assert_eq!(
        warmups(&stages(
            "  - { duration: 5s, rate: 1, warmup: false }\n  - { duration: 5s, rate: 2, warmup: true }\n"
        )),
        [false, true]
    );
    assert_eq!(
        errors_of(&stages(
            "  - { duration: 5s, rate: 1, warmup: true }\n"
        )),
        ["DIR/scenario.yaml:4:3: stages: every stage is a warm-up, so nothing would be measured: mark one with warmup: false"]
    );
}

#[test]
fn a_first_stage_ramp_starts_from_zero() {
    match errors_free(&stages("  - { duration: 10s, ramp_to: 100 }\n")).load {
        Load::Open(st) => {
            assert_eq!((st[0].start_rate, st[0].end_rate), (0.0, 100.0));
            assert_eq!(st[0].label, "10s ramp 0→100/s");
        }
        Load::Closed { .. } => panic!("open loop expected"),
    }
}

#[test]
fn an_unknown_key_is_named_with_its_line_and_column() {
    let text = FULL.replace("timeout: 2s", "timeuot: 2s");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("DIR/scenario.yaml:16:1: unknown field `timeuot`"),
        "{errors:?}"
    );
}

#[test]
fn an_unknown_key_in_a_stage_is_named_with_its_line_and_column() {
    let errors = errors_of(&stages("  - { duration: 5s, rat: 1 }\n"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("DIR/scenario.yaml:4:21: unknown field `rat`"),
        "{errors:?}"
    );
}

#[test]
fn stages_and_concurrency_together_are_refused() {
    assert_eq!(
        errors_of(&stages("  - { duration: 5s, rate: 1 }\n").replace("name: s\n", "name: s\nconcurrency: 4\n")),
        ["DIR/scenario.yaml:2:14: concurrency: stages and concurrency are exclusive: stages send requests at a rate (open loop), concurrency runs workers that wait for each answer (closed loop)"]
    );
}

#[test]
fn neither_stages_nor_concurrency_is_refused() {
    assert_eq!(
        errors_of("name: s\ntarget: http://h\nrequests:\n  - { path: / }\n"),
        ["DIR/scenario.yaml:1:1: stages: give stages (requests at a rate) or concurrency with a duration (workers that wait for each answer)"]
    );
}

#[test]
fn concurrency_needs_a_duration_and_stages_refuse_one() {
    assert_eq!(
        errors_of(&MINIMAL.replace("duration: 30s\n", "")),
        ["DIR/scenario.yaml:3:14: duration: concurrency needs a top-level duration"]
    );
    assert_eq!(
        errors_of(&stages("  - { duration: 5s, rate: 1 }\n").replace("name: s\n", "name: s\nduration: 5s\n")),
        ["DIR/scenario.yaml:2:11: duration: a top-level duration is for concurrency; with stages, each stage has its own"]
    );
}

#[test]
fn a_stage_without_a_rate_or_with_nothing_to_send_is_refused() {
    assert_eq!(
        errors_of(&stages("  - { duration: 5s }\n")),
        ["DIR/scenario.yaml:4:5: stages[0]: a stage needs a rate, a ramp_to, or both"]
    );
    assert_eq!(
        errors_of(&stages("  - { duration: 5s, rate: 0 }\n")),
        ["DIR/scenario.yaml:4:5: stages[0]: this stage sends no request: give it a rate or a ramp_to above 0"]
    );
    assert_eq!(
        errors_of(&stages("  - { duration: 5s, rate: -3 }\n")),
        ["DIR/scenario.yaml:4:27: stages[0].rate: must be a number of requests per second, 0 or more"]
    );
}

#[test]
fn a_bad_duration_is_named() {
    assert_eq!(
        errors_of(&stages("  - { duration: 1.5s, rate: 1 }\n")),
        ["DIR/scenario.yaml:4:17: stages[0].duration: duration \"1.5s\" has an unknown unit \".5s\" (ms, s, m or h)"]
    );
    assert_eq!(
        errors_of(&stages("  - { duration: 0s, rate: 1 }\n")),
        ["DIR/scenario.yaml:4:17: stages[0].duration: must be more than 0"]
    );
    assert_eq!(
        errors_of(&MINIMAL.replace("duration: 30s", "duration: 30")),
        ["DIR/scenario.yaml:4:11: duration: duration \"30\" needs a unit: ms, s, m or h"]
    );
}

#[test]
fn a_bad_method_is_named() {
    assert_eq!(
        errors_of(&MINIMAL.replace("{ path: /ping }", "{ method: GTE, path: /ping }")),
        ["DIR/scenario.yaml:6:15: requests[0].method: unknown method \"GTE\": expected GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE"]
    );
}

#[test]
fn body_and_body_file_are_exclusive() {
    assert_eq!(
        errors_of(&MINIMAL.replace("{ path: /ping }", "{ path: /w, body: x, body_file: lines.txt }")),
        ["DIR/scenario.yaml:6:37: requests[0].body_file: body and body_file are exclusive: give one of them"]
    );
}

#[test]
fn a_missing_body_file_is_named() {
    let errors =
        errors_of(&MINIMAL.replace("{ path: /ping }", "{ path: /w, body_file: nope.txt }"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "DIR/scenario.yaml:6:28: requests[0].body_file: cannot read DIR/nope.txt: "
        ),
        "{errors:?}"
    );
}

#[test]
fn a_variable_left_in_a_body_file_is_named_at_its_place_in_that_file() {
    let dir = Dir::new();
    std::fs::write(
        dir.dir.path().join("body.txt"),
        "a v=1\nb,host=${host} v=2\n",
    )
    .unwrap();
    assert_eq!(
        dir.errors(&MINIMAL.replace("{ path: /ping }", "{ path: /w, body_file: body.txt }")),
        ["DIR/body.txt:2:8: requests[0].body_file: ${host} is not expanded here: only ${client}, ${token} and ${now_ms} (s, ms, us, ns; `- 1h` or `+ 30s` after it) are left for each request (other variables are replaced before parsing)"]
    );
}

#[test]
fn an_unknown_variable_is_named_with_its_position() {
    assert_eq!(
        errors_of(&MINIMAL.replace("/ping", "/ping?db=${DB}&x=${X}")),
        [
            "DIR/scenario.yaml:6:22: unknown variable DB: pass --set DB=VALUE, set it in the environment, or give a default: ${DB:-VALUE}",
            "DIR/scenario.yaml:6:30: unknown variable X: pass --set X=VALUE, set it in the environment, or give a default: ${X:-VALUE}",
        ]
    );
    assert_eq!(
        errors_of(&MINIMAL.replace("name: smoke", "name: smoke-${DB")),
        ["DIR/scenario.yaml:1:13: `${` has no closing `}` on its line"]
    );
    assert_eq!(
        errors_of(&MINIMAL.replace("/ping", "/${9lives}")),
        ["DIR/scenario.yaml:6:14: \"${9lives}\" is not a variable name (letters, digits and _, not starting with a digit)"]
    );
}

#[test]
fn a_placeholder_left_after_substitution_is_refused() {
    assert_eq!(
        errors_of(&MINIMAL.replace("/ping", "\"/ping?c=${client:-0}\"")),
        ["DIR/scenario.yaml:6:13: requests[0].path: ${client:-0} is not expanded here: only ${client}, ${token} and ${now_ms} (s, ms, us, ns; `- 1h` or `+ 30s` after it) are left for each request (other variables are replaced before parsing)"]
    );
    // A value is not searched for variables again.
    let set = [("P".to_string(), "/${other}".to_string())];
    let err = parse_str(
        &MINIMAL.replace("/ping", "\"${P}\""),
        Path::new("s.yaml"),
        &set,
        &no_env,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "s.yaml:6:13: requests[0].path: ${other} is not expanded here: only ${client}, ${token} and ${now_ms} (s, ms, us, ns; `- 1h` or `+ 30s` after it) are left for each request (other variables are replaced before parsing)"
    );
    assert_eq!(
        errors_of(&MINIMAL.replace("name: smoke", "name: smoke-${client}")),
        ["DIR/scenario.yaml:1:7: name: ${client} is not expanded here: ${client}, ${token} and ${now_ms} only work in paths, header values and bodies"]
    );
}

#[test]
fn a_value_with_a_line_break_is_refused() {
    let env = |name: &str| (name == "DB").then(|| "a\nb".to_string());
    let err = parse_str(
        &MINIMAL.replace("/ping", "/q?db=${DB}"),
        Path::new("s.yaml"),
        &[],
        &env,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "s.yaml:6:19: the value of DB contains a line break, which would move the lines after it"
    );
}

#[test]
fn set_beats_the_environment_and_the_environment_beats_the_default() {
    let text = MINIMAL.replace("/ping", "/q?a=${A:-da}&b=${B:-db}&c=${C:-dc}&e=${E:-de}");
    let env = |name: &str| match name {
        "A" | "B" => Some(format!("env{name}")),
        "E" => Some(String::new()),
        _ => None,
    };
    let set = [
        ("A".to_string(), "first".to_string()),
        ("A".to_string(), "set".to_string()),
    ];
    let s = parse_str(&text, Path::new("s.yaml"), &set, &env).unwrap();
    assert_eq!(
        s.requests[0].path.to_string(),
        "/q?a=set&b=envB&c=dc&e=de",
        "the last --set of a name wins; an empty value takes the default, as in the shell"
    );
}

#[test]
fn an_slo_syntax_error_is_a_positioned_error() {
    assert_eq!(
        errors_of(&format!("{MINIMAL}slo:\n  - p99 < 20ms\n  - p99 << 2ms\n")),
        ["DIR/scenario.yaml:9:5: slo[1]: invalid SLO \"p99 << 2ms\" at column 5: expected <, <=, > or >="]
    );
}

#[test]
fn a_pinned_client_out_of_range_is_refused() {
    assert_eq!(
        errors_of(&MINIMAL.replace("{ path: /ping }", "{ path: /ping, client: 3 }\nclients: 3")),
        ["DIR/scenario.yaml:6:28: requests[0].client: client 3 is out of range: clients is 3, so 0 to 2"]
    );
}

#[test]
fn a_token_placeholder_needs_a_token_file() {
    assert_eq!(
        errors_of(&format!("{MINIMAL}headers: {{ Authorization: \"Bearer ${{token}}\" }}\n")),
        ["DIR/scenario.yaml:7:27: headers.Authorization: ${token} needs client_tokens_file: no client has a token"]
    );
}

#[test]
fn a_bad_line_of_the_token_file_is_named_without_showing_the_token() {
    let dir = Dir::new();
    std::fs::write(dir.dir.path().join("bad.txt"), "ok\n\nsecret\u{7f}\n").unwrap();
    assert_eq!(
        dir.errors(&format!("{MINIMAL}client_tokens_file: bad.txt\n")),
        [
            "DIR/bad.txt:2:1: client_tokens_file: empty line: each line is one client's token",
            "DIR/bad.txt:3:1: client_tokens_file: the token has a character a header value cannot carry",
        ]
    );
}

#[test]
fn targets_are_plain_http_with_an_optional_port_and_base_path() {
    let t = |s: &str| parse_target(s);
    assert_eq!(
        t("http://[::1]:9000/p/q/"),
        Ok(Target {
            host: "::1".into(),
            port: 9000,
            base_path: "/p/q".into(),
            authority: "[::1]:9000".into(),
            https: false,
        })
    );
    assert_eq!(
        t("ftp://gw:8443"),
        Err("unsupported scheme \"ftp\": use http:// or https://".into())
    );
    assert_eq!(
        t("127.0.0.1:8080"),
        Err("\"127.0.0.1:8080\" needs a scheme: http://host:port".into())
    );
    assert_eq!(
        t("http://gw/?x=1"),
        Err("a target has no query: put it in each request's path".into())
    );
    assert_eq!(
        t("http://u:p@gw"),
        Err("a target carries no user name or password".into())
    );
    assert_eq!(
        errors_of(&MINIMAL.replace("http://gw.example", "https://gw.example")),
        ["DIR/scenario.yaml:2:9: target: an https:// target needs tls: { ca: ... } (the CA that signed its certificate)"]
    );
}

#[test]
fn paths_and_headers_must_be_valid_http() {
    assert_eq!(
        errors_of(&MINIMAL.replace("{ path: /ping }", "{ path: ping }")),
        ["DIR/scenario.yaml:6:13: requests[0].path: \"ping\" must start with /"]
    );
    assert_eq!(
        errors_of(&MINIMAL.replace("{ path: /ping }", "{ path: \"/a b\" }")),
        ["DIR/scenario.yaml:6:13: requests[0].path: \"/a b\" is not a valid path and query (encode spaces and the like with %)"]
    );
    assert_eq!(
        errors_of(&format!("{MINIMAL}headers: {{ \"Bad Name\": x, Content-Length: \"3\", X-A: a, x-a: b }}\n")),
        [
            "DIR/scenario.yaml:7:12: headers.Bad Name: \"Bad Name\" is not a valid header name",
            "DIR/scenario.yaml:7:27: headers.Content-Length: is set by the load generator from the body",
            "DIR/scenario.yaml:7:56: headers.x-a: header x-a is given twice",
        ]
    );
}

#[test]
fn an_event_must_come_before_the_end_of_the_run() {
    assert_eq!(
        errors_of(&format!(
            "{MINIMAL}events:\n  - {{ at: 30s, run: date }}\n  - {{ at: 0s, run: \" \" }}\n"
        )),
        [
            "DIR/scenario.yaml:8:11: events[0].at: 30s is not before the end of the run (30s)",
            "DIR/scenario.yaml:9:20: events[1].run: must not be empty",
        ]
    );
}

#[test]
fn more_workers_than_connections_is_refused() {
    assert_eq!(
        errors_of(&format!("{MINIMAL}max_connections: 4\n")),
        ["DIR/scenario.yaml:3:14: concurrency: 8 workers but max_connections is 4: the workers past 4 would only wait for a connection (raise max_connections)"]
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let text = "\
name: all
target: ftp://h
stages:
  - { duration: 5x, rate: 1 }
  - { duration: 5s }
requests:
  - { method: get, path: /, client: 9 }
  - { path: /w, body: x, body_file: x.txt, weight: 0 }
clients: 2
timeout: 0s
slo:
  - p95 < 1ms
";
    assert_eq!(
        errors_of(text),
        [
            "DIR/scenario.yaml:2:9: target: unsupported scheme \"ftp\": use http:// or https://",
            "DIR/scenario.yaml:4:17: stages[0].duration: duration \"5x\" has an unknown unit \"x\" (ms, s, m or h)",
            "DIR/scenario.yaml:5:5: stages[1]: a stage needs a rate, a ramp_to, or both",
            "DIR/scenario.yaml:7:15: requests[0].method: unknown method \"get\": expected GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE",
            "DIR/scenario.yaml:7:37: requests[0].client: client 9 is out of range: clients is 2, so 0 to 1",
            "DIR/scenario.yaml:8:37: requests[1].body_file: body and body_file are exclusive: give one of them",
            "DIR/scenario.yaml:8:52: requests[1].weight: must be between 1 and 4294967295",
            "DIR/scenario.yaml:10:10: timeout: must be more than 0",
            "DIR/scenario.yaml:12:5: slo[0]: invalid SLO \"p95 < 1ms\" at column 1: p95 is not measured: the percentiles are p50, p90, p99 and p99.9",
        ]
    );
}

#[test]
fn errors_display_one_per_line() {
    let err = Dir::new()
        .parse(&MINIMAL.replace("/ping", "/${A}/${B}"))
        .unwrap_err();
    assert_eq!(err.len(), 2);
    assert_eq!(err.to_string().lines().count(), 2);
}

#[test]
fn a_file_that_cannot_be_read_is_named() {
    let err = load(Path::new("/nonexistent/s.yaml"), &[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent/s.yaml:0:0: cannot read: "),
        "{err}"
    );
}

#[test]
fn load_reads_the_file_and_its_neighbours() {
    let dir = Dir::new();
    std::fs::write(dir.origin(), FULL).unwrap();
    let s = load(&dir.origin(), &[("GREETING".into(), "hello".into())]).unwrap();
    assert_eq!(s.events[0].run, "echo hello");
    assert_eq!(s.tokens.len(), 3);
}

#[test]
fn the_mix_picks_each_index_exactly_its_weight_over_all_draws() {
    let w = |n| NonZeroU32::new(n).unwrap();
    let mix = Mix::new([w(9), w(1), w(3)]).unwrap();
    assert_eq!(mix.total(), 13);
    let picks: Vec<usize> = (0..13).map(|r| mix.pick(r)).collect();
    // Blocks in request order: 0 for draws 0..9, 1 for 9, 2 for 10..13.
    assert_eq!(picks, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2]);
    let mut counts = BTreeMap::new();
    for r in 13 * 1000..13 * 1001 {
        *counts.entry(mix.pick(r)).or_insert(0) += 1;
    }
    assert_eq!(counts, BTreeMap::from([(0, 9), (1, 1), (2, 3)]));
    assert_eq!(
        mix.pick(u64::MAX),
        (u64::MAX % 13 >= 9) as usize + (u64::MAX % 13 >= 10) as usize
    );
    assert_eq!(Mix::new([]), None);
}

#[test]
fn templates_render_placeholders_and_nothing_else() {
    let t = Template::parse(b"${client}-${token}/${client}$x{client}").unwrap();
    assert_eq!(render(&t, 0, "tk"), "0-tk/0$x{client}");
    assert_eq!(render(&t, u32::MAX, ""), "4294967295-/4294967295$x{client}");
    assert!(!t.is_static() && t.uses_token());
    assert_eq!(t.to_string(), "${client}-${token}/${client}$x{client}");
    let fixed = Template::parse(b"/ping").unwrap();
    assert!(fixed.is_static() && !fixed.uses_token());
    assert_eq!(fixed.as_static(), Some(&b"/ping"[..]));
    assert_eq!(Template::default().as_static(), Some(&b""[..]));
    let mut out = b"keep:".to_vec();
    fixed.render(1, "", 0, &mut out);
    assert_eq!(out, b"keep:/ping", "render appends");
    assert_eq!(
        Template::parse(b"ab${clients}"),
        Err(template::TemplateError {
            offset: 2,
            found: "${clients}".into(),
            reason: String::new(),
        })
    );
    assert_eq!(Template::literal("${x}").as_static(), Some(&b"${x}"[..]));
}

#[test]
fn time_placeholders_write_the_send_time_in_their_unit_shifted_as_written() {
    // 2023-11-14T22:13:20.123456789Z
    let now = 1_700_000_000_123_456_789;
    let t = Template::parse(
        b"s=${now_s} ms=${now_ms} us=${now_us} ns=${now_ns} hour_ago=${now_ms - 1h} ahead=${now_s+30s} half=${ now_ms - 500ms }",
    )
    .unwrap();
    assert!(!t.is_static());
    assert_eq!(
        render_at(&t, 0, "", now),
        "s=1700000000 ms=1700000000123 us=1700000000123456 ns=1700000000123456789 \
         hour_ago=1699996400123 ahead=1700000030 half=1699999999623"
    );
    // Before 1970 the value is negative and rounds down, as a Unix time does.
    let early = Template::parse(b"${now_s - 1h}").unwrap();
    assert_eq!(render_at(&early, 0, "", 1_000_000_000), "-3599");
    assert_eq!(
        t.to_string(),
        "s=${now_s} ms=${now_ms} us=${now_us} ns=${now_ns} hour_ago=${now_ms - 1h} ahead=${now_s+30s} half=${now_ms - 500ms}"
    );
}

#[test]
fn a_time_placeholder_written_wrong_is_named_with_what_is_wrong() {
    let reason = |text: &[u8]| Template::parse(text).unwrap_err().reason;
    assert_eq!(
        reason(b"${now_hours}"),
        ": now_hours: the time's unit is s, ms, us or ns (now_ms)"
    );
    assert_eq!(
        reason(b"${now_ms * 2}"),
        ": \"now_ms * 2\": after now_ms comes `- DURATION` or `+ DURATION` (now_ms - 1h)"
    );
    assert!(reason(b"${now_ms - 1x}").starts_with(": \"now_ms - 1x\": "));
    assert!(reason(b"${now_ms - }").starts_with(": \"now_ms - \": "));
    // In a scenario: named at its place, not taken for an unknown variable.
    assert_eq!(
        errors_of(&MINIMAL.replace("/ping", "\"/q?t=${now_min}\"")),
        ["DIR/scenario.yaml:6:13: requests[0].path: ${now_min} is not expanded here: only ${client}, ${token} and ${now_ms} (s, ms, us, ns; `- 1h` or `+ 30s` after it) are left for each request (other variables are replaced before parsing): now_min: the time's unit is s, ms, us or ns (now_ms)"]
    );
}

#[test]
fn a_time_range_in_a_query_survives_variables_and_compiles() {
    let text = MINIMAL.replace(
        "/ping",
        "\"/query?db=${DB:-telemetry}&q=SELECT+mean(v)+FROM+cpu+WHERE+time+%3E%3D+${now_ms - 1h}ms+AND+time+%3C%3D+${now_ms}ms\"",
    );
    let s = errors_free(&text);
    assert_eq!(
        render_at(&s.requests[0].path, 0, "", 1_700_003_600_000_000_000),
        "/query?db=telemetry&q=SELECT+mean(v)+FROM+cpu+WHERE+time+%3E%3D+1700000000000ms+AND+time+%3C%3D+1700003600000ms"
    );
}

#[test]
fn the_client_is_the_pinned_one_or_the_draw_modulo_clients() {
    let s = errors_free(FULL_WITHOUT_FILES);
    assert_eq!(s.client_for(0, 0), 0);
    assert_eq!(s.client_for(0, 205), 5);
    assert_eq!(s.client_for(1, 205), 0, "pinned");
    assert_eq!(s.client_for(99, 7), 7, "an unknown template is not pinned");
}

const FULL_WITHOUT_FILES: &str = "\
name: pins
target: http://h
stages:
  - { duration: 1s, rate: 1 }
requests:
  - { path: /a, headers: { X-Client: own } }
  - { path: /b, client: 0 }
headers: { X-Client: \"c${client}\", Accept: \"*/*\" }
clients: 200
";

#[test]
fn a_request_header_replaces_the_scenario_header_of_that_name() {
    let s = errors_free(FULL_WITHOUT_FILES);
    let names = |i| {
        s.headers_for(i)
            .map(|(n, t)| format!("{n}: {t}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(0), ["accept: */*", "x-client: own"]);
    assert_eq!(names(1), ["x-client: c${client}", "accept: */*"]);
}

#[test]
fn tokens_wrap_around_the_clients() {
    let s = Dir::new().parse(FULL).unwrap();
    assert_eq!(
        (0..5).map(|c| s.token_for(c)).collect::<Vec<_>>(),
        ["alpha", "beta", "gamma", "alpha", "beta"]
    );
    assert_eq!(errors_free(MINIMAL).token_for(3), "");
}

#[test]
fn set_arguments_split_at_the_first_equals_sign() {
    assert_eq!(parse_set("A=b=c"), Ok(("A".into(), "b=c".into())));
    assert_eq!(parse_set("A="), Ok(("A".into(), String::new())));
    assert_eq!(parse_set("A"), Err("\"A\" should be NAME=VALUE".into()));
    assert_eq!(
        parse_set("1A=x"),
        Err(
            "\"1A\" is not a variable name (letters, digits and _, not starting with a digit)"
                .into()
        )
    );
}

#[test]
fn a_yaml_mistake_keeps_its_position() {
    assert_eq!(
        errors_of("name: x\ntarget: [unclosed\n"),
        ["DIR/scenario.yaml:2:9: expected string scalar"]
    );
    assert_eq!(
        errors_of("name: x\n target: y\n"),
        ["DIR/scenario.yaml:2:8: mapping values are not allowed in this context"]
    );
}

#[test]
fn a_check_written_wrong_is_named_with_its_place() {
    let with_check = |check: &str| {
        errors_of(&MINIMAL.replace(
            "{ path: /ping }",
            &format!("{{ path: /ping, check: [{check}] }}"),
        ))
    };
    assert_eq!(
        with_check("{ status: 700 }"),
        ["DIR/scenario.yaml:6:28: requests[0].check[0].status: 700 is not an HTTP status (100 to 599)"]
    );
    assert_eq!(
        with_check("{ json: a..b, exists: true }"),
        ["DIR/scenario.yaml:6:28: requests[0].check[0].json: \"a..b\" is not a JSON path: keys and array indexes joined by dots (results.0.series)"]
    );
    assert_eq!(
        with_check("{ json: a, exists: true, equals: 1 }"),
        ["DIR/scenario.yaml:6:28: requests[0].check[0]: a json check takes `exists: true|false` or `equals: VALUE`, one of them"]
    );
    assert_eq!(
        with_check("{ status: 200, json: a }"),
        ["DIR/scenario.yaml:6:28: requests[0].check[0]: a check is `{ status: 200 }` or `{ json: PATH, exists: true|false }` or `{ json: PATH, equals: VALUE }`"]
    );
    assert_eq!(
        with_check("{ stauts: 200 }").len(),
        1,
        "unknown keys never pass"
    );
    let s = errors_free(&MINIMAL.replace(
        "{ path: /ping }",
        "{ path: /ping, check: [{ status: 204 }, { name: ok, json: results.0.series.0.name, equals: cpu }] }",
    ));
    let names: Vec<&str> = s.requests[0]
        .checks
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["status is 204", "ok"]);
}

#[test]
fn every_shipped_scenario_validates_with_its_defaults() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            if let Err(e) = crate::scenario::load(&path, &[]) {
                panic!("{}:\n{e}", path.display());
            }
            seen += 1;
        }
    }
    assert!(
        seen >= 8,
        "the shipped scenarios, dashboard.yaml among them: {seen}"
    );
}
