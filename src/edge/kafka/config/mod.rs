//! The configuration of the Kafka service (`churnwatch run`): one typed [`Config`].
//!
//! [`Config::load`] builds it from layers; a later layer wins:
//!
//! 1. the defaults documented on every field;
//! 2. a TOML file (`--config FILE`), which only needs the keys it changes;
//! 3. environment variables `CHURNWATCH__SECTION__KEY=value`: the parts after the
//!    prefix are separated by a double underscore and lower-cased, so
//!    `CHURNWATCH__STATE__COMMIT_INTERVAL_MS=500` sets `state.commit_interval_ms`. In
//!    the three librdkafka property maps (`kafka.properties`, `kafka.consumer`,
//!    `kafka.producer`) a single `_` in the property part stands for `.`:
//!    `CHURNWATCH__KAFKA__PROPERTIES__SASL_MECHANISM=PLAIN` sets the property
//!    `sasl.mechanism`. Variables not starting with `CHURNWATCH__` are ignored (so
//!    `CHURNWATCH_LOG` and the other single-underscore variables of the CLI are not
//!    configuration keys);
//! 4. `--set section.key=value` flags, in order: `--set output.partitions=12`; in the
//!    property maps everything after the map's name is the property name
//!    (`--set kafka.properties.sasl.mechanism=PLAIN`).
//!
//! Values from the environment and flags are taken verbatim for text settings (topic
//! names, paths, librdkafka properties: no quoting needed, and `group_id=123` is the
//! text `123`) and parsed as TOML for numbers and booleans. An empty value puts the key
//! back to its default (or, for `policy`, `model` and property-map entries, removes
//! it), which lets the environment or a flag undo a file's setting.
//!
//! Unknown keys are rejected in every layer, naming the key and where it came from, so
//! a typo never silently leaves a default in place. After loading, the values are
//! checked together (topic names, output topics distinct from the inputs and from each
//! other, partition counts, Confluent schema ids, the admin address); every problem is
//! reported at once, each with the layer that set the value.
//!
//! `deploy/churnwatch.toml` is a documented example for a secured cluster and
//! [`Config::to_toml`] prints the effective configuration (`churnwatch run
//! --print-config`).
//!
//! This module owns the typed sections with their documented defaults and the entry
//! points ([`Config::load`], [`Config::validate`], [`Config::to_toml`]). The rest is in
//! submodules:
//!
//! - `layers`: the sources, their merging (on the figment crate) and [`ConfigError`];
//!   its documentation says which parts figment does and which stay hand-written;
//! - `settings`: one environment variable or `--set` flag: its key syntax, its typed
//!   value and its check;
//! - `kafka`: the librdkafka properties passed through per [`Role`]
//!   ([`Config::client_properties`]), their names, and hiding secrets
//!   ([`Config::redacted`]);
//! - `validate`: the checks of the values together.

mod instance;
mod kafka;
mod layers;
mod settings;
mod validate;

pub use instance::InstanceIdError;
pub use kafka::Role;
pub use layers::{ConfigError, ENV_PREFIX};

use crate::codec::avro::InputKind;
use crate::codec::Format;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole configuration of `churnwatch run`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Churn policy file (TOML, see [`crate::core::policy`]). Default none: the default
    /// policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,
    /// Model parameter file written by `churnwatch fit`. Default none: no P(alive),
    /// expected visits or CLV.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<PathBuf>,
    /// Brokers, consumer group and librdkafka client properties.
    pub kafka: KafkaConfig,
    /// The input topics and how they are merged.
    pub input: InputConfig,
    /// The topics churnwatch writes.
    pub output: OutputConfig,
    /// The clock-tick producer.
    pub ticks: TickConfig,
    /// Local state and commits.
    pub state: StateConfig,
    /// The admin HTTP endpoint (metrics, health).
    pub admin: AdminConfig,
    /// Graceful shutdown and rebalancing.
    pub shutdown: ShutdownConfig,
    /// Metrics.
    pub metrics: MetricsConfig,
}

