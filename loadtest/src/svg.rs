//! Hand-built SVG charts of a report (latency spectrum, latency and throughput over time,
//! status mix), as markup strings that `html.rs` inlines into `report.html`.
//!
//! Every function here is pure: report in, string out, no plotting crate. Invariants the
//! page and its tests rely on:
//!
//! - each chart's root is `<svg class="plot" data-plot="spectrum|latency|throughput|status">`;
//! - every data series is a `<path class="series">` with one `M`/`L` command per data
//!   point, every bar a `<rect class="bar">`; decorations (grid, stages, events, SLO
//!   lines) carry other classes, so the render check in `html.rs` counts only data;
//! - every number goes through [`P`] (or a `fmt_*` function), which prints non-finite
//!   values as 0 or "–": the markup never holds `NaN` or `inf`, whatever the report holds;
//! - data is clamped to its axes, so nothing is drawn outside a chart's plot area;
//! - all text from the report goes through [`escape`].
//!
//! Axes use 1-2-5 "nice" steps ([`nice_step`], [`zero_axis`]); time axes use clock-like
//! steps ([`time_step`]); the spectrum's x axis is the "number of nines" scale
//! ([`nines`]: 90% at 1, 99% at 2, 99.9% at 3).

use crate::report::{Report, SloVerdict, StageReport, Summary};
use std::fmt::{self, Write};

/// Width of every chart in SVG user units; the page scales charts to its width.
pub const WIDTH: f64 = 1120.0;

const FONT: &str = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";
const INK: &str = "#111827";
const MUTED: &str = "#6b7280";
const GRID: &str = "#e5e7eb";
const AXIS: &str = "#9ca3af";
/// Stage series colours, in order; `overall` is drawn in [`INK`].
const PALETTE: [&str; 8] = [
    "#2563eb", "#db2777", "#059669", "#d97706", "#7c3aed", "#0891b2", "#65a30d", "#dc2626",
];
const RATE_LIMITED: &str = "#f59e0b";
const SERVER_ERROR: &str = "#dc2626";
const TRANSPORT: &str = "#7c3aed";
const EVENT: &str = "#7c3aed";

/// Left and right margins of every chart, and the top of the plot area (below the title
/// and the legend).
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 60.0;

/// Writes into a `String`, which cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

// === numbers and text ===

/// A coordinate or a size, printed with at most one decimal. Non-finite values print as
/// `0` and huge ones are clamped, so no chart ever contains `NaN` or `inf`.
#[derive(Debug, Clone, Copy)]
pub struct P(pub f64);

impl fmt::Display for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.0.is_finite() { self.0 } else { 0.0 };
        let v = (v.clamp(-1e6, 1e6) * 10.0).round() / 10.0;
        if v == 0.0 {
            f.write_str("0")
        } else if v.fract() == 0.0 {
            write!(f, "{v:.0}")
        } else {
            write!(f, "{v:.1}")
        }
    }
}

/// Escapes text for XML and HTML, in element content and in quoted attributes alike.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters other than tab and newline are not allowed in XML.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// The first `max` characters of `text`, with `…` when it was longer.
pub fn truncate(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// A count with thousands separators: `12,345`.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in milliseconds, with three significant figures or so: `0.412`, `3.60`,
/// `12.0`, `1,234`; `–` when not finite.
pub fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() {
        return "–".into();
    }
    let a = ms.abs();
    if a == 0.0 {
        "0".into()
    } else if a < 1.0 {
        format!("{ms:.3}")
    } else if a < 10.0 {
        format!("{ms:.2}")
    } else if a < 100.0 {
        format!("{ms:.1}")
    } else if a < 1e15 {
        let rounded = ms.round();
        let sign = if rounded < 0.0 { "-" } else { "" };
        // In range and rounded: the cast is exact.
        format!("{sign}{}", fmt_count(rounded.abs() as u64))
    } else {
        format!("{ms:.3e}")
    }
}

/// A rate per second: `8.25`, `200.0`, `12,000`; `–` when not finite.
pub fn fmt_rate(per_s: f64) -> String {
    if !per_s.is_finite() {
        return "–".into();
    }
    let a = per_s.abs();
    if a < 10.0 {
        format!("{per_s:.2}")
    } else if a < 1000.0 {
        format!("{per_s:.1}")
    } else {
        fmt_ms(per_s)
    }
}

/// A ratio (0..=1) as a percentage: `0%`, `<0.01%`, `0.17%`, `99.6%`; `–` when not finite.
pub fn fmt_share(ratio: f64) -> String {
    if !ratio.is_finite() {
        return "–".into();
    }
    let pct = ratio * 100.0;
    if pct == 0.0 {
        "0%".into()
    } else if pct.abs() < 0.01 {
        "<0.01%".into()
    } else if pct.abs() < 10.0 {
        format!("{pct:.2}%")
    } else {
        format!("{pct:.1}%")
    }
}

/// A duration for people: `950 ms`, `20.0 s`, `2 min 05 s`, `1 h 02 min`; `–` when not finite.
pub fn fmt_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "–".into();
    }
    if seconds < 1.0 {
        return format!("{:.0} ms", seconds * 1000.0);
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    // Non-negative and finite: the cast saturates at worst.
    let whole = seconds.round() as u64;
    if whole < 3600 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
    }
}

// === scales and ticks ===

/// The position of a percentile on the "number of nines" scale, `-log10(1 - p/100)`:
/// 0% at 0, 90% at 1, 99% at 2, 99.9% at 3. `None` for 100% and above (infinitely far
/// right), below 0%, or not finite.
pub fn nines(percentile: f64) -> Option<f64> {
    if !(0.0..100.0).contains(&percentile) {
        return None;
    }
    let x = -(1.0 - percentile / 100.0).log10();
    // -log10(1) is -0.0; keep the scale's origin at +0.
    x.is_finite().then_some(x.max(0.0))
}

