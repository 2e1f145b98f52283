//! Faults across real hosts (see `tests/src/faults/`): three TSDB nodes, two gateways, Redis
//! and a client, each in a network namespace of its own, started from the release binaries.
//! Every test runs the workload through the gateways while a fault lasts, heals it, waits
//! for the pool to converge, and runs the checker: every acknowledged point on every node
//! exactly once, nothing no client wrote. Each leaves a row for `docs/reliability.md`.
//!
//! Three run in CI (a node isolated from its peers, a gateway cut from Redis, a full disk);
//! the whole matrix runs with `scripts/faults.sh` (`--run-ignored all`). Where namespaces
//! cannot be made (not root, no iproute2), each test says so and passes without running.

use std::time::Duration;

use tests::clock;
use tests::faults::checker::{self, Outcome};
use tests::faults::cluster::{
    Cluster, Options, HEALTH_INTERVAL_MS, HEALTH_TIMEOUT_MS, NODES, UNHEALTHY_THRESHOLD,
};
use tests::faults::net::{Impairment, LabError};
use tests::faults::report::FaultReport;
use tests::faults::workload::{self, Log, Plan, Workload};
use tests::{http, wait};

/// How long the pool may take to agree after a heal.
const CONVERGE_PATIENCE: Duration = Duration::from_secs(60);

/// The cluster, or `None` (with the reason printed) where this machine cannot build it.
fn cluster(options: Options) -> Option<Cluster> {
    match Cluster::start(options) {
        Ok(c) => Some(c),
        Err(LabError::Unavailable(why)) => {
            eprintln!("skipped: {why}");
            None
        }
        Err(LabError::Failed(e)) => panic!("building the lab: {e:#}"),
    }
}

fn plan(c: &Cluster) -> Plan {
    Plan {
        targets: c.gateway_urls(),
        writers: 4,
        readers: 2,
        batch: 5,
        interval: Duration::from_millis(20),
        // Whole seconds: every id's time is exact in any precision.
        base_ns: (clock::wall_ns() / 1_000_000_000 * 1_000_000_000) as i64,
    }
}

/// Waits (bounded) until every node holds at least `acked` of the workload's points: the
/// system works before the fault.
fn warm_up(c: &Cluster, acked: i64) {
    wait::eventually(
        "the workload to get writes acknowledged before the fault",
        |last| {
            let counts: Vec<i64> = (0..NODES).map(|i| c.count(i).unwrap_or(-1)).collect();
            *last = format!("points per node: {counts:?}");
            Ok(counts.iter().all(|n| *n >= acked).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", c.logs(3000)));
}

/// A cluster with the workload running through its gateways, shown to work before the
/// fault: what every fault test starts from.
struct Loaded {
    c: Cluster,
    p: Plan,
    w: Workload,
}

/// [`Loaded`], or `None` where this machine cannot build the cluster.
fn loaded(options: Options) -> Option<Loaded> {
    let c = cluster(options)?;
    let p = plan(&c);
    let w = Workload::start(&p);
    warm_up(&c, 20);
    Some(Loaded { c, p, w })
}

/// Holds the fault for `duration`, noting what `observe` sees every half second.
fn hold(duration: Duration, observe: &mut dyn FnMut() -> String) -> Vec<String> {
    let start = clock::now();
    let mut seen = Vec::new();
    // Bounded: one observation per half second of the fault, plus one.
    for _ in 0..=(duration.as_millis() / 500) {
        let note = observe();
        if seen.last() != Some(&note) {
            seen.push(note);
        }
        let left = duration.saturating_sub(clock::now().duration_since(start));
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(500)));
    }
    seen
}

/// After the heal: the workload stops, the pool converges, the checker runs; returns the
/// report row (the checker's verdict asserted), with what was `observed` during the fault.
/// `direct` are writes the test sent itself (straight to a node), checked with the
/// workload's.
fn finish(
    c: &Cluster,
    w: Workload,
    p: &Plan,
    (fault, description): (&str, &str),
    observed: Vec<String>,
    direct: &[checker::Attempt],
) -> (Log, FaultReport) {
    let mut log = w.stop();
    log.writes.extend_from_slice(direct);
    // The checker runs even when the pool does not converge: what it finds names the
    // points that never arrived.
    let converged = c.converge(CONVERGE_PATIENCE);
    let rows = c
        .all_rows()
        .unwrap_or_else(|e| panic!("reading the nodes: {e:#}"));
    let verdict = checker::check(p.base_ns, &log.writes, &rows);
    let converged = converged
        .unwrap_or_else(|e| panic!("{e:#}\nchecker: {}\n{}", verdict.describe(), c.logs(4000)));
    let mut report = FaultReport::new(fault, description, &log, &verdict);
    report.converge_ms = converged.as_millis() as u64;
    report.observed = observed;
    assert!(
        verdict.holds(),
        "the checker found lost, duplicated or phantom points after {fault}:\n{}\n{}",
        verdict.describe(),
        c.logs(3000)
    );
    assert!(
        verdict.acknowledged_points > 0,
        "nothing was acknowledged: {}",
        verdict.describe()
    );
    (log, report)
}

/// A metric's value for the report: the number, or `absent`.
fn shown(v: Option<f64>) -> String {
    v.map_or_else(|| "absent".into(), |v| v.to_string())
}

fn five_xx(outcomes: &[&Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Status(s) if *s >= 500))
        .count()
}

