//! Compiling a parsed scenario: every value checked and turned into its typed form, every
//! error collected with its position.

use super::error::{self, ScenarioErrors};
use super::raw::{RawHeaders, RawRequest, RawScenario, RawStage};
use super::ClientTls;
use super::{
    Event, Load, Mix, RequestTemplate, Scenario, Stage, Target, Template, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SEED, DEFAULT_TIMEOUT,
};
use http::{HeaderName, HeaderValue, Method};
use operator_config::Collector;
use serde_saphyr::Spanned;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::time::Duration;

/// The methods a request may use; CONNECT is left out, it would turn the connection into a
/// tunnel.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
];

/// The time a sample request is rendered at to check that a header value or path with
/// `${now_...}` in it is valid (any time writes only digits and a sign).
const SAMPLE_NOW_NS: i64 = 1_700_000_000_000_000_000;

/// A string that is used as it is, where a leftover `${...}` would be sent literally.
fn no_placeholder(e: &mut Collector<'_>, v: &Spanned<String>, field: &str) {
    if let Some(i) = v.value.find("${") {
        let rest = &v.value[i..];
        let found = rest.find('}').map_or(rest, |end| &rest[..=end]);
        e.at(
            v,
            field,
            format!("{found} is not expanded here: ${{client}}, ${{token}} and ${{now_ms}} only work in paths, header values and bodies"),
        );
    }
}

/// A path, header value or body; `${token}` needs a token file.
fn template(
    e: &mut Collector<'_>,
    v: &Spanned<String>,
    field: &str,
    has_tokens: bool,
) -> Option<Template> {
    match Template::parse(v.value.as_bytes()) {
        Ok(t) => {
            if t.uses_token() && !has_tokens {
                e.at(
                    v,
                    field,
                    "${token} needs client_tokens_file: no client has a token",
                );
            }
            Some(t)
        }
        Err(err) => {
            e.at(v, field, err.to_string());
            None
        }
    }
}

fn compile_headers(
    e: &mut Collector<'_>,
    raw: Option<&RawHeaders>,
    field: &str,
    has_tokens: bool,
    sample_token: &str,
) -> Vec<(HeaderName, Template)> {
    let mut out: Vec<(HeaderName, Template)> = Vec::new();
    for (k, v) in raw.map_or(&[][..], |h| h.0.as_slice()) {
        let f = format!("{field}.{}", k.value);
        let name = match HeaderName::from_bytes(k.value.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                e.at(k, &f, format!("{:?} is not a valid header name", k.value));
                continue;
            }
        };
        // The generator frames the body itself; a second length would corrupt it.
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            e.at(k, &f, "is set by the load generator from the body");
            continue;
        }
        if out.iter().any(|(n, _)| *n == name) {
            e.at(k, &f, format!("header {name} is given twice"));
            continue;
        }
        let Some(value) = template(e, v, &f, has_tokens) else {
            continue;
        };
        let mut sample = Vec::new();
        value.render(0, sample_token, SAMPLE_NOW_NS, &mut sample);
        if HeaderValue::from_bytes(&sample).is_err() {
            e.at(v, &f, format!("{:?} is not a valid header value", v.value));
            continue;
        }
        out.push((name, value));
    }
    out
}

