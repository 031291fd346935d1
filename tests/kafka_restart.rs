//! Restarts of the service process: how soon a restarted instance resumes, what an
//! instance does when another one takes its place, and no loss or duplicate across
//! repeated SIGKILLs.
//!
//! - On tansu (a separate broker process, as in tests/e2e_tansu.rs): the service with
//!   static group membership (`kafka.instance_id = "auto"`) is SIGKILLed after it
//!   caught up and restarted; from the restart to its first processed record must take
//!   less than 20 s. A dynamic member (`"none"`) waits for the killed member's session
//!   to expire first (`session.timeout.ms`, 45 s by default): the `#[ignore]`d
//!   companion shows it (the state before static membership).
//! - On librdkafka's mock cluster: an instance fenced by another with the same
//!   instance id stops with [`ServiceError::Fenced`] instead of polling on; and the
//!   service process SIGKILLed three times at points chosen from its progress, and
//!   restarted each time, publishes exactly `replay`'s status changes (identical
//!   re-deliveries aside). The mock cluster ignores static membership and LeaveGroup,
//!   so there a restarted instance waits for the old session to expire: that test
//!   uses a 6 s session timeout.
//!
//! `CHURNWATCH_TEST_BIN=target/release/churnwatch cargo test --test kafka_restart --
//! --include-ignored --nocapture restart_on_tansu` prints the restart times of a release
//! build.

mod common;

use churnwatch::core::policy::Policy;
use churnwatch::edge::kafka::config::Config;
use churnwatch::edge::kafka::io::{backfill_jsonl, mock_cluster};
use churnwatch::edge::kafka::{start, ServiceError};
use common::service::{metric, wait_caught_up, Service, MOCK_SETTINGS};
use common::{assert_same, changes_by_id, history};
use rand::{Rng, SeedableRng};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;
/// A restarted static member must process its first record within this long; a
/// dynamic one waits for the default 45 s session timeout.
const RESTART_BOUND: Duration = Duration::from_secs(20);

fn wait_for<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    common::wait_until(what, timeout, Duration::from_millis(50), f)
}

// ---------------------------------------------------------------------------------
// tansu

/// A tansu broker with in-memory storage on a free loopback port; killed when dropped.
struct Tansu {
    child: Child,
    bs: String,
    log: PathBuf,
}

impl Tansu {
    fn start(dir: &Path) -> Tansu {
        let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tansu"));
        let bin = home
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("tansu"));
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bs = format!("127.0.0.1:{port}");
        let url = format!("tcp://{bs}");
        let log = dir.join("tansu.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{}` ({e}); scripts/test-deps installs tansu",
                    bin.display()
                )
            });
        let mut t = Tansu { child, bs, log };
        wait_for(
            "tansu accepting connections",
            Duration::from_secs(20),
            || {
                if let Some(s) = t.child.try_wait().unwrap() {
                    panic!("tansu exited ({s}):\n{}", t.log_text());
                }
                TcpStream::connect(&t.bs).ok()
            },
        );
        for topic in ["repair-orders", "visits", "contracts"] {
            let status = Command::new(&bin)
                .args(["topic", "create", "--broker", &url, "--partitions"])
                .arg(PARTITIONS.to_string())
                .arg(topic)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "tansu topic create {topic}: {status}");
        }
        t
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Splits `events` into its first `share` of lines and the rest.
fn split_history(events: &Path, share: f64, dir: &Path) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let cut = (lines.len() as f64 * share) as usize;
    let (a, b) = (dir.join("first.jsonl"), dir.join("second.jsonl"));
    std::fs::write(&a, lines[..cut].join("\n") + "\n").unwrap();
    std::fs::write(&b, lines[cut..].join("\n") + "\n").unwrap();
    (a, b)
}

/// On tansu: runs the service with `kafka.instance_id = instance_id` until it has
/// caught up with the first part of a history, SIGKILLs it, produces the rest and
/// restarts it. Returns the time from the restart to its first processed record.
fn restart_on_tansu(instance_id: &str, seed: u64) -> Duration {
    let h = history(150, seed);
    let tansu = Tansu::start(&h.dir);
    let (first, second) = split_history(&h.events, 0.8, &h.dir);
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = tansu.bs.clone();
    backfill_jsonl(&cfg, &first, PARTITIONS).unwrap();
    let id = format!("kafka.instance_id={instance_id}");
    // The default session timeout (45 s) applies: that is what a restart waits for.
    let sets = [
        id.as_str(),
        "ticks.interval_ms=0",
        "state.commit_interval_ms=200",
        "input.align_wait_ms=10000",
        "metrics.lag_interval_ms=200",
    ];
    let state = h.dir.join("state");
    let mut service = Service::spawn(&tansu.bs, &state, &sets, &[]);
    let addr = service.addr();
    wait_caught_up(&mut service, &addr, PARTITIONS, Duration::from_secs(120));
    // Everything read is committed: the restart resumes at the ends of the logs (tansu
    // cannot serve a fetch that starts inside a record batch).
    service.kill();
    backfill_jsonl(&cfg, &second, PARTITIONS).unwrap();

    let restarted = Instant::now();
    let mut service = Service::spawn(&tansu.bs, &state, &sets, &[]);
    let addr = service.addr();
    let took = wait_for(
        "the restarted service processing a record",
        Duration::from_secs(120),
        || {
            service.assert_running();
            (metric(&addr, "churnwatch_processed_events_total")? >= 1.0)
                .then(|| restarted.elapsed())
        },
    );
    eprintln!(
        "restart to first processed record: {:.1} s (kafka.instance_id = {instance_id})",
        took.as_secs_f64()
    );
    // It goes on to the end and stops cleanly.
    wait_caught_up(&mut service, &addr, PARTITIONS, Duration::from_secs(120));
    let status = service.terminate(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}; log:\n{}",
        service.log_text()
    );
    drop(tansu);
    took
}

