//! End to end against separate processes: the real `churnwatch run` binary consumes from
//! a tansu broker (a Kafka-compatible broker in its own process, memory storage), the
//! input history is produced and the outputs are read back with kcat (a third-party
//! Kafka client), and a real Prometheus scrapes the service's `/metrics`.
//!
//! Checks: kcat's records arrive co-partitioned by customer; the status changes on
//! `customer-status` are keyed by customer, identical when re-delivered and, as a set,
//! exactly `replay`'s changes over the same history up to the cutoff; the dead letters
//! are `replay`'s bad records with the `churnwatch-error-code` header; Prometheus sees
//! the target up and the same counters as `/metrics`; SIGTERM drains and exits 0.
//!
//! Needs `tansu`, `kcat`, `prometheus` and `promtool`; `scripts/test-deps` installs
//! them, and the test fails (it does not skip) when one is missing. kcat must run on
//! librdkafka >= 2.2: older releases (Debian 12 ships 2.0.2) mis-skip the tagged fields
//! of the ApiVersions v3 response that tansu sends and never connect. Then the test runs
//! kcat on the `librdkafka.so.1` that the rdkafka-sys build of this crate produced.
//!
//! tansu 0.6.0 (memory storage) does not serve a fetch that starts inside a record
//! batch: it skips to the next batch, or returns nothing when the offset is in the last
//! one. Everything here is read from the beginning, as a fresh service does, so that
//! does not arise; a restart from committed offsets is covered by tests/kafka.rs
//! against librdkafka's mock cluster.

mod common;

use churnwatch::edge::kafka::config::Config;
use common::{assert_same, history};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;
/// Oldest librdkafka whose ApiVersions v3 parsing copes with tansu's tagged fields.
const MIN_LIBRDKAFKA: (u32, u32, u32) = (2, 2, 0);

// ---------------------------------------------------------------------------------
// Tools

struct Tools {
    tansu: PathBuf,
    kcat: PathBuf,
    /// A directory with a librdkafka.so.1 new enough for tansu, when the one kcat is
    /// linked with is too old.
    kcat_lib: Option<PathBuf>,
    prometheus: PathBuf,
    promtool: PathBuf,
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn require(name: &str, fallback: Option<PathBuf>) -> PathBuf {
    let looked = match &fallback {
        Some(f) => format!("on PATH and at {}", f.display()),
        None => "on PATH".to_string(),
    };
    on_path(name)
        .or_else(|| fallback.filter(|p| is_executable(p)))
        .unwrap_or_else(|| {
            panic!("`{name}` is missing (looked {looked}); scripts/test-deps installs it")
        })
}

fn kcat_command(kcat: &Path, lib: Option<&Path>) -> Command {
    let mut c = Command::new(kcat);
    if let Some(dir) = lib {
        let mut paths = vec![dir.to_path_buf()];
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            paths.extend(std::env::split_paths(&old));
        }
        c.env("LD_LIBRARY_PATH", std::env::join_paths(paths).unwrap());
    }
    c
}

/// The librdkafka version kcat runs on (from `kcat -V`).
fn kcat_librdkafka(kcat: &Path, lib: Option<&Path>) -> Option<(u32, u32, u32)> {
    let out = kcat_command(kcat, lib).arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text
        .split("librdkafka ")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let mut n = v.split('.').map(|x| x.parse::<u32>().ok());
    Some((n.next()??, n.next()??, n.next().flatten().unwrap_or(0)))
}

