//! An OTLP/HTTP trace sink for benchmarks: accepts every export on the address it prints,
//! counts its spans from the protobuf's framing (`tests::otlp::OtlpReceiver::counting`: a
//! collector as light as can be, as the machine is shared with what is measured), and
//! prints the count every second until killed, so a benchmark can say how many spans the
//! gateway exported.
//!
//! `otlp-sink` prints `listening http://127.0.0.1:PORT`, then `spans N` lines.

use std::io::Write as _;
use std::time::Duration;
use tests::otlp::OtlpReceiver;

/// How long it runs at most (a benchmark kills it long before).
const MAX_RUN: Duration = Duration::from_secs(6 * 3600);

fn main() -> anyhow::Result<()> {
    let sink = OtlpReceiver::counting()?;
    let mut out = std::io::stdout();
    writeln!(out, "listening {}", sink.url())?;
    out.flush()?;
    for _ in 0..MAX_RUN.as_secs() {
        std::thread::sleep(Duration::from_secs(1));
        writeln!(out, "spans {}", sink.count())?;
        out.flush()?;
    }
    Ok(())
}
