//! `tsdb-bench`: ingest and query benchmark of an InfluxDB 1.x HTTP API endpoint, TSBS
//! cpu-only shape (10 tags, 10 float fields per row).
//!
//! It is run once against our node and once against real InfluxDB in the same session by
//! `scripts/bench-tsdb.sh`, which prints the ratios; see docs/benchmarks.md.

use anyhow::{bail, Context};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the server, e.g. http://127.0.0.1:8086.
    #[arg(long)]
    url: String,
    /// PID of the server, to read its peak RSS from /proc.
    #[arg(long)]
    pid: Option<u32>,
    #[arg(long, default_value = "bench")]
    db: String,
    /// Number of hosts (series).
    #[arg(long, default_value_t = 100)]
    hosts: usize,
    /// Time steps per host (10 s apart).
    #[arg(long, default_value_t = 5000)]
    steps: usize,
    #[arg(long, default_value_t = 5000)]
    batch: usize,
    #[arg(long, default_value_t = 2)]
    writers: usize,
    /// Repetitions of each query.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Label for the output line.
    #[arg(long, default_value = "server")]
    label: String,
}

const START_NS: i64 = 1_451_606_400_000_000_000; // 2016-01-01T00:00:00Z, as TSBS
const STEP_NS: i64 = 10_000_000_000;
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-south-1"];
const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// One line of TSBS cpu-only data. Deterministic for a given RNG.
fn cpu_line(out: &mut String, host: usize, step: usize, rng: &mut StdRng) {
    let region = REGIONS[host % REGIONS.len()];
    let _ = write!(
        out,
        "cpu,hostname=host_{host},region={region},datacenter={region}a,rack={},os=Ubuntu16.04LTS,arch=x64,team=NYC,service={},service_version={},service_environment=production ",
        host % 100,
        host % 20,
        host % 2
    );
    for (i, f) in FIELDS.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{f}={}", rng.random_range(0.0..100.0f64));
    }
    let _ = writeln!(out, " {}", START_NS + step as i64 * STEP_NS);
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

fn query(agent: &ureq::Agent, url: &str, db: &str, q: &str) -> anyhow::Result<(u16, String)> {
    let mut res = agent
        .post(&format!("{url}/query"))
        .query("db", db)
        .query("epoch", "ns")
        .send_form([("q", q)])
        .with_context(|| format!("query {q}"))?;
    let status = res.status().as_u16();
    let body = res.body_mut().read_to_string()?;
    Ok((status, body))
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[allow(clippy::disallowed_methods)] // a benchmark measures real time
fn now() -> Instant {
    Instant::now()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let agent = agent();
    let (st, body) = query(
        &agent,
        &args.url,
        "",
        &format!("CREATE DATABASE \"{}\"", args.db),
    )?;
    if st != 200 {
        bail!("CREATE DATABASE gave {st}: {body}");
    }

    // Pre-generate every batch so the generator's cost is not measured.
    let rows = args.hosts * args.steps;
    let mut batches = Vec::new();
    let mut rng = StdRng::seed_from_u64(42);
    let mut cur = String::new();
    let mut in_batch = 0;
    for step in 0..args.steps {
        for host in 0..args.hosts {
            cpu_line(&mut cur, host, step, &mut rng);
            in_batch += 1;
            if in_batch == args.batch {
                batches.push(std::mem::take(&mut cur));
                in_batch = 0;
            }
        }
    }
    if in_batch > 0 {
        batches.push(cur);
    }
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let started = now();
    let mut handles = Vec::new();
    for _ in 0..args.writers {
        let (batches, next, url, db, agent) = (
            batches.clone(),
            next.clone(),
            args.url.clone(),
            args.db.clone(),
            agent.clone(),
        );
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(b) = batches.get(i) else {
                    return Ok(());
                };
                let res = agent
                    .post(&format!("{url}/write"))
                    .query("db", &db)
                    .send(b.as_bytes())?;
                if res.status().as_u16() != 204 {
                    bail!("write gave {}", res.status());
                }
            }
        }));
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    let rows_per_sec = rows as f64 / ingest_secs;

    // Queries over 200k rows at most: the last min(steps, 200k / hosts) steps.
    let span_steps = (200_000 / args.hosts).min(args.steps);
    let from = START_NS + (args.steps - span_steps) as i64 * STEP_NS;
    let to = START_NS + args.steps as i64 * STEP_NS;
    let queries = [
        (
            "mean-1h-by-host",
            format!("SELECT mean(usage_user) FROM cpu WHERE time >= {from} AND time < {to} GROUP BY time(1h), hostname"),
        ),
        (
            "lastpoint",
            "SELECT * FROM cpu GROUP BY hostname ORDER BY time DESC LIMIT 1".to_string(),
        ),
        (
            "high-cpu",
            format!("SELECT * FROM cpu WHERE usage_user > 99 AND time >= {from} AND time < {to}"),
        ),
    ];
    let mut out = serde_json::json!({
        "label": args.label,
        "rows": rows,
        "ingest_seconds": ingest_secs,
        "rows_per_second": rows_per_sec,
        "query_rows": span_steps * args.hosts,
    });
    for (name, q) in &queries {
        let (st, body) = query(&agent, &args.url, &args.db, q)?;
        if st != 200 || body.contains("\"error\"") {
            bail!("{name} gave {st}: {}", &body[..body.len().min(300)]);
        }
        let mut lat = Vec::new();
        for _ in 0..args.repeat {
            let t = now();
            query(&agent, &args.url, &args.db, q)?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        out[format!("{name}_p50_ms")] = percentile(&lat, 0.5).into();
        out[format!("{name}_p95_ms")] = percentile(&lat, 0.95).into();
        out[format!("{name}_bytes")] = body.len().into();
    }
    if let Some(pid) = args.pid {
        if let Some(kib) = peak_rss_kib(pid) {
            out["peak_rss_mib"] = (kib as f64 / 1024.0).into();
            out["peak_rss_mib_per_million_values"] =
                (kib as f64 / 1024.0 / (rows as f64 * 10.0 / 1e6)).into();
        }
    }
    println!("{out}");
    Ok(())
}
