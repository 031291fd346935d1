//! Shared by the Kafka integration tests: a generated history with what `replay`
//! makes of it, the comparison of a live path's status changes with it, and (in
//! [`service`]) the service binary as a process.
#![allow(dead_code)] // each test crate uses part of it

pub mod service;

use churnwatch::core::policy::Policy;
use churnwatch::core::time::Ts;
use churnwatch::edge::kafka::config::Config;
use churnwatch::edge::replay::{replay, ReplayOptions};
use churnwatch::generate::{generate, GenConfig};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A service config for the in-process tests on librdkafka's mock cluster: topics made
/// by the test, state in `state`, commits every 200 ms, no ticks, an admin port of the
/// system's choice, and waits long enough for a loaded test machine.
pub fn mock_service_config(bootstrap: &str, state: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = bootstrap.to_string();
    cfg.output.create_topics = false;
    cfg.state.dir = state.to_path_buf();
    cfg.state.commit_interval_ms = 200;
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.ticks.interval_ms = 0;
    cfg.input.align_wait_ms = 10_000;
    cfg.metrics.lag_interval_ms = 100;
    cfg.shutdown.drain_timeout_ms = 20_000;
    cfg
}

/// A generated history and replay's results on it.
pub struct History {
    pub _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub events: PathBuf,
    /// Stream time after the final tick less the allowed lateness: the changes the
    /// live path has finalised.
    pub cutoff: Ts,
    /// Replay's status changes up to the cutoff, by event id.
    pub expected: BTreeMap<String, Value>,
    /// Replay's dead letters as (error code, raw record).
    pub dead: Vec<(String, String)>,
}

/// `customers` × 2 years with no events later than the lateness, replayed.
pub fn history(customers: u64, seed: u64) -> History {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let g = generate(
        &GenConfig {
            customers,
            dealers: 3,
            years: 2,
            seed,
            // Events beyond the allowed lateness are judged against each engine's own
            // stream time, which differs between one file and per-partition streams.
            late_rate: 0.0,
            ..GenConfig::default()
        },
        &dir.join("history"),
        &mut |_| {},
    )
    .unwrap();
    let events = g
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .unwrap()
        .clone();
    let mut opts = ReplayOptions::new(
        vec![events.clone()],
        dir.join("replay-store"),
        dir.join("replay.jsonl"),
    );
    opts.dead_letter = dir.join("replay-dead.jsonl");
    opts.fresh = true;
    replay(&opts, &mut |_| {}).unwrap();
    let lateness = Policy::default().stream.allowed_lateness_minutes as i64 * 60_000;
    let cutoff = Ts(g.end.0 - lateness);
    let mut expected = BTreeMap::new();
    for line in std::fs::read_to_string(dir.join("replay.jsonl"))
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        if Ts::parse_rfc3339(v["event_time"].as_str().unwrap()).unwrap() <= cutoff {
            expected.insert(v["event_id"].as_str().unwrap().to_string(), v);
        }
    }
    assert!(expected.len() > 100, "the history yields status changes");
    let mut dead = Vec::new();
    for line in std::fs::read_to_string(&opts.dead_letter).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        // Both edges name dead letters alike (the driver decides them).
        let code = v["code"].as_str().unwrap();
        dead.push((code.to_string(), v["raw"].as_str().unwrap().to_string()));
    }
    dead.sort();
    assert!(!dead.is_empty(), "the generated history has dirty lines");
    History {
        _tmp: tmp,
        dir,
        events,
        cutoff,
        expected,
        dead,
    }
}

/// Asserts a live path's status changes (by event id) are exactly replay's up to the
/// cutoff.
pub fn assert_same(h: &History, got: &BTreeMap<String, Value>) {
    for (id, v) in got {
        let t = Ts::parse_rfc3339(v["event_time"].as_str().unwrap()).unwrap();
        assert!(t <= h.cutoff, "change {id} after the cutoff");
    }
    let missing: Vec<&Value> = h
        .expected
        .iter()
        .filter(|(k, _)| !got.contains_key(*k))
        .map(|(_, v)| v)
        .take(3)
        .collect();
    let extra: Vec<&Value> = got
        .iter()
        .filter(|(k, _)| !h.expected.contains_key(*k))
        .map(|(_, v)| v)
        .take(3)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "live path vs replay: {} expected, {} got; missing e.g. {missing:?}, extra e.g. {extra:?}",
        h.expected.len(),
        got.len(),
    );
    for (id, want) in &h.expected {
        assert_eq!(&got[id], want, "change {id}: live path vs replay");
    }
}

/// The number of records in `topic` (the sum of its partitions' end offsets; nothing
/// is ever deleted from the mock cluster's topics at this size).
pub fn topic_end(client: &rdkafka::ClientConfig, topic: &str) -> u64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = client.create().unwrap();
    let md = c
        .fetch_metadata(Some(topic), std::time::Duration::from_secs(10))
        .unwrap();
    md.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (lo, hi) = c
                .fetch_watermarks(topic, p.id(), std::time::Duration::from_secs(10))
                .unwrap();
            assert_eq!(lo, 0, "nothing deleted");
            hi as u64
        })
        .sum()
}

/// The status changes on the mock cluster's (or any broker's) `customer-status` topic,
/// read to its end and at least `min` of them: every duplicate must be byte-identical
/// to the first copy (an identical re-delivery) and every record keyed by its
/// customer. Returns them by event id.
pub fn changes_by_id(bootstrap: &str, min: usize) -> BTreeMap<String, Value> {
    use rdkafka::Message;
    let mut client = rdkafka::ClientConfig::new();
    client.set("bootstrap.servers", bootstrap);
    // Everything on the topic: acks that came after a delivery wait gave up are on it
    // but were never counted.
    let min = min.max(topic_end(&client, "customer-status") as usize);
    let msgs = churnwatch::edge::kafka::io::read_topic(
        &client,
        "customer-status",
        std::time::Duration::from_secs(60),
        |m| m.len() >= min,
    )
    .unwrap();
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    for m in &msgs {
        let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        let id = v["event_id"].as_str().unwrap().to_string();
        assert_eq!(
            m.key().unwrap(),
            v["customer_id"].as_str().unwrap().as_bytes(),
            "keyed by customer"
        );
        if let Some(prev) = by_id.get(&id) {
            assert_eq!(prev, &v, "a re-delivered change must be identical");
        }
        by_id.insert(id, v);
    }
    by_id
}

/// Calls `f` every `step` until it gives a value; fails the test naming `what` when
/// `timeout` passes first.
pub fn wait_until<T>(
    what: &str,
    timeout: std::time::Duration,
    step: std::time::Duration,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(step);
    }
}
