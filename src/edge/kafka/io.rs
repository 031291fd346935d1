//! Moving recorded history into Kafka and reading topics back: what `demo --kafka`,
//! the backfill of a history file and the integration tests use around the service.
//!
//! Owns nothing of a running service: each call makes its own short-lived client
//! (a producer to the input topics, a group-less reader, or the mock cluster).

use crate::codec::record::RECORD_TYPE_HEADER;
use crate::edge::kafka::config::Config;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

/// A backfill or topic read failed.
#[derive(Debug, Error)]
pub enum IoError {
    /// Kafka failed.
    #[error("Kafka {what} failed: {source}")]
    Kafka {
        /// What was attempted.
        what: String,
        /// Cause.
        source: rdkafka::error::KafkaError,
    },
    /// The history file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Reading a topic did not finish in time.
    #[error("topic `{topic}`: read {got} records, expected more before the {secs}s timeout")]
    Timeout {
        /// Topic.
        topic: String,
        /// Records read.
        got: usize,
        /// Seconds waited.
        secs: u64,
    },
}

fn kafka(what: &str) -> impl FnOnce(rdkafka::error::KafkaError) -> IoError + '_ {
    move |source| IoError::Kafka {
        what: what.to_string(),
        source,
    }
}

/// What a backfill wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Backfill {
    /// Lines read.
    pub lines: u64,
    /// Records produced to the repair-order, visit and contract topics (ticks count
    /// once per partition written).
    pub records: u64,
    /// Tick lines (each written to every partition of every input topic).
    pub ticks: u64,
}

fn json_field<'a>(v: &'a serde_json::Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(|x| x.as_str())
}

/// Produces a JSON-lines history (as `generate` writes it) to the input topics of
/// `cfg`, keyed by `customer_id`: each event to its type's topic, each tick to every
/// partition of every input topic, and lines without a known type or customer to the
/// visits topic's partition 0 (they end up as dead letters, as in `replay`).
/// `partitions` is the input topics' partition count.
pub fn backfill_jsonl(cfg: &Config, path: &Path, partitions: i32) -> Result<Backfill, IoError> {
    let mut pc = ClientConfig::new();
    for (k, v) in cfg.client_properties(crate::edge::kafka::config::Role::Producer) {
        pc.set(k, v);
    }
    pc.set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000");
    let producer: ThreadedProducer<DefaultProducerContext> = pc
        .create()
        .map_err(kafka("creating the backfill producer"))?;
    let f = std::fs::File::open(path).map_err(|source| IoError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let inputs = &cfg.input;
    let topics = cfg.input_topics();
    let mut done = Backfill::default();
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(|source| IoError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        done.lines += 1;
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or(serde_json::Value::Null);
        let ty = json_field(&v, "type");
        if ty == Some("tick") {
            done.ticks += 1;
            for t in &topics {
                for p in 0..partitions {
                    let h = OwnedHeaders::new().insert(Header {
                        key: RECORD_TYPE_HEADER,
                        value: Some("tick"),
                    });
                    send(
                        &producer,
                        BaseRecord::<(), str>::to(t)
                            .payload(&line)
                            .partition(p)
                            .headers(h),
                    )?;
                    done.records += 1;
                }
            }
            continue;
        }
        let topic = match ty {
            Some("repair_order") => &inputs.repair_orders.topic,
            Some("contract") => &inputs.contracts.topic,
            _ => &inputs.visits.topic,
        };
        match json_field(&v, "customer_id") {
            Some(c) => send(&producer, BaseRecord::to(topic).key(c).payload(&line))?,
            None => send(
                &producer,
                BaseRecord::<str, str>::to(topic)
                    .payload(&line)
                    .partition(0),
            )?,
        }
        done.records += 1;
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(kafka("flushing the backfill"))?;
    Ok(done)
}

fn send<K: rdkafka::message::ToBytes + ?Sized, P: rdkafka::message::ToBytes + ?Sized>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut rec: BaseRecord<'_, K, P>,
) -> Result<(), IoError> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                std::thread::sleep(Duration::from_millis(5));
                rec = r;
            }
            Err((e, _)) => return Err(kafka("producing the backfill")(e)),
        }
    }
}

/// Reads every record of `topic` (all partitions, from the beginning, no consumer
/// group) until `done` says the records read suffice or `timeout` passes.
pub fn read_topic(
    client: &ClientConfig,
    topic: &str,
    timeout: Duration,
    done: impl Fn(&[OwnedMessage]) -> bool,
) -> Result<Vec<OwnedMessage>, IoError> {
    let mut cc = client.clone();
    cc.set("group.id", "churnwatch-reader")
        .set("enable.auto.commit", "false");
    let c: BaseConsumer = cc.create().map_err(kafka("creating a topic reader"))?;
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .map_err(kafka("reading topic metadata"))?;
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .map_err(kafka("assigning partitions"))?;
        }
    }
    c.assign(&tpl).map_err(kafka("assigning partitions"))?;
    let started = Instant::now();
    let mut out = Vec::new();
    while !done(&out) {
        if started.elapsed() > timeout {
            return Err(IoError::Timeout {
                topic: topic.into(),
                got: out.len(),
                secs: timeout.as_secs(),
            });
        }
        if let Some(r) = c.poll(Duration::from_millis(200)) {
            out.push(r.map_err(kafka("reading a topic"))?.detach());
        }
    }
    Ok(out)
}

/// Starts librdkafka's in-process mock cluster (a real Kafka-protocol broker on a
/// loopback port) with `cfg`'s input and output topics, `partitions` each. It keeps at
/// most 5 MB per partition (older records are dropped): size demos and tests below.
pub fn mock_cluster(
    cfg: &Config,
    partitions: i32,
) -> Result<rdkafka::mocking::MockCluster<'static, DefaultProducerContext>, IoError> {
    let cluster =
        rdkafka::mocking::MockCluster::new(1).map_err(kafka("starting the mock cluster"))?;
    for t in cfg.topics() {
        cluster
            .create_topic(t, partitions, 1)
            .map_err(kafka("creating a mock topic"))?;
    }
    Ok(cluster)
}
