//! The librdkafka side of the configuration: the properties passed through to each
//! client ([`Role`], [`Config::client_properties`]), the rules for their names, and
//! hiding secret values when the configuration is printed ([`Config::redacted`]).

use super::layers::Origins;
use super::{Config, KafkaConfig};
use std::collections::BTreeMap;

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

/// The value shown instead of a secret.
const REDACTED: &str = "<redacted>";

/// Whether a librdkafka property's value should not be shown.
fn is_secret_property(name: &str) -> bool {
    name.contains("password")
        || name.contains("secret")
        || name == "ssl.key.pem"
        || name == "sasl.oauthbearer.config"
}

impl Config {
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
                    *value = REDACTED.into();
                }
            }
        }
        c
    }
}

impl KafkaConfig {
    /// The problems of the brokers, the group and the property names, each naming its
    /// key and where the value came from.
    pub(super) fn problems(&self, origins: &Origins<'_>) -> Vec<String> {
        let at = |key: &str| origins.describe(key);
        let mut problems = Vec::new();
        if self.bootstrap_servers.trim().is_empty() {
            problems.push(format!(
                "{} is empty; give the brokers as host:port[,host:port…]",
                at("kafka.bootstrap_servers")
            ));
        }
        if self.group_id.trim().is_empty() {
            problems.push(format!(
                "{} is empty; give the consumer group id shared by all instances",
                at("kafka.group_id")
            ));
        }
        if let super::instance::InstanceId::Given(id) =
            super::instance::InstanceId::parse(&self.instance_id)
        {
            if let Some(p) = super::instance::problem(&id) {
                problems.push(format!("{} {p}", at("kafka.instance_id")));
            }
        }
        for (map, props) in [
            ("properties", &self.properties),
            ("consumer", &self.consumer),
            ("producer", &self.producer),
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
                } else if name == "group.instance.id" {
                    problems.push(format!(
                        "{}: set static group membership with `kafka.instance_id` instead                          (`auto`, the default, derives a stable id; `none` turns it off)",
                        at(&key)
                    ));
                }
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;

    #[test]
    fn property_maps_cannot_override_brokers_or_group() {
        let ps = problems(
            from_sets(&[
                "kafka.properties.bootstrap.servers=x:1",
                "kafka.consumer.group.id=other",
                "kafka.producer.linger..ms=5",
                "kafka.consumer.group.instance.id=pod-0",
            ])
            .unwrap_err(),
        );
        let all = ps.join("\n");
        assert_eq!(ps.len(), 4, "{all}");
        assert!(all.contains("kafka.bootstrap_servers` instead"), "{all}");
        assert!(all.contains("kafka.group_id` instead"), "{all}");
        assert!(
            all.contains(
                "`kafka.consumer.group.instance.id` (from --set \
                 kafka.consumer.group.instance.id): set static group membership with \
                 `kafka.instance_id` instead"
            ),
            "{all}"
        );
        assert!(
            all.contains(
                "`kafka.producer.linger..ms` (from --set kafka.producer.linger..ms) is not"
            ),
            "{all}"
        );
    }

    #[test]
    fn instance_id_is_auto_none_or_a_valid_id() {
        for (value, want) in [("auto", "auto"), ("none", "none"), ("pod-0", "pod-0")] {
            let c = from_env(&[("CHURNWATCH__KAFKA__INSTANCE_ID", value)]).unwrap();
            assert_eq!(c.kafka.instance_id, want);
        }
        let c = from_file("[kafka]\ninstance_id = \"churnwatch-2.eu_west\"\n").unwrap();
        assert_eq!(
            c.group_instance_id().unwrap().as_deref(),
            Some("churnwatch-2.eu_west")
        );
        let none = from_sets(&["kafka.instance_id=none"]).unwrap();
        assert_eq!(none.group_instance_id().unwrap(), None);
        let ps = problems(from_sets(&["kafka.instance_id=pod/0"]).unwrap_err());
        assert_eq!(ps.len(), 1, "{ps:?}");
        assert!(
            ps[0].contains(
                "`kafka.instance_id` (from --set kafka.instance_id) `pod/0` contains '/'"
            ),
            "{ps:?}"
        );
        let long = format!("kafka.instance_id={}", "x".repeat(250));
        let ps = problems(from_sets(&[long.as_str()]).unwrap_err());
        assert!(ps[0].contains("250 characters"), "{ps:?}");
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
}