#[test]
fn a_node_isolated_from_its_peers_keeps_accepting_writes_and_converges_after_the_heal() {
    let Some(Loaded { mut c, p, w }) = loaded(Options::default()) else {
        return;
    };

    c.isolate_node(2).unwrap();
    // AP: the isolated node takes a write of its own while its peers cannot hear it.
    let direct_ids = [9_000_000_000u64, 9_000_000_001];
    let (status, body) = http::write(
        c.node_addr(2),
        workload::DATABASE,
        &workload::lines(p.base_ns, 99, &direct_ids),
        Some("ns"),
    )
    .unwrap();
    assert_eq!(status, 204, "the isolated node refused a write: {body}");
    // The replication links show the lag.
    wait::eventually("n0's replication link to n2 to show lag", |last| {
        let lag = c.lag(0, 2);
        *last = format!("lag {lag:?}; {}", c.node_health(0));
        Ok(lag.is_some_and(|l| l > 0).then_some(()))
    })
    .unwrap();
    let observed = hold(Duration::from_secs(3), &mut || {
        format!(
            "n0 /health: {}; n2 /health: {}",
            c.node_health(0),
            c.node_health(2)
        )
    });
    c.heal().unwrap();
    // The direct write is acknowledged like the others: it must be everywhere now.
    let direct = checker::Attempt {
        ids: direct_ids.to_vec(),
        outcome: Outcome::Status(204),
        at_ms: 0,
    };
    let (_, mut report) = finish(
        &c,
        w,
        &p,
        (
            "isolate-node",
            "n2 cut off from n0 and n1 (gateways and clients still reach it) for 3 s",
        ),
        observed,
        &[direct],
    );
    report.notes.push(
        "a write sent straight to n2 while it was isolated: 204, and on every node after the heal"
            .into(),
    );
    report.publish();
}

