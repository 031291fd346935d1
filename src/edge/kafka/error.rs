//! The service's failures: [`ServiceError`], one variant per kind of cause, each
//! message saying what failed, why, and what to do next.
//!
//! Owns nothing but the error type and the small constructor the other modules use to
//! wrap a Kafka client error; it touches no state.

use crate::store::StoreError;
use rdkafka::error::KafkaError;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// A failure of the service.
#[derive(Debug, Error)]
pub enum ServiceError {
    /// A Kafka client could not be created or an operation failed.
    #[error("Kafka {what} failed: {source}; check kafka.bootstrap_servers and the librdkafka properties in the config")]
    Kafka {
        /// What was attempted.
        what: String,
        /// The cause.
        source: KafkaError,
    },
    /// The state store failed. (Unreadable local state is not fixed with `--fresh`
    /// here, as the file pipeline's message says: the service rebuilds it from the
    /// changelog, so the message says so.)
    #[error("{}", store_message(.0))]
    Store(#[from] StoreError),
    /// The state directory could not be created.
    #[error("cannot create the state directory {}: {source}; check state.dir (--state-dir) names a path this user may create and write", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The topics do not fit: an input topic is missing, the inputs are not
    /// co-partitioned, the changelog's partitions do not match, or output topics are
    /// missing or cannot be created. The message names the topic and the fix.
    #[error("{0}")]
    Topics(String),
    /// A partition's restore stopped: the changelog was not read to its end, nothing
    /// more arriving for too long.
    #[error("cannot restore partition {partition}: changelog `{topic}` was read to offset {at} but not to its end {end}, nothing more arriving within {}s; check the brokers are reachable and the changelog is readable by this consumer, then restart to retry", waited.as_secs())]
    ChangelogStalled {
        /// The changelog topic.
        topic: String,
        /// The partition being restored.
        partition: i32,
        /// The last offset read (-1: none).
        at: i64,
        /// The end offset the restore reads up to.
        end: i64,
        /// How long the read went on.
        waited: Duration,
    },
    /// A changelog record does not decode: the topic holds something this build did
    /// not write.
    #[error("cannot restore partition {partition}: changelog `{topic}` holds a record at offset {offset} that does not decode ({reason}); output.changelog_topic must be this service's own changelog, written by a compatible churnwatch version")]
    ChangelogRecord {
        /// The changelog topic.
        topic: String,
        /// The partition being restored.
        partition: i32,
        /// The record's offset.
        offset: i64,
        /// Why it does not decode.
        reason: String,
    },
    /// A topic's decoder configuration is wrong.
    #[error(transparent)]
    Codec(#[from] crate::codec::record::CodecError),
    /// The admin port could not be bound.
    #[error("cannot listen on {addr}: {source}; check admin.listen is a free local address")]
    Admin {
        /// The address.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The admin address could not be written to `admin.port_file`.
    #[error("cannot write the admin address to admin.port_file {}: {source}; check its directory exists and is writable", path.display())]
    PortFile {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The async runtime (admin server, signals, delivery waits) could not start.
    #[error("cannot start the async runtime: {0}; the process may be out of threads or memory (check `ulimit -u` and the container's limits)")]
    Runtime(#[source] std::io::Error),
    /// The processing thread could not be started.
    #[error("cannot start the processing thread: {0}; the process may be out of threads or memory (check `ulimit -u` and the container's limits)")]
    Thread(#[source] std::io::Error),
    /// The processing thread panicked (a bug: please report it with the log).
    #[error("the processing thread panicked (a bug: please report it with the log); state up to the last commit is safe in sled, restart to resume")]
    Panicked,
    /// A thread restoring partitions from the changelog panicked.
    #[error("a thread restoring partitions {partitions:?} from the changelog panicked (a bug: please report it with the log); nothing was committed for them, restart to restore them again")]
    RestorePanicked {
        /// The partitions it was restoring.
        partitions: Vec<i32>,
    },
    /// `kafka.instance_id = "auto"` could not derive an id.
    #[error(transparent)]
    InstanceId(#[from] crate::edge::kafka::config::InstanceIdError),
    /// The group coordinator fenced this instance: another process joined the group
    /// with the same `group.instance.id` and took its place. Polling on cannot help.
    #[error("this instance was fenced out of consumer group `{group}`: another instance joined it with the same kafka.instance_id (`{instance_id}`) and took over its partitions ({reason}); give every instance its own kafka.instance_id (with \"auto\": its own host name or state.dir), or stop the other one, then restart this one")]
    Fenced {
        /// The consumer group.
        group: String,
        /// The instance id both use.
        instance_id: String,
        /// librdkafka's words.
        reason: String,
    },
    /// The consumer hit another fatal error (librdkafka can go on with none of them).
    #[error("the Kafka consumer hit a fatal error ({code}: {reason}) and cannot go on; check the broker's logs and the kafka.consumer properties, then restart")]
    ConsumerFatal {
        /// librdkafka's error code.
        code: rdkafka::error::RDKafkaErrorCode,
        /// librdkafka's words.
        reason: String,
    },
    /// Shutdown did not finish within the drain bound.
    #[error("shutdown did not finish within {0:?}: some outputs stay in the outbox and are sent on the next start")]
    DrainTimeout(Duration),
}

/// A store error as the service tells it: the local state is a cache of the changelog.
fn store_message(e: &StoreError) -> String {
    const REBUILD: &str = "stop the service and remove state.dir (or restore a backup): \
        the partitions are rebuilt from the changelog, or re-read from the input topics, \
        on the next start";
    match e {
        StoreError::Corrupt { key, reason } => {
            format!("the local state value under key `{key}` is corrupt ({reason}); {REBUILD}")
        }
        StoreError::Version { found } => format!(
            "the local state is in format {found} but this build reads {}; {REBUILD}",
            crate::store::FORMAT_VERSION
        ),
        other => other.to_string(),
    }
}

/// Wraps a Kafka client error as [`ServiceError::Kafka`] saying what was attempted.
pub(crate) fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> ServiceError {
    let what = what.into();
    move |source| ServiceError::Kafka { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_names_its_cause_and_next_step() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = ServiceError::StateDir {
            path: "/var/lib/cw".into(),
            source: io(),
        }
        .to_string();
        assert!(
            e.contains("cannot create the state directory /var/lib/cw")
                && e.contains("denied")
                && e.contains("state.dir"),
            "{e}"
        );
        assert!(!e.contains("--fresh"), "{e}");
        let e = ServiceError::Thread(io()).to_string();
        assert!(
            e.contains("processing thread") && !e.contains("admin"),
            "{e}"
        );
        let e = ServiceError::Runtime(io()).to_string();
        assert!(e.contains("runtime") && !e.contains("admin"), "{e}");
        let e = ServiceError::PortFile {
            path: "/run/cw.addr".into(),
            source: io(),
        }
        .to_string();
        assert!(e.contains("admin.port_file /run/cw.addr"), "{e}");
        let e = ServiceError::from(StoreError::Corrupt {
            key: "p/kafka".into(),
            reason: "bad".into(),
        })
        .to_string();
        assert!(
            e.contains("`p/kafka` is corrupt (bad)") && e.contains("remove state.dir"),
            "{e}"
        );
        assert!(!e.contains("--fresh"), "`run` has no --fresh: {e}");
        let e = ServiceError::Fenced {
            group: "churnwatch".into(),
            instance_id: "host-0123abcd".into(),
            reason: "Fatal consumer error: Broker: Static consumer fenced by other consumer with same group.instance.id".into(),
        }
        .to_string();
        assert!(
            e.contains("another instance")
                && e.contains("kafka.instance_id (`host-0123abcd`)")
                && e.contains("restart"),
            "{e}"
        );
        let e = ServiceError::Panicked.to_string();
        assert!(e.contains("panicked") && e.contains("restart"), "{e}");
        let e = ServiceError::ChangelogStalled {
            topic: "cl".into(),
            partition: 3,
            at: 9,
            end: 12,
            waited: Duration::from_secs(300),
        }
        .to_string();
        assert!(
            e.contains("partition 3") && e.contains("offset 9") && e.contains("300s"),
            "{e}"
        );
    }
}
