//! Rebalances in the middle of a burst, against librdkafka's mock cluster: three
//! service instances in one consumer group (each with its own state directory) join
//! and leave again and again while the history is being produced in chunks. Every
//! live instance must keep its processing loop reporting, every stop must end within
//! its drain bound, and in the end the status changes on the topic must be exactly
//! what `replay` makes of the same history (identical re-deliveries aside).
//!
//! The rebalance callback runs inside the consumer's `poll`: a loop that polls while
//! holding state the callback needs deadlocks here, and the watchdogs below turn that
//! hang into a failure within seconds.

mod common;

use churnwatch::core::policy::Policy;
use churnwatch::edge::kafka::config::Config;
use churnwatch::edge::kafka::io::{backfill_jsonl, mock_cluster, read_topic};
use churnwatch::edge::kafka::{start, Running};
use common::{assert_same, history, topic_end};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Enough partitions for three members to own some each.
const PARTITIONS: i32 = 8;
/// Customers in the generated history (two years each).
const CUSTOMERS: u64 = 1500;
/// The history is produced in this many chunks…
const CHUNKS: usize = 40;
/// …one every so often, while the members come and go.
const CHUNK_EVERY: Duration = Duration::from_millis(500);
/// The group notices a member that went away after this long (the mock cluster ignores
/// LeaveGroup), and a rebalance waits about this long less a second for the members.
const SESSION_TIMEOUT_MS: u64 = 2500;
/// A drain's bound.
const DRAIN_MS: u64 = 10_000;
/// A stop returns within the drain bound plus the admin server's and the runtime's
/// own bounded shutdown (5 s + 1 s) and some slack for a busy machine.
const STOP_BOUND: Duration = Duration::from_millis(DRAIN_MS + 10_000);
/// The loop reports at least every 50 ms; a delivery may keep it away up to the drain
/// bound, a revoke up to its own bound. Past this it is stuck.
const SILENCE_LIMIT: Duration = Duration::from_millis(DRAIN_MS + 5_000);

fn config(bootstrap: &str, state: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = bootstrap.to_string();
    for (k, v) in [
        ("session.timeout.ms", SESSION_TIMEOUT_MS.to_string()),
        ("heartbeat.interval.ms", "250".to_string()),
    ] {
        cfg.kafka.consumer.insert(k.to_string(), v);
    }
    // One input topic for every record type: a partition then reads its records in the
    // order they were produced, however the production and the reads interleave. (With
    // a topic per type, a topic read up to a stale log end lets the others run ahead
    // of it when records keep arriving in chunks of days: late events, unlike replay.)
    for t in [
        &mut cfg.input.repair_orders,
        &mut cfg.input.visits,
        &mut cfg.input.contracts,
    ] {
        t.topic = "after-sales-events".into();
    }
    cfg.output.create_topics = false;
    cfg.state.dir = state.to_path_buf();
    // Small, frequent commits: rebalances land between and during deliveries.
    cfg.state.commit_interval_ms = 100;
    cfg.state.commit_max_records = 50;
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.ticks.interval_ms = 0;
    cfg.input.align_wait_ms = 10_000;
    cfg.metrics.lag_interval_ms = 100;
    cfg.shutdown.drain_timeout_ms = DRAIN_MS;
    cfg.shutdown.revoke_timeout_ms = 5_000;
    cfg
}

/// One member of the group: its state directory survives its restarts.
struct Member {
    name: &'static str,
    state: PathBuf,
    running: Option<Running>,
    /// Incarnations started so far.
    started: u32,
    /// Incarnations that owned partitions at some point.
    owned: u32,
    owning: bool,
    /// Status changes acknowledged by the broker, over every incarnation.
    published: u64,
    /// Records handed on, over every incarnation.
    processed: u64,
}

impl Member {
    fn new(name: &'static str, dir: &Path) -> Self {
        Member {
            name,
            state: dir.join(name),
            running: None,
            started: 0,
            owned: 0,
            owning: false,
            published: 0,
            processed: 0,
        }
    }

    fn start(&mut self, bs: &str) {
        assert!(self.running.is_none());
        self.running = Some(start(config(bs, &self.state), Policy::default()).unwrap());
        self.started += 1;
        self.owning = false;
        eprintln!("[{:?}] {} started", now(), self.name);
    }

    /// Stops with a drain; fails when the stop does not return within its bound.
    fn stop(&mut self) {
        let r = self.running.take().expect("running");
        let shared = r.shared.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(r.stop().map(|s| s.processed).map_err(|e| e.to_string()));
        });
        let sent = Instant::now();
        match rx.recv_timeout(STOP_BOUND) {
            Ok(Ok(processed)) => {
                self.processed += processed;
                eprintln!(
                    "[{:?}] {} stopped in {:?} ({processed} processed)",
                    now(),
                    self.name,
                    sent.elapsed()
                );
            }
            Ok(Err(e)) => panic!("{} stopped with an error: {e}", self.name),
            Err(_) => panic!(
                "{} did not stop within {STOP_BOUND:?} (its loop last reported {:?} ago): \
                 a stuck processing loop",
                self.name,
                shared.silent_for()
            ),
        }
        self.published += shared.published().changes;
    }

    /// Fails when the instance's loop stopped reporting or ended on its own.
    fn check(&mut self) {
        let Some(r) = &self.running else { return };
        let silent = r.shared.silent_for();
        assert!(
            silent < SILENCE_LIMIT,
            "{}: the processing loop has not reported for {silent:?} (deadlocked?); \
             partitions owned: {:?}",
            self.name,
            r.shared.partitions()
        );
        if r.is_finished() {
            let e = self.running.take().unwrap().wait();
            panic!("{} ended on its own: {e:?}", self.name);
        }
        if r.shared.partitions().0 > 0 && !self.owning {
            self.owning = true;
            self.owned += 1;
        }
    }
}

