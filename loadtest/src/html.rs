//! The HTML report: one self-contained page (`report.html`) that an SRE reads after a run.
//!
//! [`render`] is a pure function from a [`Report`] to the page's text. The page has no
//! external assets and makes no requests: CSS is inline, the plots are inline SVG from
//! `svg.rs`, and it works from a file, offline. Its order follows what a reader asks:
//! what ran (header), did it pass (verdict, and a warning when the generator fell behind
//! its schedule, since then the figures measure the generator), the SLOs, the figures
//! per stage, the chaos events, the plots, and the scenario as run.
//!
//! All text taken from the report is escaped. The one script is a render check of a
//! dozen lines: it measures each `svg.plot` (the bounding box of its `.series` and `.bar`
//! elements and their number of points) and writes one line per plot into the hidden
//! `<pre id="render-check">`, which `tests/html_report.rs` reads from headless Chromium's
//! `--dump-dom`. The page reads the same without it.

use crate::report::{EventRecord, Mode, Report, SloVerdict, StageReport, Summary};
use crate::svg::{self, escape, fmt_count, fmt_duration, fmt_ms, fmt_rate, fmt_share};
use std::fmt::Write;

/// Writes into a `String`, which cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// An achieved rate below this share of the asked rate is marked as short.
const SHORT_RATE: f64 = 0.97;

/// The whole page for `report`.
///
/// ```
/// let page = loadtest::html::render(&loadtest::report::Report::example());
/// assert!(page.starts_with("<!doctype html>"));
/// assert_eq!(page.matches("<svg xmlns").count(), 4);
/// ```
pub fn render(report: &Report) -> String {
    let mut out = String::with_capacity(64 * 1024);
    put!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{} · loadtest report</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        escape(&report.scenario_name),
    );
    header(&mut out, report);
    verdict(&mut out, report);
    generator_warning(&mut out, report);
    slo_table(&mut out, &report.slo);
    summary_table(&mut out, report);
    events(&mut out, &report.events);
    plots(&mut out, report);
    scenario(&mut out, report);
    put!(
        out,
        "<footer>{} {} · report format {}</footer>\n\
         <pre id=\"render-check\" hidden></pre>\n<script>{RENDER_CHECK}</script>\n\
         </main>\n</body>\n</html>\n",
        escape(&report.tool),
        escape(&report.tool_version),
        report.format,
    );
    out
}

fn header(out: &mut String, report: &Report) {
    let (mode, mode_note) = match report.mode {
        Mode::Open => ("open loop", "latency from schedule"),
        Mode::Closed => ("closed loop", "latency from send"),
    };
    let g = &report.generator;
    put!(
        out,
        "<header>\n<p class=\"kicker\">Load-test report</p>\n<h1>{}</h1>\n<dl class=\"meta\">\
         <div><dt>Target</dt><dd><code>{}</code></dd></div>\
         <div><dt>Mode</dt><dd>{mode}<small>{mode_note}</small></dd></div>\
         <div><dt>Started</dt><dd>{}</dd></div>\
         <div><dt>Duration</dt><dd>{}</dd></div>\
         <div><dt>Generator</dt><dd>{} thread{}, max lag {} ms<small>{} late (&gt; {} ms), \
         {} dropped</small></dd></div>\
         <div><dt>Tool</dt><dd>{} {}</dd></div>\
         </dl>\n</header>\n",
        escape(&report.scenario_name),
        escape(&report.target),
        escape(&report.started_at),
        fmt_duration(report.duration_s),
        g.threads,
        if g.threads == 1 { "" } else { "s" },
        fmt_ms(g.max_lag_ms),
        fmt_count(g.late_requests),
        fmt_ms(g.late_threshold_ms),
        fmt_count(g.dropped),
        escape(&report.tool),
        escape(&report.tool_version),
    );
}

