//! The Kafka service end to end against a broker in a process of its own: throughput
//! over a backlog beside a bare consumer's, restore and restart times, and (with
//! `--latency`) the latency of live events.
//!
//! ```text
//! cargo bench --bench kafka_e2e -- [--customers N] [--years Y] [--partitions P]
//!     [--broker mock|tansu] [--latency [--live-seconds S] [--live-rate R]]
//!     [--set KEY=VALUE]... [--throughput-only]
//! ```
//!
//! `--set` passes a config override to every `churnwatch run` the benchmark starts
//! (as the binary's own `--set`); `--throughput-only` stops after step 3.
//!
//! Defaults: 20,000 customers × 3 years over 24 partitions on librdkafka's mock
//! cluster. The broker runs in its own process: this benchmark's own binary started
//! again with `--serve-mock-broker P` (it creates the service's topics with P
//! partitions in-process, prints its bootstrap address and serves until its stdin
//! closes), or `tansu` (`~/.cargo/bin/tansu`, memory storage, topics created with
//! `tansu topic create`). The service is the release binary `churnwatch run`, in its
//! own process too, watched through its admin port; the bare consumer runs in this
//! process. `CHURNWATCH_BENCH_BIN=path` runs another build of `churnwatch` instead
//! (an older one, to compare two versions with the same harness).
//!
//! 1. *Backlog*: the generated history is produced to the input topics first.
//! 2. *Bare consumer*: a group consumer with the service's fetch settings, subscribed
//!    to the same input topics in a group of its own, that only counts the records:
//!    records/s from its first record to the last.
//! 3. *Service*: `churnwatch run` (default flags) consumes the backlog: records/s
//!    handed to the engines from the first one until every partition is read,
//!    committed and its outbox (status changes, dead letters, changelog) acknowledged;
//!    and the ratio service / bare. Peak RSS is the process's `VmHWM`; the CPU the
//!    service used meanwhile (user + system, from `/proc`) per record is printed too:
//!    on a shared machine it varies far less than the rates.
//! 4. *Restore*: the service is stopped (SIGTERM), its state directory deleted, and
//!    started again: seconds from the start of the process until `/readyz` answers
//!    200, every partition restored from the changelog.
//! 5. *Restart with local state*: stopped again and started with its state intact:
//!    seconds until `/readyz` answers 200.
//! 6. *Latency* (`--latency`): with an in-process service caught up (policy lateness
//!    0, ticks every second, commits every 100 ms), visits stamped with the wall
//!    clock are produced for known customers at `--live-rate` per second (500) for
//!    `--live-seconds` (20); latency = the status record's broker timestamp minus the
//!    visit's time. Reported: p50, p99, max.
//!
//! Every start of the service joins a consumer group of its own: the mock cluster
//! ignores LeaveGroup and static membership, so a restart into the same group would
//! first wait out the session timeout; the service seeks to the offsets kept with its
//! state either way. The mock cluster keeps at most 5 MB and 100,000 message sets per
//! partition and drops older data: the benchmark checks that no input or changelog
//! partition lost its beginning and says so when one did (then choose more
//! partitions or fewer years).

