//! The terminal summary at the end of a run: latency percentiles, rate achieved against
//! rate asked, the status breakdown per stage and overall, the SLO verdicts, and a warning
//! when the generator could not keep its schedule.

use crate::report::{Report, Summary};
use std::fmt::Write;

fn rate(s: &Summary) -> String {
    match s.asked_rate {
        Some(asked) => format!("{:.0}/s of {:.0}/s", s.achieved_rate, asked),
        None => format!("{:.0}/s", s.achieved_rate),
    }
}

fn row(out: &mut String, name: &str, s: &Summary) {
    let l = &s.latency;
    let _ = writeln!(
        out,
        "{name:<24} {:>8} {:>20} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2} {:>7} {:>6} {:>6} {:>6} {:>7.3}%",
        s.requests,
        rate(s),
        l.p50_ms,
        l.p90_ms,
        l.p99_ms,
        l.p999_ms,
        l.max_ms,
        s.ok,
        s.rate_limited,
        s.client_errors + s.server_errors,
        s.transport_errors,
        s.error_rate * 100.0
    );
}

/// The summary as text (what `loadtest run` prints).
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} -> {} ({}, {:.1}s, started {})",
        report.scenario_name,
        report.target,
        match report.mode {
            crate::report::Mode::Open => "open loop",
            crate::report::Mode::Closed => "closed loop",
        },
        report.duration_s,
        report.started_at
    );
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>20} {:>8} {:>8} {:>8} {:>8} {:>9} {:>7} {:>6} {:>6} {:>6} {:>8}",
        "stage (latency in ms)",
        "requests",
        "rate",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "ok",
        "429",
        "4/5xx",
        "trans",
        "errors"
    );
    for st in &report.stages {
        let name = if st.warmup {
            format!("{} (warm-up)", st.label)
        } else {
            st.label.clone()
        };
        row(&mut out, &name, &st.summary);
    }
    row(&mut out, "overall (no warm-up)", &report.overall);
    if report.requests.len() > 1 {
        for r in &report.requests {
            let mut name = format!("request {}", r.index + 1);
            if let Some(c) = r.client {
                name.push_str(&format!(" (client {c})"));
            }
            row(&mut out, &name, &r.summary);
        }
    }
    let statuses: Vec<String> = report
        .overall
        .status
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .chain(
            (report.overall.transport_errors > 0)
                .then(|| format!("transport: {}", report.overall.transport_errors)),
        )
        .collect();
    let _ = writeln!(out, "status: {}", statuses.join(", "));
    for r in &report.requests {
        for c in &r.checks {
            let total = c.held + c.failed;
            let _ = writeln!(
                out,
                "check {} of request {}: {}/{} held{}",
                c.name,
                r.index + 1,
                c.held,
                total,
                if c.failed > 0 {
                    format!(" ({} failed)", c.failed)
                } else {
                    String::new()
                }
            );
        }
    }
    let g = &report.generator;
    if !g.kept_schedule {
        let _ = writeln!(
            out,
            "WARNING: the generator could not keep the schedule ({} requests sent more than {:.0} ms late, max lag {:.1} ms, {} never sent): the figures measure the generator, not the target",
            g.late_requests, g.late_threshold_ms, g.max_lag_ms, g.dropped
        );
    }
    for e in &report.events {
        let code = e
            .exit_code
            .map_or_else(|| "no exit code".to_string(), |c| format!("exit {c}"));
        let _ = writeln!(
            out,
            "event at {:.1}s (ran at {:.3}s, {code}): {}",
            e.at_s, e.started_s, e.run
        );
    }
    for v in &report.slo {
        let _ = writeln!(
            out,
            "SLO {:<28} {}  (measured {:.3}{} against {}{})",
            v.text,
            if v.passed { "PASS" } else { "FAIL" },
            v.actual,
            v.unit,
            v.threshold,
            v.unit
        );
    }
    if !report.slo.is_empty() {
        let failed = report.slo.iter().filter(|v| !v.passed).count();
        let _ = writeln!(
            out,
            "{}",
            if failed == 0 {
                "all SLOs hold".to_string()
            } else {
                format!("{failed} SLO(s) failed")
            }
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_names_every_stage_the_verdicts_and_a_broken_schedule() {
        let mut r = Report::example();
        r.generator.kept_schedule = false;
        let text = render(&r);
        assert!(text.contains("5s at 200/s (warm-up)"), "{text}");
        assert!(text.contains("overall (no warm-up)"));
        assert!(text.contains("SLO p99 < 20ms"));
        assert!(text.contains("FAIL"));
        assert!(text.contains("1 SLO(s) failed"));
        assert!(text.contains("WARNING: the generator could not keep the schedule"));
        assert!(text.contains("429: 7"));
    }
}