/// The label of the percentile `n` nines from the origin: `0%`, `90%`, `99%`, `99.9%`,
/// `99.99%`…
pub fn nines_label(n: u32) -> String {
    match n {
        0 => "0%".into(),
        1 => "90%".into(),
        2 => "99%".into(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

/// The 1-2-5 step (…, 0.1, 0.2, 0.5, 1, 2, 5, 10, …) that cuts `span` into at most about
/// `target` intervals. 1 when `span` is not a positive finite number.
pub fn nice_step(span: f64, target: usize) -> f64 {
    if !span.is_finite() || span <= 0.0 {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let residual = raw / magnitude;
    // The epsilon keeps exact powers of ten (0.1 is 0.999…e-1 after the log) at 1.
    let factor = if residual <= 1.0 + 1e-9 {
        1.0
    } else if residual <= 2.0 + 1e-9 {
        2.0
    } else if residual <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    factor * magnitude
}

/// A step for a time axis in seconds, from 1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min,
/// 1, 2, 6, 12 h: the smallest that cuts `span` into at most about `target` intervals.
pub fn time_step(span: f64, target: usize) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0, 43200.0,
    ];
    if !span.is_finite() || span <= 0.0 {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    STEPS
        .iter()
        .copied()
        .find(|&s| s >= raw - 1e-9)
        .unwrap_or_else(|| nice_step(span, target))
}

/// A linear axis from 0 to `max` in steps of `step`, where `max` is a whole number of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    pub max: f64,
    pub step: f64,
}

impl Axis {
    /// The tick values, 0 first, computed by multiplication (no accumulated error).
    pub fn ticks(&self) -> Vec<f64> {
        let n = (self.max / self.step).round();
        let n = if n.is_finite() {
            n.clamp(0.0, 1000.0) as u32
        } else {
            0
        };
        (0..=n).map(|i| f64::from(i) * self.step).collect()
    }
}

/// The zero-based axis with a 1-2-5 step whose top is the first step at or above
/// `data_max`. An empty, zero or non-finite maximum gives the axis 0..1.
pub fn zero_axis(data_max: f64, target: usize) -> Axis {
    let data_max = if data_max.is_finite() && data_max > 0.0 {
        data_max
    } else {
        1.0
    };
    let step = nice_step(data_max, target);
    let max = ((data_max / step) - 1e-9).ceil().max(1.0) * step;
    Axis { max, step }
}

/// Like [`zero_axis`] for counts: the step is at least 1, so no tick reads `0.5 requests`.
pub fn count_axis(data_max: f64, target: usize) -> Axis {
    let data_max = if data_max.is_finite() && data_max > 0.0 {
        data_max
    } else {
        1.0
    };
    let step = nice_step(data_max, target).max(1.0);
    let max = ((data_max / step) - 1e-9).ceil().max(1.0) * step;
    Axis { max, step }
}

/// A tick label with just the decimals `step` needs: `0.5`, `20`, `2k`, `1.5k`.
pub fn tick_label(value: f64, step: f64) -> String {
    if !value.is_finite() || !step.is_finite() || step <= 0.0 {
        return "0".into();
    }
    let (value, step, suffix) = if step >= 1000.0 && value.abs() >= 1000.0 {
        (value / 1000.0, step / 1000.0, "k")
    } else {
        (value, step, "")
    };
    let decimals = if step >= 1.0 {
        0
    } else {
        // step < 1 and positive: the result is a small positive integer.
        (-step.log10().floor()).clamp(0.0, 6.0) as usize
    };
    let text = format!("{value:.decimals$}");
    let text = if text.trim_start_matches(['-', '0', '.']).is_empty() {
        "0".into()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// A label for a time tick in seconds: `15s` on short runs, `2:30` on runs of 2 min or more.
pub fn time_label(seconds: f64, span: f64) -> String {
    let s = if seconds.is_finite() {
        seconds.max(0.0).round() as u64
    } else {
        0
    };
    if span < 120.0 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    }
}

/// A linear map from a data interval onto a pixel interval; values outside the data
/// interval are clamped to its ends, so data never leaves the plot area.
#[derive(Debug, Clone, Copy)]
struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    fn at(self, v: f64) -> f64 {
        let span = self.d1 - self.d0;
        if !(span.is_finite() && span > 0.0 && v.is_finite()) {
            return self.r0;
        }
        let t = ((v - self.d0) / span).clamp(0.0, 1.0);
        self.r0 + t * (self.r1 - self.r0)
    }
}

/// The plot area of a chart, in user units.
#[derive(Debug, Clone, Copy)]
struct Area {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Area {
    fn right(self) -> f64 {
        self.x + self.w
    }
    fn bottom(self) -> f64 {
        self.y + self.h
    }
    fn xs(self, d0: f64, d1: f64) -> Scale {
        Scale {
            d0,
            d1,
            r0: self.x,
            r1: self.right(),
        }
    }
    fn ys(self, d0: f64, d1: f64) -> Scale {
        Scale {
            d0,
            d1,
            r0: self.bottom(),
            r1: self.y,
        }
    }
}

// === chart pieces ===

fn open(out: &mut String, kind: &str, height: f64, title: &str) {
    put!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" data-plot=\"{kind}\" \
         viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" \
         aria-label=\"{label}\" font-family=\"{FONT}\" font-size=\"12\">\
         <rect class=\"background\" x=\"0\" y=\"0\" width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\
         <text class=\"title\" x=\"16\" y=\"26\" font-size=\"15\" font-weight=\"600\" \
         fill=\"{INK}\">{label}</text>",
        w = P(WIDTH),
        h = P(height),
        label = escape(title),
    );
}

fn close(out: &mut String) {
    out.push_str("</svg>");
}

/// Horizontal gridlines and labels on the left; `label` rotated beside them.
fn y_axis(out: &mut String, area: Area, ys: Scale, ticks: &[(f64, String)], label: &str) {
    out.push_str("<g class=\"axis y\">");
    for (v, text) in ticks {
        let y = ys.at(*v);
        put!(
            out,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{GRID}\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{MUTED}\">{}</text>",
            P(area.x),
            P(area.right()),
            P(area.x - 8.0),
            P(y + 4.0),
            escape(text),
            y = P(y),
        );
    }
    put!(
        out,
        "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{AXIS}\"/>\
         <text transform=\"translate({} {}) rotate(-90)\" text-anchor=\"middle\" \
         fill=\"{MUTED}\">{}</text></g>",
        P(area.y),
        P(area.bottom()),
        P(18.0),
        P(area.y + area.h / 2.0),
        escape(label),
        x = P(area.x),
    );
}

/// Vertical gridlines and, when `label` is given, tick labels and the axis label below.
fn x_axis(out: &mut String, area: Area, xs: Scale, ticks: &[(f64, String)], label: Option<&str>) {
    out.push_str("<g class=\"axis x\">");
    for (v, text) in ticks {
        let x = xs.at(*v);
        put!(
            out,
            "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{GRID}\"/>",
            P(area.y),
            P(area.bottom()),
            x = P(x),
        );
        if label.is_some() {
            put!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
                P(x),
                P(area.bottom() + 18.0),
                escape(text),
            );
        }
    }
    put!(
        out,
        "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{AXIS}\"/>",
        P(area.x),
        P(area.right()),
        y = P(area.bottom()),
    );
    if let Some(label) = label {
        put!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\">{}</text>",
            P(area.x + area.w / 2.0),
            P(area.bottom() + 38.0),
            escape(label),
        );
    }
    out.push_str("</g>");
}