use churnwatch::core::policy::Policy;
use churnwatch::core::time::Ts;
use churnwatch::edge::kafka::config::Config;
use churnwatch::edge::kafka::io::{backfill_jsonl, mock_cluster};
use churnwatch::edge::kafka::{start, Running};
use churnwatch::generate::{generate, GenConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The benchmark's arguments.
struct Args {
    customers: u64,
    years: u32,
    partitions: i32,
    tansu: bool,
    latency: bool,
    live_seconds: u64,
    live_rate: u64,
    serve_mock_broker: Option<i32>,
    sets: Vec<String>,
    throughput_only: bool,
}

fn args() -> Args {
    let mut a = Args {
        customers: 20_000,
        years: 3,
        partitions: 24,
        tansu: false,
        latency: false,
        live_seconds: 20,
        live_rate: 500,
        serve_mock_broker: None,
        sets: Vec::new(),
        throughput_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut value = |what: &str| -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{what} takes a whole number"))
        };
        match k.as_str() {
            "--customers" => a.customers = value("--customers"),
            "--years" => a.years = value("--years") as u32,
            "--partitions" => a.partitions = value("--partitions") as i32,
            "--live-seconds" => a.live_seconds = value("--live-seconds"),
            "--live-rate" => a.live_rate = value("--live-rate"),
            "--serve-mock-broker" => {
                a.serve_mock_broker = Some(value("--serve-mock-broker") as i32)
            }
            "--latency" => a.latency = true,
            "--throughput-only" => a.throughput_only = true,
            "--set" => a.sets.push(
                it.next()
                    .expect("--set takes KEY=VALUE (a config override)"),
            ),
            "--broker" => match it.next().as_deref() {
                Some("mock") => a.tansu = false,
                Some("tansu") => a.tansu = true,
                other => panic!("--broker takes mock or tansu, not {other:?}"),
            },
            // cargo bench passes --bench to every benchmark binary.
            "--bench" => {}
            other => panic!(
                "unknown argument {other}; see the doc of benches/kafka_e2e.rs for the arguments"
            ),
        }
    }
    a
}

/// The mock cluster of `partitions` partitions per topic, served until stdin closes.
fn serve_mock_broker(partitions: i32) {
    let cluster = mock_cluster(&Config::default(), partitions).expect("a mock cluster");
    println!("bootstrap {}", cluster.bootstrap_servers());
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

/// A broker process; killed when dropped.
struct Broker {
    child: Child,
    bootstrap: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mock_broker(partitions: i32) -> Broker {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve-mock-broker", &partitions.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let bootstrap = line
        .strip_prefix("bootstrap ")
        .unwrap_or_else(|| panic!("the mock broker said {line:?}"))
        .trim()
        .to_string();
    Broker { child, bootstrap }
}

fn tansu_broker(partitions: i32, dir: &Path) -> Broker {
    let tansu = PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo/bin/tansu");
    assert!(
        tansu.exists(),
        "--broker tansu needs {}; scripts/test-deps installs it",
        tansu.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bootstrap = format!("127.0.0.1:{port}");
    let url = format!("tcp://{bootstrap}");
    let log = std::fs::File::create(dir.join("tansu.log")).unwrap();
    let child = Command::new(&tansu)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let broker = Broker { child, bootstrap };
    let started = Instant::now();
    while std::net::TcpStream::connect(&broker.bootstrap).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "tansu not listening"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in Config::default().topics() {
        let ok = Command::new(&tansu)
            .args(["topic", "create", "--broker", &url, "--partitions"])
            .arg(partitions.to_string())
            .arg(t)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tansu topic create {t}");
    }
    broker
}

fn config(bootstrap: &str, dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = bootstrap.into();
    cfg.output.create_topics = false;
    cfg.state.dir = dir.to_path_buf();
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.ticks.interval_ms = 0;
    cfg.metrics.kpi_interval_ms = 600_000;
    cfg
}

/// (records, partitions that lost their beginning) of `topic`.
fn topic_extent(bootstrap: &str, topic: &str, partitions: i32) -> (i64, Vec<i32>) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let mut records = 0;
    let mut truncated = Vec::new();
    for p in 0..partitions {
        let (lo, hi) = c
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .unwrap();
        records += hi - lo;
        if lo > 0 {
            truncated.push(p);
        }
    }
    (records, truncated)
}

/// A bare consumer with the service's fetch settings counts `expect` records of the
/// input topics. Returns (records, seconds from the first record to the last).
fn bare_consumer(bootstrap: &str, topics: &[String], expect: u64) -> (u64, f64) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "bench-bare-consumer")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    c.subscribe(&refs).unwrap();
    let mut n = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    let started = Instant::now();
    while n < expect {
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the bare consumer read {n} of {expect} records"
        );
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                std::hint::black_box(m.payload());
                n += 1;
                last = Instant::now();
                first.get_or_insert(last);
            }
            Some(Err(e)) => panic!("bare consumer: {e}"),
            None => {}
        }
    }
    (n, last.duration_since(first.unwrap()).as_secs_f64())
}