/// Brokers, consumer group and librdkafka client properties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list of brokers (librdkafka `bootstrap.servers`).
    /// Default `localhost:9092`.
    pub bootstrap_servers: String,
    /// Consumer group id (librdkafka `group.id`). Default `churnwatch`.
    pub group_id: String,
    /// This instance's stable name in the group (librdkafka `group.instance.id`: static
    /// group membership), so that a restarted instance gets its partitions back at
    /// once instead of after `session.timeout.ms`. `auto` derives it as
    /// `<hostname>-<8 hex digits of a hash of the canonical state.dir>`; `none` turns
    /// static membership off; anything else is the id itself (at most 249 characters of
    /// `A-Z a-z 0-9 . _ -`, unique within the group). Where the host name changes on
    /// every restart (a plain Kubernetes Deployment), set it explicitly, e.g. to a
    /// StatefulSet's pod name. Default `auto`.
    pub instance_id: String,
    /// librdkafka properties applied to every client (consumer, producer, admin):
    /// `security.protocol`, `ssl.*`, `sasl.*`, `client.id`, … Default empty.
    #[serde(deserialize_with = "layers::without_unset")]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only; they win over `properties`.
    /// Default empty.
    #[serde(deserialize_with = "layers::without_unset")]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producer only; they win over `properties`.
    /// Default empty.
    #[serde(deserialize_with = "layers::without_unset")]
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "churnwatch".into(),
            instance_id: instance::AUTO.into(),
            properties: BTreeMap::new(),
            consumer: BTreeMap::new(),
            producer: BTreeMap::new(),
        }
    }
}

/// The input topics and how they are merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputConfig {
    /// Repair orders. Default topic `repair-orders`.
    pub repair_orders: TopicConfig,
    /// Visits. Default topic `visits`.
    pub visits: TopicConfig,
    /// Contract events. Default topic `contracts`.
    pub contracts: TopicConfig,
    /// How long the per-partition event-time merge of the inputs waits for a lagging
    /// input before going on without it, in milliseconds. Default 30000: long enough
    /// for the first fetches of a large assignment (a 2 s wait let tens of thousands of
    /// backfilled events through out of order), short enough not to stall a partition
    /// for long behind an unavailable one. Caught-up inputs never wait.
    pub align_wait_ms: u64,
    /// Records buffered per partition before fetching from it pauses. Default 20000.
    pub max_buffered: usize,
    /// How far past the wall clock an event or tick may be dated, in minutes; later
    /// ones are dead-lettered (`implausible_time`) instead of moving stream time (one
    /// record dated 9999 would otherwise fire every customer's timers). Default 1440
    /// (one day: source systems that write local time as UTC are up to 14 h ahead).
    /// 0 turns the bound off.
    pub max_clock_skew_minutes: u64,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            repair_orders: TopicConfig::named("repair-orders"),
            visits: TopicConfig::named("visits"),
            contracts: TopicConfig::named("contracts"),
            align_wait_ms: 30_000,
            max_buffered: 20_000,
            max_clock_skew_minutes: 1440,
        }
    }
}

/// One input topic. The same topic may serve several inputs (e.g. one topic carrying
/// every record kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// Topic name. Each input of [`InputConfig`] has its own default; a table that
    /// leaves it out keeps that default when loaded through [`Config::load`].
    pub topic: String,
    /// Message format. Default `json`.
    pub format: InputFormat,
    /// With `format = "confluent"`: schema-registry id (a `u32`, written as a TOML
    /// key) → record kind (`repair_order`, `visit`, `contract` or `tick`). Required
    /// and only allowed with that format. Default empty.
    #[serde(deserialize_with = "layers::without_unset")]
    pub confluent_schema_ids: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self::named("")
    }
}

impl TopicConfig {
    /// A JSON topic with this name.
    pub fn named(topic: &str) -> Self {
        Self {
            topic: topic.into(),
            format: InputFormat::Json,
            confluent_schema_ids: BTreeMap::new(),
        }
    }

    /// The Confluent schema ids as numbers with their record kinds. Entries that do not
    /// parse are left out; [`Config::load`] and [`Config::validate`] reject them, so on
    /// a checked configuration this is the whole map.
    pub fn schema_kinds(&self) -> BTreeMap<u32, InputKind> {
        self.confluent_schema_ids
            .iter()
            .filter_map(|(id, kind)| Some((id.parse().ok()?, InputKind::from_type_name(kind)?)))
            .collect()
    }
}

