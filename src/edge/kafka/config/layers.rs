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
//!   taken verbatim; it silently skips names with empty parts and lets one of two
//!   variables for the same key win unannounced; its errors name "environment
//!   variable(s)", not the variable; and it reads only the process environment, not
//!   the variables passed to [`Config::load`]. So each variable, like each `--set`
//!   flag, is turned into a key path and a typed value here and merged as a provider
//!   of its own (module `settings`).
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
//!   of its own.
//! - **All problems at once.** figment's `Error` chains several errors only when
//!   several providers fail to produce data; extracting a type stops at the first
//!   error serde meets. So it cannot collect the problems of the values, and the checks
//!   of the merged values, which report every problem at once, stay churnwatch's own
//!   (module `validate`). [`extract`] reports every error of a chain.

use super::settings::{dotted, env_path, key_parts, set_key_path, setting};
use super::Config;
use figment::providers::{Format as _, Serialized, Toml};
use figment::value::{Dict, Map, Value};
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
pub(super) struct Origins<'a> {
    /// The merged layers and their values, each value tagged with the provider that
    /// set it; `None` when not recorded (a [`Config`] built in code).
    merged: Option<(&'a Figment, Value)>,
}

impl<'a> Origins<'a> {
    /// The origins of the merged layers' values.
    pub(super) fn of(figment: &'a Figment) -> Self {
        let values = figment
            .find_value("")
            .unwrap_or_else(|_| Value::from(Dict::new()));
        Origins {
            merged: Some((figment, values)),
        }
    }

    /// No origins: messages name only the key.
    pub(super) fn unrecorded() -> Self {
        Origins { merged: None }
    }

    /// The dotted key for a message, with where its value came from when known:
    /// `` `output.partitions` (from --set output.partitions) `` or
    /// `` `output.partitions` (default) ``.
    pub(super) fn describe(&self, key: &str) -> String {
        let Some((figment, values)) = &self.merged else {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::InputFormat;
    use super::*;
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

    // The tests below cover what moved onto figment: removal through an explicit none,
    // origins read from figment's tags, and errors blamed on their own source.

    #[test]
    fn an_unset_key_can_be_set_again_by_a_later_layer() {
        let file = "policy = \"p.toml\"\n[kafka.properties]\n\"sasl.password\" = \"old\"\n";
        let vars = env(&[
            ("CHURNWATCH__POLICY", ""),
            ("CHURNWATCH__KAFKA__PROPERTIES__SASL_PASSWORD", ""),
        ]);
        let c = Config::from_layers(Some(("f.toml", file)), vars.clone(), &[]).unwrap();
        assert_eq!(c.policy, None);
        assert!(c.kafka.properties.is_empty());
        let flags = sets(&["policy=q.toml", "kafka.properties.sasl.password=new"]);
        let c = Config::from_layers(Some(("f.toml", file)), vars, &flags).unwrap();
        assert_eq!(c.policy, Some(PathBuf::from("q.toml")));
        assert_eq!(c.kafka.properties["sasl.password"], "new");
        // An optional key without a value in the defaults is unset the same way.
        let c = from_sets(&["admin.port_file=/run/cw.port", "admin.port_file="]).unwrap();
        assert_eq!(c.admin.port_file, None);
        let c = from_sets(&["admin.port_file=5"]).unwrap();
        assert_eq!(c.admin.port_file, Some(PathBuf::from("5")));
    }

    #[test]
    fn every_value_names_the_layer_that_set_it() {
        let file =
            "[kafka]\ngroup_id = \"g\"\n[kafka.properties]\n\"sasl.mechanism\" = \"PLAIN\"\n\
                    \"client.id\" = \"file\"\n[output]\npartitions = 3\n";
        let merged = merge(
            Some(("f.toml", file)),
            env(&[("CHURNWATCH__OUTPUT__PARTITIONS", "4")]),
            &sets(&["kafka.properties.client.id=flag", "kafka.group_id="]),
        )
        .unwrap();
        let o = Origins::of(&merged);
        for (key, origin) in [
            ("kafka.bootstrap_servers", "(default)"),
            (
                "kafka.properties.sasl.mechanism",
                "(from config file f.toml)",
            ),
            (
                "kafka.properties.client.id",
                "(from --set kafka.properties.client.id)",
            ),
            ("kafka.group_id", "(from --set kafka.group_id)"),
            (
                "output.partitions",
                "(from environment variable CHURNWATCH__OUTPUT__PARTITIONS)",
            ),
            ("kafka.properties.not.set", "(default)"),
        ] {
            assert_eq!(o.describe(key), format!("`{key}` {origin}"));
        }
        assert_eq!(Origins::unrecorded().describe("a.b"), "`a.b`");
    }

    #[test]
    fn an_unknown_key_is_blamed_on_its_own_layer() {
        // The table `kafka` is touched last by the variable, but the typo is the file's.
        let e = Config::from_layers(
            Some(("f.toml", "[kafka]\ngrup_id = \"x\"\n")),
            env(&[("CHURNWATCH__KAFKA__GROUP_ID", "g")]),
            &[],
        )
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::File { path, .. } if path == "f.toml"),
            "{e}"
        );
        let e = Config::from_layers(
            Some(("f.toml", "[kafka]\ngroup_id = \"x\"\n")),
            env(&[("CHURNWATCH__KAFKA__GRUP_ID", "g")]),
            &sets(&["kafka.group_id=y"]),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ConfigError::Env { var, .. } if var == "CHURNWATCH__KAFKA__GRUP_ID"),
            "{e}"
        );
        let m = e.to_string();
        assert!(
            m.contains("no key `grup_id` in `kafka`") && m.contains("group_id"),
            "{m}"
        );
    }

    #[test]
    fn extraction_errors_name_key_and_source() {
        let figment = Figment::from(Named {
            name: "config file x.toml".into(),
            provider: Toml::string("[output]\npartitions = \"six\"\n"),
        });
        let ps = problems(extract(&figment).unwrap_err());
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert!(
            ps[0].starts_with("`output.partitions` (from config file x.toml): ")
                && ps[0].contains("six"),
            "{ps:?}"
        );
    }
}
