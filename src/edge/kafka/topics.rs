//! The service's view of Kafka before it starts consuming: the input topics and their
//! decoders, the client configurations (group consumer, changelog reader, idempotent
//! producer, admin client) and [`prepare_topics`], which checks the input topics are
//! co-partitioned and the output topics exist, creating them when configured to.
//!
//! Reads the config and the cluster's metadata; creates topics only through the admin
//! client and only when `output.create_topics` is set. Holds no state.

use crate::codec::avro::InputKind;
use crate::codec::record::{Encoding, TopicDecoder};
use crate::edge::kafka::config::{Config, InputFormat, Role, TopicConfig};
use crate::edge::kafka::error::{kafka, ServiceError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::time::Duration;
use tracing::info;

/// The distinct input topics, in config order (repair orders, visits, contracts), each
/// with its decoder: a record's source index is its topic's position here.
pub(crate) struct Inputs {
    /// Topic names.
    pub topics: Vec<String>,
    /// One decoder per topic.
    pub decoders: Vec<TopicDecoder>,
}

/// The input topics of `cfg` and their decoders (a topic named twice is read once,
/// with the first kind's decoder).
pub(crate) fn inputs(cfg: &Config) -> Result<Inputs, ServiceError> {
    let inputs = [
        (InputKind::RepairOrder, &cfg.input.repair_orders),
        (InputKind::Visit, &cfg.input.visits),
        (InputKind::Contract, &cfg.input.contracts),
    ];
    let mut topics: Vec<String> = Vec::new();
    let mut decoders = Vec::new();
    for (kind, t) in inputs {
        if !topics.contains(&t.topic) {
            topics.push(t.topic.clone());
            decoders.push(decoder(kind, t)?);
        }
    }
    Ok(Inputs { topics, decoders })
}

/// Builds one input topic's decoder from its config.
fn decoder(kind: InputKind, t: &TopicConfig) -> Result<TopicDecoder, ServiceError> {
    let enc = match t.format {
        InputFormat::Json => Encoding::Json,
        InputFormat::Avro => Encoding::Avro(kind),
        InputFormat::Confluent => Encoding::Confluent,
    };
    Ok(TopicDecoder::new(&t.topic, enc, t.schema_kinds())?)
}

/// The librdkafka properties of `cfg` for a client of this role.
pub(crate) fn client_config(cfg: &Config, role: Role) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in cfg.client_properties(role) {
        c.set(k, v);
    }
    c
}

/// Sets `defaults` that the config does not set itself.
fn set_defaults(c: &mut ClientConfig, defaults: &[(&str, &str)]) {
    for (k, v) in defaults {
        if c.get(k).is_none() {
            c.set(*k, *v);
        }
    }
}

/// The group consumer: manual offsets (kept in sled; the group's offsets are for lag
/// monitoring only), eager `range` assignment, committed reads only; a static member
/// named `instance_id` when given (see [`Config::group_instance_id`]).
pub(crate) fn consumer_config(cfg: &Config, instance_id: Option<&str>) -> ClientConfig {
    let mut c = client_config(cfg, Role::Consumer);
    c.set("group.id", &cfg.kafka.group_id);
    if let Some(id) = instance_id {
        c.set("group.instance.id", id);
    }
    set_defaults(
        &mut c,
        &[
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("partition.assignment.strategy", "range"),
            ("isolation.level", "read_committed"),
            // Live latency: do not let an idle fetch wait the default 500 ms.
            ("fetch.wait.max.ms", "100"),
        ],
    );
    c
}

/// The changelog reader used by restores: assigned by hand, in a group of its own.
pub(crate) fn restorer_config(cfg: &Config) -> ClientConfig {
    let mut c = client_config(cfg, Role::Consumer);
    c.set("group.id", format!("{}-restore", cfg.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    c
}

/// The output producer: idempotent, acknowledged by every in-sync replica.
pub(crate) fn producer_config(cfg: &Config) -> ClientConfig {
    let mut c = client_config(cfg, Role::Producer);
    set_defaults(
        &mut c,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
        ],
    );
    c
}

/// How long one metadata request may wait for the brokers before the service says
/// which address it cannot reach and tries again.
const METADATA_ATTEMPT: Duration = Duration::from_secs(5);

/// How long the service keeps trying to reach the brokers at start-up.
const METADATA_PATIENCE: Duration = Duration::from_secs(30);

/// Reads `topic`'s metadata, retrying every `attempt` for up to `patience`: each
/// failed attempt is logged as a warning naming the brokers (`bootstrap`) and the
/// error, so an unreachable address shows within seconds; the error at the end
/// names them too.
fn fetch_metadata(
    probe: &BaseConsumer,
    topic: &str,
    bootstrap: &str,
    attempt: Duration,
    patience: Duration,
) -> Result<rdkafka::metadata::Metadata, ServiceError> {
    let started = std::time::Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        match probe.fetch_metadata(Some(topic), attempt) {
            Ok(md) => return Ok(md),
            Err(e) if started.elapsed() + attempt <= patience => {
                tracing::warn!(
                    "cannot reach the Kafka brokers at {bootstrap} (attempt {tries}: {e}); \
                     retrying for up to {} s in all",
                    patience.as_secs()
                );
            }
            Err(e) => {
                return Err(kafka(format!(
                    "reading metadata of topic `{topic}` from the brokers at {bootstrap} \
                     ({tries} attempts over {:.0} s)",
                    started.elapsed().as_secs_f64()
                ))(e))
            }
        }
    }
}

