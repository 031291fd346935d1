//! End-to-end throughput and latency of the Kafka service on librdkafka's in-process
//! mock cluster (a real Kafka-protocol broker on loopback).
//!
//! `cargo bench --bench kafka_e2e [-- CUSTOMERS [LIVE_SECONDS [LIVE_RATE [PARTITIONS]]]]`
//!
//! 1. *Throughput*: a generated history (CUSTOMERS × 3 years, default 20,000) is
//!    produced to the input topics first; the service then consumes it. Reported:
//!    records consumed per second from the first record handed to an engine until
//!    every partition is read, committed and its outbox delivered, and the status
//!    changes produced per second over the same span.
//! 2. *Latency*: with the service caught up (policy lateness 0, ticks every second),
//!    visits stamped with the wall clock are produced for known customers at
//!    LIVE_RATE per second (default 500) for LIVE_SECONDS (default 20). Each status
//!    change they cause is read back from the status topic; its latency is the status
//!    record's broker timestamp minus the visit's time. Reported: p50, p99, max.

use churnwatch::core::policy::Policy;
use churnwatch::core::time::Ts;
use churnwatch::edge::kafka::config::Config;
use churnwatch::edge::kafka::io::{backfill_jsonl, mock_cluster};
use churnwatch::edge::kafka::{start, Running};
use churnwatch::generate::{generate, GenConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use std::io::BufRead;
use std::time::{Duration, Instant};

/// Partitions per topic. librdkafka's mock cluster keeps at most 5 MB (and 100,000
/// message sets) per partition and drops older data, so the default keeps every
/// partition of a 20,000-customer history below that.
fn partitions() -> i32 {
    arg(3, 24) as i32
}

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn config(bootstrap: &str, dir: &std::path::Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = bootstrap.into();
    cfg.output.create_topics = false;
    cfg.state.dir = dir.to_path_buf();
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.ticks.interval_ms = 0;
    cfg.metrics.kpi_interval_ms = 600_000;
    cfg
}

fn wait_caught_up(r: &Running, timeout: Duration) {
    let started = Instant::now();
    let mut stable = 0;
    while stable < 3 {
        assert!(started.elapsed() < timeout, "not caught up in {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
        stable = if r.shared.caught_up() { stable + 1 } else { 0 };
    }
}

fn main() {
    let customers = arg(0, 20_000);
    let live_secs = arg(1, 20);
    let live_rate = arg(2, 500);
    let tmp = tempfile::tempdir().unwrap();
    let today = chrono::Utc::now().date_naive();
    let g = generate(
        &GenConfig {
            customers,
            dealers: 20,
            years: 3,
            seed: 5,
            start: Ts::from_date(today - chrono::Months::new(36)),
            ..GenConfig::default()
        },
        &tmp.path().join("history"),
        &mut |_| {},
    )
    .unwrap();
    let events = g
        .files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .unwrap()
        .clone();

    // 1. Throughput over a backlog.
    let probe = config("", tmp.path());
    let cluster = mock_cluster(&probe, partitions()).unwrap();
    let bs = cluster.bootstrap_servers();
    let cfg = config(&bs, &tmp.path().join("state"));
    let b = backfill_jsonl(&cfg, &events, partitions()).unwrap();
    println!(
        "backlog: {} records ({customers} customers x 3 years) in {} partitions",
        b.records,
        partitions()
    );
    let running = start(cfg, Policy::default()).unwrap();
    let m = running.shared.metrics.clone();
    while m.processed_events.get() == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let t0 = Instant::now();
    wait_caught_up(&running, Duration::from_secs(1800));
    // The last 300 ms were the stability check.
    let secs = t0.elapsed().as_secs_f64() - 0.3;
    let changes = running.shared.published().changes;
    println!(
        "  (late events {}, ticks {}, dead letters {})",
        m.late_events.get(),
        m.ticks_consumed.get(),
        running.shared.published().dead_letters
    );
    println!(
        "throughput: {} records consumed in {secs:.1} s = {:.0} records/s; {changes} status changes produced = {:.0} changes/s",
        m.processed_events.get(),
        m.processed_events.get() as f64 / secs,
        changes as f64 / secs
    );
    running.stop().unwrap();
    drop(cluster);

    // 2. Latency of live events.
    let cluster = mock_cluster(&probe, partitions()).unwrap();
    let bs = cluster.bootstrap_servers();
    let mut cfg = config(&bs, &tmp.path().join("live-state"));
    cfg.ticks.interval_ms = 1000;
    cfg.state.commit_interval_ms = 100;
    backfill_jsonl(&cfg, &events, partitions()).unwrap();
    let mut policy = Policy::default();
    policy.stream.allowed_lateness_minutes = 0;
    let running = start(cfg.clone(), policy).unwrap();
    wait_caught_up(&running, Duration::from_secs(1800));
    let mut known: Vec<(String, String)> = Vec::new();
    let f = std::fs::File::open(&events).unwrap();
    let mut seen = std::collections::HashSet::new();
    for line in std::io::BufReader::new(f).lines() {
        let v: serde_json::Value = match serde_json::from_str(&line.unwrap()) {
            Ok(v) => v,
            Err(_) => continue,
        };
        if let (Some(c), Some(d)) = (v["customer_id"].as_str(), v["dealer_id"].as_str()) {
            if seen.insert(c.to_string()) {
                known.push((c.to_string(), d.to_string()));
            }
        }
    }
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", &bs).set("linger.ms", "0");
    let producer: ThreadedProducer<DefaultProducerContext> = pc.create().unwrap();
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &bs)
        .set("group.id", "latency-reader")
        .set("auto.offset.reset", "latest");
    let reader: BaseConsumer = cc.create().unwrap();
    reader.subscribe(&[&cfg.output.status_topic]).unwrap();
    // Join before producing so that no change is missed.
    let join = Instant::now();
    while reader.assignment().map(|a| a.count()).unwrap_or(0) == 0
        && join.elapsed() < Duration::from_secs(30)
    {
        reader.poll(Duration::from_millis(100));
    }
    let live_start = Ts(chrono::Utc::now().timestamp_millis());
    let total = live_secs * live_rate;
    println!("live: producing {total} visits at {live_rate}/s");
    let interval = Duration::from_secs_f64(1.0 / live_rate as f64);
    let begun = Instant::now();
    for n in 0..total {
        let due = begun + interval * n as u32;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let (c, d) = &known[(n as usize * 7919) % known.len()];
        let now = Ts(chrono::Utc::now().timestamp_millis());
        let line = format!(
            r#"{{"type":"visit","event_id":"live-{n}","event_time":"{}","dealer_id":"{d}","customer_id":"{c}","visit_type":"service"}}"#,
            now.to_rfc3339()
        );
        loop {
            match producer.send(
                BaseRecord::to(&cfg.input.visits.topic)
                    .key(c)
                    .payload(&line),
            ) {
                Ok(()) => break,
                // Queue full: wait for deliveries, then build the record again.
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        // Read what has arrived meanwhile (the reader's queue is bounded).
        while let Some(Ok(_m)) = reader.poll(Duration::ZERO) {}
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    reader.unsubscribe();
    drop(reader);
    // Read the status topic again from the start and pick the live changes.
    std::thread::sleep(Duration::from_secs(2));
    let expect = running.shared.published().changes;
    let msgs = churnwatch::edge::kafka::io::read_topic(
        &{
            let mut c = ClientConfig::new();
            c.set("bootstrap.servers", &bs);
            c
        },
        &cfg.output.status_topic,
        Duration::from_secs(60),
        |m| m.len() as u64 >= expect,
    );
    let msgs = match msgs {
        Ok(m) => m,
        Err(e) => {
            println!("latency: {e}");
            return;
        }
    };
    let mut lat: Vec<i64> = Vec::new();
    for m in &msgs {
        let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        if v["trigger"] != "event" {
            continue;
        }
        let t = Ts::parse_rfc3339(v["event_time"].as_str().unwrap()).unwrap();
        if t < live_start {
            continue;
        }
        if let Some(ts) = m.timestamp().to_millis() {
            lat.push(ts - t.0);
        }
    }
    lat.sort_unstable();
    if lat.is_empty() {
        println!("latency: no live status changes read back");
    } else {
        let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        println!(
            "latency: {total} live visits at {live_rate}/s for {live_secs} s -> {} event-triggered status changes; input time -> status record: p50 {} ms, p99 {} ms, max {} ms",
            lat.len(),
            q(0.5),
            q(0.99),
            lat[lat.len() - 1]
        );
    }
    running.stop().unwrap();
    drop(cluster);
}
