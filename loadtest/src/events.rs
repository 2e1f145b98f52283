//! Chaos events: the scenario's shell commands, each started at its offset from the start
//! of the run (`sh -c`), its exit code and first lines of output kept for the report.

use crate::clock;
use crate::report::EventRecord;
use crate::scenario::Event;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long an event's command may run; it is killed after that.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Output kept per event, in bytes.
const OUTPUT_LIMIT: usize = 2048;

/// Starts a task per event that waits for its time and runs it.
pub fn spawn(events: &[Event], start: Instant) -> Vec<JoinHandle<EventRecord>> {
    events
        .iter()
        .map(|e| {
            let (at, run) = (e.at, e.run.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(start + at).await;
                let started = clock::now().saturating_duration_since(start);
                let child = tokio::process::Command::new("sh")
                    .arg("-c")
                    .arg(&run)
                    .stdin(std::process::Stdio::null())
                    .kill_on_drop(true)
                    .output();
                let (exit_code, output) = match tokio::time::timeout(EVENT_TIMEOUT, child).await {
                    Ok(Ok(out)) => {
                        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                        text.push_str(&String::from_utf8_lossy(&out.stderr));
                        (out.status.code(), truncate(text))
                    }
                    Ok(Err(e)) => (None, format!("cannot start: {e}")),
                    Err(_) => (None, format!("killed after {}s", EVENT_TIMEOUT.as_secs())),
                };
                EventRecord {
                    at_s: at.as_secs_f64(),
                    run,
                    started_s: started.as_secs_f64(),
                    exit_code,
                    output,
                }
            })
        })
        .collect()
}

fn truncate(mut text: String) -> String {
    if text.len() > OUTPUT_LIMIT {
        let mut cut = OUTPUT_LIMIT;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// Waits, at the end of the run, for the events that have started (each is bounded by
/// [`EVENT_TIMEOUT`]); one whose time never came is reported as not run.
pub async fn collect(
    tasks: Vec<JoinHandle<EventRecord>>,
    events: &[Event],
    start: Instant,
) -> Vec<EventRecord> {
    let mut out = Vec::with_capacity(tasks.len());
    for (task, e) in tasks.into_iter().zip(events) {
        let not_run = |why: String| EventRecord {
            at_s: e.at.as_secs_f64(),
            run: e.run.clone(),
            started_s: 0.0,
            exit_code: None,
            output: why,
        };
        if clock::now() < start + e.at {
            task.abort();
            out.push(not_run("not run: the run ended first".into()));
            continue;
        }
        match task.await {
            Ok(r) => out.push(r),
            Err(err) => out.push(not_run(format!("lost: {err}"))),
        }
    }
    out
}
