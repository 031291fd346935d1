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

use crate::codec::avro::InputKind;
use crate::codec::Format;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;
use toml::{Table, Value};

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "CHURNWATCH__";

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
    /// librdkafka properties applied to every client (consumer, producer, admin):
    /// `security.protocol`, `ssl.*`, `sasl.*`, `client.id`, … Default empty.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only; they win over `properties`.
    /// Default empty.
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producer only; they win over `properties`.
    /// Default empty.
    pub producer: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "churnwatch".into(),
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
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            repair_orders: TopicConfig::named("repair-orders"),
            visits: TopicConfig::named("visits"),
            contracts: TopicConfig::named("contracts"),
            align_wait_ms: 30_000,
            max_buffered: 20_000,
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
}

impl Default for StateConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("churnwatch-state"),
            commit_interval_ms: 1000,
            commit_max_records: 5000,
            cache_capacity: 100_000,
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

/// Which Kafka client [`Config::client_properties`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The consumer: `bootstrap.servers`, `group.id`, `kafka.properties`,
    /// `kafka.consumer`.
    Consumer,
    /// The producer: `bootstrap.servers`, `kafka.properties`, `kafka.producer`.
    Producer,
    /// The admin client: `bootstrap.servers`, `kafka.properties`.
    Admin,
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}; check the path given with --config")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The config file is not valid TOML, has an unknown key or a wrong type.
    #[error("config file {path} is invalid: {message}")]
    File {
        /// The file.
        path: String,
        /// What was wrong, with line and key.
        message: String,
    },
    /// A `CHURNWATCH__…` environment variable names an unknown key or has a wrong value.
    #[error("environment variable {var} is invalid: {message}; fix or unset it")]
    Env {
        /// The variable's name.
        var: String,
        /// What was wrong.
        message: String,
    },
    /// A `--set` flag names an unknown key or has a wrong value. The message shows the
    /// flag's key, not the whole flag: values may be secrets.
    #[error("--set {key}=… is invalid: {message}")]
    Set {
        /// The key part of the flag (everything before `=`).
        key: String,
        /// What was wrong.
        message: String,
    },
    /// Values that parse but cannot work together.
    #[error("invalid configuration: {}", .problems.join("; "))]
    Invalid {
        /// Every problem found, each naming its key and where the value came from.
        problems: Vec<String>,
    },
}

/// Where each key's value came from, for messages.
struct Origins {
    /// Whether every layer was recorded (keys not in `by_key` then have their default).
    complete: bool,
    /// Dotted key → layer description.
    by_key: BTreeMap<String, String>,
}

impl Origins {
    fn describe(&self, key: &str) -> String {
        match self.by_key.get(key) {
            Some(origin) => format!("`{key}` (from {origin})"),
            None if self.complete => format!("`{key}` (default)"),
            None => format!("`{key}`"),
        }
    }
}

/// The kinds of string-keyed maps in the configuration.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MapKind {
    /// `kafka.properties`, `kafka.consumer`, `kafka.producer`.
    Properties,
    /// `input.<input>.confluent_schema_ids`.
    SchemaIds,
}

/// If `path` starts with a map, how many parts name the map, and its kind.
fn map_prefix(path: &[String]) -> Option<(usize, MapKind)> {
    match path {
        [k, m, ..]
            if k == "kafka" && ["properties", "consumer", "producer"].contains(&m.as_str()) =>
        {
            Some((2, MapKind::Properties))
        }
        [i, _, m, ..] if i == "input" && m == "confluent_schema_ids" => {
            Some((3, MapKind::SchemaIds))
        }
        _ => None,
    }
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

fn get_in<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for p in parents {
        t = t.get(p)?.as_table()?;
    }
    t.get(last)
}

fn set_in(table: &mut Table, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for p in parents {
        let entry = t
            .entry(p.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        t = entry.as_table_mut().expect("just made a table");
    }
    t.insert(last.clone(), value);
}

fn remove_in(table: &mut Table, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for p in parents {
        match t.get_mut(p).and_then(Value::as_table_mut) {
            Some(next) => t = next,
            None => return,
        }
    }
    t.remove(last);
}

/// Merges `over` into `base`: tables key by key, anything else replaced.
fn merge(base: &mut Table, over: Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// The paths of the non-table values in `table`.
fn leaves(table: &Table, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for (k, v) in table {
        prefix.push(k.clone());
        match v {
            Value::Table(t) => leaves(t, prefix, out),
            _ => out.push(prefix.clone()),
        }
        prefix.pop();
    }
}

/// A number or boolean written as TOML; `None` for anything else.
fn parse_scalar(raw: &str) -> Option<Value> {
    let mut t: Table = toml::from_str(&format!("v = {raw}")).ok()?;
    if t.len() != 1 {
        return None;
    }
    match t.remove("v")? {
        v @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_)) => Some(v),
        _ => None,
    }
}

