//! `link-shaper`: what `tc netem` does (delay with jitter, random loss, and the reordering
//! jitter brings), for kernels built without netem. It reads the packets an iptables
//! `NFQUEUE` rule hands it in its network namespace, drops some, and gives the others back
//! to the kernel after their delay. The fault tests start it in a host's namespace and
//! point that host's outgoing packets at it (`tests/src/faults/net.rs`, `Lab::shape`).
//!
//! ```text
//! link-shaper --queue 7 --delay-ms 200 --jitter-ms 50 --loss 0.05 [--seed 1]
//! ```
//!
//! It prints `bound` once it reads the queue; the rule uses `--queue-bypass`, so packets
//! pass unshaped while it is not running.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use anyhow::Context;

#[derive(Debug)]
struct Args {
    queue: u16,
    delay: Duration,
    jitter: Duration,
    loss: f64,
    seed: u64,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        queue: 7,
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        loss: 0.0,
        seed: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--queue" => args.queue = value.parse().context("--queue")?,
            "--delay-ms" => {
                args.delay = Duration::from_millis(value.parse().context("--delay-ms")?)
            }
            "--jitter-ms" => {
                args.jitter = Duration::from_millis(value.parse().context("--jitter-ms")?)
            }
            "--loss" => args.loss = value.parse().context("--loss")?,
            "--seed" => args.seed = value.parse().context("--seed")?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.loss),
        "--loss is a probability, 0 to 1"
    );
    Ok(args)
}

/// SplitMix64: small, seeded, and enough for "which packet to drop".
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A packet's delay: `delay` plus a uniform jitter in `[-jitter, +jitter]`, never negative.
fn delay_of(rng: &mut Rng, delay: Duration, jitter: Duration) -> Duration {
    let j = jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
    Duration::from_secs_f64((delay.as_secs_f64() + j).max(0.0))
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let mut queue = nfq::Queue::open().context("opening the netfilter queue socket")?;
    queue
        .bind(args.queue)
        .with_context(|| format!("binding queue {}", args.queue))?;
    // Packets are given back unchanged: only their headers are read.
    queue.set_copy_range(args.queue, 64)?;
    queue.set_fail_open(args.queue, true)?;
    queue.set_nonblocking(true);
    println!("bound queue {} {args:?}", args.queue);
    let mut rng = Rng(args.seed);
    let mut held: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut packets: std::collections::HashMap<u64, nfq::Message> = Default::default();
    let mut n = 0u64;
    loop {
        // Take what arrived.
        loop {
            match queue.recv() {
                Ok(mut msg) => {
                    if rng.unit() < args.loss {
                        msg.set_verdict(nfq::Verdict::Drop);
                        queue.verdict(msg)?;
                        continue;
                    }
                    n += 1;
                    let due = tests::clock::now() + delay_of(&mut rng, args.delay, args.jitter);
                    held.push(Reverse((due, n)));
                    packets.insert(n, msg);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("reading the queue"),
            }
        }
        // Give back what is due.
        let now = tests::clock::now();
        while let Some(Reverse((due, id))) = held.peek().copied() {
            if due > now {
                break;
            }
            held.pop();
            if let Some(mut msg) = packets.remove(&id) {
                msg.set_verdict(nfq::Verdict::Accept);
                queue.verdict(msg)?;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