/// Compiles the parsed scenario, collecting every error.
pub(super) fn compile(
    raw: &RawScenario,
    yaml: String,
    origin: &Path,
) -> Result<Scenario, ScenarioErrors> {
    let mut errors = ScenarioErrors::default();
    let mut e = Collector::new(origin, &mut errors);
    let base = origin.parent().unwrap_or(Path::new("."));

    if raw.name.value.trim().is_empty() {
        e.at(&raw.name, "name", "must not be empty");
    }
    no_placeholder(&mut e, &raw.name, "name");

    let target = match parse_target(&raw.target.value) {
        Ok(t) => Some(t),
        Err(message) => {
            e.at(&raw.target, "target", message);
            None
        }
    };
    let base_path = target.as_ref().map_or("", |t| t.base_path.as_str());

    let load = compile_load(&mut e, raw);

    let tls = match (&raw.tls, target.as_ref().map(|t| t.https)) {
        (None, Some(true)) => {
            e.at(
                &raw.target,
                "target",
                "an https:// target needs tls: { ca: ... } (the CA that signed its certificate)",
            );
            None
        }
        (Some(t), Some(false)) => {
            e.at(t, "tls", "tls is for an https:// target");
            None
        }
        (Some(t), _) => {
            let file = |v: &Spanned<String>| base.join(&v.value);
            let client = match (&t.value.client_cert, &t.value.client_key) {
                (Some(c), Some(k)) => Some((file(c), file(k))),
                (None, None) => None,
                _ => {
                    e.at(t, "tls", "give client_cert and client_key together");
                    None
                }
            };
            Some(ClientTls {
                ca: file(&t.value.ca),
                client,
            })
        }
        (None, _) => None,
    };

    let clients = match &raw.clients {
        None => Some(NonZeroU32::MIN),
        Some(c) => e
            .positive(c, "clients", u64::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new),
    };

    let tokens = match &raw.client_tokens_file {
        None => Some(Vec::new()),
        Some(f) => {
            no_placeholder(&mut e, f, "client_tokens_file");
            read_tokens(&mut e, f, &base.join(&f.value))
        }
    };
    let has_tokens = raw.client_tokens_file.is_some();
    let sample_token = tokens
        .as_ref()
        .and_then(|t| t.first())
        .map_or("token", String::as_str)
        .to_string();

    let headers = compile_headers(
        &mut e,
        raw.headers.as_ref(),
        "headers",
        has_tokens,
        &sample_token,
    );

    if raw.requests.value.is_empty() {
        e.at(&raw.requests, "requests", "at least one request is needed");
    }
    let c = RequestContext {
        base,
        base_path,
        clients,
        has_tokens,
        sample_token: &sample_token,
    };
    let requests: Vec<RequestTemplate> = raw
        .requests
        .value
        .iter()
        .enumerate()
        .filter_map(|(i, r)| compile_request(&mut e, r, i, &c))
        .collect();
    let mix = Mix::new(requests.iter().map(|r| r.weight));

    let max_connections = match &raw.max_connections {
        None => NonZeroUsize::new(DEFAULT_MAX_CONNECTIONS),
        Some(m) => e
            .positive(m, "max_connections", u64::from(u32::MAX))
            .and_then(|n| usize::try_from(n).ok())
            .and_then(NonZeroUsize::new),
    };
    if let (Some(Load::Closed { concurrency, .. }), Some(max)) = (&load, max_connections) {
        if *concurrency > max {
            if let Some(c) = &raw.concurrency {
                e.at(
                    c,
                    "concurrency",
                    format!("{concurrency} workers but max_connections is {max}: the workers past {max} would only wait for a connection (raise max_connections)"),
                );
            }
        }
    }
    let timeout = match &raw.timeout {
        None => Some(DEFAULT_TIMEOUT),
        Some(t) => e.duration(t, "timeout", false),
    };
    let seed = raw.seed.as_ref().map_or(DEFAULT_SEED, |s| s.value);

    let mut events = Vec::new();
    for (i, ev) in raw.events.iter().enumerate() {
        let f = format!("events[{i}]");
        let at = e.duration(&ev.at, &format!("{f}.at"), true);
        if ev.run.value.trim().is_empty() {
            e.at(&ev.run, format!("{f}.run"), "must not be empty");
        }
        let Some(at) = at else { continue };
        if let Some(total) = load.as_ref().map(Load::total_duration) {
            if at >= total {
                e.at(
                    &ev.at,
                    format!("{f}.at"),
                    format!(
                        "{} is not before the end of the run ({total:?})",
                        ev.at.value.trim()
                    ),
                );
                continue;
            }
        }
        events.push(Event {
            at,
            run: ev.run.value.clone(),
        });
    }
    // Stable: events at the same offset keep the order they were written in.
    events.sort_by_key(|ev| ev.at);

    let mut slo = Vec::new();
    for (i, line) in raw.slo.iter().enumerate() {
        match crate::slo::parse(&line.value) {
            Ok(s) => slo.push(s),
            Err(err) => e.at(line, format!("slo[{i}]"), err.to_string()),
        }
    }

    // In reading order: the scenario's own errors by position, then those in the files it
    // names.
    errors.0.sort_by(|a, b| {
        (a.file != origin, &a.file, a.line, a.column).cmp(&(
            b.file != origin,
            &b.file,
            b.line,
            b.column,
        ))
    });
    match (target, load, mix, clients, tokens, max_connections, timeout) {
        (
            Some(target),
            Some(load),
            Some(mix),
            Some(clients),
            Some(tokens),
            Some(max_connections),
            Some(timeout),
        ) if errors.is_empty() => Ok(Scenario {
            name: raw.name.value.clone(),
            target,
            load,
            requests,
            mix,
            headers,
            clients,
            tokens,
            max_connections,
            timeout,
            seed,
            events,
            slo,
            yaml,
            origin: origin.to_path_buf(),
            tls,
        }),
        _ => Err(errors),
    }
}

