//! `tsdb-bench`: ingest and query benchmark of an InfluxDB 1.x HTTP API endpoint, TSBS
//! cpu-only shape (10 tags, 10 float fields per row).
//!
//! It is run once against our node and once against real InfluxDB in the same session by
//! `scripts/bench-tsdb.sh`, which prints the ratios; see docs/benchmarks.md. The script runs
//! it twice per server: `--ingest-only`, then (after forcing the server's flush)
//! `--queries-only` on the same `--hosts` and `--steps`.

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Base URL of the server, e.g. http://127.0.0.1:8086; repeat for a pool (batches are
    /// spread round-robin over the URLs; queries go to the first).
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Send batches at this many rows per second (open loop) instead of as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// Sample the pool's replication lag (`/health` of every URL) while ingesting.
    #[arg(long)]
    lag: bool,
    /// Skip the queries.
    #[arg(long, conflicts_with = "queries_only")]
    ingest_only: bool,
    /// Skip the ingest: run the queries against data written before with the same
    /// `--hosts` and `--steps` (the time range queried depends on them).
    #[arg(long)]
    queries_only: bool,
    /// PID of the (first) server, to read its peak RSS (VmHWM) and RSS (VmRSS) from /proc
    /// at the end of the run.
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
    /// How the 10 field values are drawn.
    #[arg(long, value_enum, default_value_t = Values::Random)]
    values: Values,
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

/// The field values of the generated rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Values {
    /// Uniform in [0, 100) at full f64 precision (the shortest form that reads back
    /// exactly, 15 to 17 significant digits): close to the worst case for float compression.
    Random,
    /// TSBS's cpu distribution: per host and field a random walk with N(0, 1) steps,
    /// clamped to [0, 100], starting uniform in [0, 100); written with two decimals
    /// (`58.17`). TSBS itself truncates these to integers (`58i`); two decimals keep the
    /// fields floats, as in the other shape, with a little more entropy than TSBS.
    Tsbs,
}

/// Draws the field values row by row, deterministic for a given seed.
#[derive(Debug)]
struct ValueSource {
    rng: StdRng,
    kind: Values,
    /// The TSBS random walks: `walks[host * FIELDS.len() + field]`.
    walks: Vec<f64>,
}

impl ValueSource {
    fn new(kind: Values, hosts: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let walks = match kind {
            Values::Random => Vec::new(),
            Values::Tsbs => (0..hosts * FIELDS.len())
                .map(|_| rng.random_range(0.0..100.0))
                .collect(),
        };
        ValueSource { rng, kind, walks }
    }

    /// Appends `name=value` for field `field` of `host`'s next row.
    fn write_field(&mut self, out: &mut String, name: &str, host: usize, field: usize) {
        match self.kind {
            Values::Random => {
                let _ = write!(out, "{name}={}", self.rng.random_range(0.0..100.0f64));
            }
            Values::Tsbs => {
                let w = &mut self.walks[host * FIELDS.len() + field];
                *w = (*w + standard_normal(&mut self.rng)).clamp(0.0, 100.0);
                let _ = write!(out, "{name}={:.2}", *w);
            }
        }
    }
}

/// One draw from N(0, 1) (Box-Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    // 1 - [0, 1) is (0, 1]: ln never sees 0.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
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

/// One line of TSBS cpu-only data. Deterministic for a given value source.
fn cpu_line(out: &mut String, host: usize, step: usize, values: &mut ValueSource) {
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
        values.write_field(out, f, host, i);
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

/// Waits (bounded) until `db` exists on the node at `url` (it replicates from the first).
fn wait_for_database(agent: &ureq::Agent, url: &str, db: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        let (st, body) = query(agent, url, "", "SHOW DATABASES")?;
        if st == 200 && body.contains(&format!("[\"{db}\"]")) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("database {db} did not appear on {url}")
}

/// The pool's worst replication lag in seconds and its total unacknowledged entries, from
/// every node's `/health` (0 and 0 for nodes without peers).
fn pool_lag(agent: &ureq::Agent, urls: &[String]) -> (f64, u64) {
    let mut secs: f64 = 0.0;
    let mut entries = 0u64;
    for url in urls {
        let Ok(mut res) = agent.get(&format!("{url}/health")).call() else {
            entries += 1;
            continue;
        };
        let Ok(doc) = res.body_mut().read_json::<serde_json::Value>() else {
            entries += 1;
            continue;
        };
        for p in doc["peers"].as_array().into_iter().flatten() {
            secs = secs.max(p["lag_seconds"].as_f64().unwrap_or(0.0));
            entries += p["lag_entries"].as_u64().unwrap_or(0);
        }
    }
    (secs, entries)
}

/// A `kB` figure of /proc/<pid>/status, e.g. `VmHWM:` (peak RSS) or `VmRSS:`.
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
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
    let rows = args.hosts * args.steps;
    let mut out = serde_json::json!({
        "label": args.label,
        "nodes": args.url.len(),
        "rows": rows,
        "values": format!("{:?}", args.values).to_lowercase(),
    });
    if !args.queries_only {
        ingest(&args, &agent, &mut out)?;
    }
    if !args.ingest_only {
        run_queries(&args, &agent, &mut out)?;
    }
    if let Some(pid) = args.pid {
        if let Some(kib) = status_kib(pid, "VmHWM:") {
            out["peak_rss_mib"] = (kib as f64 / 1024.0).into();
            out["peak_rss_mib_per_million_values"] =
                (kib as f64 / 1024.0 / (rows as f64 * 10.0 / 1e6)).into();
        }
        if let Some(kib) = status_kib(pid, "VmRSS:") {
            out["rss_mib"] = (kib as f64 / 1024.0).into();
        }
    }
    println!("{out}");
    Ok(())
}