fn verdict(out: &mut String, report: &Report) {
    let failed: Vec<&SloVerdict> = report.slo.iter().filter(|s| !s.passed).collect();
    let total = report.slo.len();
    if total == 0 {
        out.push_str(
            "<section class=\"verdict none\"><strong>No SLOs declared</strong> \
             <span>the scenario has no <code>slo</code> lines; nothing was judged.</span></section>\n",
        );
    } else if failed.is_empty() {
        put!(
            out,
            "<section class=\"verdict pass\"><strong>PASS</strong> \
             <span>all {total} SLO{} met.</span></section>\n",
            if total == 1 { "" } else { "s" },
        );
    } else {
        let list: Vec<String> = failed
            .iter()
            .map(|s| {
                format!(
                    "<code>{}</code> (measured {})",
                    escape(&s.text),
                    measured(s.actual, &s.unit)
                )
            })
            .collect();
        put!(
            out,
            "<section class=\"verdict fail\"><strong>FAIL</strong> \
             <span>{} of {total} SLO{} failed: {}.</span></section>\n",
            failed.len(),
            if total == 1 { "" } else { "s" },
            list.join(", "),
        );
    }
}

fn generator_warning(out: &mut String, report: &Report) {
    let g = &report.generator;
    if g.kept_schedule {
        return;
    }
    put!(
        out,
        "<section class=\"warning\" role=\"alert\"><strong>The generator could not keep the \
         schedule:</strong> {} late (&gt; {} ms), max lag {} ms, {} dropped — figures measure \
         the generator, not the server. Rerun at a lower rate or with more \
         generator capacity.</section>\n",
        fmt_count(g.late_requests),
        fmt_ms(g.late_threshold_ms),
        fmt_ms(g.max_lag_ms),
        fmt_count(g.dropped),
    );
}

/// A measured value or threshold in its unit, as an SLO line writes it: `12 ms`, `0.17%`,
/// `1,950 /s`.
fn measured(value: f64, unit: &str) -> String {
    let mut number = fmt_ms(value);
    if number.contains('.') && !number.contains('e') {
        number = number
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string();
    }
    match unit {
        "%" => format!("{number}%"),
        "" => number,
        other => format!("{number} {}", escape(other)),
    }
}