/// What every request's checks need from the rest of the scenario.
struct RequestContext<'a> {
    /// The scenario's folder, for `body_file`.
    base: &'a Path,
    base_path: &'a str,
    /// `None` when `clients` itself is wrong (and reported).
    clients: Option<NonZeroU32>,
    has_tokens: bool,
    sample_token: &'a str,
}

fn compile_request(
    e: &mut Collector<'_>,
    r: &RawRequest,
    i: usize,
    c: &RequestContext<'_>,
) -> Option<RequestTemplate> {
    let f = format!("requests[{i}]");
    let before = e.count();
    let weight = match &r.weight {
        None => NonZeroU32::MIN,
        Some(w) => e
            .positive(w, &format!("{f}.weight"), u64::from(u32::MAX))
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
            .unwrap_or(NonZeroU32::MIN),
    };
    let method = match &r.method {
        None => Method::GET,
        Some(m) => match METHODS
            .contains(&m.value.as_str())
            .then(|| Method::from_bytes(m.value.as_bytes()).ok())
            .flatten()
        {
            Some(method) => method,
            None => {
                e.at(
                    m,
                    format!("{f}.method"),
                    format!(
                        "unknown method {:?}: expected {}",
                        m.value,
                        METHODS.join(", ")
                    ),
                );
                Method::GET
            }
        },
    };
    let path = compile_path(e, &r.path, &f, c.base_path, c.has_tokens, c.sample_token);
    let body = match (&r.body, &r.body_file) {
        (Some(_), Some(file)) => {
            e.at(
                file,
                format!("{f}.body_file"),
                "body and body_file are exclusive: give one of them",
            );
            None
        }
        (Some(b), None) => template(e, b, &format!("{f}.body"), c.has_tokens),
        (None, Some(file)) => {
            no_placeholder(e, file, &format!("{f}.body_file"));
            read_body(e, file, &c.base.join(&file.value), &f, c.has_tokens)
        }
        (None, None) => Some(Template::default()),
    };
    let own_headers = compile_headers(
        e,
        r.headers.as_ref(),
        &format!("{f}.headers"),
        c.has_tokens,
        c.sample_token,
    );
    let client = match (&r.client, c.clients) {
        (None, _) => None,
        (Some(pin), Some(n)) if pin.value < u64::from(n.get()) => u32::try_from(pin.value).ok(),
        (Some(pin), Some(n)) => {
            e.at(
                pin,
                format!("{f}.client"),
                format!(
                    "client {} is out of range: clients is {n}, so 0 to {}",
                    pin.value,
                    n.get() - 1
                ),
            );
            None
        }
        // `clients` itself is wrong and already reported.
        (Some(_), None) => None,
    };
    let checks = r
        .check
        .iter()
        .enumerate()
        .filter_map(|(k, c)| compile_check(e, c, &format!("{f}.check[{k}]")))
        .collect();
    let (path, body) = (path?, body?);
    (e.count() == before).then_some(RequestTemplate {
        weight,
        method,
        path,
        headers: own_headers,
        body,
        client,
        checks,
    })
}

/// One check: a status (100 to 599), or a JSON path with `exists` or `equals`.
fn compile_check(
    e: &mut Collector<'_>,
    c: &Spanned<super::raw::RawCheck>,
    f: &str,
) -> Option<crate::check::Check> {
    use crate::check::{Check, JsonPath, Rule};
    let raw = &c.value;
    let rule = match (raw.status, &raw.json, raw.exists, &raw.equals) {
        (Some(s), None, None, None) => match u16::try_from(s) {
            Ok(s) if (100..=599).contains(&s) => Rule::Status(s),
            _ => {
                e.at(
                    c,
                    format!("{f}.status"),
                    format!("{s} is not an HTTP status (100 to 599)"),
                );
                return None;
            }
        },
        (None, Some(path), exists, equals) => {
            let path = match JsonPath::parse(path) {
                Ok(p) => p,
                Err(message) => {
                    e.at(c, format!("{f}.json"), message);
                    return None;
                }
            };
            match (exists, equals) {
                (Some(exists), None) => Rule::Exists { path, exists },
                (None, Some(value)) => Rule::Equals {
                    path,
                    value: value.clone(),
                },
                _ => {
                    e.at(
                        c,
                        f,
                        "a json check takes `exists: true|false` or `equals: VALUE`, one of them",
                    );
                    return None;
                }
            }
        }
        _ => {
            e.at(
                c,
                f,
                "a check is `{ status: 200 }` or `{ json: PATH, exists: true|false }` or `{ json: PATH, equals: VALUE }`",
            );
            return None;
        }
    };
    Some(Check {
        name: raw.name.clone().unwrap_or_else(|| rule.describe()),
        rule,
    })
}

