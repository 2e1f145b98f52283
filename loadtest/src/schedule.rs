//! The open-loop schedule: when each request is due, from the stages' rates alone, never
//! from the server's answers.
//!
//! A stage of `d` seconds going linearly from `r0` to `r1` requests per second has the
//! cumulative count `N(t) = r0·t + (r1 − r0)·t² / (2d)`; its `i`-th request is due at the
//! `t` where `N(t) = i`, for every whole `i` in `[0, N(d))`. A constant rate is the case
//! `r0 = r1` (`t = i / r0`). So a stage asks for exactly `⌈N(d)⌉` requests, evenly spread
//! (no bursts at second boundaries), and the schedule is a pure function of the stages.

use std::time::Duration;

/// One stage's shape: how long, and the rate at its start and end (equal for a constant
/// rate), in requests per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub duration: Duration,
    pub start_rate: f64,
    pub end_rate: f64,
}

impl Segment {
    /// The requests this stage asks for: `⌈N(d)⌉`.
    pub fn count(&self) -> u64 {
        let n = (self.start_rate + self.end_rate) / 2.0 * self.duration.as_secs_f64();
        if n.is_finite() && n > 0.0 {
            n.ceil() as u64
        } else {
            0
        }
    }

    /// When the `i`-th request of the stage is due, from the stage's start.
    pub fn offset_of(&self, i: u64) -> Duration {
        let d = self.duration.as_secs_f64();
        let (r0, r1) = (self.start_rate, self.end_rate);
        let i = i as f64;
        let accel = (r1 - r0) / d;
        let t = if accel.abs() < 1e-12 {
            if r0 > 0.0 {
                i / r0
            } else {
                0.0
            }
        } else {
            // The positive root of accel/2·t² + r0·t − i = 0, in the form that stays exact
            // when accel is tiny: t = 2i / (r0 + sqrt(r0² + 2·accel·i)).
            let disc = (r0 * r0 + 2.0 * accel * i).max(0.0);
            let denom = r0 + disc.sqrt();
            if denom > 0.0 {
                2.0 * i / denom
            } else {
                0.0
            }
        };
        Duration::from_secs_f64(t.clamp(0.0, d))
    }
}

/// One due request: when (from the start of the run) and in which stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub at: Duration,
    pub stage: usize,
    /// Position in the whole run, from 0.
    pub seq: u64,
}

/// The requests of a run in the order they are due.
#[derive(Debug, Clone)]
pub struct Schedule {
    segments: Vec<Segment>,
    /// Start offset of each segment.
    starts: Vec<Duration>,
    stage: usize,
    i: u64,
    seq: u64,
}

impl Schedule {
    pub fn new(segments: &[Segment]) -> Schedule {
        let mut starts = Vec::with_capacity(segments.len());
        let mut t = Duration::ZERO;
        for s in segments {
            starts.push(t);
            t += s.duration;
        }
        Schedule {
            segments: segments.to_vec(),
            starts,
            stage: 0,
            i: 0,
            seq: 0,
        }
    }

    /// Every request the run asks for.
    pub fn total(&self) -> u64 {
        self.segments.iter().map(Segment::count).sum()
    }

    /// When each stage starts, from the start of the run.
    pub fn stage_starts(&self) -> &[Duration] {
        &self.starts
    }

    /// The run's scheduled length (the sum of the stages).
    pub fn duration(&self) -> Duration {
        self.segments.iter().map(|s| s.duration).sum()
    }
}

impl Iterator for Schedule {
    type Item = Due;

    fn next(&mut self) -> Option<Due> {
        loop {
            let seg = self.segments.get(self.stage)?;
            if self.i < seg.count() {
                let due = Due {
                    at: self.starts[self.stage] + seg.offset_of(self.i),
                    stage: self.stage,
                    seq: self.seq,
                };
                self.i += 1;
                self.seq += 1;
                return Some(due);
            }
            self.stage += 1;
            self.i = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(secs: u64, r0: f64, r1: f64) -> Segment {
        Segment {
            duration: Duration::from_secs(secs),
            start_rate: r0,
            end_rate: r1,
        }
    }

    #[test]
    fn a_constant_rate_asks_rate_times_duration_evenly_spaced() {
        let s = seg(2, 400.0, 400.0);
        assert_eq!(s.count(), 800);
        assert_eq!(s.offset_of(0), Duration::ZERO);
        assert_eq!(s.offset_of(1), Duration::from_micros(2500));
        assert_eq!(s.offset_of(400), Duration::from_secs(1));
        let all: Vec<Due> = Schedule::new(&[s]).collect();
        assert_eq!(all.len(), 800);
        assert!(
            all.windows(2).all(|w| w[1].at > w[0].at),
            "strictly increasing"
        );
        assert!(all.last().unwrap().at < Duration::from_secs(2));
    }

    #[test]
    fn a_ramp_asks_the_area_under_its_rate_and_speeds_up() {
        // 0 -> 8000/s over 10 s: (0 + 8000) / 2 * 10 = 40,000 requests.
        let s = seg(10, 0.0, 8000.0);
        assert_eq!(s.count(), 40_000);
        // N(t) = 400 t^2: request 400 is due at 1 s, request 10,000 at 5 s.
        assert!((s.offset_of(400).as_secs_f64() - 1.0).abs() < 1e-9);
        assert!((s.offset_of(10_000).as_secs_f64() - 5.0).abs() < 1e-9);
        let gaps: Vec<f64> = (1..40_000u64)
            .step_by(10_000)
            .map(|i| (s.offset_of(i + 1) - s.offset_of(i)).as_secs_f64())
            .collect();
        assert!(gaps.windows(2).all(|w| w[1] < w[0]), "{gaps:?}");
    }

    #[test]
    fn stages_follow_each_other_and_number_requests_across_the_run() {
        let sched = Schedule::new(&[seg(1, 400.0, 400.0), seg(3, 400.0, 400.0)]);
        assert_eq!(sched.total(), 1600);
        assert_eq!(sched.duration(), Duration::from_secs(4));
        let all: Vec<Due> = sched.collect();
        assert_eq!(all.len(), 1600);
        assert_eq!(all.iter().filter(|d| d.stage == 0).count(), 400);
        assert_eq!(
            all[400].at,
            Duration::from_secs(1),
            "the second stage starts at 1 s"
        );
        assert_eq!(all[400].stage, 1);
        assert_eq!(all[1599].seq, 1599);
    }

    #[test]
    fn a_fractional_rate_rounds_the_count_up_and_a_zero_stage_asks_nothing() {
        assert_eq!(
            seg(3, 0.5, 0.5).count(),
            2,
            "1.5 requests: due at 0 s and 2 s"
        );
        assert_eq!(seg(3, 0.5, 0.5).offset_of(1), Duration::from_secs(2));
        assert_eq!(seg(5, 0.0, 0.0).count(), 0);
        let all: Vec<Due> = Schedule::new(&[seg(5, 0.0, 0.0), seg(1, 2.0, 2.0)]).collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].at, Duration::from_secs(5));
    }
}
