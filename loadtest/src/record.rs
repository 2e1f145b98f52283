//! Counting what happens during a run: every due request and every answer go into HDR
//! histograms per stage, per second and overall, with status classes counted apart; at
//! the end the recorder turns into the report's summaries and timeline.

use crate::report::{Latency, Second, StageReport, Summary};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// Longest latency the histograms hold (longer ones are clamped to it): 10 minutes.
const MAX_LATENCY_US: u64 = 600_000_000;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// No answer (refused, reset, timed out, never sent).
    Transport,
}

/// Counts and latencies of a set of requests.
#[derive(Debug, Clone)]
struct Tally {
    requests: u64,
    status: BTreeMap<u16, u64>,
    transport: u64,
    latency: Histogram<u64>,
}

impl Tally {
    fn new(sigfig: u8) -> Tally {
        Tally {
            requests: 0,
            status: BTreeMap::new(),
            transport: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, sigfig)
                .expect("constant histogram bounds with 2 or 3 significant figures are valid"),
        }
    }

    fn answer(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Status(s) => {
                *self.status.entry(s).or_insert(0) += 1;
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(MAX_LATENCY_US)
                    .clamp(1, MAX_LATENCY_US);
                self.latency.saturating_record(us);
            }
            Outcome::Transport => self.transport += 1,
        }
    }

    fn merge(&mut self, other: &Tally) {
        self.requests += other.requests;
        for (s, n) in &other.status {
            *self.status.entry(*s).or_insert(0) += n;
        }
        self.transport += other.transport;
        let _ = self.latency.add(&other.latency);
    }

    fn count(&self, pred: impl Fn(u16) -> bool) -> u64 {
        self.status
            .iter()
            .filter(|(s, _)| pred(**s))
            .map(|(_, n)| n)
            .sum()
    }

    fn summary(&self, duration: Duration, asked_rate: Option<f64>) -> Summary {
        let ok = self.count(|s| (200..400).contains(&s));
        let rate_limited = self.count(|s| s == 429);
        let client_errors = self.count(|s| (400..500).contains(&s) && s != 429);
        let server_errors = self.count(|s| s >= 500);
        let answered: u64 = self.status.values().sum();
        let secs = duration.as_secs_f64();
        Summary {
            requests: self.requests,
            ok,
            status: self.status.clone(),
            rate_limited,
            client_errors,
            server_errors,
            transport_errors: self.transport,
            error_rate: if self.requests == 0 {
                0.0
            } else {
                (server_errors + self.transport) as f64 / self.requests as f64
            },
            asked_rate,
            achieved_rate: if secs > 0.0 {
                answered as f64 / secs
            } else {
                0.0
            },
            duration_s: secs,
            latency: latency(&self.latency),
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// The histogram's figures in milliseconds, with the spectrum for the plot.
fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    let spectrum = h
        .iter_quantiles(2)
        .map(|v| (v.quantile_iterated_to() * 100.0, ms(v.value_iterated_to())))
        .collect();
    Latency {
        count: h.len(),
        min_ms: ms(h.min()),
        mean_ms: h.mean() / 1000.0,
        p50_ms: ms(h.value_at_quantile(0.50)),
        p90_ms: ms(h.value_at_quantile(0.90)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
        spectrum,
    }
}

/// One second of the timeline while it fills.
#[derive(Debug, Clone)]
struct SecondTally {
    sent: u64,
    tally: Tally,
}

/// Everything a run records; one per run, shared by the request tasks behind a lock.
#[derive(Debug)]
pub struct Recorder {
    stages: Vec<Tally>,
    /// Per request template, warm-up stages left out (set by [`Recorder::set_warmup`]).
    templates: Vec<Tally>,
    warmup: Vec<bool>,
    seconds: Vec<SecondTally>,
    late: u64,
    max_lag: Duration,
    dropped: u64,
    /// Per request template, per check: answers that held it and that did not (warm-up
    /// stages left out, as for the template's figures).
    checks: Vec<Vec<[u64; 2]>>,
}

/// The recorder, shared by the request tasks (and read by the progress line).
pub type Shared = Arc<Mutex<Recorder>>;

/// Runs `f` with the recorder locked (a poisoned lock still holds valid counts).
pub fn with<T>(rec: &Shared, f: impl FnOnce(&mut Recorder) -> T) -> T {
    f(&mut rec.lock().unwrap_or_else(PoisonError::into_inner))
}

impl Recorder {
    pub fn new(stages: usize) -> Recorder {
        Recorder {
            stages: (0..stages).map(|_| Tally::new(3)).collect(),
            templates: Vec::new(),
            warmup: vec![false; stages],
            seconds: Vec::new(),
            late: 0,
            max_lag: Duration::ZERO,
            dropped: 0,
            checks: Vec::new(),
        }
    }

    fn second(&mut self, at: Duration) -> &mut SecondTally {
        let t = usize::try_from(at.as_secs())
            .unwrap_or(usize::MAX)
            .min(86_400);
        while self.seconds.len() <= t {
            self.seconds.push(SecondTally {
                sent: 0,
                tally: Tally::new(2),
            });
        }
        &mut self.seconds[t]
    }

    /// Which stages are warm-up (their requests stay out of the per-template figures).
    pub fn set_warmup(&mut self, warmup: &[bool]) {
        self.warmup = warmup.to_vec();
    }

    fn template(&mut self, stage: usize, template: usize) -> Option<&mut Tally> {
        if self.warmup.get(stage).copied().unwrap_or(false) {
            return None;
        }
        while self.templates.len() <= template {
            self.templates.push(Tally::new(3));
        }
        self.templates.get_mut(template)
    }

    /// A request of `template` fell due (open loop) or was sent (closed loop) at `at`.
    pub fn due(&mut self, stage: usize, template: usize, at: Duration) {
        if let Some(s) = self.stages.get_mut(stage) {
            s.requests += 1;
        }
        if let Some(t) = self.template(stage, template) {
            t.requests += 1;
        }
        self.second(at).sent += 1;
    }

    /// The generator sent a request `lag` after it was due.
    pub fn lag(&mut self, lag: Duration, late_threshold: Duration) {
        if lag > late_threshold {
            self.late += 1;
        }
        self.max_lag = self.max_lag.max(lag);
    }

    /// A request was never sent: no connection came free before its deadline.
    pub fn dropped(&mut self) {
        self.dropped += 1;
    }

    /// A request of `stage` ended at `done_at` (from the start), `latency` after it was due.
    pub fn answer(
        &mut self,
        stage: usize,
        template: usize,
        outcome: Outcome,
        latency: Duration,
        done_at: Duration,
    ) {
        if let Some(s) = self.stages.get_mut(stage) {
            s.answer(outcome, latency);
        }
        if let Some(t) = self.template(stage, template) {
            t.answer(outcome, latency);
        }
        self.second(done_at).tally.answer(outcome, latency);
    }

    /// The verdicts of a request's checks (`check::judge`), in the order of its checks.
    pub fn checked(&mut self, stage: usize, template: usize, verdicts: &[bool]) {
        if verdicts.is_empty() || self.warmup.get(stage).copied().unwrap_or(false) {
            return;
        }
        while self.checks.len() <= template {
            self.checks.push(Vec::new());
        }
        let counts = &mut self.checks[template];
        if counts.len() < verdicts.len() {
            counts.resize(verdicts.len(), [0, 0]);
        }
        for (c, held) in counts.iter_mut().zip(verdicts) {
            c[usize::from(!held)] += 1;
        }
    }

    /// `[held, failed]` of each check of `template`, in its order (none counted: empty).
    pub fn check_counts(&self, template: usize) -> &[[u64; 2]] {
        self.checks.get(template).map_or(&[], Vec::as_slice)
    }

    /// A closed-loop request, sent at `at` and ended at `done_at`: [`Recorder::due`] and
    /// [`Recorder::answer`] under one lock.
    pub fn sent_and_answered(
        &mut self,
        stage: usize,
        template: usize,
        at: Duration,
        outcome: Outcome,
        latency: Duration,
        done_at: Duration,
    ) {
        self.due(stage, template, at);
        self.answer(stage, template, outcome, latency, done_at);
    }

    /// Each request template's figures over the stages that are not warm-up, in template
    /// order (templates never drawn are empty).
    pub fn templates(&self, count: usize, duration: Duration) -> Vec<Summary> {
        (0..count)
            .map(|i| {
                self.templates
                    .get(i)
                    .map(|t| t.summary(duration, None))
                    .unwrap_or_else(|| Tally::new(3).summary(duration, None))
            })
            .collect()
    }

    /// (answers so far, p99 so far in ms, errors so far: 5xx and transport, 429s so far),
    /// warm-up included; merged from the stages when the progress line asks (4 times a
    /// second), not kept apart on every answer.
    pub fn live(&self) -> (u64, f64, u64, u64) {
        let mut all = Tally::new(2);
        for s in &self.stages {
            all.merge(s);
        }
        let answered = all.status.values().sum::<u64>() + all.transport;
        let p99 = if all.latency.is_empty() {
            0.0
        } else {
            ms(all.latency.value_at_quantile(0.99))
        };
        let errors = all.count(|s| s >= 500) + all.transport;
        (answered, p99, errors, all.count(|s| s == 429))
    }

    pub fn late(&self) -> u64 {
        self.late
    }

    pub fn max_lag(&self) -> Duration {
        self.max_lag
    }

    pub fn dropped_count(&self) -> u64 {
        self.dropped
    }

    /// The stages' reports (`plans` gives each stage's label, warm-up flag, start, length
    /// and asked rate) and the summary of the stages that are not warm-up.
    pub fn finish(&self, plans: &[StagePlan]) -> (Vec<StageReport>, Summary, Vec<Second>) {
        let mut overall = Tally::new(3);
        let mut overall_duration = Duration::ZERO;
        let mut overall_asked = 0u64;
        let mut any_asked = false;
        let mut stages = Vec::with_capacity(plans.len());
        for (i, plan) in plans.iter().enumerate() {
            let tally = self.stages.get(i).cloned().unwrap_or_else(|| Tally::new(3));
            let asked = plan
                .asked
                .map(|n| n as f64 / plan.duration.as_secs_f64().max(1e-9));
            if !plan.warmup {
                overall.merge(&tally);
                overall_duration += plan.duration;
                if let Some(n) = plan.asked {
                    overall_asked += n;
                    any_asked = true;
                }
            }
            stages.push(StageReport {
                index: i,
                label: plan.label.clone(),
                warmup: plan.warmup,
                start_s: plan.start.as_secs_f64(),
                summary: tally.summary(plan.duration, asked),
            });
        }
        let asked =
            any_asked.then(|| overall_asked as f64 / overall_duration.as_secs_f64().max(1e-9));
        let overall = overall.summary(overall_duration, asked);
        let timeline = self
            .seconds
            .iter()
            .enumerate()
            .map(|(t, s)| {
                let sum = s.tally.summary(Duration::from_secs(1), None);
                Second {
                    t: u32::try_from(t).unwrap_or(u32::MAX),
                    sent: s.sent,
                    completed: sum.status.values().sum(),
                    ok: sum.ok,
                    rate_limited: sum.rate_limited,
                    server_errors: sum.server_errors,
                    transport_errors: sum.transport_errors,
                    p50_ms: sum.latency.p50_ms,
                    p99_ms: sum.latency.p99_ms,
                    max_ms: sum.latency.max_ms,
                }
            })
            .collect();
        (stages, overall, timeline)
    }
}

/// What the report needs to know of a stage besides what was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct StagePlan {
    pub label: String,
    pub warmup: bool,
    pub start: Duration,
    pub duration: Duration,
    /// Requests the schedule asked for (open loop); `None` in closed loop.
    pub asked: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(label: &str, warmup: bool, start: u64, secs: u64, asked: u64) -> StagePlan {
        StagePlan {
            label: label.into(),
            warmup,
            start: Duration::from_secs(start),
            duration: Duration::from_secs(secs),
            asked: Some(asked),
        }
    }

    #[test]
    fn statuses_are_counted_apart_and_the_warm_up_stays_out_of_the_overall_figures() {
        let mut r = Recorder::new(2);
        let ms = Duration::from_millis;
        r.due(0, 0, ms(0));
        r.answer(0, 0, Outcome::Status(200), ms(100), ms(100));
        for (i, outcome) in [
            Outcome::Status(200),
            Outcome::Status(200),
            Outcome::Status(429),
            Outcome::Status(404),
            Outcome::Status(503),
            Outcome::Transport,
        ]
        .into_iter()
        .enumerate()
        {
            let at = ms(1000 + 100 * i as u64);
            r.due(1, 0, at);
            r.answer(1, 0, outcome, ms(5), at + ms(5));
        }
        let plans = [
            plan("1s at 1/s", true, 0, 1, 1),
            plan("1s at 6/s", false, 1, 1, 6),
        ];
        let (stages, overall, timeline) = r.finish(&plans);
        assert_eq!(stages[0].summary.requests, 1);
        assert_eq!(
            overall.requests, 6,
            "the warm-up request is not in the overall figures"
        );
        assert_eq!(overall.ok, 2);
        assert_eq!(overall.rate_limited, 1);
        assert_eq!(overall.client_errors, 1);
        assert_eq!(overall.server_errors, 1);
        assert_eq!(overall.transport_errors, 1);
        assert!((overall.error_rate - 2.0 / 6.0).abs() < 1e-12);
        assert_eq!(overall.asked_rate, Some(6.0));
        assert_eq!(overall.achieved_rate, 5.0, "five answers in one second");
        assert_eq!(overall.latency.count, 5);
        // Three significant figures: a recorded 5 ms reads back within 0.1%.
        assert!(
            (overall.latency.p50_ms - 5.0).abs() <= 0.005,
            "{}",
            overall.latency.p50_ms
        );
        assert_eq!(timeline.len(), 2);
        assert_eq!(timeline[0].sent, 1);
        assert_eq!(timeline[1].sent, 6);
        assert_eq!(timeline[1].completed, 5);
        assert_eq!(timeline[1].transport_errors, 1);
        assert!(
            (timeline[0].p99_ms - 100.0).abs() <= 1.0,
            "{}",
            timeline[0].p99_ms
        );
    }

    #[test]
    fn lateness_counts_only_beyond_the_threshold() {
        let mut r = Recorder::new(1);
        r.lag(Duration::from_millis(10), Duration::from_millis(10));
        assert_eq!(r.late(), 0, "exactly at the threshold is on time");
        r.lag(Duration::from_micros(10_001), Duration::from_millis(10));
        assert_eq!(r.late(), 1);
        assert_eq!(r.max_lag(), Duration::from_micros(10_001));
    }
}