pub(super) fn parse_target(text: &str) -> Result<Target, String> {
    let uri: http::Uri = text
        .trim()
        .parse()
        .map_err(|err| format!("{text:?} is not a URL: {err}"))?;
    let https = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(other) => {
            return Err(format!(
                "unsupported scheme {other:?}: use http:// or https://"
            ))
        }
        None => return Err(format!("{text:?} needs a scheme: http://host:port")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{text:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err("a target carries no user name or password".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{text:?} has no host"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    if port == 0 {
        return Err("port 0 cannot be connected to".into());
    }
    if uri.query().is_some() {
        return Err("a target has no query: put it in each request's path".into());
    }
    Ok(Target {
        host: host.to_string(),
        port,
        base_path: uri.path().trim_end_matches('/').to_string(),
        authority: authority.as_str().to_string(),
        https,
    })
}

fn compile_load(e: &mut Collector<'_>, raw: &RawScenario) -> Option<Load> {
    match (&raw.stages, &raw.concurrency) {
        (Some(_), Some(c)) => {
            e.at(
                c,
                "concurrency",
                "stages and concurrency are exclusive: stages send requests at a rate (open loop), concurrency runs workers that wait for each answer (closed loop)",
            );
            None
        }
        (None, None) => {
            e.in_file(
                e.file().to_path_buf(),
                1,
                1,
                "stages",
                "give stages (requests at a rate) or concurrency with a duration (workers that wait for each answer)",
            );
            None
        }
        (Some(stages), None) => {
            for (v, key) in [(&raw.duration, "duration"), (&raw.warmup, "warmup")] {
                if let Some(v) = v {
                    e.at(
                        v,
                        key,
                        format!("a top-level {key} is for concurrency; with stages, each stage has its own"),
                    );
                }
            }
            compile_stages(e, stages).map(Load::Open)
        }
        (None, Some(c)) => {
            let concurrency = e
                .positive(c, "concurrency", u64::from(u32::MAX))
                .and_then(|n| usize::try_from(n).ok())
                .and_then(NonZeroUsize::new);
            let duration = match &raw.duration {
                Some(d) => e.duration(d, "duration", false),
                None => {
                    e.at(c, "duration", "concurrency needs a top-level duration");
                    None
                }
            };
            let warmup = match &raw.warmup {
                None => Some(Duration::ZERO),
                Some(w) => e.duration(w, "warmup", true),
            };
            let (concurrency, duration, warmup) = (concurrency?, duration?, warmup?);
            if warmup >= duration {
                if let Some(w) = &raw.warmup {
                    e.at(
                        w,
                        "warmup",
                        format!(
                            "must be shorter than duration ({})",
                            raw.duration.as_ref().map_or("", |d| d.value.trim())
                        ),
                    );
                }
                return None;
            }
            Some(Load::Closed {
                concurrency,
                duration,
                warmup,
            })
        }
    }
}

fn compile_stages(
    e: &mut Collector<'_>,
    stages: &Spanned<Vec<Spanned<RawStage>>>,
) -> Option<Vec<Stage>> {
    if stages.value.is_empty() {
        e.at(stages, "stages", "at least one stage is needed");
        return None;
    }
    let before = e.count();
    let many = stages.value.len() >= 2;
    let mut out = Vec::new();
    // A ramp without `rate` starts where the stage before it ended.
    let mut previous_end = 0.0;
    for (i, s) in stages.value.iter().enumerate() {
        let f = format!("stages[{i}]");
        let duration = e.duration(&s.value.duration, &format!("{f}.duration"), false);
        let rate = |v: &Option<Spanned<f64>>, key: &str, e: &mut Collector<'_>| {
            v.as_ref().and_then(|r| {
                if r.value.is_finite() && r.value >= 0.0 {
                    Some(r.value)
                } else {
                    e.at(
                        r,
                        format!("{f}.{key}"),
                        "must be a number of requests per second, 0 or more",
                    );
                    None
                }
            })
        };
        let start = rate(&s.value.rate, "rate", e);
        let end = rate(&s.value.ramp_to, "ramp_to", e);
        let (start, end) = match (&s.value.rate, &s.value.ramp_to) {
            (None, None) => {
                e.at(s, &f, "a stage needs a rate, a ramp_to, or both");
                continue;
            }
            (Some(_), None) => (start, start),
            (None, Some(_)) => (Some(previous_end), end),
            (Some(_), Some(_)) => (start, end),
        };
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        previous_end = end;
        if start == 0.0 && end == 0.0 {
            e.at(
                s,
                &f,
                "this stage sends no request: give it a rate or a ramp_to above 0",
            );
            continue;
        }
        let Some(duration) = duration else { continue };
        let warmup = s.value.warmup.as_ref().map_or(many && i == 0, |w| w.value);
        let d = s.value.duration.value.trim();
        let label = if start == end {
            format!("{d} at {start}/s")
        } else {
            format!("{d} ramp {start}→{end}/s")
        };
        out.push(Stage {
            duration,
            start_rate: start,
            end_rate: end,
            warmup,
            label,
        });
    }
    if e.count() != before {
        return None;
    }
    if out.iter().all(|s| s.warmup) {
        e.at(
            stages,
            "stages",
            "every stage is a warm-up, so nothing would be measured: mark one with warmup: false",
        );
        return None;
    }
    Some(out)
}

fn compile_path(
    e: &mut Collector<'_>,
    path: &Spanned<String>,
    f: &str,
    base_path: &str,
    has_tokens: bool,
    sample_token: &str,
) -> Option<Template> {
    let field = format!("{f}.path");
    if !path.value.starts_with('/') {
        e.at(path, &field, format!("{:?} must start with /", path.value));
        return None;
    }
    if path.value.contains('#') {
        e.at(path, &field, "a fragment (#...) is never sent to a server");
        return None;
    }
    let t = template(e, path, &field, has_tokens)?;
    let mut sample = base_path.as_bytes().to_vec();
    t.render(0, sample_token, SAMPLE_NOW_NS, &mut sample);
    if http::uri::PathAndQuery::try_from(sample.as_slice()).is_err() {
        e.at(
            path,
            &field,
            format!(
                "{:?} is not a valid path and query (encode spaces and the like with %)",
                path.value
            ),
        );
        return None;
    }
    Some(t)
}

fn read_tokens(e: &mut Collector<'_>, raw: &Spanned<String>, file: &Path) -> Option<Vec<String>> {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(err) => {
            e.at(
                raw,
                "client_tokens_file",
                format!("cannot read {}: {err}", file.display()),
            );
            return None;
        }
    };
    let before = e.count();
    let mut tokens = Vec::new();
    // Blank lines at the end are not clients; one in the middle would shift every token
    // after it to the wrong client, so it is an error.
    for (i, line) in text.trim_end().lines().enumerate() {
        let token = line.trim();
        let line_no = i as u64 + 1;
        // The messages never show the token: it is a credential.
        if token.is_empty() {
            e.in_file(
                file.to_path_buf(),
                line_no,
                1,
                "client_tokens_file",
                "empty line: each line is one client's token",
            );
        } else if HeaderValue::from_str(token).is_err() {
            e.in_file(
                file.to_path_buf(),
                line_no,
                1,
                "client_tokens_file",
                "the token has a character a header value cannot carry",
            );
        }
        tokens.push(token.to_string());
    }
    if tokens.is_empty() {
        e.at(
            raw,
            "client_tokens_file",
            format!("{} has no token", file.display()),
        );
    }
    (e.count() == before).then_some(tokens)
}

fn read_body(
    e: &mut Collector<'_>,
    raw: &Spanned<String>,
    file: &Path,
    f: &str,
    has_tokens: bool,
) -> Option<Template> {
    let field = format!("{f}.body_file");
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(err) => {
            e.at(
                raw,
                &field,
                format!("cannot read {}: {err}", file.display()),
            );
            return None;
        }
    };
    match Template::parse(&bytes) {
        Ok(t) => {
            if t.uses_token() && !has_tokens {
                e.at(
                    raw,
                    &field,
                    "${token} needs client_tokens_file: no client has a token",
                );
            }
            Some(t)
        }
        Err(err) => {
            let (line, column) = error::position(&bytes, err.offset);
            e.in_file(file.to_path_buf(), line, column, field, err.to_string());
            None
        }
    }
}
