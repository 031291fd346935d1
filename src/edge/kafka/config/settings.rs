//! One `CHURNWATCH__…` environment variable or `--set` flag: the syntax of its key
//! (double underscores, or dots, with a property name as one key inside the librdkafka
//! maps), the typed value it stands for (verbatim text, or TOML for numbers and
//! booleans, or the default or figment's explicit "none" when empty), and the check of
//! that key and value alone, so that an error names this one source. The result is a
//! figment provider of its own ([`Setting`]), merged by the `layers` module.

use super::layers::ENV_PREFIX;
use super::Config;
use figment::value::{Dict, Empty, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

/// One environment variable or `--set` flag as a figment provider: a single key with
/// its typed value (figment's explicit "none" to unset it).
#[derive(Clone)]
pub(super) struct Setting {
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

pub(super) fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// The parts of a dotted key; in a map everything after the map's name is one key.
pub(super) fn key_parts(key: &str) -> Vec<String> {
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
pub(super) fn env_path(var: &str) -> Result<Vec<String>, String> {
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
pub(super) fn set_key_path(key: &str) -> Result<Vec<String>, String> {
    let path = key_parts(key);
    if path.iter().any(String::is_empty) {
        return Err(
            "expected --set section.key=value, e.g. --set kafka.group_id=churnwatch".into(),
        );
    }
    Ok(path)
}

pub(super) fn get_in<'a>(dict: &'a Dict, path: &[String]) -> Option<&'a Value> {
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
pub(super) fn setting(
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
        default.cloned().unwrap_or_else(|| Value::from(Empty::None))
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
    use crate::codec::avro::InputKind;
    use crate::codec::Format;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

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
}