/// How a legend entry is drawn.
#[derive(Debug, Clone, Copy)]
enum Mark<'a> {
    Line { color: &'a str, width: f64 },
    Dashed(&'a str),
    Box(&'a str),
}

/// One row of legend entries from (`x`, `y`), wrapping before `max_x`.
fn legend(out: &mut String, x: f64, y: f64, max_x: f64, items: &[(String, Mark<'_>)]) {
    out.push_str("<g class=\"legend\">");
    let (mut cx, mut cy) = (x, y);
    for (text, mark) in items {
        // About 6.6 units per character at 12px: enough to keep entries apart.
        let width = 28.0 + 6.6 * text.chars().count() as f64 + 18.0;
        if cx + width > max_x && cx > x {
            cx = x;
            cy += 16.0;
        }
        match mark {
            Mark::Line { color, width } => put!(
                out,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" \
                 stroke-width=\"{}\" stroke-linecap=\"round\"/>",
                P(cx),
                P(cx + 20.0),
                P(*width),
                y = P(cy - 4.0),
            ),
            Mark::Dashed(color) => put!(
                out,
                "<line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" \
                 stroke-width=\"1.5\" stroke-dasharray=\"4 3\"/>",
                P(cx),
                P(cx + 20.0),
                y = P(cy - 4.0),
            ),
            Mark::Box(color) => put!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"10\" rx=\"2\" fill=\"{color}\"/>",
                P(cx + 3.0),
                P(cy - 9.0),
            ),
        }
        put!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{INK}\">{}</text>",
            P(cx + 26.0),
            P(cy),
            escape(text),
        );
        cx += width;
    }
    out.push_str("</g>");
}

/// A centred note in an empty plot area ("no requests").
fn note(out: &mut String, area: Area, text: &str) {
    put!(
        out,
        "<text class=\"note\" x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{MUTED}\" \
         font-style=\"italic\">{}</text>",
        P(area.x + area.w / 2.0),
        P(area.y + area.h / 2.0),
        escape(text),
    );
}

/// The `d` of a path through `points`, where `None` breaks the line. A point with no
/// neighbour gets a zero-length stub, which the round line cap draws as a dot. Returns
/// the `d` and how many points it holds.
fn path_d(points: impl IntoIterator<Item = Option<(f64, f64)>>) -> (String, usize) {
    let mut d = String::new();
    let mut count = 0;
    let mut run = 0;
    for point in points {
        match point {
            Some((x, y)) if x.is_finite() && y.is_finite() => {
                if !d.is_empty() {
                    d.push(' ');
                }
                put!(d, "{}{} {}", if run == 0 { 'M' } else { 'L' }, P(x), P(y));
                run += 1;
                count += 1;
            }
            _ => {
                if run == 1 {
                    d.push_str(" l0.1 0");
                }
                run = 0;
            }
        }
    }
    if run == 1 {
        d.push_str(" l0.1 0");
    }
    (d, count)
}

/// A data series: a `<path class="series">` with a tooltip; nothing when it has no point.
fn series(out: &mut String, d: &str, color: &str, width: f64, dashed: bool, tooltip: &str) {
    if d.is_empty() {
        return;
    }
    put!(
        out,
        "<path class=\"series\" d=\"{d}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"{}\" \
         stroke-linejoin=\"round\" stroke-linecap=\"round\"{}><title>{}</title></path>",
        P(width),
        if dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        },
        escape(tooltip),
    );
}

/// The latency SLOs (unit `ms`) that fit on an axis of `data_max` ms: those up to 1.5×
/// the data's maximum; the others would squash the data to the bottom of the chart.
fn latency_slos(slos: &[SloVerdict], data_max: f64) -> Vec<&SloVerdict> {
    let limit = if data_max.is_finite() && data_max > 0.0 {
        data_max * 1.5
    } else {
        f64::INFINITY
    };
    slos.iter()
        .filter(|s| s.unit == "ms" && s.threshold.is_finite() && s.threshold > 0.0)
        .filter(|s| s.threshold <= limit)
        .collect()
}

/// Horizontal dashed lines at latency SLO thresholds, green when passed, red when failed.
fn slo_lines(out: &mut String, area: Area, ys: Scale, slos: &[&SloVerdict]) {
    for slo in slos {
        let y = ys.at(slo.threshold);
        let color = if slo.passed { "#15803d" } else { "#b91c1c" };
        put!(
            out,
            "<g class=\"slo\"><line x1=\"{}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{color}\" \
             stroke-width=\"1.25\" stroke-dasharray=\"2 3\"/><text x=\"{}\" y=\"{}\" \
             text-anchor=\"end\" fill=\"{color}\" font-size=\"11\">SLO {}</text>\
             <title>SLO {}: measured {} {}, {}</title></g>",
            P(area.x),
            P(area.right()),
            P(area.right() - 4.0),
            P(y - 4.0),
            escape(&slo.text),
            escape(&slo.text),
            fmt_ms(slo.actual),
            escape(&slo.unit),
            if slo.passed { "passed" } else { "failed" },
            y = P(y),
        );
    }
}

/// The end of a run's time axis, in seconds: the run's duration, or later if a second, a
/// stage or an event lies beyond it; at least 1.
fn time_span(report: &Report) -> f64 {
    let mut end: f64 = 1.0;
    if report.duration_s.is_finite() {
        end = end.max(report.duration_s);
    }
    if let Some(last) = report.timeline.last() {
        end = end.max(f64::from(last.t) + 1.0);
    }
    for stage in &report.stages {
        if stage.start_s.is_finite() {
            end = end.max(stage.start_s);
        }
    }
    for event in &report.events {
        if event.started_s.is_finite() {
            end = end.max(event.started_s);
        }
    }
    end
}

fn time_ticks(span: f64) -> Vec<(f64, String)> {
    let step = time_step(span, 10);
    let n = (span / step + 1e-9).floor().clamp(0.0, 1000.0) as u32;
    (0..=n)
        .map(|i| {
            let t = f64::from(i) * step;
            (t, time_label(t, span))
        })
        .collect()
}

fn axis_ticks(axis: Axis) -> Vec<(f64, String)> {
    axis.ticks()
        .into_iter()
        .map(|v| (v, tick_label(v, axis.step)))
        .collect()
}

fn stage_name(stage: &StageReport) -> String {
    format!("stage {}: {}", stage.index + 1, stage.label)
}

/// Stage bands behind a time chart: alternating shades, warm-up ones amber and labelled.
fn stage_bands(out: &mut String, area: Area, xs: Scale, report: &Report, span: f64, labels: bool) {
    for (i, stage) in report.stages.iter().enumerate() {
        let start = if stage.start_s.is_finite() {
            stage.start_s
        } else {
            0.0
        };
        let end = report
            .stages
            .get(i + 1)
            .map(|next| next.start_s)
            .filter(|s| s.is_finite())
            .unwrap_or(span);
        let (x0, x1) = (xs.at(start), xs.at(end));
        let fill = if stage.warmup {
            "#fef3c7"
        } else if i % 2 == 0 {
            "#f8fafc"
        } else {
            "#eef2ff"
        };
        put!(
            out,
            "<g class=\"stage\"><rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{fill}\" \
             fill-opacity=\"0.85\"><title>{}{}: {} to {}</title></rect>",
            P(x0),
            P(area.y),
            P((x1 - x0).max(0.0)),
            P(area.h),
            escape(&stage_name(stage)),
            if stage.warmup { " (warm-up)" } else { "" },
            time_label(start, span),
            time_label(end, span),
        );
        if i > 0 {
            put!(
                out,
                "<line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"#cbd5e1\"/>",
                P(area.y),
                P(area.bottom()),
                x = P(x0),
            );
        }
        if labels && x1 - x0 > 80.0 {
            let text = if stage.warmup {
                format!("warm-up · {}", stage.label)
            } else {
                stage_name(stage)
            };
            // About 6 units per character at 11px.
            let room = ((x1 - x0 - 10.0) / 6.0).max(1.0) as usize;
            put!(
                out,
                "<text x=\"{}\" y=\"{}\" fill=\"{MUTED}\" font-size=\"11\">{}</text>",
                P(x0 + 5.0),
                P(area.y + 13.0),
                escape(&truncate(&text, room)),
            );
        }
        out.push_str("</g>");
    }
}

/// Event markers: a dashed vertical line per event, with the command as tooltip and,
/// when `labels`, as a short label at the top.
fn event_lines(out: &mut String, area: Area, xs: Scale, report: &Report, span: f64, labels: bool) {
    for (i, event) in report.events.iter().enumerate() {
        let x = xs.at(event.started_s);
        let exit = match event.exit_code {
            Some(code) => format!("exit {code}"),
            None => "not started or killed".into(),
        };
        put!(
            out,
            "<g class=\"event\"><line x1=\"{x}\" y1=\"{}\" x2=\"{x}\" y2=\"{}\" stroke=\"{EVENT}\" \
             stroke-width=\"1.5\" stroke-dasharray=\"5 4\"/><title>{} (asked at {}, started at {}, {})</title>",
            P(area.y),
            P(area.bottom()),
            escape(&event.run),
            time_label(event.at_s, span),
            time_label(event.started_s, span),
            exit,
            x = P(x),
        );
        if labels {
            // Below the stage labels, staggered for close events; left of the line near
            // the right edge.
            let y = area.y + 28.0 + 14.0 * (i % 3) as f64;
            let (tx, anchor) = if x > area.right() - 200.0 {
                (x - 5.0, "end")
            } else {
                (x + 5.0, "start")
            };
            put!(
                out,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"{anchor}\" fill=\"{EVENT}\" font-size=\"11\">{}</text>",
                P(tx),
                P(y),
                escape(&truncate(&event.run, 32)),
            );
        }
        out.push_str("</g>");
    }
}

// === the charts ===

/// The latency percentile spectrum: latency (ms) against percentile on the "number of
/// nines" scale, one line per measured (non-warm-up) stage plus `overall` on top, and
/// dashed lines at the latency SLO thresholds.
pub fn spectrum(report: &Report) -> String {
    const HEIGHT: f64 = 320.0;
    let area = Area {
        x: LEFT,
        y: TOP + 14.0,
        w: WIDTH - LEFT - RIGHT,
        h: HEIGHT - TOP - 14.0 - 56.0,
    };
    let mut lines: Vec<SpectrumLine> = Vec::new();
    let measured = report.stages.iter().filter(|s| !s.warmup);
    for (i, stage) in measured.enumerate() {
        lines.push(SpectrumLine {
            name: stage_name(stage),
            color: PALETTE[i % PALETTE.len()],
            width: 1.75,
            points: nines_points(&stage.summary.latency.spectrum),
            tooltip: latency_tooltip(&stage_name(stage), &stage.summary),
        });
    }
    lines.push(SpectrumLine {
        name: "overall".into(),
        color: INK,
        width: 2.5,
        points: nines_points(&report.overall.latency.spectrum),
        tooltip: latency_tooltip("overall", &report.overall),
    });

    let max_x = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    // The last decade shown is the one the data reaches (3.01 nines still ends at 99.9%).
    let decades = if max_x > 0.0 {
        ((max_x - 0.05).ceil()).clamp(1.0, 7.0) as u32
    } else {
        3
    };
    let data_max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let slos = latency_slos(&report.slo, data_max);
    let y_max = slos.iter().map(|s| s.threshold).fold(data_max, f64::max);
    let y = zero_axis(y_max, 6);

    let mut out = String::new();
    open(
        &mut out,
        "spectrum",
        HEIGHT,
        "Latency by percentile (warm-up excluded)",
    );
    let legend_items: Vec<(String, Mark<'_>)> = lines
        .iter()
        .map(|l| {
            (
                l.name.clone(),
                Mark::Line {
                    color: l.color,
                    width: l.width,
                },
            )
        })
        .collect();
    legend(&mut out, LEFT, 48.0, WIDTH - RIGHT, &legend_items);

    let xs = area.xs(0.0, f64::from(decades));
    let ys = area.ys(0.0, y.max);
    let mut x_ticks: Vec<(f64, String)> = vec![(0.0, "0%".into())];
    if let Some(half) = nines(50.0) {
        x_ticks.push((half, "50%".into()));
    }
    x_ticks.extend((1..=decades).map(|n| (f64::from(n), nines_label(n))));
    x_axis(&mut out, area, xs, &x_ticks, Some("percentile"));
    y_axis(&mut out, area, ys, &axis_ticks(y), "latency (ms)");
    slo_lines(&mut out, area, ys, &slos);

    let mut drawn = 0;
    for l in &lines {
        let (d, n) = path_d(l.points.iter().map(|&(x, v)| Some((xs.at(x), ys.at(v)))));
        drawn += n;
        series(&mut out, &d, l.color, l.width, false, &l.tooltip);
    }
    if drawn == 0 {
        note(&mut out, area, "no latency recorded");
    }
    close(&mut out);
    out
}

/// One line of the spectrum chart.
struct SpectrumLine {
    name: String,
    color: &'static str,
    width: f64,
    /// (position on the nines scale, latency ms).
    points: Vec<(f64, f64)>,
    tooltip: String,
}

/// The spectrum's points on the nines scale; 100% and non-finite points are left out.
fn nines_points(spectrum: &[(f64, f64)]) -> Vec<(f64, f64)> {
    spectrum
        .iter()
        .filter(|(_, ms)| ms.is_finite())
        .filter_map(|&(p, ms)| nines(p).map(|x| (x, ms)))
        .collect()
}

fn latency_tooltip(name: &str, summary: &Summary) -> String {
    let l = &summary.latency;
    format!(
        "{name}: p50 {} ms, p90 {} ms, p99 {} ms, p99.9 {} ms, max {} ms ({} answers)",
        fmt_ms(l.p50_ms),
        fmt_ms(l.p90_ms),
        fmt_ms(l.p99_ms),
        fmt_ms(l.p999_ms),
        fmt_ms(l.max_ms),
        fmt_count(l.count),
    )
}

/// Latency over time: p50, p99 and max of the answers received in each second (gaps
/// where a second had none), stage bands behind, events as dashed vertical lines.
pub fn latency_over_time(report: &Report) -> String {
    const HEIGHT: f64 = 320.0;
    let area = Area {
        x: LEFT,
        y: TOP + 14.0,
        w: WIDTH - LEFT - RIGHT,
        h: HEIGHT - TOP - 14.0 - 56.0,
    };
    let span = time_span(report);
    let answered = || report.timeline.iter().filter(|s| s.completed > 0);
    let data_max = answered()
        .flat_map(|s| [s.p50_ms, s.p99_ms, s.max_ms])
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let slos = latency_slos(&report.slo, data_max);
    let y = zero_axis(slos.iter().map(|s| s.threshold).fold(data_max, f64::max), 6);
    let xs = area.xs(0.0, span);
    let ys = area.ys(0.0, y.max);

    let mut out = String::new();
    open(
        &mut out,
        "latency",
        HEIGHT,
        "Latency over time (per second)",
    );
    let mut items = vec![
        (
            "p50".to_string(),
            Mark::Line {
                color: "#2563eb",
                width: 2.0,
            },
        ),
        (
            "p99".to_string(),
            Mark::Line {
                color: "#d97706",
                width: 2.0,
            },
        ),
        (
            "max".to_string(),
            Mark::Line {
                color: "#dc2626",
                width: 1.25,
            },
        ),
    ];
    if !report.events.is_empty() {
        items.push(("event".into(), Mark::Dashed(EVENT)));
    }
    if report.stages.iter().any(|s| s.warmup) {
        items.push(("warm-up".into(), Mark::Box("#fde68a")));
    }
    legend(&mut out, LEFT, 48.0, WIDTH - RIGHT, &items);
    stage_bands(&mut out, area, xs, report, span, true);
    x_axis(
        &mut out,
        area,
        xs,
        &time_ticks(span),
        Some("time since start"),
    );
    y_axis(&mut out, area, ys, &axis_ticks(y), "latency (ms)");
    slo_lines(&mut out, area, ys, &slos);

    type Pick = fn(&crate::report::Second) -> f64;
    let lines: [(&str, &str, f64, Pick); 3] = [
        ("max", "#dc2626", 1.25, |s| s.max_ms),
        ("p99", "#d97706", 2.0, |s| s.p99_ms),
        ("p50", "#2563eb", 2.0, |s| s.p50_ms),
    ];
    let mut drawn = 0;
    for (name, color, width, pick) in lines {
        let (d, n) = path_d(
            report
                .timeline
                .iter()
                .map(|s| (s.completed > 0).then(|| (xs.at(f64::from(s.t) + 0.5), ys.at(pick(s))))),
        );
        drawn += n;
        series(
            &mut out,
            &d,
            color,
            width,
            false,
            &format!("{name} latency of each second's answers"),
        );
    }
    if drawn == 0 {
        note(&mut out, area, "no answers in the timeline");
    }
    event_lines(&mut out, area, xs, report, span, true);
    close(&mut out);
    out
}

/// Throughput and errors over time: requests sent (due) and answers completed per second
/// as lines in the upper panel; 429, 5xx and transport errors per second as stacked bars
/// in the lower one. Stages and events are marked in both.
pub fn throughput(report: &Report) -> String {
    const HEIGHT: f64 = 410.0;
    let top = Area {
        x: LEFT,
        y: TOP + 14.0,
        w: WIDTH - LEFT - RIGHT,
        h: 180.0,
    };
    let bottom = Area {
        x: LEFT,
        y: top.bottom() + 24.0,
        w: top.w,
        h: 80.0,
    };
    let span = time_span(report);
    let xs = top.xs(0.0, span);

    let rate_max = report
        .timeline
        .iter()
        .map(|s| s.sent.max(s.completed))
        .max()
        .unwrap_or(0);
    let error_max = report
        .timeline
        .iter()
        .map(|s| s.rate_limited + s.server_errors + s.transport_errors)
        .max()
        .unwrap_or(0);
    let rate = count_axis(rate_max as f64, 5);
    let errors = count_axis(error_max as f64, 3);
    let ys_top = top.ys(0.0, rate.max);
    let ys_bottom = bottom.ys(0.0, errors.max);

    let mut out = String::new();
    open(
        &mut out,
        "throughput",
        HEIGHT,
        "Throughput and errors over time (per second)",
    );
    let mut items = vec![
        ("sent (due)".to_string(), Mark::Dashed("#475569")),
        (
            "completed".to_string(),
            Mark::Line {
                color: "#2563eb",
                width: 2.0,
            },
        ),
        ("429".to_string(), Mark::Box(RATE_LIMITED)),
        ("5xx".to_string(), Mark::Box(SERVER_ERROR)),
        ("transport".to_string(), Mark::Box(TRANSPORT)),
    ];
    if !report.events.is_empty() {
        items.push(("event".into(), Mark::Dashed(EVENT)));
    }
    legend(&mut out, LEFT, 48.0, WIDTH - RIGHT, &items);

    let ticks = time_ticks(span);
    stage_bands(&mut out, top, xs, report, span, true);
    x_axis(&mut out, top, xs, &ticks, None);
    y_axis(&mut out, top, ys_top, &axis_ticks(rate), "requests /s");
    stage_bands(&mut out, bottom, xs, report, span, false);
    x_axis(&mut out, bottom, xs, &ticks, Some("time since start"));
    y_axis(
        &mut out,
        bottom,
        ys_bottom,
        &axis_ticks(errors),
        "errors /s",
    );

    let mid = |t: u32| xs.at(f64::from(t) + 0.5);
    let (sent, n_sent) = path_d(
        report
            .timeline
            .iter()
            .map(|s| Some((mid(s.t), ys_top.at(s.sent as f64)))),
    );
    let (done, n_done) = path_d(
        report
            .timeline
            .iter()
            .map(|s| Some((mid(s.t), ys_top.at(s.completed as f64)))),
    );
    // Sent (dashed) on top, so it still shows where it equals completed.
    series(
        &mut out,
        &done,
        "#2563eb",
        2.0,
        false,
        "answers completed per second",
    );
    series(
        &mut out,
        &sent,
        "#475569",
        1.5,
        true,
        "requests sent (due) per second",
    );
    if n_sent + n_done == 0 {
        note(&mut out, top, "no timeline");
    }

    let mut bars = 0;
    for s in &report.timeline {
        let x0 = xs.at(f64::from(s.t));
        let x1 = xs.at(f64::from(s.t) + 1.0);
        let width = (x1 - x0 - 1.0).max(0.8);
        let mut base = 0u64;
        for (count, color, what) in [
            (s.rate_limited, RATE_LIMITED, "429"),
            (s.server_errors, SERVER_ERROR, "5xx"),
            (s.transport_errors, TRANSPORT, "transport errors"),
        ] {
            if count == 0 {
                continue;
            }
            let y_low = ys_bottom.at(base as f64);
            let y_high = ys_bottom.at((base + count) as f64);
            put!(
                out,
                "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\">\
                 <title>{}: {} {what}</title></rect>",
                P(x0 + 0.5),
                P(y_high),
                P(width),
                P((y_low - y_high).max(0.0)),
                time_label(f64::from(s.t), span),
                fmt_count(count),
            );
            base += count;
            bars += 1;
        }
    }
    if bars == 0 {
        note(&mut out, bottom, "no 429, 5xx or transport errors");
    }
    event_lines(&mut out, top, xs, report, span, true);
    event_lines(&mut out, bottom, xs, report, span, false);
    close(&mut out);
    out
}

/// The status mix of `summary`: one horizontal bar per status code, then one for
/// transport errors, each with its count and its share of all outcomes.
pub fn status_mix(summary: &Summary) -> String {
    let mut rows: Vec<(String, u64, &str)> = summary
        .status
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(&code, &n)| (status_name(code), n, status_color(code)))
        .collect();
    if summary.transport_errors > 0 {
        rows.push((
            "transport error".into(),
            summary.transport_errors,
            TRANSPORT,
        ));
    }
    let total: u64 = rows.iter().map(|r| r.1).sum();
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0);

    // No legend: the bars start just below the title.
    const ROW: f64 = 26.0;
    const LABELS: f64 = 210.0;
    const BARS_TOP: f64 = 42.0;
    let height = BARS_TOP + ROW * rows.len().max(1) as f64 + 52.0;
    let area = Area {
        x: LABELS,
        y: BARS_TOP,
        w: WIDTH - LABELS - 180.0,
        h: ROW * rows.len().max(1) as f64,
    };
    let axis = count_axis(max as f64, 5);
    let xs = area.xs(0.0, axis.max);

    let mut out = String::new();
    open(
        &mut out,
        "status",
        height,
        &format!(
            "Status mix (warm-up excluded, {} outcomes)",
            fmt_count(total)
        ),
    );
    x_axis(&mut out, area, xs, &axis_ticks(axis), Some("requests"));
    if rows.is_empty() {
        note(&mut out, area, "no requests");
    }
    for (i, (name, count, color)) in rows.iter().enumerate() {
        let y = area.y + ROW * i as f64;
        let w = (xs.at(*count as f64) - area.x).max(1.0);
        let share = if total > 0 {
            *count as f64 / total as f64
        } else {
            0.0
        };
        put!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"{INK}\">{}</text>\
             <rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"2\" fill=\"{color}\">\
             <title>{}: {} ({})</title></rect>\
             <text x=\"{}\" y=\"{}\" fill=\"{INK}\">{} <tspan fill=\"{MUTED}\">({})</tspan></text>",
            P(area.x - 10.0),
            P(y + ROW / 2.0 + 4.0),
            escape(name),
            P(area.x),
            P(y + 5.0),
            P(w),
            P(ROW - 10.0),
            escape(name),
            fmt_count(*count),
            fmt_share(share),
            P(area.x + w + 8.0),
            P(y + ROW / 2.0 + 4.0),
            fmt_count(*count),
            fmt_share(share),
        );
    }
    close(&mut out);
    out
}

