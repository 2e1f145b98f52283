//! The live progress line on stderr (indicatif): elapsed time, answers per second, p99 and
//! errors so far; drawn only when stderr is a terminal.

use crate::clock;
use crate::record::{with, Shared};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the line is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// The progress line while a run lasts.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing (when `enabled` and stderr is a terminal). `length` is the run's
    /// scheduled length; `total` the requests it asks for (open loop).
    pub fn start(
        enabled: bool,
        rec: Shared,
        start: Instant,
        length: Duration,
        total: Option<u64>,
    ) -> Progress {
        let target = if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(length.as_millis() as u64), target);
        bar.set_style(
            ProgressStyle::with_template("{bar:20} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        let task = tokio::spawn(async move {
            let mut last = (0u64, start);
            loop {
                tokio::time::sleep(TICK).await;
                let now = clock::now();
                let elapsed = now.saturating_duration_since(start);
                let (answered, p99, errors, limited) = with(&rec, |r| r.live());
                let window = now.saturating_duration_since(last.1).as_secs_f64();
                let rate = if window > 0.0 {
                    (answered - last.0) as f64 / window
                } else {
                    0.0
                };
                last = (answered, now);
                let of = total.map(|t| format!("/{t}")).unwrap_or_default();
                b.set_position(elapsed.as_millis() as u64);
                b.set_message(format!(
                    "{:>5.1}s  {answered}{of} answered  {rate:>7.0}/s  p99 {p99:.2} ms  errors {errors}  429 {limited}",
                    elapsed.as_secs_f64()
                ));
            }
        });
        Progress {
            bar,
            task: Some(task),
        }
    }

    /// Stops drawing and clears the line.
    pub fn finish(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.bar.finish_and_clear();
    }
}
