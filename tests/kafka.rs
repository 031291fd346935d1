//! The Kafka service against librdkafka's mock cluster (a real Kafka-protocol broker
//! on a loopback port): the same status changes as `replay` over the same history,
//! two instances in one group with a rebalance and changelog restore, and a SIGKILL of
//! the service process mid-stream followed by a restart — no loss, no duplicates
//! (except identical re-deliveries).

mod common;

use churnwatch::core::policy::Policy;
use churnwatch::core::time::Ts;
use churnwatch::edge::kafka::config::Config;
use churnwatch::edge::kafka::io::{backfill_jsonl, mock_cluster, read_topic, Backfill};
use churnwatch::edge::kafka::{start, Running};
use common::service::{metric, wait_caught_up as wait_caught_up_process, Service, MOCK_SETTINGS};
use common::{assert_same, changes_by_id, history, History};
use rdkafka::Message;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 6;

fn config(bootstrap: &str, state: &Path) -> Config {
    common::mock_service_config(bootstrap, state)
}

fn client(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    c
}

/// Waits until the instances own every partition between them and have handed on,
/// committed and delivered everything.
fn wait_caught_up(instances: &[&Running], timeout: Duration) {
    let started = Instant::now();
    let mut stable = 0;
    while stable < 3 {
        assert!(
            started.elapsed() < timeout,
            "not caught up within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
        let owned: usize = instances.iter().map(|r| r.shared.partitions().0).sum();
        if owned == PARTITIONS as usize && instances.iter().all(|r| r.shared.caught_up()) {
            stable += 1;
        } else {
            stable = 0;
        }
    }
}

fn backfill(cfg: &Config, h: &History) -> Backfill {
    let b = backfill_jsonl(cfg, &h.events, PARTITIONS).unwrap();
    assert!(b.ticks >= 1);
    b
}

#[test]
fn kafka_path_gives_the_same_status_changes_as_replay() {
    let h = history(300, 11);
    let probe = config("", &h.dir.join("s"));
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    let mut cfg = config(&bs, &h.dir.join("state"));
    cfg.metrics.kpi_interval_ms = 100;
    backfill(&cfg, &h);
    let running = start(cfg, Policy::default()).unwrap();
    wait_caught_up(&[&running], Duration::from_secs(120));
    // The KPI task has computed the users' KPIs per dealer from the stored states.
    let started = Instant::now();
    while !running
        .shared
        .metrics
        .render()
        .contains("churnwatch_effective_customers{dealer=\"D0001\"}")
    {
        assert!(started.elapsed() < Duration::from_secs(10), "no KPI gauges");
        std::thread::sleep(Duration::from_millis(50));
    }
    let published = running.shared.published();
    running.stop().unwrap();
    let got = changes_by_id(&bs, published.changes as usize);
    assert_same(&h, &got);
    // Dead letters carry the reason and the source position.
    let dead = read_topic(
        &client(&bs),
        "churnwatch-dead-letters",
        Duration::from_secs(30),
        |m| m.len() as u64 >= published.dead_letters,
    )
    .unwrap();
    assert!(!dead.is_empty(), "the generated history has dirty lines");
    use rdkafka::message::Headers;
    let headers = dead[0].headers().unwrap();
    let names: Vec<&str> = headers.iter().map(|h| h.key).collect();
    for n in [
        "churnwatch-error-code",
        "churnwatch-error",
        "churnwatch-source-topic",
        "churnwatch-source-partition",
        "churnwatch-source-offset",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
}

#[test]
fn partitions_worked_on_side_by_side_give_the_same_status_changes_as_replay() {
    let h = history(300, 12);
    let probe = config("", &h.dir.join("s"));
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    let mut cfg = config(&bs, &h.dir.join("state"));
    // More threads than cores: partitions are decoded, handed on and committed on
    // several threads at once whatever the machine.
    cfg.state.threads = 3;
    backfill(&cfg, &h);
    let running = start(cfg, Policy::default()).unwrap();
    wait_caught_up(&[&running], Duration::from_secs(120));
    let published = running.shared.published();
    running.stop().unwrap();
    let got = changes_by_id(&bs, published.changes as usize);
    assert_same(&h, &got);
}

#[test]
fn two_instances_share_the_partitions_and_give_the_same_union() {
    let h = history(300, 12);
    let probe = config("", &h.dir.join("s"));
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    backfill(&config(&bs, &h.dir.join("a")), &h);
    let mut a_cfg = config(&bs, &h.dir.join("a"));
    // Small commits so that the second instance joins mid-stream.
    a_cfg.state.commit_max_records = 200;
    let a = start(a_cfg, Policy::default()).unwrap();
    let started = Instant::now();
    while a.shared.metrics.processed_events.get() < 500 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "a never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let b = start(config(&bs, &h.dir.join("b")), Policy::default()).unwrap();
    wait_caught_up(&[&a, &b], Duration::from_secs(180));
    let (pa, pb) = (a.shared.partitions().0, b.shared.partitions().0);
    assert!(
        pa > 0 && pb > 0,
        "both instances own partitions: {pa} and {pb}"
    );
    assert!(
        b.shared.metrics.restores.get() > 0,
        "the second instance restored partitions from the changelog"
    );
    let published = a.shared.published().changes + b.shared.published().changes;
    a.stop().unwrap();
    b.stop().unwrap();
    let got = changes_by_id(&bs, published as usize);
    assert_same(&h, &got);
}

/// A mock cluster holding a generated history, and the service binary running on it
/// until it has processed at least `progress` records.
struct ServiceProcess {
    h: History,
    cluster: rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    bs: String,
    service: Service,
}

fn service_process(seed: u64, progress: f64, env: &[(&str, &str)]) -> ServiceProcess {
    let h = history(300, seed);
    let probe = config("", &h.dir.join("s"));
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    backfill(&config(&bs, &h.dir.join("s")), &h);
    let mut service = Service::spawn(&bs, &h.dir.join("svc"), MOCK_SETTINGS, env);
    let addr = service.addr();
    let started = Instant::now();
    while metric(&addr, "churnwatch_processed_events_total").unwrap_or(0.0) < progress {
        assert!(started.elapsed() < Duration::from_secs(60), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    ServiceProcess {
        h,
        cluster,
        bs,
        service,
    }
}

#[test]
fn sigkill_mid_stream_then_restart_loses_and_duplicates_nothing() {
    // Kill it once it has processed some, but not all, records.
    let ServiceProcess {
        h,
        cluster: _cluster,
        bs,
        mut service,
    } = service_process(13, 2000.0, &[]);
    service.kill();
    let mut service = Service::spawn(&bs, &service.state, MOCK_SETTINGS, &[]);
    let addr = service.addr();
    wait_caught_up_process(&mut service, &addr, PARTITIONS, Duration::from_secs(120));
    // Ready once every partition is restored.
    let r = ureq::get(&format!("http://{addr}/readyz")).call().unwrap();
    assert_eq!(r.status(), 200);
    // /customers/{id} answers from the live service's store.
    let some = h.expected.values().next().unwrap()["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("http://{addr}/customers/{some}"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["customer_id"], some.as_str());
    assert!(body["published"]["level"].is_string(), "{body}");
    let missing = ureq::get(&format!("http://{addr}/customers/NO-SUCH-CUSTOMER")).call();
    assert!(matches!(missing, Err(ureq::Error::Status(404, _))));
    // SIGTERM drains and exits 0.
    let status = service.terminate(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "exit after SIGTERM: {status:?}");
    let got = changes_by_id(&bs, h.expected.len());
    assert_same(&h, &got);
}

/// The error a service with this config stops with.
fn refusal(cfg: Config) -> String {
    start(cfg, Policy::default())
        .unwrap()
        .wait()
        .unwrap_err()
        .to_string()
}

#[test]
fn missing_output_topics_and_uneven_inputs_are_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = rdkafka::mocking::MockCluster::new(1).unwrap();
    for t in ["repair-orders", "visits", "contracts"] {
        cluster.create_topic(t, 4, 1).unwrap();
    }
    cluster.create_topic("visits-3", 3, 1).unwrap();
    let bs = cluster.bootstrap_servers();
    // (Creating missing output topics is exercised against tansu in tests/e2e_tansu.rs:
    // the mock cluster does not implement CreateTopics.)
    let cfg = config(&bs, &dir.path().join("a"));
    let e = refusal(cfg);
    assert!(
        e.contains("output topics missing")
            && e.contains("customer-status")
            && e.contains("create_topics"),
        "{e}"
    );
    let mut cfg = config(&bs, &dir.path().join("b"));
    cfg.input.visits.topic = "visits-3".into();
    let e = refusal(cfg);
    assert!(
        e.contains("co-partitioned") && e.contains("visits-3"),
        "{e}"
    );
    let mut cfg = config(&bs, &dir.path().join("c"));
    cfg.input.contracts.topic = "no-such-topic".into();
    let e = refusal(cfg);
    assert!(e.contains("`no-such-topic` does not exist"), "{e}");
}

#[test]
fn a_state_directory_that_cannot_be_created_is_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = mock_cluster(&config("", dir.path()), 2).unwrap();
    // A regular file where the state directory's parent should be.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, "").unwrap();
    let e = refusal(config(&cluster.bootstrap_servers(), &file.join("state")));
    assert!(
        e.contains("cannot create the state directory")
            && e.contains("not-a-dir/state")
            && e.contains("state.dir"),
        "{e}"
    );
    assert!(!e.contains("--fresh"), "{e}");
}

/// Produces `h`'s history with each input topic in its own encoding: repair orders as
/// plain Avro datums, visits in the Confluent wire format (schema id 7 = visit, 9 =
/// tick), contracts as JSON. Lines that do not encode are sent as they are (they
/// become dead letters, as in `replay`).
fn backfill_encoded(bs: &str, h: &History) {
    use churnwatch::codec::avro::{encode_input, InputKind};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let producer: ThreadedProducer<DefaultProducerContext> = client(bs).create().unwrap();
    let send =
        |topic: &str, key: Option<&str>, partition: Option<i32>, value: Vec<u8>, tick: bool| {
            let mut rec: BaseRecord<'_, str, Vec<u8>> = BaseRecord::to(topic).payload(&value);
            if let Some(k) = key {
                rec = rec.key(k);
            }
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            if tick {
                rec = rec.headers(OwnedHeaders::new().insert(Header {
                    key: "churnwatch-record",
                    value: Some("tick"),
                }));
            }
            producer.send(rec).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
        };
    let confluent = |id: u8, datum: Vec<u8>| {
        let mut v = vec![0, 0, 0, 0, id];
        v.extend(datum);
        v
    };
    for line in std::fs::read_to_string(&h.events).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
        let key = v["customer_id"].as_str();
        let raw = line.as_bytes().to_vec();
        match v["type"].as_str() {
            Some("tick") => {
                for p in 0..PARTITIONS {
                    let ro = encode_input(&v, InputKind::Tick).unwrap();
                    send("repair-orders", None, Some(p), ro.clone(), true);
                    send("visits", None, Some(p), confluent(9, ro), true);
                    send("contracts", None, Some(p), raw.clone(), true);
                }
            }
            Some("repair_order") if key.is_some() => {
                let value = encode_input(&v, InputKind::RepairOrder).unwrap_or(raw);
                send("repair-orders", key, None, value, false);
            }
            Some("contract") if key.is_some() => send("contracts", key, None, raw, false),
            _ if key.is_some() => {
                let value = encode_input(&v, InputKind::Visit)
                    .map(|d| confluent(7, d))
                    .unwrap_or(raw);
                send("visits", key, None, value, false);
            }
            _ => send("visits", None, Some(0), raw, false),
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

#[test]
fn avro_and_confluent_inputs_with_avro_output_give_the_same_changes() {
    use churnwatch::codec::record::decode_change;
    use churnwatch::codec::Format;
    use churnwatch::edge::kafka::config::InputFormat;
    let h = history(200, 14);
    let probe = config("", &h.dir.join("s"));
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    backfill_encoded(&bs, &h);
    let mut cfg = config(&bs, &h.dir.join("state"));
    cfg.input.repair_orders.format = InputFormat::Avro;
    cfg.input.visits.format = InputFormat::Confluent;
    cfg.input.visits.confluent_schema_ids = [
        ("7".to_string(), "visit".to_string()),
        ("9".to_string(), "tick".to_string()),
    ]
    .into_iter()
    .collect();
    cfg.output.format = Format::Avro;
    let running = start(cfg, Policy::default()).unwrap();
    wait_caught_up(&[&running], Duration::from_secs(120));
    let published = running.shared.published();
    running.stop().unwrap();
    let msgs = read_topic(
        &client(&bs),
        "customer-status",
        Duration::from_secs(60),
        |m| m.len() as u64 >= published.changes,
    )
    .unwrap();
    let mut got = BTreeMap::new();
    for m in &msgs {
        let c = decode_change(m.payload().unwrap(), Format::Avro).unwrap();
        got.insert(c.event_id.clone(), serde_json::to_value(&c).unwrap());
    }
    assert_same(&h, &got);
}

#[test]
fn wall_clock_ticks_fire_timers_on_quiet_partitions() {
    // A history that ended years ago and nothing since: only ticks move stream time.
    let h = history(100, 15);
    let probe = config("", &h.dir.join("s"));
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    let mut cfg = config(&bs, &h.dir.join("state"));
    backfill(&cfg, &h);
    cfg.ticks.interval_ms = 200;
    let running = start(cfg, Policy::default()).unwrap();
    let started = Instant::now();
    while running.shared.metrics.ticks_consumed.get() < 2 * 3 * PARTITIONS as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "ticks never came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Ticks keep flowing, so "caught up" holds only between a commit and the next
    // tick: wait until the loop has found itself caught up once more.
    let seen = running.shared.caught_up_seen();
    let started = Instant::now();
    while running.shared.caught_up_seen() == seen {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never caught up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(running.shared.metrics.ticks_produced.get() >= 3 * PARTITIONS as u64);
    let published = running.shared.published();
    running.stop().unwrap();
    let got = changes_by_id(&bs, published.changes as usize);
    // Timers fired after the end of the history, up to the wall clock: customers who
    // simply stopped coming reached the last lifecycle stage.
    let end = h.cutoff;
    let later: Vec<&serde_json::Value> = got
        .values()
        .filter(|v| {
            v["trigger"] == "timer"
                && Ts::parse_rfc3339(v["event_time"].as_str().unwrap()).unwrap() > end
        })
        .collect();
    assert!(!later.is_empty(), "no timer fired after the history");
    assert!(
        later.iter().any(|v| v["lifecycle"] == "fully_churned"),
        "years of silence end in fully_churned"
    );
    // Everything up to the end of the history is still exactly replay's.
    let before: BTreeMap<String, serde_json::Value> = got
        .into_iter()
        .filter(|(_, v)| Ts::parse_rfc3339(v["event_time"].as_str().unwrap()).unwrap() <= end)
        .collect();
    assert_same(&h, &before);
}

#[test]
fn a_second_signal_exits_at_once_when_the_drain_hangs() {
    let ServiceProcess {
        h: _history,
        cluster,
        mut service,
        ..
    } = service_process(16, 300.0, &[]);
    let child = &mut service.child;
    // The broker goes away mid-stream: deliveries now wait for their deadline.
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let term = || {
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
    };
    term();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still draining (broker down)"
    );
    let sent = Instant::now();
    term();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "the second signal did not exit at once"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
}

#[test]
fn with_the_broker_gone_one_signal_drains_within_its_bound_and_exits_1() {
    let ServiceProcess {
        h: _history,
        cluster,
        mut service,
        ..
    } = service_process(
        17,
        300.0,
        &[("CHURNWATCH__SHUTDOWN__DRAIN_TIMEOUT_MS", "2000")],
    );
    cluster.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let sent = Instant::now();
    let Some(status) = service.terminate(Duration::from_secs(6)) else {
        panic!(
            "the drain bound (2 s) was not kept; log:\n{}",
            service.log_text()
        );
    };
    // Not drained (the outbox waits for the next start): exit 1, not the watchdog's 130.
    assert_eq!(
        status.code(),
        Some(1),
        "{status:?} after {:?}",
        sent.elapsed()
    );
}

/// The value of the sample `series` (a name with its labels, as rendered) at `addr`.
fn series(addr: &str, series: &str) -> Option<f64> {
    let body = ureq::get(&format!("http://{addr}/metrics"))
        .call()
        .ok()?
        .into_string()
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// `/healthz` at `addr`: the status and the body.
fn healthz(addr: &str) -> (u16, String) {
    match ureq::get(&format!("http://{addr}/healthz")).call() {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
        Err(e) => panic!("/healthz: {e}"),
    }
}

/// `h`'s events with one more line: a visit whose customer id is 3,000 bytes long, so
/// its dead letter quotes 3,000 bytes back.
fn with_hostile_line(h: &History) -> PathBuf {
    let text = std::fs::read_to_string(&h.events).unwrap();
    let visit = text
        .lines()
        .find(|l| l.contains("\"type\":\"visit\""))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(visit).unwrap();
    v["event_id"] = "hostile-1".into();
    v["customer_id"] = "C".repeat(3000).into();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.insert(20, v.to_string());
    let path = h.dir.join("with-hostile.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn an_output_record_refused_for_good_is_replaced_and_blocks_nothing() {
    let h = history(150, 17);
    let events = with_hostile_line(&h);
    let probe = config("", &h.dir.join("s"));
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    let mut cfg = config(&bs, &h.dir.join("state"));
    backfill_jsonl(&cfg, &events, PARTITIONS).unwrap();
    // The producer refuses any record over 2,000 bytes, as a broker refuses one over
    // its max.message.bytes: the hostile line's dead letter is one.
    cfg.kafka
        .producer
        .insert("message.max.bytes".into(), "2000".into());
    let running = start(cfg, Policy::default()).unwrap();
    let addr = running.admin_addr.to_string();
    wait_caught_up(&[&running], Duration::from_secs(120));
    assert_eq!(
        series(
            &addr,
            "churnwatch_undeliverable_total{kind=\"dead_letter\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        series(
            &addr,
            "churnwatch_undeliverable_total{kind=\"status_change\"}"
        ),
        None,
        "no status change is that large"
    );
    assert_eq!(healthz(&addr).0, 200);
    let published = running.shared.published();
    running.stop().unwrap();
    // Every status change went out, as replay has them.
    let got = changes_by_id(&bs, published.changes as usize);
    assert_same(&h, &got);
    // In the dead letter's place: a stand-in without the payload, saying why.
    use rdkafka::message::Headers;
    let dead = read_topic(
        &client(&bs),
        "churnwatch-dead-letters",
        Duration::from_secs(30),
        |m| m.len() as u64 >= published.dead_letters,
    )
    .unwrap();
    let header = |m: &rdkafka::message::OwnedMessage, k: &str| -> Option<String> {
        m.headers()?
            .iter()
            .find(|h| h.key == k)
            .map(|h| String::from_utf8_lossy(h.value.unwrap()).into_owned())
    };
    let stand_in: Vec<_> = dead
        .iter()
        .filter(|m| header(m, "churnwatch-error-code").as_deref() == Some("undeliverable"))
        .collect();
    assert_eq!(stand_in.len(), 1, "one stand-in");
    let m = stand_in[0];
    assert!(m.payload().unwrap_or_default().is_empty());
    assert_eq!(
        header(m, "churnwatch-undeliverable-kind").as_deref(),
        Some("dead_letter")
    );
    assert_eq!(
        header(m, "churnwatch-original-error-code").as_deref(),
        Some("invalid_field")
    );
    let why = header(m, "churnwatch-error").unwrap();
    assert!(why.contains("refused for good"), "{why}");
}

#[test]
fn a_stuck_outbox_shows_on_healthz_and_in_a_metric_until_it_moves_again() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
    let h = history(100, 19);
    let probe = config("", &h.dir.join("s"));
    let cluster = mock_cluster(&probe, PARTITIONS).unwrap();
    let bs = cluster.bootstrap_servers();
    let mut cfg = config(&bs, &h.dir.join("state"));
    cfg.output.stuck_after_ms = 1_000;
    backfill(&cfg, &h);
    // From now on the broker answers every produce request with an error that passes
    // (not enough replicas): librdkafka retries, the outbox waits.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
    );
    let running = start(cfg, Policy::default()).unwrap();
    let addr = running.admin_addr.to_string();
    let started = Instant::now();
    let body = loop {
        let (status, body) = healthz(&addr);
        if status == 503 {
            break body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "/healthz never reported the stuck outbox"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body.contains("outbox is stuck"), "{body}");
    let waited = series(&addr, "churnwatch_outbox_oldest_seconds").unwrap();
    assert!(waited >= 1.0, "{waited}");
    assert!(series(&addr, "churnwatch_outbox_pending").unwrap() > 0.0);
    // The broker recovers: the outbox drains, health returns, the gauge goes to 0.
    cluster.clear_request_errors(RDKafkaApiKey::Produce);
    wait_caught_up(&[&running], Duration::from_secs(120));
    assert_eq!(healthz(&addr), (200, "ok".to_string()));
    assert_eq!(series(&addr, "churnwatch_outbox_oldest_seconds"), Some(0.0));
    let published = running.shared.published();
    running.stop().unwrap();
    assert_same(&h, &changes_by_id(&bs, published.changes as usize));
}