#[test]
fn a_gateway_cut_from_redis_follows_on_limiter_error_and_answers_no_5xx() {
    let Some(Loaded { mut c, p, w }) = loaded(Options::default()) else {
        return;
    };
    let redis_up = |c: &Cluster| c.gateway_metric(0, "gateway_ratelimit_redis_up", "");
    assert_eq!(
        redis_up(&c),
        Some(1.0),
        "gw0 is connected to redis before the fault"
    );

    c.cut_from_redis(0).unwrap();
    wait::eventually("gw0 to see redis gone", |last| {
        let up = redis_up(&c);
        *last = format!("gateway_ratelimit_redis_up {up:?}");
        Ok((up == Some(0.0)).then_some(()))
    })
    .unwrap();
    let observed = hold(Duration::from_secs(3), &mut || {
        format!(
            "gw0 gateway_ratelimit_redis_up {}, gw1 {}",
            shown(redis_up(&c)),
            shown(c.gateway_metric(1, "gateway_ratelimit_redis_up", ""))
        )
    });
    c.heal().unwrap();
    wait::eventually("gw0 to reconnect to redis", |last| {
        let up = redis_up(&c);
        *last = format!("gateway_ratelimit_redis_up {up:?}");
        Ok((up == Some(1.0)).then_some(()))
    })
    .unwrap();
    let (log, mut report) = finish(
        &c,
        w,
        &p,
        (
            "gateway-cut-from-redis",
            "gw0 cannot reach Redis for 3 s (global query limit, on_limiter_error: fail_open)",
        ),
        observed,
        &[],
    );
    let all: Vec<&Outcome> = log
        .reads
        .iter()
        .map(|r| &r.outcome)
        .chain(log.writes.iter().map(|a| &a.outcome))
        .collect();
    assert_eq!(
        five_xx(&all),
        0,
        "a 5xx while redis was away: {:?}",
        report.reads
    );
    // Decided without Redis, by the fallback `on_limiter_error: fail_open` names.
    let without_redis: f64 = ["fallback", "unavailable"]
        .iter()
        .filter_map(|source| {
            c.gateway_metric(
                0,
                "gateway_ratelimit_decisions_total",
                &format!("source=\"{source}\""),
            )
        })
        .sum();
    assert!(
        without_redis > 0.0,
        "gw0 counted no decision taken without redis"
    );
    report.notes.push(format!(
        "gw0 took {without_redis} limit decisions without Redis (fail_open: admitted)"
    ));
    report.publish();
}

#[test]
fn a_full_disk_answers_507_with_the_reason_and_the_node_recovers_when_space_returns() {
    let Some(Loaded { mut c, p, w }) = loaded(Options {
        small_disk: Some((2, 48 << 20)),
        ..Options::default()
    }) else {
        return;
    };

    let filled = c.fill_disk(2).unwrap();
    let n2 = c.node_addr(2);
    // Writes straight to n2 until one is refused: what still fits in pages its files already
    // hold may be taken first. Every one of them is checked like the workload's.
    let mut direct = Vec::new();
    let mut refusal = None;
    for k in 0..2_000u64 {
        let ids: Vec<u64> = (0..50).map(|j| 9_100_000_000 + k * 50 + j).collect();
        let (status, body) = http::write(
            &n2,
            workload::DATABASE,
            &workload::lines(p.base_ns, 98, &ids),
            Some("ns"),
        )
        .unwrap();
        direct.push(checker::Attempt {
            ids,
            outcome: Outcome::Status(status),
            at_ms: 0,
        });
        if status != 204 {
            refusal = Some((status, body));
            break;
        }
    }
    let Some((status, body)) = refusal else {
        // What n2 acknowledged must be there: the checker says whether it is.
        let mut log = w.stop();
        log.writes.extend(direct);
        let rows = [("n2".to_string(), c.rows(2).unwrap())];
        let verdict = checker::check(p.base_ns, &log.writes, &rows);
        panic!(
            "n2 acknowledged 100,000 points on a full disk; checker: {}",
            verdict.describe()
        );
    };
    assert_eq!(status, 507, "a write to a full disk: {body}");
    assert!(
        body.contains("insufficient storage") && body.contains("No space left"),
        "{body}"
    );
    let observed = hold(Duration::from_secs(3), &mut || {
        format!(
            "n2 /health: {}; tsdb_disk_full {}",
            c.node_health(2),
            shown(c.node_metric(2, "tsdb_disk_full", ""))
        )
    });
    assert!(
        observed.iter().any(|o| o.contains("disk full")),
        "{observed:?}"
    );
    // Still running (not only started once): a crash would show here.
    for (i, n) in c.nodes.iter_mut().enumerate() {
        assert_eq!(
            n.exited(),
            None,
            "n{i} exited on a full disk:\n{}",
            n.log_tail(3000)
        );
    }

    c.free_disk(2).unwrap();
    // By itself: no restart, no operator.
    wait::eventually("n2 to accept writes again once space returned", |last| {
        let ids = vec![9_200_000_000 + direct.len() as u64];
        let (status, body) = http::write(
            &n2,
            workload::DATABASE,
            &workload::lines(p.base_ns, 98, &ids),
            Some("ns"),
        )?;
        direct.push(checker::Attempt {
            ids,
            outcome: Outcome::Status(status),
            at_ms: 0,
        });
        *last = format!("{status} {body}");
        Ok((status == 204).then_some(()))
    })
    .unwrap();
    let (_, mut report) = finish(
        &c,
        w,
        &p,
        ("full-disk", "n2's data directory (a 48 MiB file system) filled until writes fail, for 3 s, then freed"),
        observed,
        &direct,
    );
    report.notes.push(format!(
        "filled with {} MiB; a write straight to n2 meanwhile: 507 `{}`",
        filled >> 20,
        // The report names no machine's paths.
        body.trim()
            .replace(&c.data_dir(2).display().to_string(), "<data-dir>")
    ));
    report.publish();
}

