//! Taking over one partition's state: [`Restorer::open`] resumes from the local sled
//! tree when it is current with the changelog, starts over when there is no state
//! anywhere, and otherwise clears the tree and restores it from the changelog topic.
//!
//! Owns the sled database handle and the changelog reader's configuration. Writes the
//! partition's tree (clear, restore) and its readiness view in [`Shared`]; reads the
//! changelog with a reader of its own, never the group consumer, so it is safe to run
//! from the processing loop between polls.

use crate::codec::Format;
use crate::core::policy::Policy;
use crate::edge::kafka::config::Config;
use crate::edge::kafka::error::{kafka, ServiceError};
use crate::edge::kafka::partition::{
    changelog_end, has_state, restore_from_changelog, ChangelogRecord, Partition,
};
use crate::edge::kafka::shared::Shared;
use crate::edge::kafka::topics::restorer_config;
use crate::store::{SledTreeKv, Store, StoreError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// A restore gives up when the changelog is not read to its end within this long.
const STALL_LIMIT: Duration = Duration::from_secs(300);

/// The name of partition `p`'s tree in the sled database.
pub(crate) fn tree_name(p: i32) -> String {
    format!("partition-{p}")
}

/// Opens partitions from local state or the changelog.
pub(crate) struct Restorer {
    db: sled::Db,
    reader: ClientConfig,
    changelog_topic: String,
    policy: Policy,
    topics: Vec<String>,
    encoding: Format,
    shared: Arc<Shared>,
    /// How far past the wall clock a record may be dated (none: no bound).
    clock_skew: Option<Duration>,
}

impl Restorer {
    /// A restorer of partitions of `topics` into `db`.
    pub(crate) fn new(
        cfg: &Config,
        db: sled::Db,
        policy: Policy,
        topics: Vec<String>,
        shared: Arc<Shared>,
    ) -> Self {
        Restorer {
            db,
            reader: restorer_config(cfg),
            changelog_topic: cfg.output.changelog_topic.clone(),
            policy,
            topics,
            encoding: cfg.output.format,
            shared,
            clock_skew: match cfg.input.max_clock_skew_minutes {
                0 => None,
                m => Some(Duration::from_secs(m * 60)),
            },
        }
    }

    /// The sled database holding every partition's tree.
    pub(crate) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// A changelog reader: one per assignment, shared by its partitions.
    pub(crate) fn reader(&self) -> Result<BaseConsumer, ServiceError> {
        self.reader
            .create()
            .map_err(kafka("creating the changelog reader"))
    }

    /// Opens partition `p`: local state when it is current, else a restore from the
    /// changelog (read with `reader`). The partition shows in [`Shared`] as not ready
    /// from the start; the caller marks it ready once it has resumed.
    pub(crate) fn open(&self, reader: &BaseConsumer, p: i32) -> Result<Partition, ServiceError> {
        let store = Store::with_kv(SledTreeKv::open(&self.db, &tree_name(p))?)?;
        self.shared.open_partition(p, store.clone());
        let hw = self.changelog_high_watermark(reader, p)?;
        let local = has_state(&store)?;
        let local_end = changelog_end(&store)?;
        let mut restored = false;
        if local && hw <= local_end {
            info!(changelog_end = local_end, "resuming from local state");
        } else if hw == 0 {
            if local {
                warn!("local state exists but the changelog is empty; starting over");
                store.clear()?;
            }
            info!("no state anywhere; starting from the beginning");
        } else {
            info!(
                changelog_high_watermark = hw,
                local_end, "restoring from the changelog"
            );
            store.clear()?;
            let started = Instant::now();
            let records = self.read_changelog(reader, p, hw)?;
            let n = restore_from_changelog(&store, records, hw)?;
            self.shared.metrics.restores.inc();
            info!(
                customers = n,
                seconds = started.elapsed().as_secs_f64(),
                "restored"
            );
            restored = true;
        }
        let mut part = Partition::open(p, store, self.policy.clone(), &self.topics, self.encoding)?;
        part.set_clock_skew(self.clock_skew);
        tracing::debug!(restored, "partition open");
        Ok(part)
    }

    fn changelog_high_watermark(&self, c: &BaseConsumer, p: i32) -> Result<i64, ServiceError> {
        let (_, hi) = c
            .fetch_watermarks(&self.changelog_topic, p, Duration::from_secs(30))
            .map_err(kafka(format!(
                "reading the end of changelog topic `{}` partition {p}",
                self.changelog_topic
            )))?;
        Ok(hi)
    }

    /// Reads changelog partition `p` from its beginning up to `end`.
    fn read_changelog(
        &self,
        c: &BaseConsumer,
        p: i32,
        end: i64,
    ) -> Result<Vec<ChangelogRecord>, ServiceError> {
        let topic = &self.changelog_topic;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(kafka("assigning the changelog"))?;
        c.assign(&tpl).map_err(kafka("assigning the changelog"))?;
        let mut out = Vec::new();
        let mut last = -1;
        let started = Instant::now();
        while last + 1 < end {
            self.shared.beat();
            match c.poll(Duration::from_millis(500)) {
                Some(Ok(m)) => {
                    last = m.offset();
                    if let Some(v) = m.payload() {
                        out.push(ChangelogRecord::decode(v).map_err(|e| {
                            let reason = match e {
                                StoreError::Corrupt { reason, .. } => reason,
                                other => other.to_string(),
                            };
                            ServiceError::ChangelogRecord {
                                topic: topic.clone(),
                                partition: p,
                                offset: last,
                                reason,
                            }
                        })?);
                    }
                }
                Some(Err(e)) => return Err(kafka("reading the changelog")(e)),
                None if started.elapsed() > STALL_LIMIT => {
                    return Err(ServiceError::ChangelogStalled {
                        topic: topic.clone(),
                        partition: p,
                        at: last,
                        end,
                        waited: STALL_LIMIT,
                    })
                }
                None => {}
            }
        }
        Ok(out)
    }
}