fn now() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Lets `d` pass while watching every live member.
fn watch(members: &mut [Member], d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        for m in members.iter_mut() {
            m.check();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Watches until the live members own every partition between them and have handed
/// on, committed and delivered everything (three times in a row).
fn wait_caught_up(members: &mut [Member], timeout: Duration) {
    let started = Instant::now();
    let mut stable = 0;
    while stable < 3 {
        assert!(
            started.elapsed() < timeout,
            "not caught up within {timeout:?}: {:?}",
            members
                .iter()
                .filter_map(|m| m.running.as_ref().map(|r| (
                    m.name,
                    r.shared.partitions(),
                    r.shared.caught_up()
                )))
                .collect::<Vec<_>>()
        );
        watch(members, Duration::from_millis(300));
        let live: Vec<&Running> = members.iter().filter_map(|m| m.running.as_ref()).collect();
        let owned: usize = live.iter().map(|r| r.shared.partitions().0).sum();
        if owned == PARTITIONS as usize && live.iter().all(|r| r.shared.caught_up()) {
            stable += 1;
        } else {
            stable = 0;
        }
    }
}

/// Splits the history into `CHUNKS` files of consecutive lines.
fn chunks(events: &Path, dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string(events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let per = lines.len().div_ceil(CHUNKS);
    lines
        .chunks(per)
        .enumerate()
        .map(|(i, c)| {
            let p = dir.join(format!("chunk-{i}.jsonl"));
            std::fs::write(&p, c.join("\n") + "\n").unwrap();
            p
        })
        .collect()
}

#[test]
fn members_joining_and_leaving_during_a_burst_lose_and_block_nothing() {
    let h = history(CUSTOMERS, 21);
    let cluster = mock_cluster(&config("", &h.dir.join("probe")), PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    // Records flow the whole time: a chunk every `CHUNK_EVERY` from a thread of its own.
    let producing = config(&bs, &h.dir.join("producer"));
    let parts = chunks(&h.events, &h.dir);
    let producer = std::thread::spawn(move || {
        for c in parts {
            let b = backfill_jsonl(&producing, &c, PARTITIONS).unwrap();
            eprintln!("[{:?}] produced {} records", now(), b.records);
            std::thread::sleep(CHUNK_EVERY);
        }
    });
    let mut m = [
        Member::new("a", &h.dir),
        Member::new("b", &h.dir),
        Member::new("c", &h.dir),
    ];
    let pause = Duration::from_millis(SESSION_TIMEOUT_MS + 500);
    // Joins, leaves and rejoins (with the state left behind): each one a rebalance
    // while records are being read.
    m[0].start(&bs);
    watch(&mut m, pause);
    m[1].start(&bs);
    watch(&mut m, pause);
    m[2].start(&bs);
    watch(&mut m, pause);
    m[1].stop();
    watch(&mut m, pause);
    m[1].start(&bs);
    watch(&mut m, Duration::from_millis(500));
    m[2].stop();
    watch(&mut m, pause);
    m[0].stop();
    watch(&mut m, pause);
    m[2].start(&bs);
    m[0].start(&bs);
    watch(&mut m, pause);
    m[1].stop();
    watch(&mut m, pause);
    m[1].start(&bs);
    while !producer.is_finished() {
        watch(&mut m, Duration::from_millis(200));
    }
    producer.join().unwrap();
    wait_caught_up(&mut m, Duration::from_secs(90));
    for x in m.iter_mut().filter(|x| x.running.is_some()) {
        x.stop();
    }
    let incarnations: u32 = m.iter().map(|x| x.started).sum();
    let owned: u32 = m.iter().map(|x| x.owned).sum();
    eprintln!(
        "[{:?}] {owned} of {incarnations} incarnations owned partitions",
        now()
    );
    assert!(
        owned >= 5,
        "the membership changes led to assignments: {owned} of {incarnations}"
    );
    let processed: u64 = m.iter().map(|x| x.processed).sum();
    let published: u64 = m.iter().map(|x| x.published).sum();
    assert!(processed > 0);
    // Read the whole status topic: up to its end offsets (a delivery cut short by a
    // revoke or a stop may have landed without being counted as published).
    let client = {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &bs);
        c
    };
    let end = topic_end(&client, "customer-status");
    let msgs = read_topic(&client, "customer-status", Duration::from_secs(60), |r| {
        r.len() as u64 >= end
    })
    .unwrap();
    eprintln!(
        "[{:?}] {published} changes acknowledged, {end} on the topic",
        now()
    );
    let mut got: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for r in &msgs {
        let v: serde_json::Value = serde_json::from_slice(r.payload().unwrap()).unwrap();
        let id = v["event_id"].as_str().unwrap().to_string();
        if let Some(prev) = got.get(&id) {
            assert_eq!(prev, &v, "a re-delivered change must be identical");
        }
        got.insert(id, v);
    }
    eprintln!(
        "[{:?}] {} changes read ({} distinct), {} expected",
        now(),
        msgs.len(),
        got.len(),
        h.expected.len()
    );
    assert_same(&h, &got);
}