#[test]
#[ignore = "part of the full fault matrix: scripts/faults.sh"]
fn an_isolated_node_further_behind_than_the_backlog_is_resynchronised_after_the_heal() {
    // A backlog of 16 KiB: a few seconds apart, the peers no longer hold what n2 lacks and
    // must send it their state instead of their log.
    let Some(Loaded { mut c, p, w }) = loaded(Options {
        node_args: vec!["--replication-backlog-bytes".into(), "16384".into()],
        ..Options::default()
    }) else {
        return;
    };
    c.isolate_node(2).unwrap();
    let observed = hold(Duration::from_secs(4), &mut || {
        format!("n0 /health: {}", c.node_health(0))
    });
    c.heal().unwrap();
    let (_, mut report) = finish(
        &c,
        w,
        &p,
        ("isolate-past-backlog", "n2 isolated for 4 s from peers that keep a 16 KiB replication backlog: it is resynchronised from their state"),
        observed,
        &[],
    );
    let resyncs = c.node_metric(0, "tsdb_replication_resyncs_total", "10.77.0.13");
    report
        .notes
        .push(format!("n0 resynchronised n2 {} time(s)", shown(resyncs)));
    report.publish();
}

#[test]
#[ignore = "part of the full fault matrix: scripts/faults.sh"]
fn a_pool_split_two_to_one_keeps_both_sides_writable_and_converges() {
    let Some(Loaded { mut c, p, w }) = loaded(Options::default()) else {
        return;
    };
    c.split_pool().unwrap();
    let observed = hold(Duration::from_secs(5), &mut || {
        format!(
            "gw0 sees: {}; gw1 sees: {}",
            c.gateway_view(0),
            c.gateway_view(1)
        )
    });
    c.heal().unwrap();
    let (_, report) = finish(
        &c,
        w,
        &p,
        (
            "split-2-1",
            "n0, n1 and gw0 on one side, n2 and gw1 on the other, for 5 s",
        ),
        observed,
        &[],
    );
    report.publish();
}

#[test]
#[ignore = "part of the full fault matrix: scripts/faults.sh"]
fn one_way_loss_between_nodes_loses_nothing_acknowledged() {
    let Some(Loaded { mut c, p, w }) = loaded(Options::default()) else {
        return;
    };
    c.lose_one_way(0, 1, 0.3).unwrap();
    c.lose_one_way(1, 2, 0.3).unwrap();
    let observed = hold(Duration::from_secs(5), &mut || {
        format!("n0 /health: {}", c.node_health(0))
    });
    c.heal().unwrap();
    let (_, report) = finish(
        &c,
        w,
        &p,
        (
            "one-way-loss",
            "30 % of packets n0→n1 and n1→n2 dropped (that way only) for 5 s",
        ),
        observed,
        &[],
    );
    report.publish();
}