/// The shared librdkafka that rdkafka-sys built next to this test's binaries (the
/// newest, if several builds are there).
fn built_librdkafka() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_BIN_EXE_churnwatch")).parent()?;
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(target.join("build"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("rdkafka-sys-"))
        .map(|e| e.path().join("out").join("src"))
        .filter(|d| d.join("librdkafka.so.1").is_file())
        .filter_map(|d| {
            let t = d.join("librdkafka.so.1").metadata().ok()?.modified().ok()?;
            Some((t, d))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

fn tools() -> Tools {
    let home_tansu = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
    let tansu = require("tansu", home_tansu);
    let kcat = require("kcat", None);
    let prometheus = require("prometheus", None);
    let promtool = require("promtool", None);
    let system = kcat_librdkafka(&kcat, None)
        .unwrap_or_else(|| panic!("`{} -V` does not name its librdkafka", kcat.display()));
    let kcat_lib = if system >= MIN_LIBRDKAFKA {
        None
    } else {
        let dir = built_librdkafka().unwrap_or_else(|| {
            panic!(
                "kcat runs on librdkafka {system:?}, older than {MIN_LIBRDKAFKA:?}, which cannot \
                 parse tansu's ApiVersions response, and no librdkafka.so.1 from the rdkafka-sys \
                 build was found under the target directory's build/rdkafka-sys-*/out/src"
            )
        });
        let v = kcat_librdkafka(&kcat, Some(&dir));
        assert!(
            v.is_some_and(|v| v >= MIN_LIBRDKAFKA),
            "kcat with {} runs on librdkafka {v:?}, still older than {MIN_LIBRDKAFKA:?}",
            dir.display()
        );
        Some(dir)
    };
    Tools {
        tansu,
        kcat,
        kcat_lib,
        prometheus,
        promtool,
    }
}

impl Tools {
    fn kcat(&self) -> Command {
        kcat_command(&self.kcat, self.kcat_lib.as_deref())
    }
}

// ---------------------------------------------------------------------------------
// Processes

/// The long-running child processes: killed when dropped (so a failing test leaves
/// nothing running), and their logs printed first when the test is failing.
#[derive(Default)]
struct Procs {
    children: Vec<(String, Child, PathBuf)>,
}

impl Procs {
    fn spawn(&mut self, name: &str, cmd: &mut Command, log: &Path) -> usize {
        let out = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.children
            .push((name.to_string(), child, log.to_path_buf()));
        self.children.len() - 1
    }

    fn child(&mut self, i: usize) -> &mut Child {
        &mut self.children[i].1
    }

    /// Panics with the process' log when it has exited.
    fn assert_running(&mut self, i: usize) {
        let (name, child, log) = &mut self.children[i];
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{name} exited ({status}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child, _) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for (name, _, log) in &self.children {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                // The service's log in full, the last lines of the others.
                let keep = if name == "churnwatch" {
                    lines.len()
                } else {
                    60
                };
                eprintln!(
                    "===== {name} log ({}), last {} of {} lines =====",
                    log.display(),
                    keep.min(lines.len()),
                    lines.len()
                );
                for l in &lines[lines.len().saturating_sub(keep)..] {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// Runs a short-lived command to its end within `timeout` (killed after it), feeding
/// `input` on stdin; panics unless it exits 0; returns its stdout.
fn run(cmd: &mut Command, input: Option<Vec<u8>>, timeout: Duration, what: &str) -> Vec<u8> {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let writer = input.map(|data| {
        let mut stdin = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let read = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let status = wait_for(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let err = String::from_utf8_lossy(&err);
    match status {
        Some(s) if s.success() => out,
        Some(s) => panic!("{what} failed ({s}):\n{err}"),
        None => panic!("{what} did not finish within {timeout:?}:\n{err}"),
    }
}

fn wait_for(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if started.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts, from kcat's view of the broker's metadata, that every topic exists with
/// `PARTITIONS` partitions.
fn assert_topics(tools: &Tools, bs: &str, topics: &[String]) {
    let md: Value = serde_json::from_slice(&run(
        tools.kcat().args(["-L", "-J", "-b", bs]),
        None,
        Duration::from_secs(20),
        "kcat -L",
    ))
    .unwrap();
    for t in topics {
        let found = md["topics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["topic"] == t.as_str())
            .unwrap_or_else(|| panic!("topic {t} not in the broker's metadata: {md}"));
        assert_eq!(
            found["partitions"].as_array().unwrap().len(),
            PARTITIONS as usize,
            "partitions of {t}"
        );
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------
// The history and what replay makes of it

// ---------------------------------------------------------------------------------
// Producing the history with kcat

/// The history split by destination, as `churnwatch::edge::kafka::io::backfill_jsonl`
/// splits it: events keyed by customer to their type's topic, lines without a customer
/// to partition 0 of that topic (unknown types and unparsable lines: visits), ticks to
/// every partition of every input topic.
#[derive(Default)]
struct Split {
    /// Per topic: `customer<TAB>value` lines.
    keyed: BTreeMap<String, Vec<u8>>,
    /// Per topic: value lines for partition 0.
    unkeyed: BTreeMap<String, Vec<u8>>,
    ticks: Vec<u8>,
    tick_count: u64,
    /// Records per topic once produced (ticks count once per partition).
    per_topic: BTreeMap<String, u64>,
    /// Non-tick lines.
    events: u64,
}

fn split(cfg: &Config, path: &Path) -> Split {
    let i = &cfg.input;
    let mut s = Split::default();
    let text = std::fs::read_to_string(path).unwrap();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(!line.contains('\t'), "a tab in a history line: {line}");
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        let ty = v.get("type").and_then(Value::as_str);
        if ty == Some("tick") {
            s.ticks.extend_from_slice(line.as_bytes());
            s.ticks.push(b'\n');
            s.tick_count += 1;
            continue;
        }
        s.events += 1;
        let topic = match ty {
            Some("repair_order") => &i.repair_orders.topic,
            Some("contract") => &i.contracts.topic,
            _ => &i.visits.topic,
        };
        *s.per_topic.entry(topic.clone()).or_default() += 1;
        match v.get("customer_id").and_then(Value::as_str) {
            Some(c) => {
                assert!(!c.contains('\t') && !c.is_empty(), "customer id {c:?}");
                let buf = s.keyed.entry(topic.clone()).or_default();
                buf.extend_from_slice(format!("{c}\t{line}\n").as_bytes());
            }
            None => {
                let buf = s.unkeyed.entry(topic.clone()).or_default();
                buf.extend_from_slice(line.as_bytes());
                buf.push(b'\n');
            }
        }
    }
    for t in input_topics(cfg) {
        *s.per_topic.entry(t).or_default() += s.tick_count * PARTITIONS as u64;
    }
    s
}

fn input_topics(cfg: &Config) -> Vec<String> {
    let i = &cfg.input;
    let mut v: Vec<String> = Vec::new();
    for t in [&i.repair_orders.topic, &i.visits.topic, &i.contracts.topic] {
        if !v.contains(t) {
            v.push(t.clone());
        }
    }
    v
}

fn produce(tools: &Tools, bs: &str, s: &Split, cfg: &Config) {
    let t = Duration::from_secs(60);
    let base = |topic: &str| {
        let mut c = tools.kcat();
        c.args(["-P", "-b", bs, "-t", topic])
            .args(["-X", "message.timeout.ms=30000"]);
        c
    };
    // Keyed: kcat's default partitioner (consistent_random, CRC32 of the key) for every
    // input topic, so a customer's events share a partition number across topics; the
    // idempotent producer keeps each partition in file order even across retries.
    for (topic, lines) in &s.keyed {
        run(
            base(topic).args(["-K", "\\t", "-X", "enable.idempotence=true"]),
            Some(lines.clone()),
            t,
            &format!("kcat producing keyed records to {topic}"),
        );
    }
    for (topic, lines) in &s.unkeyed {
        run(
            base(topic).args(["-p", "0", "-X", "enable.idempotence=true"]),
            Some(lines.clone()),
            t,
            &format!("kcat producing unkeyed records to {topic} partition 0"),
        );
    }
    // Ticks last, after everything else in each partition (one record per run).
    for topic in input_topics(cfg) {
        for p in 0..PARTITIONS {
            run(
                base(&topic)
                    .args(["-p", &p.to_string()])
                    .args(["-H", "churnwatch-record=tick"]),
                Some(s.ticks.clone()),
                t,
                &format!("kcat producing ticks to {topic} partition {p}"),
            );
        }
    }
}

/// A topic's records as kcat's `-J` envelopes, read from the beginning to the end of
/// every partition.
fn consume(tools: &Tools, bs: &str, topic: &str) -> Vec<Value> {
    let out = run(
        tools
            .kcat()
            .args([
                "-C",
                "-b",
                bs,
                "-t",
                topic,
                "-o",
                "beginning",
                "-e",
                "-J",
                "-q",
            ])
            // Reach the end of an idle partition soon: tansu holds a fetch this long.
            .args(["-X", "fetch.wait.max.ms=100"]),
        None,
        Duration::from_secs(60),
        &format!("kcat reading {topic}"),
    );
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("kcat -J line {l}: {e}")))
        .collect()
}

fn headers(m: &Value) -> Vec<(String, String)> {
    let flat: Vec<String> = m["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    flat.chunks(2)
        .map(|c| (c[0].clone(), c.get(1).cloned().unwrap_or_default()))
        .collect()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------
// HTTP

fn get(url: &str) -> Option<String> {
    ureq::get(url)
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_string()
        .ok()
}

/// A metric from the service's `/metrics`: the sum of its series.
fn metric(addr: &str, name: &str) -> Option<f64> {
    let body = get(&format!("http://{addr}/metrics"))?;
    let values: Vec<f64> = body
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A Prometheus instant query's values (an empty vector when nothing matched yet).
fn prom_query(base: &str, q: &str) -> Option<Vec<f64>> {
    let body = ureq::get(&format!("{base}/api/v1/query"))
        .query("query", q)
        .timeout(Duration::from_secs(5))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    assert_eq!(v["status"], "success", "query {q}: {body}");
    v["data"]["result"]
        .as_array()?
        .iter()
        .map(|r| r["value"][1].as_str()?.parse().ok())
        .collect()
}

/// How long each phase of the test took, for the closing line.
struct Phases {
    started: Instant,
    last: Instant,
    done: Vec<(&'static str, Duration)>,
}

impl Phases {
    fn new() -> Self {
        let now = Instant::now();
        Phases {
            started: now,
            last: now,
            done: Vec::new(),
        }
    }

    fn mark(&mut self, name: &'static str) {
        let now = Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }

    fn report(&self) -> String {
        let parts: Vec<String> = self
            .done
            .iter()
            .map(|(n, d)| format!("{n} {:.1}s", d.as_secs_f64()))
            .collect();
        format!(
            "{}; {:.1}s in all",
            parts.join(", "),
            self.started.elapsed().as_secs_f64()
        )
    }
}

/// Waits until Prometheus answers `q` with exactly `want` (a scrape after the value
/// settled); panics with the last answer after 30s.
fn prom_until(base: &str, q: &str, want: Vec<f64>) {
    let started = Instant::now();
    loop {
        let got = prom_query(base, q);
        if got.as_ref() == Some(&want) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "prometheus: `{q}` is {got:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn poll<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    common::wait_until(what, timeout, Duration::from_millis(200), f)
}

// ---------------------------------------------------------------------------------

#[test]
fn service_on_tansu_with_kcat_and_prometheus_matches_replay() {
    let mut phases = Phases::new();
    let tools = tools();
    let h = history(300, 21);
    phases.mark("history and replay");
    let cfg = Config::default();
    let out = &cfg.output;
    let mut procs = Procs::default();

    // The broker.
    let port = free_port();
    let bs = format!("127.0.0.1:{port}");
    let url = format!("tcp://{bs}");
    let tansu = procs.spawn(
        "tansu",
        Command::new(&tools.tansu).args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ]),
        &h.dir.join("tansu.log"),
    );
    poll(
        "tansu accepting connections",
        Duration::from_secs(20),
        || {
            procs.assert_running(tansu);
            TcpStream::connect(&bs).ok()
        },
    );
    // Input topics by hand (as an operator would); the service creates its output
    // topics itself (output.create_topics, through the admin API).
    let all_topics: Vec<String> = input_topics(&cfg);
    let output_topics = [
        out.status_topic.clone(),
        out.changelog_topic.clone(),
        out.dead_letter_topic.clone(),
    ];
    for t in &all_topics {
        run(
            Command::new(&tools.tansu).args([
                "topic",
                "create",
                "--broker",
                &url,
                "--partitions",
                &PARTITIONS.to_string(),
                t,
            ]),
            None,
            Duration::from_secs(20),
            &format!("tansu topic create {t}"),
        );
    }
    assert_topics(&tools, &bs, &all_topics);
    phases.mark("broker and topics");

    // The history, produced with kcat, read back: complete and co-partitioned.
    let s = split(&cfg, &h.events);
    produce(&tools, &bs, &s, &cfg);
    let mut partition_of: BTreeMap<String, i64> = BTreeMap::new();
    for topic in input_topics(&cfg) {
        let got = consume(&tools, &bs, &topic);
        assert_eq!(got.len() as u64, s.per_topic[&topic], "records in {topic}");
        let mut ticks: BTreeMap<i64, u64> = BTreeMap::new();
        for m in &got {
            let p = m["partition"].as_i64().unwrap();
            if header(&headers(m), "churnwatch-record") == Some("tick") {
                *ticks.entry(p).or_default() += 1;
            } else if let Some(k) = m["key"].as_str() {
                let first = *partition_of.entry(k.to_string()).or_insert(p);
                assert_eq!(first, p, "customer {k} is in two partitions ({topic})");
            } else {
                assert_eq!(p, 0, "a record without a customer in {topic}: {m}");
            }
        }
        let want: BTreeMap<i64, u64> = (0..PARTITIONS as i64).map(|p| (p, s.tick_count)).collect();
        assert_eq!(ticks, want, "ticks per partition of {topic}");
    }
    let used: BTreeSet<i64> = partition_of.values().copied().collect();
    assert!(
        used.len() > 1,
        "customers spread over the partitions: {used:?}"
    );
    phases.mark("producing with kcat and reading back");

    // The service.
    let state = h.dir.join("state");
    let port_file = h.dir.join("admin.addr");
    let mut service = Command::new(env!("CARGO_BIN_EXE_churnwatch"));
    // Only this test's configuration: no CHURNWATCH__* settings from the environment.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CHURNWATCH__") {
            service.env_remove(k);
        }
    }
    let svc = procs.spawn(
        "churnwatch",
        service
            .args(["run", "--bootstrap-servers", &bs, "--state-dir"])
            .arg(&state)
            .args(["--admin-listen", "127.0.0.1:0", "--log", "churnwatch=debug"])
            .args([
                "--set",
                "output.create_topics=true",
                "--set",
                "ticks.interval_ms=0",
                "--set",
                "input.align_wait_ms=10000",
                "--set",
                "metrics.lag_interval_ms=200",
            ])
            .env("CHURNWATCH__ADMIN__PORT_FILE", &port_file),
        &h.dir.join("churnwatch.log"),
    );
    let admin = poll(
        "the service's admin address",
        Duration::from_secs(30),
        || {
            procs.assert_running(svc);
            std::fs::read_to_string(&port_file)
                .ok()
                .filter(|s| s.ends_with('\n'))
                .map(|s| s.trim().to_string())
        },
    );

    // Prometheus, scraping the service every second.
    let prom_port = free_port();
    let prom = format!("http://127.0.0.1:{prom_port}");
    let prom_cfg = h.dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: churnwatch\n    scrape_interval: 1s\n    \
             scrape_timeout: 1s\n    static_configs:\n      - targets: ['{admin}']\n"
        ),
    )
    .unwrap();
    run(
        Command::new(&tools.promtool)
            .args(["check", "config"])
            .arg(&prom_cfg),
        None,
        Duration::from_secs(30),
        "promtool check config",
    );
    let prometheus = procs.spawn(
        "prometheus",
        Command::new(&tools.prometheus)
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                h.dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        &h.dir.join("prometheus.log"),
    );

    // Caught up: every partition read to its end, handed on, committed, delivered.
    let mut stable = 0;
    poll("the service caught up", Duration::from_secs(90), || {
        procs.assert_running(svc);
        let ok = metric(&admin, "churnwatch_caught_up") == Some(1.0)
            && metric(&admin, "churnwatch_partitions_ready") == Some(PARTITIONS as f64);
        stable = if ok { stable + 1 } else { 0 };
        (stable >= 3).then_some(())
    });
    phases.mark("service caught up");
    let ready = ureq::get(&format!("http://{admin}/readyz")).call().unwrap();
    assert_eq!(ready.status(), 200, "ready once caught up");
    // The service created its output topics: the changelog mirrors the 6 input
    // partitions, the others have output.partitions (default 6).
    assert_topics(&tools, &bs, &output_topics);
    let processed = metric(&admin, "churnwatch_processed_events_total").unwrap();
    assert_eq!(
        processed as u64,
        s.events + s.tick_count * (PARTITIONS as u64) * input_topics(&cfg).len() as u64,
        "every produced record was processed once"
    );

    // The status changes, read with kcat.
    let records = consume(&tools, &bs, &out.status_topic);
    let mut by_id: BTreeMap<String, (Value, String)> = BTreeMap::new();
    let mut customer_partition: BTreeMap<String, i64> = BTreeMap::new();
    for m in &records {
        let payload = m["payload"].as_str().expect("a status change has a value");
        let v: Value = serde_json::from_str(payload).unwrap();
        let id = v["event_id"].as_str().unwrap().to_string();
        let customer = v["customer_id"].as_str().unwrap();
        assert_eq!(m["key"].as_str(), Some(customer), "keyed by customer: {m}");
        assert_eq!(
            header(&headers(m), "churnwatch-event-id"),
            Some(id.as_str()),
            "event id header: {m}"
        );
        let p = m["partition"].as_i64().unwrap();
        let first = *customer_partition.entry(customer.to_string()).or_insert(p);
        assert_eq!(first, p, "customer {customer}'s changes in two partitions");
        if let Some((_, prev)) = by_id.get(&id) {
            assert_eq!(
                prev, payload,
                "a re-delivered change must be byte-identical"
            );
        }
        by_id.insert(id, (v, payload.to_string()));
    }
    let got: BTreeMap<String, Value> = by_id.into_iter().map(|(k, (v, _))| (k, v)).collect();
    assert_same(&h, &got);

    // The dead letters: replay's bad records, with the error code in a header.
    let dead_msgs = consume(&tools, &bs, &out.dead_letter_topic);
    let mut seen = BTreeSet::new();
    let mut dead = Vec::new();
    for m in &dead_msgs {
        let hs = headers(m);
        let code = header(&hs, "churnwatch-error-code")
            .unwrap_or_else(|| panic!("a dead letter without churnwatch-error-code: {m}"))
            .to_string();
        for n in [
            "churnwatch-error",
            "churnwatch-source-topic",
            "churnwatch-source-partition",
            "churnwatch-source-offset",
        ] {
            assert!(header(&hs, n).is_some(), "{n} missing on {m}");
        }
        let raw = m["payload"].as_str().unwrap_or("").to_string();
        // Identical re-deliveries count once.
        if seen.insert((m["key"].to_string(), hs.clone(), raw.clone())) {
            dead.push((code, raw));
        }
    }
    dead.sort();
    assert_eq!(dead, h.dead, "dead letters: kafka vs replay");

    phases.mark("reading the outputs");

    // Prometheus scraped the service and sees what /metrics says.
    poll("prometheus ready", Duration::from_secs(30), || {
        procs.assert_running(prometheus);
        get(&format!("{prom}/-/ready"))
    });
    prom_until(&prom, "up{job=\"churnwatch\"}", vec![1.0]);
    prom_until(
        &prom,
        "churnwatch_processed_events_total{job=\"churnwatch\"}",
        vec![processed],
    );
    // The engines count each change as they emit it: one per distinct change published.
    assert!(!got.is_empty());
    prom_until(
        &prom,
        "sum(churnwatch_status_changes_total{job=\"churnwatch\"})",
        vec![got.len() as f64],
    );

    phases.mark("prometheus");

    // SIGTERM: a drain within its bound, exit 0.
    let pid = procs.child(svc).id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let bound = Duration::from_millis(cfg.shutdown.drain_timeout_ms);
    let status = wait_for(procs.child(svc), bound + Duration::from_secs(5));
    let status = status.unwrap_or_else(|| panic!("no exit within the drain bound {bound:?}"));
    assert!(status.success(), "exit after SIGTERM: {status}");
    let log = std::fs::read_to_string(h.dir.join("churnwatch.log")).unwrap();
    assert!(log.contains("\"drained\""), "the service logged its drain");
    procs.assert_running(tansu);
    phases.mark("drain");
    eprintln!(
        "e2e: {} changes, {} dead letters, {} records processed; {}",
        got.len(),
        dead.len(),
        processed,
        phases.report()
    );
}