#[test]
fn restart_on_tansu_with_static_membership_resumes_at_once() {
    let took = restart_on_tansu("auto", 31);
    assert!(
        took < RESTART_BOUND,
        "a restarted static member processed its first record after {took:?}"
    );
}

/// The state before static membership: a restarted dynamic member waits for the
/// killed member's session to expire. Ignored (it takes a minute); run it with
/// `--ignored` to see the difference.
#[test]
#[ignore]
fn restart_on_tansu_without_static_membership_waits_for_the_session_timeout() {
    let took = restart_on_tansu("none", 32);
    assert!(
        took >= RESTART_BOUND,
        "a restarted dynamic member processed its first record after {took:?}"
    );
}

// ---------------------------------------------------------------------------------
// The mock cluster

fn mock_config(bootstrap: &str, state: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.kafka.bootstrap_servers = bootstrap.to_string();
    cfg.output.create_topics = false;
    cfg.state.dir = state.to_path_buf();
    cfg.admin.listen = "127.0.0.1:0".into();
    cfg.ticks.interval_ms = 0;
    cfg
}

#[test]
fn a_fenced_instance_stops_with_a_clear_error() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let dir = tempfile::tempdir().unwrap();
    let cfg = mock_config("", dir.path());
    let cluster = mock_cluster(&cfg, 2).unwrap();
    let mut cfg = mock_config(&cluster.bootstrap_servers(), &dir.path().join("state"));
    cfg.kafka
        .consumer
        .insert("heartbeat.interval.ms".into(), "200".into());
    let running = start(cfg, Policy::default()).unwrap();
    wait_for("the partitions assigned", Duration::from_secs(60), || {
        (running.shared.partitions().0 == 2).then_some(())
    });
    // From now on the coordinator answers as it does when another process joined
    // with the same group.instance.id.
    let fenced = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID; 1000];
    for api in [
        RDKafkaApiKey::Heartbeat,
        RDKafkaApiKey::JoinGroup,
        RDKafkaApiKey::SyncGroup,
        RDKafkaApiKey::OffsetCommit,
    ] {
        cluster.request_errors(api, &fenced);
    }
    wait_for("the service stopping", Duration::from_secs(30), || {
        running.is_finished().then_some(())
    });
    let e = running.wait().unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, ServiceError::Fenced { .. }), "{e:?}");
    assert!(
        message.contains("another instance") && message.contains("kafka.instance_id"),
        "{message}"
    );
}

#[test]
fn sigkilled_three_times_the_service_loses_and_duplicates_nothing() {
    let h = history(300, 33);
    let cluster = mock_cluster(&mock_config("", &h.dir.join("probe")), PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    let total = backfill_jsonl(&mock_config(&bs, &h.dir.join("p")), &h.events, PARTITIONS)
        .unwrap()
        .records;
    // The mock cluster ignores static membership: a restarted member waits for the
    // killed one's session to expire, here 6 s.
    let mut sets = MOCK_SETTINGS.to_vec();
    sets.extend([
        "kafka.consumer.session.timeout.ms=6000",
        "kafka.consumer.heartbeat.interval.ms=1000",
    ]);
    let state = h.dir.join("svc");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(33);
    let mut service = Service::spawn(&bs, &state, &sets, &[]);
    for kill in 1..=3 {
        // Each incarnation is killed after processing a tenth to a fifth of the
        // records (so three kills land before the end), a few ms after a progress
        // report, wherever in its commit cycle that falls.
        let after = rng.gen_range(total / 10..total / 5) as f64;
        let addr = service.addr();
        wait_for("progress before a kill", Duration::from_secs(120), || {
            service.assert_running();
            (metric(&addr, "churnwatch_processed_events_total")? >= after).then_some(())
        });
        std::thread::sleep(Duration::from_micros(rng.gen_range(0..3000)));
        service.kill();
        eprintln!("kill {kill}: after {after} of {total} records processed");
        service = Service::spawn(&bs, &state, &sets, &[]);
    }
    let addr = service.addr();
    wait_caught_up(&mut service, &addr, PARTITIONS, Duration::from_secs(180));
    let status = service.terminate(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
    let got = changes_by_id(&bs, h.expected.len());
    assert_same(&h, &got);
}