#[test]
#[ignore = "part of the full fault matrix: scripts/faults.sh"]
fn a_slow_lossy_link_is_routed_around_within_the_request_timeout() {
    let Some(Loaded { mut c, p, w }) = loaded(Options::default()) else {
        return;
    };
    c.slow_link(
        1,
        Impairment {
            delay: Duration::from_millis(200),
            jitter: Duration::from_millis(50),
            loss: 0.05,
        },
    )
    .unwrap();
    let observed = hold(Duration::from_secs(6), &mut || {
        format!("gw0 sees: {}", c.gateway_view(0))
    });
    c.heal().unwrap();
    let (log, report) = finish(
        &c,
        w,
        &p,
        (
            "slow-link",
            "everything n1 sends delayed 200 ms ± 50 ms and 5 % lost, for 6 s",
        ),
        observed,
        &[],
    );
    let timeouts = log
        .writes
        .iter()
        .filter(|a| a.outcome.label().contains("timeout"))
        .count();
    assert_eq!(
        timeouts, 0,
        "a client waited past its 5 s timeout: the gateway did not bound the slow node"
    );
    report.publish();
}

#[test]
#[ignore = "part of the full fault matrix: scripts/faults.sh"]
fn a_paused_node_is_failed_over_within_the_health_check_thresholds() {
    let Some(Loaded { c, p, w }) = loaded(Options::default()) else {
        return;
    };
    assert!(c.nodes[1].pause());
    let paused = clock::now();
    wait::eventually("both gateways to mark the paused node unhealthy", |last| {
        *last = format!("gw0: {}; gw1: {}", c.gateway_view(0), c.gateway_view(1));
        Ok((c.gateway_view(0).contains("10.77.0.12:8086 unhealthy")
            && c.gateway_view(1).contains("10.77.0.12:8086 unhealthy"))
        .then_some(()))
    })
    .unwrap();
    let detected = clock::now().duration_since(paused);
    // What the settings allow: the failing checks, one interval of phase, the last check's
    // timeout; plus 2 s for a loaded machine and the polling above.
    let allowed = Duration::from_millis(
        (UNHEALTHY_THRESHOLD + 1) * HEALTH_INTERVAL_MS + HEALTH_TIMEOUT_MS + 2_000,
    );
    assert!(
        detected <= allowed,
        "the gateways took {detected:?} to mark a paused node down (allowed {allowed:?})"
    );
    let observed = hold(Duration::from_secs(3), &mut || {
        format!("gw0 sees: {}", c.gateway_view(0))
    });
    assert!(c.nodes[1].resume());
    let (_, mut report) = finish(
        &c,
        w,
        &p,
        (
            "pause-node",
            "n1 stopped with SIGSTOP for about 5 s, then SIGCONT",
        ),
        observed,
        &[],
    );
    report.notes.push(format!(
        "both gateways marked n1 unhealthy {} ms after the pause (checks every \
         {HEALTH_INTERVAL_MS} ms, {HEALTH_TIMEOUT_MS} ms timeout, {UNHEALTHY_THRESHOLD} failures)",
        detected.as_millis()
    ));
    report.publish();
}

#[test]
#[ignore = "part of the full fault matrix: scripts/faults.sh"]
fn a_node_killed_and_restarted_loses_nothing_acknowledged() {
    let Some(Loaded { mut c, p, w }) = loaded(Options::default()) else {
        return;
    };
    c.nodes[0].kill9();
    let observed = hold(Duration::from_secs(2), &mut || {
        format!("gw0 sees: {}", c.gateway_view(0))
    });
    c.restart_node(0).unwrap();
    let (_, report) = finish(
        &c,
        w,
        &p,
        (
            "kill-9-restart",
            "n0 killed with SIGKILL under load, restarted 2 s later",
        ),
        observed,
        &[],
    );
    report.publish();
}