/// How input messages are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// One JSON event per message (the JSON-lines contract of the README).
    #[default]
    Json,
    /// Avro binary datums written with churnwatch's input schemas (`schemas/*.avsc`).
    Avro,
    /// Confluent wire format: magic byte 0, a 4-byte big-endian schema-registry id,
    /// then the Avro datum; the id selects the record kind through
    /// [`TopicConfig::confluent_schema_ids`].
    Confluent,
}

/// The topics churnwatch writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Status changes, keyed by customer. Default `customer-status`.
    pub status_topic: String,
    /// Status-change encoding. Default `json`.
    pub format: Format,
    /// Records that could not be used, with the reason. Default
    /// `churnwatch-dead-letters`.
    pub dead_letter_topic: String,
    /// Compacted changelog of the local state, for restoring it. Default
    /// `churnwatch-changelog`.
    pub changelog_topic: String,
    /// Create missing output topics at start-up. Default true.
    pub create_topics: bool,
    /// Partitions of a created status or dead-letter topic (a created changelog topic
    /// always gets the input topics' count). Default 6.
    pub partitions: i32,
    /// Replication factor of created topics. Default 1.
    pub replication_factor: i32,
    /// `min.compaction.lag.ms` of a created status topic: consumers reading behind by
    /// less than this see every change, not only the latest per customer, in
    /// milliseconds. Default 604800000 (7 days).
    pub status_min_compaction_lag_ms: u64,
    /// The outbox counts as stuck when its oldest commit has waited this long for the
    /// broker's acks: `/healthz` then answers 503 and
    /// `churnwatch_outbox_oldest_seconds` shows the wait. 0 switches the health check
    /// off (the metric stays). In milliseconds. Default 120000 (2 minutes: well past
    /// librdkafka's retries of a transient broker error, short enough to page).
    pub stuck_after_ms: u64,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            status_topic: "customer-status".into(),
            format: Format::Json,
            dead_letter_topic: "churnwatch-dead-letters".into(),
            changelog_topic: "churnwatch-changelog".into(),
            create_topics: true,
            partitions: 6,
            replication_factor: 1,
            status_min_compaction_lag_ms: 604_800_000,
            stuck_after_ms: 120_000,
        }
    }
}

/// The clock-tick producer, which advances stream time when no events arrive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TickConfig {
    /// Interval between ticks in milliseconds; 0 switches the tick producer off.
    /// Default 60000.
    pub interval_ms: u64,
}

impl Default for TickConfig {
    fn default() -> Self {
        Self {
            interval_ms: 60_000,
        }
    }
}

/// Local state and commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StateConfig {
    /// Directory of the local state stores. Default `churnwatch-state`.
    pub dir: PathBuf,
    /// Commit at least this often, in milliseconds. Default 1000.
    pub commit_interval_ms: u64,
    /// …or after this many records, whichever comes first. Default 5000.
    pub commit_max_records: usize,
    /// Customers kept in memory. Default 100000.
    pub cache_capacity: usize,
    /// Threads that decode, process and commit the owned partitions side by side
    /// (each partition on one thread at a time, so the outputs do not depend on it);
    /// 0: one per core. Default 1: on the 2-core reference machine, with the broker
    /// beside, 2 threads cost more CPU per record than they gained.
    pub threads: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("churnwatch-state"),
            commit_interval_ms: 1000,
            commit_max_records: 5000,
            cache_capacity: 100_000,
            threads: 1,
        }
    }
}

/// The admin HTTP endpoint (metrics, health).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Socket address to listen on (an IP address and port). Default `0.0.0.0:9464`.
    pub listen: String,
    /// When set, the bound address (`ip:port`, useful with port 0) is written to this
    /// file once the server listens. Default unset.
    pub port_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".into(),
            port_file: None,
        }
    }
}

/// Graceful shutdown and rebalancing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// On a shutdown signal, how long to wait for in-flight work to be committed, in
    /// milliseconds. Default 10000.
    pub drain_timeout_ms: u64,
    /// When partitions are revoked, how long to wait for their work to be committed, in
    /// milliseconds. Default 10000.
    pub revoke_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_timeout_ms: 10_000,
            revoke_timeout_ms: 10_000,
        }
    }
}

/// Metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Most dealers with their own per-dealer series (bounds the label cardinality);
    /// 0 turns per-dealer series off. Default 1000.
    pub max_dealers: usize,
    /// Interval of the KPI gauges (e.g. effective churn rate), in milliseconds.
    /// Default 60000.
    pub kpi_interval_ms: u64,
    /// Interval of the consumer-lag gauges, in milliseconds. Default 5000.
    pub lag_interval_ms: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            max_dealers: 1000,
            kpi_interval_ms: 60_000,
            lag_interval_ms: 5000,
        }
    }
}

impl Config {
    /// The input topics, each once, in the order repair orders, visits, contracts
    /// (several inputs may share a topic).
    pub fn input_topics(&self) -> Vec<&str> {
        let i = &self.input;
        distinct([&i.repair_orders.topic, &i.visits.topic, &i.contracts.topic])
    }

    /// Every topic the service reads or writes, each once: the input topics, then
    /// status, changelog and dead-letter topics.
    pub fn topics(&self) -> Vec<&str> {
        let o = &self.output;
        let mut all = self.input_topics();
        for t in distinct([&o.status_topic, &o.changelog_topic, &o.dead_letter_topic]) {
            if !all.contains(&t) {
                all.push(t);
            }
        }
        all
    }

    /// Loads the configuration: defaults, then the TOML `file` (if any), then the
    /// `CHURNWATCH__…` variables of `env` (others are ignored; pass
    /// `std::env::vars()`), then the `--set key=value` flags in `sets`, each layer
    /// winning over the ones before; and checks the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Config, ConfigError> {
        let file = file
            .map(|p| {
                let path = p.display().to_string();
                std::fs::read_to_string(p)
                    .map(|text| (path.clone(), text))
                    .map_err(|source| ConfigError::Read { path, source })
            })
            .transpose()?;
        Self::from_layers(
            file.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
            env,
            sets,
        )
    }

    /// [`Config::load`] with the file's name and text already at hand.
    fn from_layers(
        file: Option<(&str, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
        sets: &[String],
    ) -> Result<Config, ConfigError> {
        let merged = layers::merge(file, env, sets)?;
        let config = layers::extract(&merged)?;
        config.check(&layers::Origins::of(&merged))?;
        Ok(config)
    }

    /// Checks that the values can work together (see the module documentation). The
    /// problems name their keys but not where the values came from; [`Config::load`]
    /// adds that.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&layers::Origins::unrecorded())
    }

    /// The consumer's `group.instance.id` (see [`KafkaConfig::instance_id`]), none
    /// without static membership. With `auto` it is derived from the host name and the
    /// canonical `state.dir`, which must exist by then.
    pub fn group_instance_id(&self) -> Result<Option<String>, InstanceIdError> {
        instance::resolve(&self.kafka.instance_id, &self.state.dir)
    }

    /// The configuration as TOML; [`Config::load`] reads it back to the same value.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serialises to TOML")
    }
}

/// Shorthands for the tests of every submodule.
#[cfg(test)]
mod testing {
    pub(super) use super::{Config, ConfigError};