/// Checks the input topics are co-partitioned and the output topics exist (creating
/// them when configured to). Returns the number of input partitions.
pub(crate) fn prepare_topics(
    cfg: &Config,
    topics: &[String],
    rt: &tokio::runtime::Handle,
) -> Result<i32, ServiceError> {
    let probe: BaseConsumer = client_config(cfg, Role::Consumer)
        .create()
        .map_err(kafka("creating a metadata client"))?;
    let count = |topic: &str| -> Result<Option<i32>, ServiceError> {
        let md = fetch_metadata(
            &probe,
            topic,
            &cfg.kafka.bootstrap_servers,
            METADATA_ATTEMPT,
            METADATA_PATIENCE,
        )?;
        Ok(md
            .topics()
            .first()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .map(|t| t.partitions().len() as i32))
    };
    let mut n = None;
    for t in topics {
        let c = count(t)?.ok_or_else(|| {
            ServiceError::Topics(format!(
                "input topic `{t}` does not exist; create it (co-partitioned with the other input topics) or fix input.*.topic"
            ))
        })?;
        if let Some(prev) = n {
            if prev != c {
                return Err(ServiceError::Topics(format!(
                    "input topics must be co-partitioned by customer_id: `{t}` has {c} partitions, `{}` has {prev}",
                    topics[0]
                )));
            }
        }
        n = Some(c);
    }
    let n = n.expect("at least one input topic");
    let out = &cfg.output;
    // The changelog must mirror the input partitions; the status and dead-letter
    // topics take output.partitions.
    let wanted = [
        (out.status_topic.as_str(), out.partitions, true),
        (out.changelog_topic.as_str(), n, true),
        (out.dead_letter_topic.as_str(), out.partitions, false),
    ];
    let mut missing = Vec::new();
    for (t, parts, _) in &wanted {
        match count(t)? {
            Some(c) if *t == out.changelog_topic && c != *parts => {
                return Err(ServiceError::Topics(format!(
                    "changelog topic `{t}` has {c} partitions but the inputs have {parts}; they must match"
                )))
            }
            Some(_) => {}
            None => missing.push(*t),
        }
    }
    if missing.is_empty() {
        return Ok(n);
    }
    if !out.create_topics {
        return Err(ServiceError::Topics(format!(
            "output topics missing: {}; create them or set output.create_topics = true",
            missing.join(", ")
        )));
    }
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = client_config(cfg, Role::Admin)
        .create()
        .map_err(kafka("creating an admin client"))?;
    let lag = out.status_min_compaction_lag_ms.to_string();
    let new: Vec<NewTopic<'_>> = wanted
        .iter()
        .filter(|(t, _, _)| missing.contains(t))
        .map(|(t, parts, compact)| {
            let mut nt = NewTopic::new(t, *parts, TopicReplication::Fixed(out.replication_factor));
            if *compact {
                nt = nt.set("cleanup.policy", "compact");
            }
            if *t == out.status_topic {
                nt = nt.set("min.compaction.lag.ms", &lag);
            }
            nt
        })
        .collect();
    let res = rt
        .block_on(
            admin.create_topics(
                new.iter(),
                &AdminOptions::new()
                    .request_timeout(Some(Duration::from_secs(30)))
                    .operation_timeout(Some(Duration::from_secs(30))),
            ),
        )
        .map_err(kafka("creating the output topics"))?;
    for r in res {
        if let Err((t, e)) = r {
            if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                return Err(ServiceError::Topics(format!(
                    "cannot create topic `{t}`: {e}; create it by hand or check the ACLs"
                )));
            }
        }
        info!("created the missing output topics");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_wins_over_the_client_defaults() {
        let mut cfg = Config::default();
        cfg.kafka
            .consumer
            .insert("partition.assignment.strategy".into(), "roundrobin".into());
        cfg.kafka.producer.insert("linger.ms".into(), "50".into());
        let c = consumer_config(&cfg, None);
        assert_eq!(c.get("partition.assignment.strategy"), Some("roundrobin"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("group.id"), Some("churnwatch"));
        assert_eq!(c.get("group.instance.id"), None);
        let c = consumer_config(&cfg, Some("host-1234abcd"));
        assert_eq!(c.get("group.instance.id"), Some("host-1234abcd"));
        let p = producer_config(&cfg);
        assert_eq!(p.get("linger.ms"), Some("50"));
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        let r = restorer_config(&cfg);
        assert_eq!(r.get("group.id"), Some("churnwatch-restore"));
        assert_eq!(
            r.get("group.instance.id"),
            None,
            "the changelog reader is no group member"
        );
    }

    #[test]
    fn an_unreachable_broker_is_named_in_the_error() {
        let mut cfg = Config::default();
        cfg.kafka.bootstrap_servers = "127.0.0.1:1".into();
        let probe: BaseConsumer = client_config(&cfg, Role::Consumer).create().unwrap();
        let started = std::time::Instant::now();
        let e = fetch_metadata(
            &probe,
            "visits",
            &cfg.kafka.bootstrap_servers,
            Duration::from_millis(500),
            Duration::from_secs(2),
        )
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(10), "{e}");
        assert!(e.contains("from the brokers at 127.0.0.1:1"), "{e}");
        assert!(e.contains("check kafka.bootstrap_servers"), "{e}");
    }

    #[test]
    fn a_topic_named_twice_is_read_once() {
        let mut cfg = Config::default();
        cfg.input.contracts.topic = cfg.input.visits.topic.clone();
        let i = inputs(&cfg).unwrap();
        assert_eq!(i.topics, ["repair-orders", "visits"]);
        assert_eq!(i.decoders.len(), 2);
    }
}
