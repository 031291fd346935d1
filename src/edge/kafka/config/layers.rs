//! Where configuration values come from and how the layers are merged: the defaults,
//! the TOML file, the `CHURNWATCH__…` environment variables and the `--set` flags
//! (see the parent module for their syntax), the errors of a source that cannot be
//! used ([`ConfigError`]), and [`Origins`], which tells validation where each value
//! came from.
//!
//! # What figment does
//!
//! The merging is figment's: every source is a figment `Provider` named after where
//! its values came from (`default`, `config file F`, `environment variable V`,
//! `--set KEY`), merged in order into one `Figment`, from which the typed [`Config`] is
//! extracted. figment tags every merged value with the provider that set it; that tag
//! is how a validation problem names the layer of a value ([`Origins`]), so no
//! separate record of origins is kept. The defaults come from figment's `Serialized`
//! provider and the file through its `Toml` provider.
//!
//! # What stays hand-written, and why
//!
//! - **Environment variables.** figment's `Env` provider is not used. It turns every
//!   `.` of a key into a level of nesting, so a librdkafka property such as
//!   `sasl.mechanism` cannot be one key of `kafka.properties`; it parses every value
//!   (`123` becomes a number, `"0x12"` loses its quotes) where text settings must be
//!   taken verbatim; it silently skips names with empty parts and lets two variables
//!   for one key both apply; its errors name "environment variable(s)", not the
//!   variable; and it reads only the process environment, not the variables passed to
//!   [`Config::load`]. So each variable, like each `--set` flag, is turned into a key
//!   path and a typed value here and merged as a provider of its own ([`Setting`]).
//! - **Unsetting.** A figment merge adds or replaces values but cannot remove one, and
//!   an empty value must remove `policy`, `model` or a property-map entry that an
//!   earlier layer set. Such a value is merged as figment's explicit "none"
//!   (`Empty::None`): `Option` fields read it as `None`, and the string maps drop
//!   entries holding it ([`without_unset`]); a later layer can still set the key again.
//! - **Errors naming their source.** serde reports an unknown key on the table that
//!   holds it, and after a merge that table carries the tag of the *last* layer that
//!   touched it, which need not be the layer with the typo. So every source is checked
//!   alone before it is merged, and loading stops at the first source that fails, as
//!   before: the file by the toml crate (figment's `Toml` provider keeps no positions,
//!   and the file's errors give line and key), each variable or flag through a figment
//!   of its own. figment's `Error` can chain several errors, but serde stops extracting
//!   at the first one, so it cannot collect the problems of one source; the checks of
//!   the merged values that report every problem at once are churnwatch's own
//!   (`validate`).

use super::Config;
use figment::providers::{Format as _, Serialized, Toml};
use figment::value::{Dict, Empty, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use thiserror::Error;

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "CHURNWATCH__";

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
    #[error("config file {path} is invalid (fix the file; keys left out keep their defaults): {message}")]
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
    #[error("--set {key}=… is invalid: {message}; fix or drop the flag")]
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

/// The name of the defaults' provider; [`Origins`] shows its values as `(default)`.
const DEFAULTS: &str = "default";

/// A figment provider under the name of the source of its values.
struct Named<P> {
    name: String,
    provider: P,
}

impl<P: Provider> Provider for Named<P> {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        self.provider.data()
    }
}

/// One environment variable or `--set` flag as a figment provider: a single key with
/// its typed value (figment's explicit "none" to unset it).
#[derive(Clone)]
struct Setting {
    /// Where the value came from, e.g. `environment variable CHURNWATCH__KAFKA__GROUP_ID`.
    origin: String,
    /// The key; a property name with dots is one part.
    path: Vec<String>,
    value: Value,
}

impl Provider for Setting {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.origin.clone())
    }

    fn data(&self) -> figment::Result<Map<Profile, Dict>> {
        let mut value = self.value.clone();
        for key in self.path.iter().rev() {
            let mut dict = Dict::new();
            dict.insert(key.clone(), value);
            value = Value::from(dict);
        }
        Ok(Profile::Default.collect(value.into_dict().unwrap_or_default()))
    }
}