#[test]
#[ignore = "part of the full fault matrix: scripts/faults.sh"]
fn a_backup_gateway_takes_the_virtual_ip_when_the_primary_dies_or_pauses() {
    let Some(mut c) = cluster(Options::default()) else {
        return;
    };
    c.vrrp().unwrap();
    let vip = format!("http://{}:8080", tests::faults::cluster::VIRTUAL_IP);
    wait::eventually("the virtual IP to answer", |last| {
        let r = http::request("GET", &format!("{vip}/ping"), &[], None);
        *last = format!("{:?}", r.as_ref().map(|r| r.status));
        Ok(r.is_ok_and(|r| r.status == 204).then_some(()))
    })
    .unwrap();
    let mut report = FaultReport {
        fault: "vrrp-failover".into(),
        description: "two gateways share 10.77.0.50 by VRRP (keepalived, checking /readyz); the primary is paused (SIGSTOP), resumed, then killed".into(),
        ..FaultReport::default()
    };
    for (what, act) in [("paused", 0), ("killed", 1)] {
        wait::eventually_within(
            "the primary (gw0) to hold the virtual IP",
            Duration::from_secs(30),
            &mut |last| {
                *last = format!("held by {:?}", c.vip_holder());
                Ok((c.vip_holder() == Some(0)).then_some(()))
            },
        )
        .unwrap();
        let outage = measure_outage(&vip, || {
            if act == 0 {
                assert!(c.gateways[0].pause());
            } else {
                c.gateways[0].kill9();
            }
        });
        assert_eq!(c.vip_holder(), Some(1), "the backup holds the virtual IP");
        report.notes.push(format!(
            "primary {what}: clients on the virtual IP saw {outage}"
        ));
        if act == 0 {
            assert!(c.gateways[0].resume());
            // The primary takes the address back once it is ready again (preemption).
            wait::eventually("the resumed primary to be ready", |_| {
                Ok(
                    http::request("GET", &format!("{}/readyz", c.admin_url(0)), &[], None)
                        .is_ok_and(|r| r.status == 200)
                        .then_some(()),
                )
            })
            .unwrap();
        }
    }
    report.publish();
}

/// Requests `GET {vip}/ping` every 50 ms (each with a 1 s timeout) from before `fault` until
/// 20 in a row succeed after it; returns the longest run of failures as text.
fn measure_outage(vip: &str, fault: impl FnOnce()) -> String {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(1)))
        .build()
        .new_agent();
    let url = format!("{vip}/ping");
    let start = clock::now();
    fault();
    let mut failing_since: Option<std::time::Instant> = None;
    let mut worst = Duration::ZERO;
    let mut failures = 0;
    let mut ok_in_a_row = 0;
    let mut seen_failure = false;
    // Bounded: 60 s of probes.
    for _ in 0..1200 {
        let t = clock::now();
        let ok = agent.get(&url).call().is_ok_and(|r| r.status() == 204);
        if ok {
            if let Some(s) = failing_since.take() {
                worst = worst.max(t.duration_since(s));
            }
            ok_in_a_row += 1;
            if (seen_failure && ok_in_a_row >= 20) || (!seen_failure && ok_in_a_row >= 100) {
                break;
            }
        } else {
            seen_failure = true;
            failures += 1;
            ok_in_a_row = 0;
            failing_since.get_or_insert(t);
        }
        std::thread::sleep(
            Duration::from_millis(50).saturating_sub(clock::now().duration_since(t)),
        );
    }
    assert!(
        failing_since.is_none(),
        "the virtual IP did not come back within 60 s"
    );
    assert!(
        worst < Duration::from_secs(10),
        "clients saw {worst:?} without an answer"
    );
    format!(
        "{failures} failed probes, at most {:.1} s without an answer (probes every 50 ms for {:.0} s)",
        worst.as_secs_f64(),
        clock::now().duration_since(start).as_secs_f64()
    )
}