fn slo_table(out: &mut String, slos: &[SloVerdict]) {
    out.push_str("<section>\n<h2>Service-level objectives</h2>\n");
    if slos.is_empty() {
        out.push_str("<p class=\"empty\">None declared.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"slo\"><thead><tr><th>Objective</th><th class=\"n\">Measured</th>\
         <th class=\"n\">Threshold</th><th>Verdict</th></tr></thead><tbody>\n",
    );
    for s in slos {
        put!(
            out,
            "<tr class=\"{}\"><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td><span class=\"badge {}\">{}</span></td></tr>\n",
            if s.passed { "pass" } else { "fail" },
            escape(&s.text),
            measured(s.actual, &s.unit),
            measured(s.threshold, &s.unit),
            if s.passed { "pass" } else { "fail" },
            if s.passed { "pass" } else { "FAIL" },
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

fn summary_table(out: &mut String, report: &Report) {
    out.push_str(
        "<section>\n<h2>Summary</h2>\n<p class=\"note\">Overall is every stage after the \
         warm-up ones, and what the SLOs are judged on. Error rate is (5xx + transport errors) \
         / requests; 429s are counted apart.</p>\n<div class=\"scroll\"><table class=\"summary\">\
         <thead><tr><th rowspan=\"2\">Set</th><th class=\"n\" rowspan=\"2\">Requests</th>\
         <th class=\"group\" colspan=\"2\">Rate /s</th><th class=\"group\" colspan=\"5\">Latency (ms)</th>\
         <th class=\"group\" colspan=\"5\">Outcomes</th><th class=\"n\" rowspan=\"2\">Error rate</th></tr>\
         <tr><th class=\"n\">asked</th><th class=\"n\">achieved</th><th class=\"n\">p50</th>\
         <th class=\"n\">p90</th><th class=\"n\">p99</th><th class=\"n\">p99.9</th><th class=\"n\">max</th>\
         <th class=\"n\">ok</th><th class=\"n\">429</th><th class=\"n\">4xx</th><th class=\"n\">5xx</th>\
         <th class=\"n\">transport</th></tr></thead><tbody>\n",
    );
    summary_row(out, "overall", "<strong>overall</strong>", &report.overall);
    for stage in &report.stages {
        stage_row(out, stage);
    }
    // With more than one kind of request, each one apart (a pinned noisy client, writes
    // against queries).
    if report.requests.len() > 1 {
        for r in &report.requests {
            let pinned = r
                .client
                .map(|c| format!(" <span class=\"badge\">client {c}</span>"))
                .unwrap_or_default();
            let name = format!(
                "request {}: <code>{}</code>{pinned}",
                r.index + 1,
                escape(&r.label)
            );
            summary_row(out, "stage", &name, &r.summary);
        }
    }
    out.push_str("</tbody></table></div>\n");
    checks_table(out, report);
    out.push_str("</section>\n");
}

/// Each request's checks: how many answers held each, and how many did not.
fn checks_table(out: &mut String, report: &Report) {
    let rows: Vec<String> = report
        .requests
        .iter()
        .flat_map(|r| {
            r.checks.iter().map(move |c| {
                let total = c.held + c.failed;
                let class = if c.failed > 0 { " class=\"fail\"" } else { "" };
                format!(
                    "<tr{class}><td>request {}: <code>{}</code></td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n",
                    r.index + 1,
                    escape(&r.label),
                    escape(&c.name),
                    fmt_count(c.held),
                    fmt_count(c.failed),
                    if total == 0 {
                        "–".to_string()
                    } else {
                        format!("{:.2}%", c.held as f64 * 100.0 / total as f64)
                    }
                )
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str(
        "<h3>Checks</h3>\n<div class=\"scroll\"><table class=\"checks\"><thead><tr><th>request</th><th>check</th>\
         <th class=\"n\">held</th><th class=\"n\">failed</th><th class=\"n\">held %</th></tr></thead><tbody>\n",
    );
    for r in rows {
        out.push_str(&r);
    }
    out.push_str("</tbody></table></div>\n");
}

fn stage_row(out: &mut String, stage: &StageReport) {
    let name = format!(
        "stage {}: {}{}",
        stage.index + 1,
        escape(&stage.label),
        if stage.warmup {
            " <span class=\"badge warmup\">warm-up</span>"
        } else {
            ""
        },
    );
    let class = if stage.warmup {
        "stage warmup"
    } else {
        "stage"
    };
    summary_row(out, class, &name, &stage.summary);
}

/// One row of the summary table; `name` is markup (already escaped).
fn summary_row(out: &mut String, class: &str, name: &str, s: &Summary) {
    let (asked, short) = match s.asked_rate {
        Some(asked) => (
            fmt_rate(asked),
            asked.is_finite() && asked > 0.0 && s.achieved_rate < asked * SHORT_RATE,
        ),
        None => ("–".into(), false),
    };
    let achieved = if short {
        let share = s.asked_rate.map_or(0.0, |a| s.achieved_rate / a);
        format!(
            "<td class=\"n short\" title=\"{} of the asked rate\">{}</td>",
            fmt_share(share),
            fmt_rate(s.achieved_rate)
        )
    } else {
        format!("<td class=\"n\">{}</td>", fmt_rate(s.achieved_rate))
    };
    let l = &s.latency;
    let count = |n: u64, bad: bool| {
        if bad && n > 0 {
            format!("<td class=\"n bad\">{}</td>", fmt_count(n))
        } else {
            format!("<td class=\"n\">{}</td>", fmt_count(n))
        }
    };
    put!(
        out,
        "<tr class=\"{class}\"><th scope=\"row\">{name}</th><td class=\"n\">{}</td>\
         <td class=\"n\">{asked}</td>{achieved}<td class=\"n\">{}</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>{}{}{}{}{}\
         <td class=\"n{}\">{}</td></tr>\n",
        fmt_count(s.requests),
        fmt_ms(l.p50_ms),
        fmt_ms(l.p90_ms),
        fmt_ms(l.p99_ms),
        fmt_ms(l.p999_ms),
        fmt_ms(l.max_ms),
        count(s.ok, false),
        count(s.rate_limited, false),
        count(s.client_errors, true),
        count(s.server_errors, true),
        count(s.transport_errors, true),
        if s.error_rate > 0.0 { " bad" } else { "" },
        fmt_share(s.error_rate),
    );
}

fn events(out: &mut String, events: &[EventRecord]) {
    out.push_str("<section>\n<h2>Events</h2>\n");
    if events.is_empty() {
        out.push_str("<p class=\"empty\">No events in this scenario.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table class=\"events\"><thead><tr><th class=\"n\">Asked at</th><th class=\"n\">Started</th>\
         <th>Exit</th><th>Command</th></tr></thead><tbody>\n",
    );
    for e in events {
        let exit = match e.exit_code {
            Some(0) => "<span class=\"badge pass\">0</span>".to_string(),
            Some(code) => format!("<span class=\"badge fail\">{code}</span>"),
            None => "<span class=\"badge fail\">not started or killed</span>".to_string(),
        };
        let output = if e.output.is_empty() {
            String::new()
        } else {
            format!(
                "<details><summary>output</summary><pre>{}</pre></details>",
                escape(&e.output)
            )
        };
        put!(
            out,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{exit}</td>\
             <td><code>{}</code>{output}</td></tr>\n",
            offset(e.at_s),
            offset(e.started_s),
            escape(&e.run),
        );
    }
    out.push_str("</tbody></table>\n</section>\n");
}

/// An offset from the start of the run: `12.001 s`.
fn offset(seconds: f64) -> String {
    if seconds.is_finite() {
        format!("{seconds:.3} s")
    } else {
        "–".into()
    }
}

fn plots(out: &mut String, report: &Report) {
    put!(
        out,
        "<section>\n<h2>Plots</h2>\n\
         <figure>{}<figcaption>Each line is a percentile spectrum: read across at a percentile \
         to get its latency. Dashed lines are latency SLO thresholds.</figcaption></figure>\n\
         <figure>{}<figcaption>Per second of the run, of the answers received in it. Shaded \
         bands are stages; dashed purple lines are events (hover for the command).</figcaption></figure>\n\
         <figure>{}<figcaption>Sent counts requests due in each second (open loop) or sent \
         (closed loop); completed counts answers of any status.</figcaption></figure>\n\
         <figure>{}<figcaption>Every answer by status, and failures without an answer.</figcaption></figure>\n\
         </section>\n",
        svg::spectrum(report),
        svg::latency_over_time(report),
        svg::throughput(report),
        svg::status_mix(&report.overall),
    );
}

fn scenario(out: &mut String, report: &Report) {
    put!(
        out,
        "<section>\n<details class=\"scenario\"><summary>Scenario as run (<code>{}</code>)</summary>\
         <pre>{}</pre></details>\n</section>\n",
        escape(&report.scenario_name),
        escape(&report.scenario_yaml),
    );
}

/// Measures each plot after layout; see the module doc. Written for `--dump-dom`, and
/// harmless in a browser (it fills a hidden element).
const RENDER_CHECK: &str = r#"
(function () {
  var lines = [];
  document.querySelectorAll('svg.plot').forEach(function (plot) {
    var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity, n = 0, points = 0;
    plot.querySelectorAll('.series, .bar').forEach(function (el) {
      var b = el.getBBox();
      n += 1;
      x0 = Math.min(x0, b.x); y0 = Math.min(y0, b.y);
      x1 = Math.max(x1, b.x + b.width); y1 = Math.max(y1, b.y + b.height);
      points += el.tagName === 'path' ? (el.getAttribute('d').match(/[ML]/g) || []).length : 1;
    });
    lines.push('plot=' + plot.getAttribute('data-plot') + ' elements=' + n + ' points=' + points +
      ' width=' + (n ? (x1 - x0).toFixed(1) : 0) + ' height=' + (n ? (y1 - y0).toFixed(1) : 0));
  });
  document.getElementById('render-check').textContent = lines.join('\n');
})();
"#;

const CSS: &str = r#"
:root {
  --ink: #111827; --muted: #6b7280; --line: #e5e7eb; --bg: #f6f7f9; --card: #ffffff;
  --pass: #15803d; --pass-bg: #ecfdf3; --fail: #b91c1c; --fail-bg: #fef2f2;
  --warn: #92400e; --warn-bg: #fffbeb; --accent: #2563eb;
}
* { box-sizing: border-box; }
html { background: var(--bg); }
body {
  margin: 0; color: var(--ink); line-height: 1.45;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
}
main { max-width: 1200px; margin: 0 auto; padding: 24px 24px 32px; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; font-size: 12.5px; }
header { margin-bottom: 14px; }
.kicker { margin: 0 0 -2px; color: var(--muted); text-transform: uppercase; letter-spacing: .08em; font-size: 12px; font-weight: 600; }
h1 { margin: 0 0 10px; font-size: 28px; letter-spacing: -.01em; }
h2 { margin: 0 0 10px; font-size: 17px; }
.meta { display: grid; grid-template-columns: 1.3fr 1.25fr 1.3fr .7fr 1.65fr .8fr; gap: 8px; margin: 0; }
@media (max-width: 900px) { .meta { grid-template-columns: 1fr 1fr; } }
.meta div { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px; }
.meta dt { color: var(--muted); font-size: 11.5px; text-transform: uppercase; letter-spacing: .06em; }
.meta dd { margin: 2px 0 0; overflow-wrap: anywhere; }
.meta small { display: block; color: var(--muted); font-size: 12px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 18px; margin: 10px 0; }
.verdict { display: flex; gap: 14px; align-items: baseline; font-size: 16px; border-width: 1px 1px 1px 6px; }
.verdict strong { font-size: 20px; letter-spacing: .04em; }
.verdict.pass { background: var(--pass-bg); border-color: #bbf7d0; border-left-color: var(--pass); }
.verdict.pass strong { color: var(--pass); }
.verdict.fail { background: var(--fail-bg); border-color: #fecaca; border-left-color: var(--fail); }
.verdict.fail strong { color: var(--fail); }
.verdict.none { border-left-color: var(--muted); }
.warning { background: var(--warn-bg); border: 1px solid #fcd34d; border-left: 6px solid #d97706; color: var(--warn); font-size: 15px; }
.note, .empty, figcaption, footer { color: var(--muted); font-size: 12.5px; }
figcaption { margin-top: 4px; }
.note { margin: -4px 0 10px; }
.empty { margin: 0; font-style: italic; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; white-space: nowrap; }
thead th { color: var(--muted); font-size: 11.5px; font-weight: 600; text-transform: uppercase; letter-spacing: .04em; border-bottom: 2px solid var(--line); }
thead th.group { text-align: center; border-bottom: 1px solid var(--line); }
tbody th { font-weight: 500; }
tbody tr:hover { background: #f9fafb; }
.n { text-align: right; }
td.bad { color: var(--fail); font-weight: 600; }
td.short { color: #b45309; font-weight: 600; }
tr.warmup { color: var(--muted); background: repeating-linear-gradient(135deg, #fffdf5 0 8px, #fff 8px 16px); }
.events td:last-child { white-space: normal; width: 100%; }
.slo td:first-child { width: 100%; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 11.5px; font-weight: 600; }
.badge.pass { background: #dcfce7; color: var(--pass); }
.badge.fail { background: #fee2e2; color: var(--fail); }
tr.fail td { color: var(--fail); }
.badge.warmup { background: #fef3c7; color: #92400e; margin-left: 6px; }
tr.fail td:first-child code { color: var(--fail); }
figure { margin: 0 0 12px; }
figure:last-child { margin-bottom: 0; }
svg.plot { display: block; width: 100%; height: auto; border: 1px solid var(--line); border-radius: 8px; }
details pre { background: #f8fafc; border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow-x: auto; margin: 8px 0 0; white-space: pre; }
summary { cursor: pointer; font-weight: 600; }
footer { text-align: center; margin-top: 12px; }
@media print { html { background: #fff; } section { break-inside: avoid; } }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_has_every_part_in_reading_order() {
        let page = render(&Report::example());
        let parts = [
            "<h1>example</h1>",
            "class=\"verdict fail\"",
            "Service-level objectives",
            "<h2>Summary</h2>",
            "<h2>Events</h2>",
            "data-plot=\"spectrum\"",
            "data-plot=\"latency\"",
            "data-plot=\"throughput\"",
            "data-plot=\"status\"",
            "Scenario as run",
            "id=\"render-check\"",
        ];
        let mut from = 0;
        for part in parts {
            let at = page[from..]
                .find(part)
                .unwrap_or_else(|| panic!("{part} missing or out of order"));
            from += at + part.len();
        }
    }

    #[test]
    fn header_names_target_mode_start_duration_and_tool() {
        let page = render(&Report::example());
        for text in [
            "<code>http://127.0.0.1:8080</code>",
            "open loop<small>latency from schedule</small>",
            "2026-12-01T12:00:00Z",
            "20.0 s",
            &format!("loadtest {}", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(page.contains(text), "{text} missing");
        }
    }

    #[test]
    fn verdict_names_the_failed_slo_with_its_measure() {
        let page = render(&Report::example());
        assert!(
            page.contains("1 of 2 SLOs failed: <code>error_rate &lt; 0.1%</code> (measured 0.17%)"),
            "{page}"
        );
    }

    #[test]
    fn verdict_passes_when_every_slo_passed_and_says_so_when_there_are_none() {
        let mut report = Report::example();
        report.slo[1].passed = true;
        let page = render(&report);
        assert!(page.contains("<strong>PASS</strong>"));
        assert!(page.contains("all 2 SLOs met"));
        report.slo.clear();
        assert!(render(&report).contains("No SLOs declared"));
    }

    #[test]
    fn warning_appears_only_when_the_generator_fell_behind() {
        let mut report = Report::example();
        assert!(!render(&report).contains("could not keep the schedule"));
        report.generator.kept_schedule = false;
        report.generator.late_requests = 1234;
        report.generator.max_lag_ms = 85.25;
        report.generator.dropped = 12;
        let page = render(&report);
        assert!(
            page.contains(
                "The generator could not keep the schedule:</strong> 1,234 late (&gt; 10.0 ms), \
                 max lag 85.2 ms, 12 dropped — figures measure the generator"
            ),
            "{page}"
        );
    }

    #[test]
    fn summary_has_overall_and_each_stage_with_warmup_marked() {
        let page = render(&Report::example());
        assert!(page.contains("<strong>overall</strong>"));
        assert!(page.contains(
            "<tr class=\"stage warmup\"><th scope=\"row\">stage 1: 5s at 200/s \
             <span class=\"badge warmup\">warm-up</span>"
        ));
        assert!(page.contains("<tr class=\"stage\"><th scope=\"row\">stage 2: 15s at 200/s</th>"));
        // Overall: 3,000 requests at 300/s, p99 12.0 ms, 7 × 429, error rate 5/3000.
        assert!(page.contains("<td class=\"n\">3,000</td><td class=\"n\">300.0</td>"));
        assert!(page.contains("<td class=\"n\">12.0</td>"));
        assert!(page.contains("<td class=\"n bad\">0.17%</td>"));
    }

    #[test]
    fn achieved_rate_below_the_asked_one_is_marked_short() {
        let mut report = Report::example();
        report.overall.achieved_rate = 240.0;
        let page = render(&report);
        assert!(
            page.contains("<td class=\"n short\" title=\"80.0% of the asked rate\">240.0</td>"),
            "{page}"
        );
    }

    #[test]
    fn text_from_the_report_is_escaped_everywhere() {
        let mut report = Report::example();
        let evil = "<script>alert(\"x\")</script>&";
        report.scenario_name = evil.into();
        report.scenario_yaml = format!("name: {evil}\n");
        report.target = evil.into();
        report.started_at = evil.into();
        report.tool_version = evil.into();
        report.stages[0].label = evil.into();
        report.slo[1].text = evil.into();
        report.events[0].run = evil.into();
        report.events[0].output = evil.into();
        let page = render(&report);
        assert!(!page.contains(evil), "raw text in the page");
        assert!(!page.contains("<script>alert"), "raw script in the page");
        assert_eq!(page.matches("<script>").count(), 1, "only the render check");
        assert!(page.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"));
    }

    #[test]
    fn page_loads_nothing_from_outside() {
        let page = render(&Report::example());
        for needle in [
            "src=", "href=", "@import", "url(", "<link", "<img", "<iframe",
        ] {
            assert!(!page.contains(needle), "{needle} in the page");
        }
    }

    #[test]
    fn page_of_an_empty_report_has_no_nan_or_inf() {
        let report = Report {
            overall: Summary::default(),
            stages: Vec::new(),
            timeline: Vec::new(),
            slo: Vec::new(),
            events: Vec::new(),
            duration_s: f64::NAN,
            ..Report::example()
        };
        let page = render(&report);
        assert!(!page.contains("NaN"));
        assert!(!page.contains("inf"));
        assert!(page.contains("No events in this scenario."));
        assert!(page.contains("no requests"));
    }

    #[test]
    fn events_show_offsets_exit_codes_and_output() {
        let mut report = Report::example();
        report.events[0].output = "killed 4242\n".into();
        report.events.push(EventRecord {
            at_s: 15.0,
            run: "false".into(),
            started_s: 15.25,
            exit_code: Some(1),
            output: String::new(),
        });
        let page = render(&report);
        assert!(page.contains(
            "<td class=\"n\">12.000 s</td><td class=\"n\">12.001 s</td>\
             <td><span class=\"badge pass\">0</span></td><td><code>kill -9 $(cat data/n1.pid)</code>\
             <details><summary>output</summary><pre>killed 4242\n</pre></details>"
        ));
        assert!(page.contains("<span class=\"badge fail\">1</span>"));
    }
}
