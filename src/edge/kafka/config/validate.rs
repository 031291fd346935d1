//! The checks of a loaded [`Config`]'s values together: topic names, output topics
//! distinct from the inputs and from each other, partition counts, Confluent schema ids,
//! intervals and sizes, paths and the admin address. Every problem is collected, so one
//! run shows them all, each naming its key and (after [`Config::load`]) the layer that
//! set the value.

use super::layers::Origins;
use super::{Config, ConfigError, InputFormat};
use crate::codec::avro::InputKind;
use std::net::SocketAddr;

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

impl Config {
    /// Checks the values together, naming each key as `origins` describes it.
    pub(super) fn check(&self, origins: &Origins<'_>) -> Result<(), ConfigError> {
        let at = |key: &str| origins.describe(key);
        let mut problems = self.kafka.problems(origins);

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
            problems.push(format!(
                "{} is empty; give the directory of the local state stores",
                at("state.dir")
            ));
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use std::collections::BTreeMap;

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
    fn validate_without_origins_names_only_the_key() {
        let mut c = Config::default();
        c.output.partitions = 0;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("`output.partitions` is 0"), "{e}");
        assert!(!e.contains("(default)"), "{e}");
    }
}