/// Turns `CHURNWATCH__A__B_C` into the key path `a.b_c` (property names: see the
/// module documentation).
fn env_path(var: &str) -> Result<Vec<String>, String> {
    let rest = &var[ENV_PREFIX.len()..];
    let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    if parts.iter().any(String::is_empty) {
        return Err(format!(
            "expected {ENV_PREFIX}SECTION__KEY with `__` between non-empty parts, \
             e.g. {ENV_PREFIX}KAFKA__GROUP_ID"
        ));
    }
    Ok(match map_prefix(&parts) {
        Some((n, kind)) if parts.len() > n => {
            let name = match kind {
                MapKind::Properties => parts[n..]
                    .iter()
                    .map(|p| p.replace('_', "."))
                    .collect::<Vec<_>>()
                    .join("."),
                MapKind::SchemaIds => parts[n..].join("."),
            };
            let mut path = parts[..n].to_vec();
            path.push(name);
            path
        }
        _ => parts,
    })
}

/// Turns the key of `--set a.b.c=v` into its path; in a map everything after the map's
/// name is one key.
fn set_key_path(key: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = key.split('.').map(str::to_string).collect();
    let path = match map_prefix(&parts) {
        Some((n, _)) if parts.len() > n => {
            let mut path = parts[..n].to_vec();
            path.push(parts[n..].join("."));
            path
        }
        _ => parts,
    };
    if path.iter().any(String::is_empty) {
        return Err(
            "expected --set section.key=value, e.g. --set kafka.group_id=churnwatch".into(),
        );
    }
    Ok(path)
}

/// Applies one environment or flag value to the merged tree after checking that its key
/// exists and the value has the right type.
fn apply(tree: &mut Table, defaults: &Table, path: &[String], raw: &str) -> Result<(), String> {
    for n in 1..path.len() {
        if let Some(v) = get_in(defaults, &path[..n]) {
            if !v.is_table() {
                return Err(format!(
                    "`{}` is a single setting, not a section; it has no key `{}`",
                    dotted(&path[..n]),
                    dotted(&path[n..])
                ));
            }
        }
    }
    let default = get_in(defaults, path);
    if let Some(Value::Table(_)) = default {
        return Err(format!(
            "`{}` is a section, not a single setting; set its keys instead",
            dotted(path)
        ));
    }
    let value = if raw.is_empty() {
        None
    } else {
        Some(match default {
            Some(Value::String(_)) | None => Value::String(raw.to_string()),
            Some(_) => parse_scalar(raw).unwrap_or_else(|| Value::String(raw.to_string())),
        })
    };
    // Deserialise the key alone: unknown keys and wrong types fail here.
    let probe = value
        .clone()
        .or_else(|| default.cloned())
        .unwrap_or_else(|| Value::String(String::new()));
    let mut alone = Table::new();
    set_in(&mut alone, path, probe);
    Value::Table(alone)
        .try_into::<Config>()
        .map_err(|e| format!("key `{}`: {}", dotted(path), e.message()))?;
    match (value, default) {
        (Some(v), _) => set_in(tree, path, v),
        (None, Some(d)) => set_in(tree, path, d.clone()),
        (None, None) => remove_in(tree, path),
    }
    Ok(())
}

/// Kafka's rule for topic names.
fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name == "." || name == ".." {
        return Some(format!("is `{name}`, which Kafka does not allow"));
    }
    if name.len() > 249 {
        return Some(format!(
            "is {} characters long; Kafka allows 249",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "`{name}` contains {c:?}; Kafka topic names use only letters, digits, `.`, `_` and `-`"
        ));
    }
    None
}

/// Whether a librdkafka property's value should not be shown.
fn is_secret_property(name: &str) -> bool {
    name.contains("password")
        || name.contains("secret")
        || name == "ssl.key.pem"
        || name == "sasl.oauthbearer.config"
}

impl Config {
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
        let defaults = match Value::try_from(Config::default()) {
            Ok(Value::Table(t)) => t,
            other => unreachable!("the default config serialises to a table: {other:?}"),
        };
        let mut tree = defaults.clone();
        let mut origins = Origins {
            complete: true,
            by_key: BTreeMap::new(),
        };

        if let Some((path, text)) = file {
            let invalid = |e: toml::de::Error| ConfigError::File {
                path: path.to_string(),
                message: e.to_string().trim_end().to_string(),
            };
            // Parsing into the typed config reports unknown keys and wrong types with
            // their line; the plain table is what gets merged.
            toml::from_str::<Config>(text).map_err(invalid)?;
            let table: Table = toml::from_str(text).map_err(invalid)?;
            let mut keys = Vec::new();
            leaves(&table, &mut Vec::new(), &mut keys);
            for k in keys {
                origins
                    .by_key
                    .insert(dotted(&k), format!("config file {path}"));
            }
            merge(&mut tree, table);
        }

        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        let mut seen: BTreeMap<Vec<String>, String> = BTreeMap::new();
        for (var, value) in vars {
            let fail = |message: String| ConfigError::Env {
                var: var.clone(),
                message,
            };
            let path = env_path(&var).map_err(fail)?;
            if let Some(other) = seen.insert(path.clone(), var.clone()) {
                return Err(fail(format!(
                    "{other} sets the same key `{}`; keep one of them",
                    dotted(&path)
                )));
            }
            apply(&mut tree, &defaults, &path, &value).map_err(fail)?;
            origins
                .by_key
                .insert(dotted(&path), format!("environment variable {var}"));
        }