fn status_name(code: u16) -> String {
    match http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    }
}

fn status_color(code: u16) -> &'static str {
    match code {
        429 => RATE_LIMITED,
        200..=299 => "#16a34a",
        300..=399 => "#0d9488",
        400..=499 => "#ea580c",
        500..=599 => SERVER_ERROR,
        _ => "#64748b",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{EventRecord, Second};

    fn close_to(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// A report with nothing in it: no requests, no stages, no timeline, no events.
    fn empty_report() -> Report {
        Report {
            overall: Summary::default(),
            stages: Vec::new(),
            timeline: Vec::new(),
            slo: Vec::new(),
            events: Vec::new(),
            duration_s: 0.0,
            ..Report::example()
        }
    }

    fn all_charts(report: &Report) -> [String; 4] {
        [
            spectrum(report),
            latency_over_time(report),
            throughput(report),
            status_mix(&report.overall),
        ]
    }

    fn assert_no_nan_or_inf(svg: &str) {
        assert!(!svg.contains("NaN"), "NaN in {svg}");
        assert!(!svg.contains("inf"), "inf in {svg}");
    }

    #[test]
    fn nines_scale_puts_each_nine_one_unit_further_right() {
        assert_eq!(nines(0.0), Some(0.0));
        for (p, x) in [(90.0, 1.0), (99.0, 2.0), (99.9, 3.0), (99.99, 4.0)] {
            let got = nines(p).unwrap();
            assert!((got - x).abs() < 1e-9, "nines({p}) = {got}, want {x}");
        }
        let half = nines(50.0).unwrap();
        assert!(close_to(half, 2f64.log10()), "nines(50) = {half}");
    }

    #[test]
    fn nines_of_one_hundred_percent_and_out_of_range_values_is_none() {
        for p in [100.0, 100.5, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(nines(p), None, "nines({p})");
        }
    }

    #[test]
    fn nines_labels_read_as_percentiles() {
        let labels: Vec<String> = (0..=5).map(nines_label).collect();
        assert_eq!(labels, ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]);
    }

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        let cases = [
            (1.0, 5, 0.2),
            (10.0, 5, 2.0),
            (12.0, 6, 2.0),
            (13.0, 6, 5.0),
            (100.0, 10, 10.0),
            (0.7, 5, 0.2),
            (3000.0, 5, 1000.0),
            (0.001, 4, 0.0005),
        ];
        for (span, target, want) in cases {
            let got = nice_step(span, target);
            assert!(
                (got - want).abs() < want * 1e-9,
                "nice_step({span}, {target}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn nice_step_of_an_empty_or_broken_span_is_one() {
        for span in [0.0, -3.0, f64::NAN, f64::INFINITY] {
            assert_eq!(nice_step(span, 5), 1.0, "span {span}");
        }
    }

    #[test]
    fn zero_axis_ends_on_the_first_step_at_or_above_the_data() {
        assert_eq!(
            zero_axis(32.0, 6),
            Axis {
                max: 40.0,
                step: 10.0
            }
        );
        assert_eq!(
            zero_axis(40.0, 6),
            Axis {
                max: 40.0,
                step: 10.0
            }
        );
        assert_eq!(
            zero_axis(0.0, 6),
            Axis {
                max: 1.0,
                step: 0.2
            }
        );
        assert_eq!(
            zero_axis(f64::NAN, 6),
            Axis {
                max: 1.0,
                step: 0.2
            }
        );
        let ticks = zero_axis(0.7, 5).ticks();
        assert_eq!(ticks.len(), 5, "{ticks:?}");
        assert!(close_to(ticks[4], 0.8), "{ticks:?}");
    }

    #[test]
    fn count_axis_never_steps_by_less_than_one() {
        assert_eq!(
            count_axis(1.0, 3),
            Axis {
                max: 1.0,
                step: 1.0
            }
        );
        assert_eq!(
            count_axis(0.0, 3),
            Axis {
                max: 1.0,
                step: 1.0
            }
        );
        assert_eq!(
            count_axis(7.0, 3),
            Axis {
                max: 10.0,
                step: 5.0
            }
        );
        assert_eq!(count_axis(290.0, 5).ticks(), [0.0, 100.0, 200.0, 300.0]);
    }

    #[test]
    fn time_steps_are_clock_like() {
        assert_eq!(time_step(20.0, 10), 2.0);
        assert_eq!(time_step(120.0, 10), 15.0);
        assert_eq!(time_step(600.0, 10), 60.0);
        assert_eq!(time_step(0.0, 10), 1.0);
        assert_eq!(time_label(90.0, 60.0), "90s");
        assert_eq!(time_label(150.0, 600.0), "2:30");
        assert_eq!(time_label(3725.0, 7200.0), "1:02:05");
    }

    #[test]
    fn tick_labels_carry_only_the_decimals_of_the_step() {
        assert_eq!(tick_label(0.0, 0.2), "0");
        assert_eq!(tick_label(0.6000000000000001, 0.2), "0.6");
        assert_eq!(tick_label(20.0, 10.0), "20");
        assert_eq!(tick_label(0.0005, 0.0005), "0.0005");
        assert_eq!(tick_label(2000.0, 1000.0), "2k");
        assert_eq!(tick_label(1500.0, 500.0), "1500");
        assert_eq!(tick_label(-0.0, 1.0), "0");
        assert_eq!(tick_label(f64::NAN, 1.0), "0");
    }

    #[test]
    fn coordinates_never_print_nan_or_inf() {
        assert_eq!(P(f64::NAN).to_string(), "0");
        assert_eq!(P(f64::INFINITY).to_string(), "0");
        assert_eq!(P(-0.0).to_string(), "0");
        assert_eq!(P(12.0).to_string(), "12");
        assert_eq!(P(12.345).to_string(), "12.3");
        assert_eq!(P(1e300).to_string(), "1000000");
    }

    #[test]
    fn people_numbers_are_grouped_and_rounded() {
        assert_eq!(fmt_count(0), "0");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_count(1000), "1,000");
        assert_eq!(fmt_count(1234567), "1,234,567");
        assert_eq!(fmt_ms(0.4123), "0.412");
        assert_eq!(fmt_ms(3.6), "3.60");
        assert_eq!(fmt_ms(12.0), "12.0");
        assert_eq!(fmt_ms(1234.4), "1,234");
        assert_eq!(fmt_ms(f64::NAN), "–");
        assert_eq!(fmt_share(0.0017), "0.17%");
        assert_eq!(fmt_share(0.996), "99.6%");
        assert_eq!(fmt_share(0.0000001), "<0.01%");
        assert_eq!(fmt_duration(20.0), "20.0 s");
        assert_eq!(fmt_duration(125.0), "2 min 05 s");
        assert_eq!(fmt_duration(f64::INFINITY), "–");
    }

    #[test]
    fn escape_makes_text_safe_in_content_and_attributes() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b\nc"), "a\u{FFFD}b\nc");
    }

    #[test]
    fn truncate_counts_characters_not_bytes() {
        assert_eq!(truncate("kill -9 ünïcödé", 9), "kill -9 ü…");
        assert_eq!(truncate("short", 9), "short");
    }

    #[test]
    fn every_chart_is_a_plot_with_its_kind() {
        let charts = all_charts(&Report::example());
        for (svg, kind) in charts
            .iter()
            .zip(["spectrum", "latency", "throughput", "status"])
        {
            assert!(
                svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\""),
                "{kind}: {svg}"
            );
            assert!(
                svg.contains(&format!("data-plot=\"{kind}\"")),
                "{kind}: {svg}"
            );
            assert!(svg.ends_with("</svg>"), "{kind}");
            assert!(
                svg.contains("class=\"series\"") || svg.contains("class=\"bar\""),
                "{kind} has no data element"
            );
            assert_no_nan_or_inf(svg);
        }
    }

    #[test]
    fn spectrum_draws_each_measured_stage_and_overall() {
        let report = Report::example();
        let svg = spectrum(&report);
        // One measured stage (the warm-up is left out) plus overall.
        assert_eq!(svg.matches("class=\"series\"").count(), 2, "{svg}");
        assert!(svg.contains("stage 2: 15s at 200/s"), "{svg}");
        assert!(!svg.contains("stage 1: 5s at 200/s"), "{svg}");
        // The example's spectrum reaches 99.90%: the axis ends at 99.9%, not further.
        assert!(svg.contains(">99.9%<"), "{svg}");
        assert!(!svg.contains(">99.99%<"), "{svg}");
        // The passed p99 SLO (20 ms) is drawn; 41 points per line, none of them at 100%.
        assert!(svg.contains("SLO p99 &lt; 20ms"), "{svg}");
        let d = svg
            .split("class=\"series\" d=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap();
        assert_eq!(d.matches(['M', 'L']).count(), 41, "{d}");
    }

    #[test]
    fn charts_of_an_empty_report_have_notes_and_no_nan() {
        let charts = all_charts(&empty_report());
        for svg in &charts {
            assert_no_nan_or_inf(svg);
            assert!(svg.contains("class=\"plot\""));
            assert!(!svg.contains("class=\"series\""), "{svg}");
            assert!(!svg.contains("class=\"bar\""), "{svg}");
        }
        assert!(charts[0].contains("no latency recorded"));
        assert!(charts[1].contains("no answers in the timeline"));
        assert!(charts[2].contains("no timeline"));
        assert!(charts[3].contains("no requests"));
    }

    #[test]
    fn charts_of_a_single_second_draw_dots() {
        let mut report = empty_report();
        report.timeline = vec![Second {
            t: 0,
            sent: 5,
            completed: 5,
            ok: 4,
            server_errors: 1,
            p50_ms: 2.0,
            p99_ms: 3.0,
            max_ms: 3.0,
            ..Second::default()
        }];
        report.overall.latency.spectrum = vec![(50.0, 2.0)];
        report.overall.status.insert(200, 4);
        report.overall.status.insert(500, 1);
        let charts = all_charts(&report);
        for svg in &charts {
            assert_no_nan_or_inf(svg);
        }
        assert!(charts[0].contains(" l0.1 0"), "{}", charts[0]);
        assert_eq!(charts[1].matches(" l0.1 0").count(), 3, "{}", charts[1]);
        assert_eq!(charts[2].matches("class=\"bar\"").count(), 1);
        assert_eq!(charts[3].matches("class=\"bar\"").count(), 2);
        assert!(charts[3].contains("(80.0%)"), "{}", charts[3]);
    }

    #[test]
    fn non_finite_figures_do_not_leak_into_the_markup() {
        let mut report = Report::example();
        report.duration_s = f64::NAN;
        report.overall.latency.spectrum.push((f64::NAN, 3.0));
        report.overall.latency.spectrum.push((99.0, f64::INFINITY));
        report.stages[1].start_s = f64::INFINITY;
        report.timeline[3].p99_ms = f64::NAN;
        report.timeline[4].max_ms = f64::INFINITY;
        report.events[0].started_s = f64::NAN;
        report.slo[0].threshold = f64::NAN;
        for svg in all_charts(&report) {
            assert_no_nan_or_inf(&svg);
        }
    }

    #[test]
    fn seconds_without_answers_break_the_latency_lines() {
        let mut report = Report::example();
        report.timeline[10].completed = 0;
        let svg = latency_over_time(&report);
        // Three lines (max, p99, p50), each in two pieces.
        assert_eq!(svg.matches("d=\"M").count(), 3, "{svg}");
        assert_eq!(svg.matches(" M").count(), 3, "{svg}");
    }

    #[test]
    fn events_are_dashed_lines_with_the_escaped_command() {
        let mut report = Report::example();
        report.events.push(EventRecord {
            at_s: 15.0,
            run: "curl -X POST 'http://x/admin?a=1&b=<2>'".into(),
            started_s: 15.2,
            exit_code: None,
            output: String::new(),
        });
        for svg in [latency_over_time(&report), throughput(&report)] {
            assert!(svg.contains("kill -9 $(cat data/n1.pid)"), "{svg}");
            assert!(
                svg.contains("curl -X POST &#39;http://x/admin?a=1&amp;b=&lt;2&gt;&#39;"),
                "{svg}"
            );
            assert!(svg.contains("not started or killed"), "{svg}");
            assert!(!svg.contains("<2>"), "{svg}");
        }
    }

    #[test]
    fn warmup_stages_are_shaded_and_labelled() {
        let svg = latency_over_time(&Report::example());
        assert!(svg.contains("warm-up · 5s at 200/s"), "{svg}");
        assert!(svg.contains("fill=\"#fef3c7\""), "{svg}");
    }

    #[test]
    fn error_bars_stack_429_below_5xx_below_transport() {
        let mut report = empty_report();
        report.timeline = vec![Second {
            t: 0,
            sent: 10,
            completed: 8,
            rate_limited: 2,
            server_errors: 3,
            transport_errors: 2,
            ..Second::default()
        }];
        let svg = throughput(&report);
        let ys: Vec<f64> = svg
            .split("<rect class=\"bar\" ")
            .skip(1)
            .map(|r| {
                let y = r.split("y=\"").nth(1).unwrap().split('"').next().unwrap();
                y.parse().unwrap()
            })
            .collect();
        assert_eq!(ys.len(), 3, "{svg}");
        assert!(
            ys[0] > ys[1] && ys[1] > ys[2],
            "429 lowest, transport on top: {ys:?}"
        );
        assert!(svg.contains("0s: 3 5xx"), "{svg}");
    }

    #[test]
    fn status_mix_names_codes_and_shares_of_all_outcomes() {
        let svg = status_mix(&Report::example().overall);
        assert!(svg.contains(">200 OK<"), "{svg}");
        assert!(svg.contains(">429 Too Many Requests<"), "{svg}");
        assert!(svg.contains(">503 Service Unavailable<"), "{svg}");
        assert!(svg.contains(">transport error<"), "{svg}");
        assert_eq!(svg.matches("class=\"bar\"").count(), 4);
        // 2,988 + 7 + 3 + 2 = 3,000 outcomes.
        assert!(svg.contains("2,988 (99.6%)"), "{svg}");
        assert!(svg.contains("7 (0.23%)"), "{svg}");
        assert!(svg.contains("3,000 outcomes"), "{svg}");
    }
}