/// Writes `hosts × steps` rows as fast as the servers take them (or at `--rate`), and
/// records rows/s, the 503 retries and, for a pool, the replication lag in `out`.
fn ingest(args: &Args, agent: &ureq::Agent, out: &mut serde_json::Value) -> anyhow::Result<()> {
    let first = &args.url[0];
    let (st, body) = query(
        agent,
        first,
        "",
        &format!("CREATE DATABASE \"{}\"", args.db),
    )?;
    if st != 200 {
        bail!("CREATE DATABASE gave {st}: {body}");
    }

    // Pre-generate every batch so the generator's cost is not measured.
    let rows = args.hosts * args.steps;
    let mut batches = Vec::new();
    let mut values = ValueSource::new(args.values, args.hosts, 42);
    let mut cur = String::new();
    let mut in_batch = 0;
    for step in 0..args.steps {
        for host in 0..args.hosts {
            cpu_line(&mut cur, host, step, &mut values);
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
    // The database must exist on every node before writes spread over them.
    for url in &args.url {
        wait_for_database(agent, url, &args.db)?;
    }
    let batches = Arc::new(batches);
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let started = now();
    let batch_interval = args
        .rate
        .map(|r| Duration::from_secs_f64(args.batch as f64 / r));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = args.lag.then(|| {
        let (urls, agent, done) = (args.url.clone(), agent.clone(), done.clone());
        std::thread::spawn(move || {
            let mut max_lag: f64 = 0.0;
            let mut samples = 0u64;
            // Bounded: stops when the writers are done, and at most after an hour.
            for _ in 0..18_000 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                max_lag = max_lag.max(pool_lag(&agent, &urls).0);
                samples += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            (max_lag, samples)
        })
    });
    let mut handles = Vec::new();
    for _ in 0..args.writers {
        let (batches, next, retries, urls, db, agent) = (
            batches.clone(),
            next.clone(),
            retries.clone(),
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
                if let Some(every) = batch_interval {
                    // Open loop: batch i is due at i * interval, whatever the replies took.
                    let due = every.mul_f64(i as f64);
                    let elapsed = started.elapsed();
                    if due > elapsed {
                        std::thread::sleep(due - elapsed);
                    }
                }
                let url = &urls[i % urls.len()];
                write_batch(&agent, url, &db, b, &retries)?;
            }
        }));
    }
    for h in handles {
        h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let lag = sampler.map(|s| s.join().unwrap_or((f64::NAN, 0)));
    // Time from the last acknowledgement until every node has every entry.
    let converge_secs = if args.url.len() > 1 {
        let t = now();
        let mut converged = false;
        for _ in 0..6000 {
            if pool_lag(agent, &args.url).1 == 0 {
                converged = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        converged.then(|| t.elapsed().as_secs_f64())
    } else {
        None
    };
    out["ingest_seconds"] = ingest_secs.into();
    out["rows_per_second"] = (rows as f64 / ingest_secs).into();
    out["write_retries_503"] = retries.load(Ordering::SeqCst).into();
    if let Some((max_lag, samples)) = lag {
        out["max_replication_lag_seconds"] = max_lag.into();
        out["lag_samples"] = samples.into();
    }
    if let Some(c) = converge_secs {
        out["converge_seconds_after_last_write"] = c.into();
    }
    Ok(())
}

/// Writes one batch; a 503 (a node shedding load, e.g. over its memory limit) is retried
/// after its `Retry-After` (1 s when absent, at most 10 s), at most 600 times per batch.
fn write_batch(
    agent: &ureq::Agent,
    url: &str,
    db: &str,
    batch: &str,
    retries: &AtomicUsize,
) -> anyhow::Result<()> {
    for _ in 0..600 {
        let res = agent
            .post(&format!("{url}/write"))
            .query("db", db)
            .send(batch.as_bytes())?;
        match res.status().as_u16() {
            204 => return Ok(()),
            503 => {
                let wait = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(10);
                retries.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_secs(wait));
            }
            other => bail!("write gave {other}"),
        }
    }
    bail!("write still refused with 503 after 600 tries")
}

/// Runs each query once (checking the answer) and then `--repeat` times, and records p50,
/// p95 and the answer's size in `out`.
fn run_queries(
    args: &Args,
    agent: &ureq::Agent,
    out: &mut serde_json::Value,
) -> anyhow::Result<()> {
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
        (
            "rate-by-host",
            format!("SELECT non_negative_derivative(mean(usage_user), 1s) FROM cpu WHERE time >= {from} AND time < {to} GROUP BY time(1h), hostname"),
        ),
        (
            "subquery-2",
            format!("SELECT max(total) FROM (SELECT sum(mu) AS total FROM (SELECT mean(usage_user) AS mu FROM cpu WHERE time >= {from} AND time < {to} GROUP BY time(10m), hostname) WHERE time >= {from} AND time < {to} GROUP BY time(1h)) WHERE time >= {from} AND time < {to}"),
        ),
    ];
    out["query_rows"] = (span_steps * args.hosts).into();
    let first = &args.url[0];
    for (name, q) in &queries {
        let (st, body) = query(agent, first, &args.db, q)?;
        if st != 200 || body.contains("\"error\"") {
            bail!("{name} gave {st}: {}", &body[..body.len().min(300)]);
        }
        let mut lat = Vec::new();
        for _ in 0..args.repeat {
            let t = now();
            query(agent, first, &args.db, q)?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        lat.sort_by(f64::total_cmp);
        out[format!("{name}_p50_ms")] = percentile(&lat, 0.5).into();
        out[format!("{name}_p95_ms")] = percentile(&lat, 0.95).into();
        out[format!("{name}_bytes")] = body.len().into();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(kind: Values, hosts: usize, steps: usize) -> Vec<String> {
        let mut values = ValueSource::new(kind, hosts, 42);
        let mut out = String::new();
        for step in 0..steps {
            for host in 0..hosts {
                cpu_line(&mut out, host, step, &mut values);
            }
        }
        out.lines().map(str::to_string).collect()
    }

    /// The field values of one line, in FIELDS order, as written.
    fn fields(line: &str) -> Vec<&str> {
        let set = line.split(' ').nth(1).expect("field set");
        set.split(',')
            .map(|kv| kv.split_once('=').expect("key=value").1)
            .collect()
    }

    #[test]
    fn tsbs_values_are_two_decimal_walks_within_0_and_100() {
        let rows = lines(Values::Tsbs, 3, 200);
        assert_eq!(rows.len(), 600);
        for line in &rows {
            for v in fields(line) {
                let (_, decimals) = v.split_once('.').expect("a float literal");
                assert_eq!(decimals.len(), 2, "{v} in {line}");
                let x: f64 = v.parse().expect("a number");
                assert!((0.0..=100.0).contains(&x), "{v} in {line}");
            }
        }
        // A walk: host 0's usage_user moves by less than 10 between consecutive steps
        // (a N(0, 1) step beyond 10 has a chance of about 1e-23).
        let user = |step: usize| -> f64 { fields(&rows[step * 3])[0].parse().expect("number") };
        for step in 1..200 {
            assert!((user(step) - user(step - 1)).abs() < 10.0, "step {step}");
        }
    }

    #[test]
    fn random_values_are_full_precision() {
        let rows = lines(Values::Random, 2, 5);
        let longest = rows
            .iter()
            .flat_map(|l| fields(l).into_iter().map(str::len).collect::<Vec<_>>())
            .max()
            .expect("some values");
        assert!(longest >= 16, "longest value has {longest} characters");
    }

    #[test]
    fn the_same_seed_writes_the_same_data() {
        assert_eq!(lines(Values::Tsbs, 4, 10), lines(Values::Tsbs, 4, 10));
        assert_eq!(lines(Values::Random, 4, 10), lines(Values::Random, 4, 10));
    }
}
