//! Taking partitions over after a restart, on librdkafka's mock cluster: a new
//! instance with no local state restores every partition from the changelog, and one
//! with its local state resumes from it. In both, `/readyz` (the service's readiness)
//! must not pass before every assigned partition is taken over, the customer gauges
//! must be right the moment it passes, and the restored state must equal the state
//! the first instance committed.
//!
//! Each start joins a consumer group of its own: the mock cluster ignores LeaveGroup
//! and static membership, so a restart into the same group would wait for the session
//! timeout; the service seeks to the offsets kept with its state either way.

mod common;

use churnwatch::core::policy::Policy;
use churnwatch::edge::kafka::admin::AdminState;
use churnwatch::edge::kafka::config::Config;
use churnwatch::edge::kafka::io::{backfill_jsonl, mock_cluster};
use churnwatch::edge::kafka::{start, Running, Shared};
use common::history;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Enough partitions that a partition-by-partition take-over leaves gaps to see.
const PARTITIONS: i32 = 12;

fn config(bootstrap: &str, state: &Path, group: &str) -> Config {
    let mut cfg = common::mock_service_config(bootstrap, state);
    cfg.kafka.group_id = group.to_string();
    cfg.metrics.kpi_interval_ms = 600_000;
    cfg
}

/// The population gauges (customers by level, lifecycle and tier), by series.
fn population(shared: &Shared) -> BTreeMap<String, f64> {
    shared
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("churnwatch_customers"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// What the instance looked like the first time its readiness passed.
#[derive(Debug)]
struct AtReady {
    /// (assigned, ready) partitions.
    partitions: (usize, usize),
    /// Partitions restored from the changelog so far.
    restores: u64,
    /// The population gauges.
    population: BTreeMap<String, f64>,
}

/// Starts an instance and watches its readiness from the start, as closely as a
/// thread spinning on it can; returns the instance and what it showed at the first
/// pass.
fn start_and_watch(cfg: Config) -> (Running, AtReady) {
    let running = start(cfg, Policy::default()).unwrap();
    let shared: Arc<Shared> = running.shared.clone();
    let watcher = std::thread::spawn(move || {
        let started = Instant::now();
        while shared.readiness().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "never ready: {:?}",
                shared.readiness()
            );
            std::hint::spin_loop();
        }
        // Read at once, before anything else can change.
        let partitions = shared.partitions();
        let restores = shared.metrics.restores.get();
        AtReady {
            partitions,
            restores,
            population: population(&shared),
        }
    });
    let at = watcher.join().unwrap();
    (running, at)
}

fn wait_caught_up(r: &Running, timeout: Duration) {
    let started = Instant::now();
    let mut stable = 0;
    while stable < 3 {
        assert!(
            started.elapsed() < timeout,
            "not caught up within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
        if r.shared.partitions().0 == PARTITIONS as usize && r.shared.caught_up() {
            stable += 1;
        } else {
            stable = 0;
        }
    }
}

/// Every customer's state as `/customers/{id}` shows it (None: unknown, as a
/// customer named only by rejected records is).
fn states(shared: &Shared, ids: &BTreeSet<String>) -> BTreeMap<String, Option<Value>> {
    ids.iter()
        .map(|id| (id.clone(), shared.customer(id).unwrap()))
        .collect()
}

#[test]
fn readiness_waits_for_every_partition_and_gauges_and_state_are_right_at_once() {
    let h = history(300, 31);
    let probe = config("", &h.dir.join("s"), "probe");
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    backfill_jsonl(&config(&bs, &h.dir.join("a"), "a"), &h.events, PARTITIONS).unwrap();
    let ids: BTreeSet<String> = std::fs::read_to_string(&h.events)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["customer_id"].as_str().map(str::to_string))
        .collect();
    assert!(ids.len() >= 250, "{} customers", ids.len());

    // A processes the history and stops.
    let a = start(config(&bs, &h.dir.join("a"), "a"), Policy::default()).unwrap();
    wait_caught_up(&a, Duration::from_secs(120));
    let before_population = population(&a.shared);
    let total: f64 = before_population
        .iter()
        .filter(|(k, _)| k.starts_with("churnwatch_customers{"))
        .map(|(_, v)| v)
        .sum();
    assert!(
        total >= 250.0,
        "A counts its customers: {before_population:?}"
    );
    let before = states(&a.shared, &ids);
    let known = before.values().filter(|v| v.is_some()).count();
    assert!(known >= 250, "{known} customers known");
    a.stop().unwrap();

    // B has no state: every partition is restored from the changelog.
    let (b, at) = start_and_watch(config(&bs, &h.dir.join("b"), "b"));
    let all = (PARTITIONS as usize, PARTITIONS as usize);
    assert_eq!(
        at.partitions, all,
        "ready before every partition was taken over: {at:?}"
    );
    assert_eq!(
        at.restores, PARTITIONS as u64,
        "ready before every partition was restored: {at:?}"
    );
    assert_eq!(
        at.population, before_population,
        "the gauges right after the restore"
    );
    assert_eq!(
        states(&b.shared, &ids),
        before,
        "restored state = committed state"
    );
    b.stop().unwrap();

    // C resumes from B's local state: nothing restored, the same gauges at once.
    let (c, at) = start_and_watch(config(&bs, &h.dir.join("b"), "c"));
    assert_eq!(at.partitions, all, "{at:?}");
    assert_eq!(at.restores, 0, "local state is current: {at:?}");
    assert_eq!(
        at.population, before_population,
        "the gauges right after a restart with local state"
    );
    assert_eq!(states(&c.shared, &ids), before);
    c.stop().unwrap();
}