/// `churnwatch run` (the release binary cargo built for this benchmark) in its own
/// process; killed when dropped.
struct Service {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Service {
    fn spawn(bootstrap: &str, state: &Path, group: &str, sets: &[String]) -> Service {
        let port_file = state.with_extension("addr");
        let log = state.with_extension("log");
        let _ = std::fs::remove_file(&port_file);
        let bin = std::env::var_os("CHURNWATCH_BENCH_BIN").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_churnwatch")),
            PathBuf::from,
        );
        let mut cmd = Command::new(bin);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CHURNWATCH__") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["run", "--bootstrap-servers", bootstrap])
            .args(["--admin-listen", "127.0.0.1:0", "--state-dir"])
            .arg(state);
        for s in [
            "output.create_topics=false",
            "ticks.interval_ms=0",
            "metrics.kpi_interval_ms=600000",
            &format!("kafka.group_id={group}"),
        ] {
            cmd.args(["--set", s]);
        }
        for s in sets {
            cmd.args(["--set", s]);
        }
        let out = std::fs::File::create(&log).unwrap();
        let mut child = cmd
            .env("CHURNWATCH_LOG", "info")
            .env("CHURNWATCH__ADMIN__PORT_FILE", &port_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let addr = loop {
            if let Ok(s) = std::fs::read_to_string(&port_file) {
                if s.ends_with('\n') {
                    break s.trim().to_string();
                }
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("churnwatch exited ({status}); see {}", log.display());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no admin address"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        Service { child, addr, log }
    }

    fn get(&self, path: &str) -> Option<(u16, String)> {
        match ureq::get(&format!("http://{}{path}", self.addr))
            .timeout(Duration::from_secs(5))
            .call()
        {
            Ok(r) => Some((r.status(), r.into_string().ok()?)),
            Err(ureq::Error::Status(code, r)) => Some((code, r.into_string().ok()?)),
            Err(_) => None,
        }
    }

    /// The sum of every series of metric `name` (labelled or not).
    fn metric(&self, name: &str) -> f64 {
        let Some((_, body)) = self.get("/metrics") else {
            return 0.0;
        };
        body.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l[name.len()..].starts_with(' ') || l[name.len()..].starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("churnwatch exited ({status}); see {}", self.log.display());
        }
    }

    /// Seconds from `since` until the first assignment shows (the group is joined;
    /// the take-over starts) and until `/readyz` answers 200.
    fn wait_ready(&mut self, since: Instant) -> (f64, f64) {
        let mut joined = None;
        loop {
            self.assert_running();
            if joined.is_none() && self.metric("churnwatch_partitions_assigned") > 0.0 {
                joined = Some(since.elapsed().as_secs_f64());
            }
            if self.get("/readyz").is_some_and(|(code, _)| code == 200) {
                let ready = since.elapsed().as_secs_f64();
                return (joined.unwrap_or(ready), ready);
            }
            assert!(since.elapsed() < Duration::from_secs(1800), "never ready");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU seconds (user + system, all threads) the process has used so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // The fields after the command name (which may hold spaces) are numbered from
        // 3; utime and stime are 14 and 15, in clock ticks.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0.0))
            .collect();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        if f.len() < 13 || hz <= 0.0 {
            return f64::NAN;
        }
        (f[11] + f[12]) / hz
    }

    /// The process's peak resident set (VmHWM), MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// SIGTERM, and the exit within a minute.
    fn stop(mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let sent = Instant::now();
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                sent.elapsed() < Duration::from_secs(60),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fields of the last log line with message `msg`.
    fn log_fields(&self, msg: &str) -> Option<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .ok()?
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["fields"]["message"] == msg)
            .map(|v| v["fields"].clone())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() {
    let a = args();
    if let Some(p) = a.serve_mock_broker {
        serve_mock_broker(p);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let today = chrono::Utc::now().date_naive();
    let g = generate(
        &GenConfig {
            customers: a.customers,
            dealers: 20,
            years: a.years,
            seed: 5,
            start: Ts::from_date(today - chrono::Months::new(12 * a.years)),
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
    let broker = if a.tansu {
        tansu_broker(a.partitions, tmp.path())
    } else {
        mock_broker(a.partitions)
    };
    let bs = broker.bootstrap.clone();
    println!(
        "broker: {} in its own process (pid {}) at {bs}",
        if a.tansu {
            "tansu"
        } else {
            "librdkafka mock cluster"
        },
        broker.child.id()
    );

    // 1. The backlog.
    let cfg = config(&bs, &tmp.path().join("unused"));
    let produced = Instant::now();
    let b = backfill_jsonl(&cfg, &events, a.partitions).unwrap();
    println!(
        "backlog: {} records ({} customers x {} years) in {} partitions, produced in {:.1} s",
        b.records,
        a.customers,
        a.years,
        a.partitions,
        produced.elapsed().as_secs_f64()
    );
    let inputs: Vec<String> = cfg.input_topics().into_iter().map(String::from).collect();
    let mut held = 0;
    for t in &inputs {
        let (n, truncated) = topic_extent(&bs, t, a.partitions);
        held += n;
        if !truncated.is_empty() {
            println!("  WARNING: {t} lost the beginning of partitions {truncated:?} (broker retention): choose more partitions or fewer years");
        }
    }
    println!("  the broker holds {held} input records");

    // 2. The bare consumer.
    let (n, secs) = bare_consumer(&bs, &inputs, held as u64);
    let bare = n as f64 / secs;
    println!("bare consumer: {n} records in {secs:.2} s = {bare:.0} records/s");

    // 3. The service over the backlog.
    let state = tmp.path().join("state");
    let spawned = Instant::now();
    let mut svc = Service::spawn(&bs, &state, "bench-backlog", &a.sets);
    let mut t0 = None;
    let mut stable = 0;
    let mut t1 = Instant::now();
    let (mut cpu0, mut cpu1) = (0.0, 0.0);
    while stable < 3 {
        svc.assert_running();
        assert!(
            spawned.elapsed() < Duration::from_secs(3600),
            "not caught up"
        );
        std::thread::sleep(Duration::from_millis(20));
        if t0.is_none() && svc.metric("churnwatch_processed_events_total") > 0.0 {
            t0 = Some(Instant::now());
            cpu0 = svc.cpu_seconds();
        }
        if t0.is_some()
            && svc.metric("churnwatch_caught_up") == 1.0
            && svc.metric("churnwatch_partitions_ready") == a.partitions as f64
        {
            if stable == 0 {
                t1 = Instant::now();
                cpu1 = svc.cpu_seconds();
            }
            stable += 1;
        } else {
            stable = 0;
        }
    }
    let secs = t1.duration_since(t0.unwrap()).as_secs_f64();
    let processed = svc.metric("churnwatch_processed_events_total");
    let changes = svc.metric("churnwatch_status_changes_total");
    let customers = svc.metric("churnwatch_customers");
    let service = processed / secs;
    println!(
        "service: {processed} records consumed -> state -> produced in {secs:.2} s = {service:.0} records/s; {changes} status changes; {customers} customers; peak RSS {:.0} MiB",
        svc.peak_rss_mib()
    );
    let cpu = cpu1 - cpu0;
    println!(
        "  service CPU (all threads, user + system): {cpu:.2} s = {:.1} us per record, {:.2} cores busy on average",
        cpu * 1e6 / processed,
        cpu / secs
    );
    println!(
        "ratio service / bare consumer: {:.3} ({service:.0} / {bare:.0} records/s)",
        service / bare
    );
    svc.stop();
    if a.throughput_only {
        return;
    }
    let (changelog, truncated) = topic_extent(&bs, &cfg.output.changelog_topic, a.partitions);
    println!("  changelog: {changelog} records");
    if !truncated.is_empty() {
        println!("  WARNING: the changelog lost the beginning of partitions {truncated:?} (broker retention): the restore below is not complete; choose more partitions or fewer years");
    }

    // 4. Restore from the changelog.
    std::fs::remove_dir_all(&state).unwrap();
    let spawned = Instant::now();
    let mut svc = Service::spawn(&bs, &state, "bench-restore", &a.sets);
    let (joined, ready) = svc.wait_ready(spawned);
    let restored = svc.metric("churnwatch_customers");
    let restores = svc.metric("churnwatch_restores_total");
    let detail = svc.log_fields("restored from the changelog");
    println!(
        "restore: {restored} customers (before: {customers}) over {restores} partitions from {changelog} changelog records: /readyz 200 after {ready:.2} s from the process start (assigned after {joined:.2} s); peak RSS {:.0} MiB",
        svc.peak_rss_mib()
    );
    if let Some(d) = detail {
        println!(
            "  of which reading and folding the changelog: {:.2} s ({} threads)",
            d["seconds"].as_f64().unwrap_or(f64::NAN),
            d["threads"]
        );
    }
    if let Some(d) = svc.log_fields("changelog ends read") {
        println!(
            "  of which the changelog's ends of {} partitions: {:.3} s{}",
            d["partitions"],
            d["seconds"].as_f64().unwrap_or(f64::NAN),
            if svc
                .log_fields("cannot read the changelog's ends at once; asking per partition")
                .is_some()
            {
                " (asked per partition: the one request failed)"
            } else {
                " (one request)"
            }
        );
    }
    if let Some(d) = svc.log_fields("partitions taken over") {
        println!(
            "  the whole take-over (changelog ends, restore, opening the partitions): {:.2} s",
            d["seconds"].as_f64().unwrap_or(f64::NAN)
        );
    }
    svc.stop();

    // 5. Restart with local state.
    let spawned = Instant::now();
    let mut svc = Service::spawn(&bs, &state, "bench-local", &a.sets);
    let (joined, ready) = svc.wait_ready(spawned);
    println!(
        "restart with local state: {} customers over {} partitions ({} restored): /readyz 200 after {ready:.2} s from the process start (assigned after {joined:.2} s)",
        svc.metric("churnwatch_customers"),
        svc.metric("churnwatch_partitions_ready"),
        svc.metric("churnwatch_restores_total"),
    );
    svc.stop();

    if a.latency {
        latency(&a, &bs, tmp.path(), &events);
    }
    drop(broker);
}

/// 6. The latency of live events through an in-process service.
fn latency(a: &Args, bs: &str, dir: &Path, events: &Path) {
    let mut cfg = config(bs, &dir.join("live-state"));
    cfg.kafka.group_id = "bench-live".into();
    cfg.ticks.interval_ms = 1000;
    cfg.state.commit_interval_ms = 100;
    let mut policy = Policy::default();
    policy.stream.allowed_lateness_minutes = 0;
    let running = start(cfg.clone(), policy).unwrap();
    wait_caught_up(&running, Duration::from_secs(1800));
    let mut known: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    std::fs::File::open(events)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(c), Some(d)) = (v["customer_id"].as_str(), v["dealer_id"].as_str()) {
            if seen.insert(c.to_string()) {
                known.push((c.to_string(), d.to_string()));
            }
        }
    }
    let mut pc = ClientConfig::new();
    pc.set("bootstrap.servers", bs).set("linger.ms", "0");
    let producer: ThreadedProducer<DefaultProducerContext> = pc.create().unwrap();
    let before = running.shared.published().changes;
    let live_start = Ts(chrono::Utc::now().timestamp_millis());
    let total = a.live_seconds * a.live_rate;
    println!("live: producing {total} visits at {}/s", a.live_rate);
    let interval = Duration::from_secs_f64(1.0 / a.live_rate as f64);
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
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // Every change on the status topic so far: the backlog's (twice: the throughput
    // run's and this service's) and the live ones.
    let expect = running.shared.published().changes - before;
    let msgs = churnwatch::edge::kafka::io::read_topic(
        ClientConfig::new().set("bootstrap.servers", bs),
        &cfg.output.status_topic,
        Duration::from_secs(120),
        |m| {
            m.iter()
                .filter(|r| r.timestamp().to_millis().is_some_and(|t| t >= live_start.0))
                .count() as u64
                >= expect
        },
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
            "latency: {total} live visits at {}/s for {} s -> {} event-triggered status changes; input time -> status record: p50 {} ms, p99 {} ms, max {} ms",
            a.live_rate,
            a.live_seconds,
            lat.len(),
            q(0.5),
            q(0.99),
            lat[lat.len() - 1]
        );
    }
    running.stop().unwrap();
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