        for arg in sets {
            let Some((key, value)) = arg.split_once('=') else {
                return Err(ConfigError::Set {
                    key: arg.clone(),
                    message: "expected section.key=value (no `=` found)".into(),
                });
            };
            let fail = |message: String| ConfigError::Set {
                key: key.to_string(),
                message,
            };
            let path = set_key_path(key).map_err(fail)?;
            apply(&mut tree, &defaults, &path, value).map_err(fail)?;
            origins.by_key.insert(dotted(&path), format!("--set {key}"));
        }

        let config: Config = Value::Table(tree)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid {
                problems: vec![e.to_string().trim_end().to_string()],
            })?;
        config.check(&origins)?;
        Ok(config)
    }

    /// Checks that the values can work together (see the module documentation).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&Origins {
            complete: false,
            by_key: BTreeMap::new(),
        })
    }

    fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
        let at = |key: &str| origins.describe(key);
        let mut problems = Vec::new();

        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            problems.push(format!(
                "{} is empty; give the brokers as host:port[,host:port…]",
                at("kafka.bootstrap_servers")
            ));
        }
        if k.group_id.trim().is_empty() {
            problems.push(format!("{} is empty", at("kafka.group_id")));
        }
        for (map, props) in [
            ("properties", &k.properties),
            ("consumer", &k.consumer),
            ("producer", &k.producer),
        ] {
            for name in props.keys() {
                let key = format!("kafka.{map}.{name}");
                if name.is_empty()
                    || name.starts_with('.')
                    || name.ends_with('.')
                    || name.contains("..")
                    || name.contains(|c: char| c.is_whitespace() || c == '=')
                {
                    problems.push(format!(
                        "{} is not a librdkafka property name (like `sasl.mechanism`)",
                        at(&key)
                    ));
                } else if name == "bootstrap.servers" {
                    problems.push(format!(
                        "{}: set the brokers with `kafka.bootstrap_servers` instead",
                        at(&key)
                    ));
                } else if name == "group.id" {
                    problems.push(format!(
                        "{}: set the consumer group with `kafka.group_id` instead",
                        at(&key)
                    ));
                }
            }
        }

        let inputs = [
            (
                "repair_orders",
                &self.input.repair_orders,
                InputKind::RepairOrder,
            ),
            ("visits", &self.input.visits, InputKind::Visit),
            ("contracts", &self.input.contracts, InputKind::Contract),
        ];
        for (name, t, kind) in &inputs {
            let key = format!("input.{name}.topic");
            if let Some(p) = topic_name_problem(&t.topic) {
                problems.push(format!("{} {p}", at(&key)));
            }
            let ids_key = format!("input.{name}.confluent_schema_ids");
            let format_key = format!("input.{name}.format");
            match (t.format, t.confluent_schema_ids.is_empty()) {
                (InputFormat::Confluent, true) => problems.push(format!(
                    "`{ids_key}` is empty but {} is \"confluent\": map every schema id the \
                     topic's producers use to its record kind, e.g. \
                     `[{ids_key}]` `17 = \"{}\"`",
                    at(&format_key),
                    kind.type_name()
                )),
                (InputFormat::Json | InputFormat::Avro, false) => problems.push(format!(
                    "`{ids_key}` is only used with format \"confluent\" but {} is \"{}\"; \
                     remove the ids or change the format",
                    at(&format_key),
                    if t.format == InputFormat::Json {
                        "json"
                    } else {
                        "avro"
                    }
                )),
                _ => {}
            }
            for (id, kind) in &t.confluent_schema_ids {
                let key = format!("{ids_key}.{id}");
                if id.parse::<u32>().is_err() {
                    problems.push(format!(
                        "{}: `{id}` is not a schema id (a number from 0 to {})",
                        at(&key),
                        u32::MAX
                    ));
                }
                if InputKind::from_type_name(kind).is_none() {
                    problems.push(format!(
                        "{} is `{kind}`; use one of repair_order, visit, contract, tick",
                        at(&key)
                    ));
                }
            }
        }
        if self.input.max_buffered == 0 {
            problems.push(format!("{} must be at least 1", at("input.max_buffered")));
        }

        let o = &self.output;
        let outputs = [
            ("output.status_topic", &o.status_topic),
            ("output.dead_letter_topic", &o.dead_letter_topic),
            ("output.changelog_topic", &o.changelog_topic),
        ];
        for (i, (key, topic)) in outputs.iter().enumerate() {
            if let Some(p) = topic_name_problem(topic) {
                problems.push(format!("{} {p}", at(key)));
                continue;
            }
            for (name, t, _) in &inputs {
                if t.topic == **topic {
                    problems.push(format!(
                        "{} and {} are both `{topic}`: churnwatch must not read what it \
                         writes; use different topics",
                        at(key),
                        at(&format!("input.{name}.topic"))
                    ));
                }
            }
            for (other, other_topic) in &outputs[i + 1..] {
                if other_topic == topic {
                    problems.push(format!(
                        "{} and {} are both `{topic}`; every output needs its own topic",
                        at(key),
                        at(other)
                    ));
                }
            }
        }
        if o.partitions < 1 {
            problems.push(format!(
                "{} is {}; it must be at least 1",
                at("output.partitions"),
                o.partitions
            ));
        }
        if o.replication_factor < 1 {
            problems.push(format!(
                "{} is {}; it must be at least 1",
                at("output.replication_factor"),
                o.replication_factor
            ));
        }

        let s = &self.state;
        if s.dir.as_os_str().is_empty() {
            problems.push(format!("{} is empty", at("state.dir")));
        }
        for (key, v) in [
            ("state.commit_interval_ms", s.commit_interval_ms),
            ("state.commit_max_records", s.commit_max_records as u64),
            ("state.cache_capacity", s.cache_capacity as u64),
            ("metrics.kpi_interval_ms", self.metrics.kpi_interval_ms),
            ("metrics.lag_interval_ms", self.metrics.lag_interval_ms),
        ] {
            if v == 0 {
                problems.push(format!("{} must be at least 1", at(key)));
            }
        }
        for (key, path) in [("policy", &self.policy), ("model", &self.model)] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                problems.push(format!(
                    "{} is an empty path; leave the key out for none",
                    at(key)
                ));
            }
        }
        if self.admin.listen.parse::<SocketAddr>().is_err() {
            problems.push(format!(
                "{} is `{}`, not an IP address and port like 0.0.0.0:9464 or [::]:9464",
                at("admin.listen"),
                self.admin.listen
            ));
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    /// The librdkafka properties for a client: `bootstrap.servers`, `group.id` (consumer
    /// only), `kafka.properties`, then the role's own map (`kafka.consumer` or
    /// `kafka.producer`), a later one winning; sorted by name.
    pub fn client_properties(&self, role: Role) -> Vec<(String, String)> {
        let k = &self.kafka;
        let mut props = BTreeMap::new();
        props.insert("bootstrap.servers".to_string(), k.bootstrap_servers.clone());
        if role == Role::Consumer {
            props.insert("group.id".to_string(), k.group_id.clone());
        }
        props.extend(k.properties.clone());
        match role {
            Role::Consumer => props.extend(k.consumer.clone()),
            Role::Producer => props.extend(k.producer.clone()),
            Role::Admin => {}
        }
        props.into_iter().collect()
    }

    /// The configuration as TOML; [`Config::load`] reads it back to the same value.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("the config serialises to TOML")
    }

    /// A copy with the values of secret librdkafka properties (names containing
    /// `password` or `secret`, `ssl.key.pem`, `sasl.oauthbearer.config`) replaced by
    /// `<redacted>`, for printing.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        for props in [
            &mut c.kafka.properties,
            &mut c.kafka.consumer,
            &mut c.kafka.producer,
        ] {
            for (name, value) in props.iter_mut() {
                if is_secret_property(name) {
                    *value = "<redacted>".into();
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sets(flags: &[&str]) -> Vec<String> {
        flags.iter().map(|s| s.to_string()).collect()
    }

    fn from_file(text: &str) -> Result<Config, ConfigError> {
        Config::from_layers(Some(("test.toml", text)), Vec::new(), &[])
    }

    fn from_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_layers(None, env(vars), &[])
    }

    fn from_sets(flags: &[&str]) -> Result<Config, ConfigError> {
        Config::from_layers(None, Vec::new(), &sets(flags))
    }

    fn problems(e: ConfigError) -> Vec<String> {
        match e {
            ConfigError::Invalid { problems } => problems,
            other => panic!("expected invalid values, got {other}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.kafka.group_id, "churnwatch");
        assert!(c.kafka.properties.is_empty() && c.kafka.consumer.is_empty());
        assert_eq!(c.input.repair_orders.topic, "repair-orders");
        assert_eq!(c.input.visits.topic, "visits");
        assert_eq!(c.input.contracts.topic, "contracts");
        assert_eq!(c.input.visits.format, InputFormat::Json);
        assert_eq!(c.input.align_wait_ms, 30_000);
        assert_eq!(c.input.max_buffered, 20_000);
        assert_eq!(c.output.status_topic, "customer-status");
        assert_eq!(c.output.format, Format::Json);
        assert_eq!(c.output.dead_letter_topic, "churnwatch-dead-letters");
        assert_eq!(c.output.changelog_topic, "churnwatch-changelog");
        assert!(c.output.create_topics);
        assert_eq!((c.output.partitions, c.output.replication_factor), (6, 1));
        assert_eq!(c.output.status_min_compaction_lag_ms, 604_800_000);
        assert_eq!(c.ticks.interval_ms, 60_000);
        assert_eq!(c.state.dir, PathBuf::from("churnwatch-state"));
        assert_eq!(c.state.commit_interval_ms, 1000);
        assert_eq!(c.state.commit_max_records, 5000);
        assert_eq!(c.state.cache_capacity, 100_000);
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
    fn file_layer_keeps_defaults_for_missing_keys() {
        let c = from_file(
            "policy = \"/etc/p.toml\"\n\
             [kafka]\ngroup_id = \"cw-prod\"\n\
             [kafka.properties]\n\"security.protocol\" = \"SASL_SSL\"\n\
             [input.visits]\nformat = \"avro\"\n\
             [output]\npartitions = 12\n",
        )
        .unwrap();
        assert_eq!(c.policy, Some(PathBuf::from("/etc/p.toml")));
        assert_eq!(c.kafka.group_id, "cw-prod");
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.kafka.properties["security.protocol"], "SASL_SSL");
        assert_eq!(c.input.visits.format, InputFormat::Avro);
        // A table without `topic` keeps that input's own default, not an empty name.
        assert_eq!(c.input.visits.topic, "visits");
        assert_eq!(c.output.partitions, 12);
        assert_eq!(c.output.replication_factor, 1);
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
    fn env_layer_sets_typed_values() {
        let c = from_env(&[
            ("CHURNWATCH__KAFKA__GROUP_ID", "123"),
            ("CHURNWATCH__INPUT__ALIGN_WAIT_MS", "500"),
            ("CHURNWATCH__OUTPUT__CREATE_TOPICS", "false"),
            ("CHURNWATCH__OUTPUT__FORMAT", "avro"),
            (
                "CHURNWATCH__INPUT__REPAIR_ORDERS__TOPIC",
                "dms.repair-orders",
            ),
            ("CHURNWATCH__STATE__DIR", "/var/lib/churnwatch"),
            ("CHURNWATCH__MODEL", "/etc/churnwatch/model.toml"),
            ("CHURNWATCH_LOG", "debug"),
            ("CHURNWATCH_POLICY", "ignored.toml"),
            ("HOME", "/root"),
        ])
        .unwrap();
        assert_eq!(c.kafka.group_id, "123");
        assert_eq!(c.input.align_wait_ms, 500);
        assert!(!c.output.create_topics);
        assert_eq!(c.output.format, Format::Avro);
        assert_eq!(c.input.repair_orders.topic, "dms.repair-orders");
        assert_eq!(c.state.dir, PathBuf::from("/var/lib/churnwatch"));
        assert_eq!(c.model, Some(PathBuf::from("/etc/churnwatch/model.toml")));
        assert_eq!(c.policy, None);
    }

    #[test]
    fn env_property_names_map_underscores_to_dots() {
        let c = from_env(&[
            ("CHURNWATCH__KAFKA__PROPERTIES__SASL_MECHANISM", "PLAIN"),
            (
                "CHURNWATCH__KAFKA__PROPERTIES__SSL_CA_LOCATION",
                "/etc/ca.pem",
            ),
            ("CHURNWATCH__KAFKA__PROPERTIES__SASL_PASSWORD", "\"0x12\""),
            ("CHURNWATCH__KAFKA__CONSUMER__FETCH_MIN_BYTES", "1024"),
            ("CHURNWATCH__KAFKA__PRODUCER__LINGER_MS", "5"),
            (
                "CHURNWATCH__INPUT__VISITS__CONFLUENT_SCHEMA_IDS__17",
                "visit",
            ),
            ("CHURNWATCH__INPUT__VISITS__FORMAT", "confluent"),
        ])
        .unwrap();
        let p = &c.kafka.properties;
        assert_eq!(p["sasl.mechanism"], "PLAIN");
        assert_eq!(p["ssl.ca.location"], "/etc/ca.pem");
        // Text values are taken verbatim: quotes are part of a password.
        assert_eq!(p["sasl.password"], "\"0x12\"");
        assert_eq!(c.kafka.consumer["fetch.min.bytes"], "1024");
        assert_eq!(c.kafka.producer["linger.ms"], "5");
        assert_eq!(
            c.input.visits.schema_kinds(),
            BTreeMap::from([(17, InputKind::Visit)])
        );
    }

    #[test]
    fn set_layer_takes_everything_after_the_map_as_the_property_name() {
        let c = from_sets(&[
            "kafka.properties.sasl.mechanism=SCRAM-SHA-512",
            "kafka.properties.sasl.password=a=b",
            "kafka.consumer.auto.offset.reset=earliest",
            "kafka.group_id=007",
            "output.partitions=1_2",
            "metrics.max_dealers=0",
            "input.contracts.format=confluent",
            "input.contracts.confluent_schema_ids.4=contract",
            "input.contracts.confluent_schema_ids.5=tick",
        ])
        .unwrap();
        assert_eq!(c.kafka.properties["sasl.mechanism"], "SCRAM-SHA-512");
        assert_eq!(c.kafka.properties["sasl.password"], "a=b");
        assert_eq!(c.kafka.consumer["auto.offset.reset"], "earliest");
        assert_eq!(c.kafka.group_id, "007");
        assert_eq!(c.output.partitions, 12);
        assert_eq!(c.metrics.max_dealers, 0);
        assert_eq!(
            c.input.contracts.schema_kinds(),
            BTreeMap::from([(4, InputKind::Contract), (5, InputKind::Tick)])
        );
    }

    #[test]
    fn later_layers_win() {
        let file = "[kafka]\ngroup_id = \"from-file\"\nbootstrap_servers = \"file:9092\"\n\
                    [output]\npartitions = 3\nreplication_factor = 2\n\
                    [kafka.properties]\n\"client.id\" = \"file\"\n";
        let vars = env(&[
            ("CHURNWATCH__KAFKA__GROUP_ID", "from-env"),
            ("CHURNWATCH__OUTPUT__PARTITIONS", "4"),
            ("CHURNWATCH__KAFKA__PROPERTIES__CLIENT_ID", "env"),
        ]);
        let flags = sets(&[
            "kafka.group_id=from-flag",
            "kafka.group_id=from-last-flag",
            "kafka.properties.client.id=flag",
        ]);
        let c = Config::from_layers(Some(("f.toml", file)), vars.clone(), &flags).unwrap();
        assert_eq!(c.kafka.group_id, "from-last-flag");
        assert_eq!(c.kafka.bootstrap_servers, "file:9092");
        assert_eq!(c.output.partitions, 4);
        assert_eq!(c.output.replication_factor, 2);
        assert_eq!(c.kafka.properties["client.id"], "flag");

        let c = Config::from_layers(Some(("f.toml", file)), vars, &[]).unwrap();
        assert_eq!(c.kafka.group_id, "from-env");
        assert_eq!(c.kafka.properties["client.id"], "env");
    }

    #[test]
    fn empty_value_puts_the_default_back() {
        let file = "policy = \"p.toml\"\n[kafka]\ngroup_id = \"g\"\n\
                    [kafka.properties]\n\"sasl.password\" = \"secret\"\n";
        let c = Config::from_layers(
            Some(("f.toml", file)),
            env(&[("CHURNWATCH__KAFKA__PROPERTIES__SASL_PASSWORD", "")]),
            &sets(&["kafka.group_id=", "policy="]),
        )
        .unwrap();
        assert_eq!(c.kafka.group_id, "churnwatch");
        assert!(c.kafka.properties.is_empty());
        assert_eq!(c.policy, None);
        // An empty value is still checked against the known keys.
        let e = from_sets(&["kafka.grup_id="]).unwrap_err();
        assert!(e.to_string().contains("grup_id"), "{e}");
    }

    #[test]
    fn unknown_key_in_file_names_file_and_key() {
        let e = from_file("[kafka]\ngrup_id = \"x\"\n").unwrap_err();
        assert!(matches!(e, ConfigError::File { .. }), "{e}");
        let m = e.to_string();
        assert!(m.contains("test.toml") && m.contains("grup_id"), "{m}");
        let e = from_file("[kafk]\n").unwrap_err().to_string();
        assert!(e.contains("kafk"), "{e}");
        let e = from_file("[input.vists]\ntopic = \"v\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("vists"), "{e}");
        let e = from_file("[output]\npartitions = \"six\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("partitions") && e.contains("line 2"), "{e}");
        let e = from_file("[output\n").unwrap_err().to_string();
        assert!(e.contains("test.toml"), "{e}");
    }

    #[test]
    fn unknown_key_in_env_names_variable_and_key() {
        let e = from_env(&[("CHURNWATCH__KAFKA__GRUP_ID", "x")]).unwrap_err();
        assert!(matches!(e, ConfigError::Env { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("CHURNWATCH__KAFKA__GRUP_ID") && m.contains("grup_id"),
            "{m}"
        );
        let m = from_env(&[("CHURNWATCH__STATES__DIR", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("CHURNWATCH__STATES__DIR") && m.contains("states"),
            "{m}"
        );
        let m = from_env(&[("CHURNWATCH__INPUT__VISITS__TOPIC__NAME", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("`input.visits.topic` is a single setting"),
            "{m}"
        );
    }

    #[test]
    fn unknown_key_in_flag_names_flag_and_key() {
        let e = from_sets(&["output.partitons=3"]).unwrap_err();
        assert!(matches!(e, ConfigError::Set { .. }), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("--set output.partitons") && m.contains("partitons"),
            "{m}"
        );
        let m = from_sets(&["kafka.properties"]).unwrap_err().to_string();
        assert!(m.contains("no `=`"), "{m}");
        let m = from_sets(&["kafka..group_id=x"]).unwrap_err().to_string();
        assert!(m.contains("section.key=value"), "{m}");
        let m = from_sets(&["kafka=x"]).unwrap_err().to_string();
        assert!(m.contains("is a section"), "{m}");
    }

    #[test]
    fn wrong_types_from_env_and_flags_are_rejected() {
        let m = from_env(&[("CHURNWATCH__OUTPUT__PARTITIONS", "six")])
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("CHURNWATCH__OUTPUT__PARTITIONS") && m.contains("six"),
            "{m}"
        );
        let m = from_sets(&["input.align_wait_ms=-1"])
            .unwrap_err()
            .to_string();
        assert!(m.contains("align_wait_ms") && m.contains("-1"), "{m}");
        let m = from_sets(&["output.create_topics=yes"])
            .unwrap_err()
            .to_string();
        assert!(m.contains("create_topics"), "{m}");
        let m = from_sets(&["input.visits.format=xml"])
            .unwrap_err()
            .to_string();
        assert!(m.contains("xml") && m.contains("confluent"), "{m}");
        // The flag's value is not echoed in the error (it may be a secret).
        let m = from_sets(&[
            "kafka.properties.sasl.password.x.y=hunter2",
            "kafka.grup=hunter2",
        ])
        .unwrap_err()
        .to_string();
        assert!(!m.contains("hunter2"), "{m}");
    }

    #[test]
    fn malformed_env_names_are_rejected() {
        for var in [
            "CHURNWATCH__",
            "CHURNWATCH__KAFKA____GROUP_ID",
            "CHURNWATCH__KAFKA__",
        ] {
            let m = from_env(&[(var, "x")]).unwrap_err().to_string();
            assert!(m.contains(var) && m.contains("SECTION__KEY"), "{m}");
        }
    }

    #[test]
    fn two_env_variables_for_one_key_are_rejected() {
        let m = from_env(&[
            ("CHURNWATCH__KAFKA__PROPERTIES__SASL_MECHANISM", "PLAIN"),
            ("CHURNWATCH__KAFKA__PROPERTIES__SASL__MECHANISM", "GSSAPI"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            m.contains("sasl.mechanism") && m.contains("keep one"),
            "{m}"
        );
    }

    #[test]
    fn output_topics_must_differ_from_inputs_and_each_other() {
        let ps = problems(
            Config::from_layers(
                Some(("f.toml", "[output]\nstatus_topic = \"visits\"\n")),
                env(&[(
                    "CHURNWATCH__OUTPUT__CHANGELOG_TOPIC",
                    "churnwatch-dead-letters",
                )]),
                &[],
            )
            .unwrap_err(),
        );
        assert_eq!(ps.len(), 2, "{ps:?}");
        assert!(
            ps[0].contains("`output.status_topic` (from config file f.toml)")
                && ps[0].contains("`input.visits.topic` (default)"),
            "{ps:?}"
        );
        assert!(
            ps[1].contains("`output.dead_letter_topic` (default)")
                && ps[1].contains(
                    "`output.changelog_topic` (from environment variable \
                     CHURNWATCH__OUTPUT__CHANGELOG_TOPIC)"
                ),
            "{ps:?}"
        );
    }

    #[test]
    fn inputs_may_share_a_topic() {
        let c = from_sets(&[
            "input.repair_orders.topic=dms-events",
            "input.visits.topic=dms-events",
            "input.contracts.topic=dms-events",
        ])
        .unwrap();
        assert_eq!(c.input.visits.topic, "dms-events");
    }

    #[test]
    fn bad_values_are_all_reported_with_their_source() {
        let ps = problems(
            from_sets(&[
                "output.partitions=0",
                "output.replication_factor=-1",
                "input.visits.topic=my topic",
                "admin.listen=localhost:9464",
                "state.commit_max_records=0",
                "kafka.bootstrap_servers= ",
            ])
            .unwrap_err(),
        );
        let all = ps.join("\n");
        assert_eq!(ps.len(), 6, "{all}");
        for needle in [
            "`output.partitions` (from --set output.partitions) is 0",
            "`output.replication_factor` (from --set output.replication_factor) is -1",
            "`input.visits.topic` (from --set input.visits.topic) `my topic` contains ' '",
            "`admin.listen` (from --set admin.listen) is `localhost:9464`",
            "`state.commit_max_records` (from --set state.commit_max_records) must be at least 1",
            "`kafka.bootstrap_servers` (from --set kafka.bootstrap_servers) is empty",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in\n{all}");
        }
        let e = from_sets(&["output.status_topic=.."])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid configuration") && e.contains("does not allow"),
            "{e}"
        );
        let e = from_file("[input.visits]\ntopic = \"\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`input.visits.topic` (from config file test.toml) is empty"),
            "{e}"
        );
    }

    #[test]
    fn confluent_schema_ids_are_checked() {
        let e = from_sets(&["input.visits.format=confluent"]).unwrap_err();
        let ps = problems(e);
        assert!(
            ps[0].contains("`input.visits.confluent_schema_ids` is empty")
                && ps[0].contains("(from --set input.visits.format)")
                && ps[0].contains("`17 = \"visit\"`"),
            "{ps:?}"
        );
        let ps = problems(
            from_file(
                "[input.repair_orders]\nformat = \"confluent\"\n\
                 [input.repair_orders.confluent_schema_ids]\n\
                 1 = \"repair_order\"\nx7 = \"visit\"\n99 = \"order\"\n\
                 [input.contracts.confluent_schema_ids]\n3 = \"contract\"\n",
            )
            .unwrap_err(),
        );
        let all = ps.join("\n");
        assert_eq!(ps.len(), 3, "{all}");
        assert!(all.contains("`x7` is not a schema id"), "{all}");
        assert!(
            all.contains("`input.repair_orders.confluent_schema_ids.99` (from config file test.toml) is `order`"),
            "{all}"
        );
        assert!(
            all.contains("`input.contracts.confluent_schema_ids` is only used with format \"confluent\" but `input.contracts.format` (default) is \"json\""),
            "{all}"
        );
        let c = from_file(
            "[input.repair_orders]\nformat = \"confluent\"\n\
             [input.repair_orders.confluent_schema_ids]\n1 = \"repair_order\"\n2 = \"tick\"\n",
        )
        .unwrap();
        assert_eq!(
            c.input.repair_orders.schema_kinds(),
            BTreeMap::from([(1, InputKind::RepairOrder), (2, InputKind::Tick)])
        );
    }

    #[test]
    fn property_maps_cannot_override_brokers_or_group() {
        let ps = problems(
            from_sets(&[
                "kafka.properties.bootstrap.servers=x:1",
                "kafka.consumer.group.id=other",
                "kafka.producer.linger..ms=5",
            ])
            .unwrap_err(),
        );
        let all = ps.join("\n");
        assert_eq!(ps.len(), 3, "{all}");
        assert!(all.contains("kafka.bootstrap_servers` instead"), "{all}");
        assert!(all.contains("kafka.group_id` instead"), "{all}");
        assert!(
            all.contains(
                "`kafka.producer.linger..ms` (from --set kafka.producer.linger..ms) is not"
            ),
            "{all}"
        );
    }

    #[test]
    fn validate_without_origins_names_only_the_key() {
        let mut c = Config::default();
        c.output.partitions = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`output.partitions` is 0"), "{e}");
        assert!(!e.contains("(default)"), "{e}");
    }

    #[test]
    fn client_properties_merge_per_role() {
        let c = from_sets(&[
            "kafka.bootstrap_servers=b1:9092,b2:9092",
            "kafka.group_id=cw",
            "kafka.properties.security.protocol=SASL_SSL",
            "kafka.properties.client.id=shared",
            "kafka.consumer.client.id=consumer",
            "kafka.consumer.auto.offset.reset=earliest",
            "kafka.producer.acks=all",
        ])
        .unwrap();
        let map =
            |role| -> BTreeMap<String, String> { c.client_properties(role).into_iter().collect() };
        let owned = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            map(Role::Consumer),
            owned(&[
                ("bootstrap.servers", "b1:9092,b2:9092"),
                ("group.id", "cw"),
                ("security.protocol", "SASL_SSL"),
                ("client.id", "consumer"),
                ("auto.offset.reset", "earliest"),
            ])
        );
        assert_eq!(
            map(Role::Producer),
            owned(&[
                ("bootstrap.servers", "b1:9092,b2:9092"),
                ("security.protocol", "SASL_SSL"),
                ("client.id", "shared"),
                ("acks", "all"),
            ])
        );
        assert_eq!(
            map(Role::Admin),
            owned(&[
                ("bootstrap.servers", "b1:9092,b2:9092"),
                ("security.protocol", "SASL_SSL"),
                ("client.id", "shared"),
            ])
        );
        let names: Vec<String> = c
            .client_properties(Role::Producer)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
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
    fn redacted_hides_secrets_only() {
        let c = from_sets(&[
            "kafka.properties.sasl.username=cw",
            "kafka.properties.sasl.password=hunter2",
            "kafka.consumer.ssl.key.password=k",
            "kafka.producer.sasl.oauthbearer.client.secret=s",
        ])
        .unwrap();
        let r = c.redacted();
        assert_eq!(r.kafka.properties["sasl.username"], "cw");
        assert_eq!(r.kafka.properties["sasl.password"], "<redacted>");
        assert_eq!(r.kafka.consumer["ssl.key.password"], "<redacted>");
        assert_eq!(
            r.kafka.producer["sasl.oauthbearer.client.secret"],
            "<redacted>"
        );
        assert!(!r.to_toml().contains("hunter2"));
        assert_eq!(c.kafka.properties["sasl.password"], "hunter2");
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