/// Deserialises a string map, leaving out the entries a later layer unset (see the
/// module documentation). A TOML file cannot hold such entries.
pub(super) fn without_unset<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let entries = BTreeMap::<String, Option<String>>::deserialize(deserializer)?;
    Ok(entries
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
        .collect())
}

/// Merges the layers into one figment, checking each source alone first: defaults,
/// the file (name and text), the `CHURNWATCH__…` variables of `env` in name order, then
/// the `--set` flags in order.
pub(super) fn merge(
    file: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
    sets: &[String],
) -> Result<Figment, ConfigError> {
    let defaults = Value::serialize(Config::default())
        .ok()
        .and_then(Value::into_dict)
        .expect("the default config serialises to a table");
    let mut figment = Figment::from(Named {
        name: DEFAULTS.into(),
        provider: Serialized::defaults(Config::default()),
    });

    if let Some((path, text)) = file {
        // Parsing into the typed config reports syntax errors, unknown keys and wrong
        // types with their line; figment's provider then merges the same text.
        toml::from_str::<Config>(text).map_err(|e| ConfigError::File {
            path: path.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        figment = figment.merge(Named {
            name: format!("config file {path}"),
            provider: Toml::string(text),
        });
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
        let origin = format!("environment variable {var}");
        figment = figment.merge(setting(&defaults, path, &value, origin).map_err(fail)?);
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
        let origin = format!("--set {key}");
        figment = figment.merge(setting(&defaults, path, value, origin).map_err(fail)?);
    }
    Ok(figment)
}

/// The typed configuration of the merged layers. Each source was checked alone, so
/// this fails only if their combination cannot be read; every error figment chained
/// is reported.
pub(super) fn extract(figment: &Figment) -> Result<Config, ConfigError> {
    figment
        .extract()
        .map_err(|e: figment::Error| ConfigError::Invalid {
            problems: e
                .into_iter()
                .map(|e| {
                    let from = match &e.metadata {
                        Some(m) if m.name != DEFAULTS => format!(" (from {})", m.name),
                        _ => String::new(),
                    };
                    format!("`{}`{from}: {}", e.path.join("."), e.kind)
                })
                .collect(),
        })
}

/// Where each key's value came from, for the messages of validation.
pub(super) enum Origins {
    /// Not recorded (a [`Config`] built in code): messages name only the key.
    Unrecorded,
    /// The merged layers: each value carries the tag of the provider that set it.
    Merged {
        /// The layers.
        figment: Figment,
        /// Their merged values.
        values: Value,
    },
}

impl Origins {
    /// The origins of the merged layers' values.
    pub(super) fn of(figment: &Figment) -> Origins {
        Origins::Merged {
            figment: figment.clone(),
            values: figment
                .find_value("")
                .unwrap_or_else(|_| Value::from(Dict::new())),
        }
    }

    /// No origins: messages name only the key.
    pub(super) fn unrecorded() -> Origins {
        Origins::Unrecorded
    }

    /// The dotted key for a message, with where its value came from when known:
    /// `` `output.partitions` (from --set output.partitions) `` or
    /// `` `output.partitions` (default) ``.
    pub(super) fn describe(&self, key: &str) -> String {
        let Origins::Merged { figment, values } = self else {
            return format!("`{key}`");
        };
        let mut value = Some(values);
        for part in key_parts(key) {
            value = value.and_then(Value::as_dict).and_then(|d| d.get(&part));
        }
        match value
            .and_then(|v| figment.get_metadata(v.tag()))
            .filter(|m| m.name != DEFAULTS)
        {
            Some(m) => format!("`{key}` (from {})", m.name),
            None => format!("`{key}` (default)"),
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

/// The parts of a dotted key; in a map everything after the map's name is one key.
fn key_parts(key: &str) -> Vec<String> {
    let parts: Vec<String> = key.split('.').map(str::to_string).collect();
    match map_prefix(&parts) {
        Some((n, _)) if parts.len() > n => {
            let mut path = parts[..n].to_vec();
            path.push(parts[n..].join("."));
            path
        }
        _ => parts,
    }
}

/// Turns `CHURNWATCH__A__B_C` into the key path `a.b_c` (property names: see the
/// parent module's documentation).
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

/// Turns the key of `--set a.b.c=v` into its path.
fn set_key_path(key: &str) -> Result<Vec<String>, String> {
    let path = key_parts(key);
    if path.iter().any(String::is_empty) {
        return Err(
            "expected --set section.key=value, e.g. --set kafka.group_id=churnwatch".into(),
        );
    }
    Ok(path)
}

fn get_in<'a>(dict: &'a Dict, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut d = dict;
    for p in parents {
        d = d.get(p)?.as_dict()?;
    }
    d.get(last)
}

/// A number or boolean written as TOML (so `1_2` is 12); `None` for anything else.
fn parse_scalar(raw: &str) -> Option<Value> {
    let mut t: toml::Table = toml::from_str(&format!("v = {raw}")).ok()?;
    if t.len() != 1 {
        return None;
    }
    match t.remove("v")? {
        v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)) => {
            Value::serialize(v).ok()
        }
        _ => None,
    }
}

/// Makes the provider of one environment or flag value after checking that its key
/// exists and the value has the right type. The value is text where the default is
/// text (or there is none), else TOML; empty means the default, or none without one.
fn setting(
    defaults: &Dict,
    path: Vec<String>,
    raw: &str,
    origin: String,
) -> Result<Setting, String> {
    for n in 1..path.len() {
        if let Some(v) = get_in(defaults, &path[..n]) {
            if v.as_dict().is_none() {
                return Err(format!(
                    "`{}` is a single setting, not a section; it has no key `{}`",
                    dotted(&path[..n]),
                    dotted(&path[n..])
                ));
            }
        }
    }
    // An unset optional value (`admin.port_file`) has no default to go by.
    let default = get_in(defaults, &path).filter(|v| v.to_empty().is_none());
    if default.is_some_and(|v| v.as_dict().is_some()) {
        return Err(format!(
            "`{}` is a section, not a single setting; set its keys instead",
            dotted(&path)
        ));
    }
    let value = if raw.is_empty() {
        default
            .cloned()
            .unwrap_or_else(|| Value::from(Empty::None))
    } else if matches!(default, None | Some(Value::String(..))) {
        Value::from(raw.to_string())
    } else {
        parse_scalar(raw).unwrap_or_else(|| Value::from(raw.to_string()))
    };
    let setting = Setting {
        origin,
        path,
        value,
    };
    // Extract the setting alone: unknown keys and wrong types fail here, blamed on
    // this source.
    Figment::from(setting.clone())
        .extract::<Config>()
        .map_err(|e| key_problem(&setting.path, &e.kind))?;
    Ok(setting)
}

/// What is wrong with a setting, from figment's error about it.
fn key_problem(path: &[String], kind: &figment::error::Kind) -> String {
    use figment::error::{Kind, OneOf};
    let key = dotted(path);
    match kind {
        Kind::UnknownField(field, known) => {
            let section = path
                .iter()
                .position(|p| p == field)
                .map(|i| dotted(&path[..i]))
                .filter(|s| !s.is_empty());
            let within = section.map_or("at the top level".into(), |s| format!("in `{s}`"));
            format!(
                "key `{key}`: there is no key `{field}` {within}; expected {}",
                OneOf(known)
            )
        }
        Kind::UnknownVariant(value, known) => {
            format!("key `{key}`: `{value}` is not {}", OneOf(known))
        }
        other => format!("key `{key}`: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::InputFormat;
    use super::*;
    use crate::codec::avro::InputKind;
    use crate::codec::Format;
    use std::path::PathBuf;

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
}