    pub(super) fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(super) fn sets(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|s| s.to_string()).collect()
    }

    /// Loads `text` as the config file `test.toml`.
    pub(super) fn from_file(text: &str) -> Result<Config, ConfigError> {
        Config::from_layers(Some(("test.toml", text)), Vec::new(), &[])
    }

    pub(super) fn from_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_layers(None, env(vars), &[])
    }

    pub(super) fn from_sets(flags: &[&str]) -> Result<Config, ConfigError> {
        Config::from_layers(None, Vec::new(), &sets(flags))
    }

    pub(super) fn problems(e: ConfigError) -> Vec<String> {
        match e {
            ConfigError::Invalid { problems } => problems,
            other => panic!("expected invalid values, got {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.kafka.group_id, "churnwatch");
        assert_eq!(c.kafka.instance_id, "auto");
        assert!(c.kafka.properties.is_empty() && c.kafka.consumer.is_empty());
        assert_eq!(c.input.repair_orders.topic, "repair-orders");
        assert_eq!(c.input.visits.topic, "visits");
        assert_eq!(c.input.contracts.topic, "contracts");
        assert_eq!(c.input.visits.format, InputFormat::Json);
        assert_eq!(c.input.align_wait_ms, 30_000);
        assert_eq!(c.input.max_buffered, 20_000);
        assert_eq!(c.input.max_clock_skew_minutes, 1440);
        assert_eq!(c.output.status_topic, "customer-status");
        assert_eq!(c.output.format, Format::Json);
        assert_eq!(c.output.dead_letter_topic, "churnwatch-dead-letters");
        assert_eq!(c.output.changelog_topic, "churnwatch-changelog");
        assert!(c.output.create_topics);
        assert_eq!((c.output.partitions, c.output.replication_factor), (6, 1));
        assert_eq!(c.output.status_min_compaction_lag_ms, 604_800_000);
        assert_eq!(c.output.stuck_after_ms, 120_000);
        assert_eq!(c.ticks.interval_ms, 60_000);
        assert_eq!(c.state.dir, PathBuf::from("churnwatch-state"));
        assert_eq!(c.state.commit_interval_ms, 1000);
        assert_eq!(c.state.commit_max_records, 5000);
        assert_eq!(c.state.cache_capacity, 100_000);
        assert_eq!(c.state.threads, 1);
        assert_eq!(c.admin.listen, "0.0.0.0:9464");
        assert_eq!(c.shutdown.drain_timeout_ms, 10_000);
        assert_eq!(c.shutdown.revoke_timeout_ms, 10_000);
        assert_eq!(c.metrics.max_dealers, 1000);
        assert_eq!(c.metrics.kpi_interval_ms, 60_000);
        assert_eq!(c.metrics.lag_interval_ms, 5000);
        assert_eq!((c.policy, c.model), (None, None));
        Config::default().validate().unwrap();
    }

    #[test]
    fn no_layers_give_the_defaults() {
        let c = Config::load(None, env(&[("PATH", "/bin")]), &[]).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn load_reads_the_file_and_names_it_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cw.toml");
        std::fs::write(&path, "[ticks]\ninterval_ms = 0\n").unwrap();
        let c = Config::load(Some(&path), Vec::new(), &[]).unwrap();
        assert_eq!(c.ticks.interval_ms, 0);

        let missing = dir.path().join("missing.toml");
        let e = Config::load(Some(&missing), Vec::new(), &[]).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.toml"), "{e}");
        assert!(e.to_string().contains("--config"), "{e}");
    }

    #[test]
    fn default_to_toml_round_trips() {
        let text = Config::default().to_toml();
        assert_eq!(from_file(&text).unwrap(), Config::default());
    }

    #[test]
    fn non_default_to_toml_round_trips() {
        let c = from_sets(&[
            "policy=/etc/churnwatch/policy.toml",
            "kafka.properties.sasl.mechanism=PLAIN",
            "kafka.producer.linger.ms=5",
            "input.visits.format=confluent",
            "input.visits.confluent_schema_ids.42=visit",
            "output.format=avro",
            "ticks.interval_ms=0",
        ])
        .unwrap();
        let text = c.to_toml();
        assert!(text.contains("\"sasl.mechanism\" = \"PLAIN\""), "{text}");
        assert_eq!(from_file(&text).unwrap(), c);
    }

    #[test]
    fn shipped_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/churnwatch.toml");
        let c = Config::load(
            Some(&path),
            env(&[("CHURNWATCH__KAFKA__PROPERTIES__SASL_PASSWORD", "pw")]),
            &[],
        )
        .unwrap();
        let p = &c.kafka.properties;
        assert_eq!(p["security.protocol"], "SASL_SSL");
        assert_eq!(p["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(p["sasl.password"], "pw");
        assert!(p.contains_key("ssl.ca.location"));
        assert_eq!(c.output.partitions, 3);
        assert_eq!(c.state.dir, PathBuf::from("/var/lib/churnwatch"));
        assert_ne!(c, Config::default());
    }

    #[test]
    fn compose_example_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose-churnwatch.toml");
        let c = Config::load(Some(&path), Vec::new(), &[]).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "kafka:9092");
        assert_eq!(c.kafka.properties["security.protocol"], "PLAINTEXT");
        assert_eq!(c.admin.listen, "0.0.0.0:9464");
    }
}

/// The names in order, each once.
fn distinct<const N: usize>(names: [&String; N]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::with_capacity(N);
    for n in names {
        if !out.contains(&n.as_str()) {
            out.push(n);
        }
    }
    out
}
