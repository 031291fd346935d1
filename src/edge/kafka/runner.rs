//! The Kafka service loop (`churnwatch run`): the consumer group, rebalances (flush on
//! revoke, local or changelog restore on assign, seek to the offsets kept in sled),
//! the per-partition engines, outbox delivery with the idempotent producer, the tick
//! producer, lag/KPI/population metrics, and the drain on shutdown.
//!
//! Threads: the processing loop runs on one dedicated thread (it owns the consumer and
//! every partition; rebalance callbacks run inside its `poll`); the admin HTTP server
//! and signal handling run on the tokio runtime; deliveries are awaited on that
//! runtime's handle from the processing thread.

use crate::codec::avro::InputKind;
use crate::codec::record::{Encoding, TopicDecoder, RECORD_TYPE_HEADER};
use crate::codec::Format;
use crate::core::kpi::KpiAccumulator;
use crate::core::policy::Policy;
use crate::core::time::Ts;
use crate::edge::kafka::admin::AdminState;
use crate::edge::kafka::config::{Config, InputFormat, Role};
use crate::edge::kafka::metrics::Metrics;
use crate::edge::kafka::partition::{
    changelog_end, decode, has_state, restore_from_changelog, Buffered, ChangelogRecord, Item,
    OutKind, Outgoing, Partition,
};
use crate::store::{open_sled_db, SledTreeKv, Store, StoreError};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, info_span, warn};

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
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The input topics are not co-partitioned, or a topic is missing.
    #[error("{0}")]
    Topics(String),
    /// A topic's decoder configuration is wrong.
    #[error(transparent)]
    Codec(#[from] crate::codec::record::CodecError),
    /// The admin port could not be bound (or another startup resource failed).
    #[error("cannot start {addr}: {source}; check admin.listen is a free local address")]
    Admin {
        /// The address (or resource).
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The processing thread panicked (a bug: please report it with the log).
    #[error("the processing thread panicked; state up to the last commit is safe in sled, restart to resume")]
    Panicked,
    /// Shutdown did not finish within the drain bound.
    #[error("shutdown did not finish within {0:?}: some outputs stay in the outbox and are sent on the next start")]
    DrainTimeout(Duration),
}

fn kafka(what: impl Into<String>) -> impl FnOnce(KafkaError) -> ServiceError {
    let what = what.into();
    move |source| ServiceError::Kafka { what, source }
}

/// What the admin endpoints see of the running service.
pub struct Shared {
    /// Metrics.
    pub metrics: Arc<Metrics>,
    policy: Policy,
    started: Instant,
    heartbeat_ms: AtomicU64,
    joined: AtomicBool,
    parts: RwLock<BTreeMap<i32, PartView>>,
    changes_published: AtomicU64,
    dead_published: AtomicU64,
    caught_up: AtomicBool,
    caught_up_seen: AtomicU64,
}

/// Records acknowledged by the broker so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Status changes.
    pub changes: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

struct PartView {
    store: Store<SledTreeKv>,
    watermark: Option<Ts>,
    ready: bool,
}

impl Shared {
    /// Shared state for a service with these metrics and policy.
    pub fn new(metrics: Arc<Metrics>, policy: Policy) -> Self {
        Shared {
            metrics,
            policy,
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            joined: AtomicBool::new(false),
            parts: RwLock::new(BTreeMap::new()),
            changes_published: AtomicU64::new(0),
            dead_published: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
            caught_up_seen: AtomicU64::new(0),
        }
    }

    /// Whether every owned partition is read to its end, handed on, committed and
    /// delivered (false while owning none).
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Relaxed)
    }

    /// How many times the processing loop found itself caught up so far: with ticks
    /// flowing, `caught_up` is true only between a commit and the next tick, so
    /// "caught up since" is best asked as "did this number grow".
    pub fn caught_up_seen(&self) -> u64 {
        self.caught_up_seen.load(Ordering::Relaxed)
    }

    /// Records acknowledged by the broker so far (re-deliveries count again).
    pub fn published(&self) -> Published {
        Published {
            changes: self.changes_published.load(Ordering::Relaxed),
            dead_letters: self.dead_published.load(Ordering::Relaxed),
        }
    }

    /// How long the processing loop has not reported (it reports at least every
    /// 50 ms while it runs; a restore or a delivery may keep it away longer).
    pub fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    fn beat(&self) {
        self.heartbeat_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Recomputes the KPI gauges (effective customers and monthly effective churn rate
    /// per dealer) from the committed states of the owned partitions, at the latest
    /// stream time among them. A full scan: it runs off the processing thread.
    pub fn update_kpis(&self) -> Result<(), StoreError> {
        // A snapshot of the handles, so that the scan does not hold the lock the
        // processing thread takes at every commit.
        let parts: Vec<(Option<Ts>, Store<SledTreeKv>)> = self
            .parts
            .read()
            .expect("not poisoned")
            .values()
            .map(|p| (p.watermark, p.store.clone()))
            .collect();
        let Some(at) = parts.iter().filter_map(|(w, _)| *w).max() else {
            return Ok(());
        };
        let mut acc = KpiAccumulator::new(at);
        for (_, store) in &parts {
            store.for_each_customer(|s| acc.add(&s))?;
        }
        self.metrics.set_kpis(&acc.finish());
        Ok(())
    }

    /// Partitions assigned and how many of them are ready.
    pub fn partitions(&self) -> (usize, usize) {
        let p = self.parts.read().expect("not poisoned");
        (p.len(), p.values().filter(|v| v.ready).count())
    }
}

/// The processing loop is considered stuck after this long without a heartbeat.
pub const HEARTBEAT_LIMIT: Duration = Duration::from_secs(60);

impl AdminState for Shared {
    fn health(&self) -> Result<(), String> {
        let last = Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        let since = self.started.elapsed().saturating_sub(last);
        if since > HEARTBEAT_LIMIT {
            Err(format!(
                "the processing loop has not reported for {}s",
                since.as_secs()
            ))
        } else {
            Ok(())
        }
    }

    fn readiness(&self) -> Result<(), String> {
        if !self.joined.load(Ordering::Relaxed) {
            return Err("not yet joined the consumer group".into());
        }
        let p = self.parts.read().expect("not poisoned");
        let waiting: Vec<String> = p
            .iter()
            .filter(|(_, v)| !v.ready)
            .map(|(k, _)| k.to_string())
            .collect();
        if waiting.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "partitions still restoring: {}",
                waiting.join(", ")
            ))
        }
    }

    fn customer(&self, id: &str) -> Result<Option<serde_json::Value>, String> {
        use crate::core::engine::CustomerSource;
        let p = self.parts.read().expect("not poisoned");
        for v in p.values() {
            if let Some(state) = v.store.load(id).map_err(|e| e.to_string())? {
                return Ok(Some(crate::core::view::customer_json(
                    &state,
                    v.watermark,
                    &self.policy,
                )));
            }
        }
        Ok(None)
    }
}

/// Everything the processing thread owns; shared with the rebalance callback.
struct Worker {
    cfg: Arc<Config>,
    policy: Policy,
    db: sled::Db,
    topics: Vec<String>,
    decoders: Vec<TopicDecoder>,
    parts: BTreeMap<i32, Partition>,
    paused: BTreeSet<(usize, i32)>,
    producer: FutureProducer,
    restorer: ClientConfig,
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    encoding: Format,
    fatal: Option<ServiceError>,
    last_commit: Instant,
    /// Outbox entries not yet acknowledged, per partition.
    outbox_pending: BTreeMap<i32, usize>,
    shutdown: CancellationToken,
    draining: bool,
}

struct Ctx {
    worker: Arc<Mutex<Option<Worker>>>,
}

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut guard = self.worker.lock().expect("worker lock not poisoned");
        let Some(w) = guard.as_mut() else {
            // Shutting down: the drain already committed everything.
            let _ = consumer.unassign();
            return;
        };
        let parts: BTreeSet<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                w.shared.joined.store(true, Ordering::Relaxed);
                match w.assign(&parts) {
                    Ok(offsets) => {
                        let mut list = TopicPartitionList::new();
                        for e in tpl.elements() {
                            let o = offsets
                                .get(&(e.topic().to_string(), e.partition()))
                                .copied()
                                .unwrap_or(Offset::Beginning);
                            if let Err(err) = list.add_partition_offset(e.topic(), e.partition(), o)
                            {
                                w.fatal.get_or_insert(kafka("building the assignment")(err));
                            }
                        }
                        if let Err(e) = consumer.assign(&list) {
                            w.fatal.get_or_insert(kafka("assigning partitions")(e));
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "cannot take over partitions");
                        w.fatal.get_or_insert(e);
                        let _ = consumer.unassign();
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                w.revoke(&parts, consumer);
                let _ = consumer.unassign();
            }
            other => {
                warn!(error = ?other, "rebalance error; dropping the assignment");
                w.revoke(&parts, consumer);
                let _ = consumer.unassign();
            }
        }
    }
}

fn tree_name(p: i32) -> String {
    format!("partition-{p}")
}

/// The broker's last-reported high watermark of a partition, from the consumer's
/// cache (no network round trip); -1 when unknown.
fn cached_high_watermark<C: ConsumerContext>(c: &BaseConsumer<C>, topic: &str, p: i32) -> i64 {
    let Ok(t) = std::ffi::CString::new(topic) else {
        return -1;
    };
    let (mut lo, mut hi) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime, the topic is a
    // NUL-terminated string and both out-pointers point to live i64s.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            c.client().native_ptr(),
            t.as_ptr(),
            p,
            &mut lo,
            &mut hi,
        )
    };
    if err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
        hi
    } else {
        -1
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Worker {
    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|t| t == topic)
    }

    fn out_topic(&self, kind: OutKind) -> &str {
        match kind {
            OutKind::Change => &self.cfg.output.status_topic,
            OutKind::DeadLetter => &self.cfg.output.dead_letter_topic,
            OutKind::ChangelogCustomer | OutKind::ChangelogMeta => &self.cfg.output.changelog_topic,
        }
    }

    /// Takes over partitions: local state when it is current, else a restore from the
    /// changelog. Returns the offsets to seek to.
    fn assign(
        &mut self,
        parts: &BTreeSet<i32>,
    ) -> Result<BTreeMap<(String, i32), Offset>, ServiceError> {
        let mut offsets = BTreeMap::new();
        let reader: BaseConsumer = self
            .restorer
            .create()
            .map_err(kafka("creating the changelog reader"))?;
        for &p in parts {
            let span = info_span!("partition", partition = p);
            let _g = span.enter();
            if self.parts.contains_key(&p) {
                continue;
            }
            let store = Store::with_kv(SledTreeKv::open(&self.db, &tree_name(p))?)?;
            self.shared.parts.write().expect("not poisoned").insert(
                p,
                PartView {
                    store: store.clone(),
                    watermark: None,
                    ready: false,
                },
            );
            let hw = self.changelog_high_watermark(&reader, p)?;
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
                let records = self.read_changelog(&reader, p, hw)?;
                let n = restore_from_changelog(&store, records, hw)?;
                self.shared.metrics.restores.inc();
                info!(
                    customers = n,
                    seconds = started.elapsed().as_secs_f64(),
                    "restored"
                );
                restored = true;
            }
            let part = Partition::open(p, store, self.policy.clone(), &self.topics, self.encoding)?;
            let known = part.seq > 0;
            for s in &part.sources {
                offsets.insert(
                    (s.topic.clone(), p),
                    if known {
                        Offset::Offset(s.next_offset)
                    } else {
                        Offset::Beginning
                    },
                );
            }
            debug!(restored, "partition open");
            self.parts.insert(p, part);
            // Outputs committed before a crash go out before anything new.
            self.deliver(
                p,
                Instant::now() + Duration::from_millis(self.cfg.shutdown.revoke_timeout_ms),
            );
            if let Some(v) = self.shared.parts.write().expect("not poisoned").get_mut(&p) {
                v.ready = true;
                v.watermark = self.parts[&p].engine.watermark();
            }
        }
        self.update_partition_gauges();
        Ok(offsets)
    }

    fn update_partition_gauges(&self) {
        let (a, r) = self.shared.partitions();
        self.shared.metrics.partitions_assigned.set(a as i64);
        self.shared.metrics.partitions_ready.set(r as i64);
    }

    /// Gives up partitions: commits what was handed on and delivers the outbox within
    /// the revoke deadline.
    fn revoke<C: ConsumerContext>(&mut self, parts: &BTreeSet<i32>, consumer: &BaseConsumer<C>) {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown.revoke_timeout_ms);
        for &p in parts {
            if !self.parts.contains_key(&p) {
                continue;
            }
            let span = info_span!("partition", partition = p);
            let _g = span.enter();
            if let Err(e) = self.commit_partition(p) {
                error!(error = %e, "cannot commit a revoked partition; its records will be re-read by the next owner");
            }
            if !self.deliver(p, deadline) {
                warn!("outbox not fully delivered before the revoke deadline; the next owner restores from the last delivered commit");
            }
            self.commit_kafka_offsets(consumer, Some(p));
            self.parts.remove(&p);
            self.outbox_pending.remove(&p);
            self.paused.retain(|(_, q)| *q != p);
            self.shared.parts.write().expect("not poisoned").remove(&p);
            info!("partition revoked");
        }
        self.update_partition_gauges();
    }

    fn changelog_high_watermark(&self, c: &BaseConsumer, p: i32) -> Result<i64, ServiceError> {
        let (_, hi) = c
            .fetch_watermarks(&self.cfg.output.changelog_topic, p, Duration::from_secs(30))
            .map_err(kafka(format!(
                "reading the end of changelog topic `{}` partition {p}",
                self.cfg.output.changelog_topic
            )))?;
        Ok(hi)
    }

    fn read_changelog(
        &self,
        c: &BaseConsumer,
        p: i32,
        end: i64,
    ) -> Result<Vec<ChangelogRecord>, ServiceError> {
        let topic = &self.cfg.output.changelog_topic;
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
                        out.push(decode(v, "changelog record")?);
                    }
                }
                Some(Err(e)) => return Err(kafka("reading the changelog")(e)),
                None if started.elapsed() > Duration::from_secs(300) => {
                    return Err(ServiceError::Topics(format!(
                        "changelog `{topic}` partition {p} stopped at offset {last} before its end {end}"
                    )))
                }
                None => {}
            }
        }
        Ok(out)
    }

    fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        let Some(src) = self.topic_index(m.topic()) else {
            return;
        };
        let p = m.partition();
        if !self.parts.contains_key(&p) {
            return;
        }
        let tick = m.headers().is_some_and(|h| {
            h.iter()
                .any(|x| x.key == RECORD_TYPE_HEADER && x.value == Some(b"tick".as_slice()))
        });
        let item = match self.decoders[src].decode(m.payload(), tick) {
            Ok(v) => Item::Input {
                raw: if v.issues.is_empty() {
                    Vec::new()
                } else {
                    m.payload().unwrap_or_default().to_vec()
                },
                input: v.input,
                issues: v.issues,
            },
            Err(e) => {
                self.shared
                    .metrics
                    .decode_errors
                    .with_label_values(&[e.code()])
                    .inc();
                Item::Dead {
                    code: e.code().to_string(),
                    reason: e.to_string(),
                    raw: m.payload().unwrap_or_default().to_vec(),
                }
            }
        };
        let part = self.parts.get_mut(&p).expect("checked");
        part.push(
            src,
            Buffered {
                offset: m.offset(),
                ts_ms: m.timestamp().to_millis(),
                item,
            },
        );
    }

    /// Hands buffered records on, commits when due, and keeps the flow control and
    /// gauges current.
    fn step<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        force: bool,
    ) -> Result<(), ServiceError> {
        let align = Duration::from_millis(self.cfg.input.align_wait_ms);
        let now = Instant::now();
        let ids: Vec<i32> = self.parts.keys().copied().collect();
        for p in ids {
            let _span = info_span!("partition", partition = p).entered();
            {
                let part = self.parts.get_mut(&p).expect("listed");
                for s in part.sources.iter_mut() {
                    if s.queue.is_empty() {
                        s.high_watermark = cached_high_watermark(consumer, &s.topic, p);
                    }
                }
            }
            let released = self
                .parts
                .get_mut(&p)
                .expect("listed")
                .release(now, align, force)?;
            let m = &self.shared.metrics;
            for (src, ty, outcome) in &released.outcomes {
                m.events_consumed
                    .with_label_values(&[self.topics[*src].as_str(), ty, outcome])
                    .inc();
                match *outcome {
                    "late" => m.late_events.inc(),
                    "tick" => m.ticks_consumed.inc(),
                    _ => {}
                }
                m.processed_events.inc();
            }
            for (src, _) in &released.dead {
                m.dead_letters
                    .with_label_values(&[self.topics[*src].as_str()])
                    .inc();
            }
            for s in &released.engine_seconds {
                m.processing_seconds.observe(*s);
            }
            for c in &released.changes {
                m.status_changes
                    .with_label_values(&[c.previous_level.as_str(), c.level.as_str()])
                    .inc();
            }
            // Flow control: pause a source that runs far ahead of the others.
            let max = self.cfg.input.max_buffered;
            let part = &self.parts[&p];
            for (i, s) in part.sources.iter().enumerate() {
                let key = (i, p);
                let paused = self.paused.contains(&key);
                let pause = s.queue.len() >= max && !paused;
                let resume = s.queue.len() < max / 2 && paused;
                if !(pause || resume) {
                    continue;
                }
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&s.topic, p);
                if pause {
                    consumer.pause(&tpl).map_err(kafka("pausing a partition"))?;
                    self.paused.insert(key);
                } else {
                    consumer
                        .resume(&tpl)
                        .map_err(kafka("resuming a partition"))?;
                    self.paused.remove(&key);
                }
            }
        }
        let due = self.last_commit.elapsed()
            >= Duration::from_millis(self.cfg.state.commit_interval_ms)
            || self
                .parts
                .values()
                .any(|p| p.since_commit >= self.cfg.state.commit_max_records);
        if due || force {
            self.commit_all(consumer)?;
        }
        let caught = !self.parts.is_empty()
            && self.outbox_pending.values().all(|n| *n == 0)
            && self.parts.values().all(|p| {
                p.since_commit == 0
                    && p.sources.iter().all(|s| {
                        s.queue.is_empty()
                            && s.high_watermark >= 0
                            && s.next_offset >= s.high_watermark
                    })
            });
        self.shared.caught_up.store(caught, Ordering::Relaxed);
        if caught {
            self.shared.caught_up_seen.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.metrics.caught_up.set(i64::from(caught));
        Ok(())
    }

    fn commit_partition(&mut self, p: i32) -> Result<bool, ServiceError> {
        let cap = self.cfg.state.cache_capacity;
        let part = self.parts.get_mut(&p).expect("owned partition");
        if part.since_commit == 0 {
            return Ok(false);
        }
        let started = Instant::now();
        part.commit(cap)?;
        self.shared
            .metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(v) = self.shared.parts.write().expect("not poisoned").get_mut(&p) {
            v.watermark = part.engine.watermark();
        }
        Ok(true)
    }

    fn commit_all<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), ServiceError> {
        self.last_commit = Instant::now();
        let ids: Vec<i32> = self.parts.keys().copied().collect();
        let mut any = false;
        for &p in &ids {
            any |= self.commit_partition(p)?;
        }
        if !any {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown.drain_timeout_ms);
        self.deliver_all(&ids, deadline);
        self.commit_kafka_offsets(consumer, None);
        self.refresh_gauges();
        Ok(())
    }

    /// Reports the committed offsets to the group coordinator, for lag monitoring only.
    fn commit_kafka_offsets<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        only: Option<i32>,
    ) {
        let mut tpl = TopicPartitionList::new();
        for (p, part) in &self.parts {
            if only.is_some_and(|o| o != *p) || part.seq == 0 {
                continue;
            }
            for (topic, off) in part.offsets() {
                let _ = tpl.add_partition_offset(&topic, *p, Offset::Offset(off));
            }
        }
        if tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                debug!(error = %e, "offset commit for lag monitoring failed");
            }
        }
    }

    /// Delivers partition `p`'s outbox in commit order until `deadline`: each commit's
    /// status changes, dead letters and changelog customers first, then — once all are
    /// acknowledged — its changelog meta record; then removes the commit's entries.
    /// Returns whether the outbox is empty.
    fn deliver(&mut self, p: i32, deadline: Instant) -> bool {
        self.deliver_all(&[p], deadline)
    }

    /// [`Worker::deliver`] for several partitions at once: their commits go out
    /// side by side, so one round trip serves every partition.
    fn deliver_all(&mut self, ids: &[i32], deadline: Instant) -> bool {
        let done = self.deliver_rounds(ids, deadline);
        let pending: usize = self.outbox_pending.values().sum();
        self.shared.metrics.outbox_pending.set(pending as i64);
        done
    }

    fn deliver_rounds(&mut self, ids: &[i32], deadline: Instant) -> bool {
        let mut queues: Vec<(
            i32,
            std::collections::VecDeque<crate::edge::kafka::partition::OutboxBatch>,
        )> = Vec::new();
        for &p in ids {
            let Some(part) = self.parts.get(&p) else {
                continue;
            };
            match part.outbox() {
                Ok(b) => {
                    self.outbox_pending
                        .insert(p, b.iter().map(|(_, e)| e.len()).sum());
                    queues.push((p, b.into()));
                }
                Err(e) => {
                    error!(partition = p, error = %e, "cannot read the outbox");
                    return false;
                }
            }
        }
        loop {
            let round: Vec<(i32, crate::edge::kafka::partition::OutboxBatch)> = queues
                .iter_mut()
                .filter_map(|(p, q)| q.pop_front().map(|b| (*p, b)))
                .collect();
            if round.is_empty() {
                break;
            }
            let rest: Vec<&Outgoing> = round
                .iter()
                .flat_map(|(_, (_, e))| e.iter().map(|(_, o)| o))
                .filter(|o| o.kind != OutKind::ChangelogMeta)
                .collect();
            if self.send_all(rest.iter().copied(), deadline).is_none() {
                return false;
            }
            let now = now_ms();
            for o in &rest {
                if o.kind == OutKind::DeadLetter {
                    self.shared.dead_published.fetch_add(1, Ordering::Relaxed);
                }
                if o.kind == OutKind::Change {
                    self.shared
                        .changes_published
                        .fetch_add(1, Ordering::Relaxed);
                    if let Some(ts) = o.source_ts_ms {
                        self.shared
                            .metrics
                            .end_to_end_seconds
                            .observe((now - ts).max(0) as f64 / 1000.0);
                    }
                }
            }
            // Only now that every other record of these commits is acknowledged do
            // their changelog meta records go out (one per commit).
            let metas: Vec<&Outgoing> = round
                .iter()
                .map(|(_, (_, e))| {
                    e.iter()
                        .map(|(_, o)| o)
                        .find(|o| o.kind == OutKind::ChangelogMeta)
                })
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default();
            if metas.len() != round.len() {
                error!(
                    "an outbox commit lacks its changelog meta record; leaving it for inspection"
                );
                return false;
            }
            let Some(offsets) = self.send_all(metas.into_iter(), deadline) else {
                return false;
            };
            for ((p, (_, entries)), off) in round.iter().zip(offsets) {
                let keys = entries.iter().map(|(k, _)| k.clone()).collect();
                if let Err(e) = self.parts[p].delivered(keys, off + 1) {
                    error!(partition = p, error = %e, "cannot clear the delivered outbox entries");
                    return false;
                }
                if let Some(n) = self.outbox_pending.get_mut(p) {
                    *n = n.saturating_sub(entries.len());
                }
            }
        }
        true
    }

    /// Sends records and waits for every ack; returns their offsets, or None when one
    /// failed or the deadline passed.
    fn send_all<'a>(
        &self,
        records: impl Iterator<Item = &'a Outgoing>,
        deadline: Instant,
    ) -> Option<Vec<i64>> {
        let mut futures = Vec::new();
        for o in records {
            let topic = self.out_topic(o.kind).to_string();
            let mut headers = OwnedHeaders::new();
            for (k, v) in &o.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut rec = FutureRecord::to(&topic)
                .key(&o.key)
                .payload(&o.value)
                .headers(headers);
            if let Some(p) = o.partition {
                rec = rec.partition(p);
            }
            loop {
                match self.producer.send_result(rec) {
                    Ok(f) => {
                        futures.push(f);
                        break;
                    }
                    Err((
                        KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                        r,
                    )) => {
                        if Instant::now() > deadline {
                            return None;
                        }
                        self.producer.poll(Duration::from_millis(10));
                        rec = r;
                    }
                    Err((e, _)) => {
                        warn!(error = %e, topic, "cannot enqueue an output record");
                        self.shared.metrics.produce_errors.inc();
                        return None;
                    }
                }
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        // A shutdown interrupts the wait (the drain then delivers within its own
        // bound); the drain's own wait is bounded by its deadline only.
        let stop = self.shutdown.clone();
        let interruptible = !self.draining;
        let results = self.rt.block_on(async {
            tokio::select! {
                r = tokio::time::timeout(remaining, futures::future::join_all(futures)) => r.ok(),
                _ = stop.cancelled(), if interruptible => None,
            }
        });
        let Some(results) = results else {
            warn!("deliveries not acknowledged before the deadline (or shutdown began)");
            return None;
        };
        let mut offsets = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(Ok(d)) => offsets.push(d.offset),
                Ok(Err((e, _))) => {
                    warn!(error = %e, "delivery failed; retried from the outbox");
                    self.shared.metrics.produce_errors.inc();
                    return None;
                }
                Err(_) => {
                    self.shared.metrics.produce_errors.inc();
                    return None;
                }
            }
        }
        Some(offsets)
    }

    fn refresh_gauges(&self) {
        let m = &self.shared.metrics;
        let (mut lvl, mut life, mut tier) = ([0u64; 4], [0u64; 4], [0u64; 3]);
        let mut timers = 0usize;
        for part in self.parts.values() {
            let c = part.engine.counters();
            for (a, b) in lvl.iter_mut().zip(c.customers_by_level) {
                *a += b;
            }
            for (a, b) in life.iter_mut().zip(c.customers_by_lifecycle) {
                *a += b;
            }
            for (a, b) in tier.iter_mut().zip(c.customers_by_tier) {
                *a += b;
            }
            timers += part.engine.timers_pending();
        }
        m.set_population(lvl, life, tier);
        m.timers_pending.set(timers as i64);
        m.store_size_bytes
            .set(self.db.size_on_disk().unwrap_or(0) as i64);
    }

    fn update_lag<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        let m = &self.shared.metrics;
        m.consumer_lag.reset();
        for (p, part) in self.parts.iter_mut() {
            for s in part.sources.iter_mut() {
                let hw = cached_high_watermark(consumer, &s.topic, *p);
                if hw >= 0 {
                    s.high_watermark = hw;
                }
                if s.high_watermark >= 0 {
                    let lag = (s.high_watermark
                        - s.queue.front().map_or(s.next_offset, |b| b.offset))
                    .max(0);
                    m.consumer_lag
                        .with_label_values(&[s.topic.as_str(), &p.to_string()])
                        .set(lag);
                }
            }
        }
    }

    fn produce_ticks(&self) {
        let time = Ts(now_ms()).to_rfc3339();
        for p in self.parts.keys() {
            for (i, topic) in self.topics.iter().enumerate() {
                let Some(value) = self.decoders[i].encode_tick(&time) else {
                    continue;
                };
                let headers = OwnedHeaders::new().insert(Header {
                    key: RECORD_TYPE_HEADER,
                    value: Some("tick"),
                });
                let rec: FutureRecord<'_, [u8], Vec<u8>> = FutureRecord::to(topic)
                    .payload(&value)
                    .partition(*p)
                    .headers(headers);
                match self.producer.send_result(rec) {
                    Ok(_) => self.shared.metrics.ticks_produced.inc(),
                    Err((e, _)) => {
                        warn!(error = %e, topic, partition = p, "cannot produce a tick");
                        self.shared.metrics.produce_errors.inc();
                    }
                }
            }
        }
    }
}

/// Builds one input topic's decoder from its config.
fn decoder(
    kind: InputKind,
    t: &crate::edge::kafka::config::TopicConfig,
) -> Result<TopicDecoder, ServiceError> {
    let enc = match t.format {
        InputFormat::Json => Encoding::Json,
        InputFormat::Avro => Encoding::Avro(kind),
        InputFormat::Confluent => Encoding::Confluent,
    };
    Ok(TopicDecoder::new(&t.topic, enc, t.schema_kinds())?)
}

fn client_config(cfg: &Config, role: Role) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in cfg.client_properties(role) {
        c.set(k, v);
    }
    c
}

/// Checks the input topics are co-partitioned and the output topics exist (creating
/// them when configured to). Returns the number of input partitions.
fn prepare_topics(
    cfg: &Config,
    topics: &[String],
    rt: &tokio::runtime::Handle,
) -> Result<i32, ServiceError> {
    let probe: BaseConsumer = client_config(cfg, Role::Consumer)
        .create()
        .map_err(kafka("creating a metadata client"))?;
    let count = |topic: &str| -> Result<Option<i32>, ServiceError> {
        let md = probe
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .map_err(kafka(format!("reading metadata of topic `{topic}`")))?;
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

/// A summary of a run, for logs and tests.
#[derive(Debug, Default, Clone)]
pub struct RunSummary {
    /// Records handed to the engines.
    pub processed: u64,
}

/// Runs the service until `shutdown` is cancelled, then drains: commits every
/// partition and delivers the outbox within `shutdown.drain_timeout_ms`.
pub fn run(
    cfg: Arc<Config>,
    policy: Policy,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    rt: tokio::runtime::Handle,
) -> Result<RunSummary, ServiceError> {
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
    let n = prepare_topics(&cfg, &topics, &rt)?;
    info!(partitions = n, topics = ?topics, "input topics co-partitioned");
    std::fs::create_dir_all(&cfg.state.dir).map_err(|e| StoreError::Corrupt {
        key: cfg.state.dir.display().to_string(),
        reason: format!("cannot create the state directory: {e}"),
    })?;
    let db = open_sled_db(&cfg.state.dir)?;
    let mut pc = client_config(&cfg, Role::Producer);
    for (k, v) in [
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", "5"),
    ] {
        if pc.get(k).is_none() {
            pc.set(k, v);
        }
    }
    let producer: FutureProducer = pc.create().map_err(kafka("creating the producer"))?;
    let mut restorer = client_config(&cfg, Role::Consumer);
    restorer
        .set("group.id", format!("{}-restore", cfg.kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let encoding = cfg.output.format;
    let worker = Arc::new(Mutex::new(Some(Worker {
        cfg: cfg.clone(),
        policy,
        db,
        topics: topics.clone(),
        decoders,
        parts: BTreeMap::new(),
        paused: BTreeSet::new(),
        producer,
        restorer,
        shared: shared.clone(),
        rt: rt.clone(),
        encoding,
        fatal: None,
        last_commit: Instant::now(),
        outbox_pending: BTreeMap::new(),
        shutdown: shutdown.clone(),
        draining: false,
    })));
    let mut cc = client_config(&cfg, Role::Consumer);
    cc.set("group.id", &cfg.kafka.group_id);
    for (k, v) in [
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("partition.assignment.strategy", "range"),
        ("isolation.level", "read_committed"),
        // Live latency: do not let an idle fetch wait the default 500 ms.
        ("fetch.wait.max.ms", "100"),
    ] {
        if cc.get(k).is_none() {
            cc.set(k, v);
        }
    }
    let consumer: BaseConsumer<Ctx> = cc
        .create_with_context(Ctx {
            worker: worker.clone(),
        })
        .map_err(kafka("creating the consumer"))?;
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&refs)
        .map_err(kafka("subscribing to the input topics"))?;
    info!(group = %cfg.kafka.group_id, "consuming");

    let tick_every = Duration::from_millis(cfg.ticks.interval_ms);
    let lag_every = Duration::from_millis(cfg.metrics.lag_interval_ms.max(100));
    let (mut last_tick, mut last_lag) = (Instant::now(), Instant::now());
    let result = loop {
        shared.beat();
        if shutdown.is_cancelled() {
            break Ok(());
        }
        let msg = consumer.poll(Duration::from_millis(50));
        let mut guard = worker.lock().expect("worker lock not poisoned");
        let w = guard.as_mut().expect("worker present while running");
        if let Some(e) = w.fatal.take() {
            break Err(e);
        }
        match msg {
            Some(Ok(m)) => {
                w.on_message(&m);
                // Drain what is already fetched before the next release.
                for _ in 0..500 {
                    match consumer.poll(Duration::ZERO) {
                        Some(Ok(m)) => w.on_message(&m),
                        Some(Err(e)) => {
                            warn!(error = %e, "consumer error");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Some(Err(e)) => warn!(error = %e, "consumer error"),
            None => {}
        }
        if let Err(e) = w.step(&consumer, false) {
            break Err(e);
        }
        if !tick_every.is_zero() && last_tick.elapsed() >= tick_every {
            w.produce_ticks();
            last_tick = Instant::now();
        }
        if last_lag.elapsed() >= lag_every {
            w.update_lag(&consumer);
            last_lag = Instant::now();
        }
    };
    // Drain: commit what was handed on and deliver the outbox within the bound.
    let drain = Duration::from_millis(cfg.shutdown.drain_timeout_ms);
    let deadline = Instant::now() + drain;
    let mut drained = true;
    let worker_state;
    {
        let mut guard = worker.lock().expect("worker lock not poisoned");
        if let Some(w) = guard.as_mut() {
            w.draining = true;
            let ids: Vec<i32> = w.parts.keys().copied().collect();
            for &p in &ids {
                if let Err(e) = w.commit_partition(p) {
                    error!(error = %e, partition = p, "cannot commit on shutdown");
                    drained = false;
                }
            }
            drained &= w.deliver_all(&ids, deadline);
            w.commit_kafka_offsets(&consumer, None);
            let _ = w
                .producer
                .flush(deadline.saturating_duration_since(Instant::now()));
            w.refresh_gauges();
        }
        // Leave the group without running the revoke path again.
        worker_state = guard.take();
    }
    // Closing the consumer leaves the group and closing the producer flushes; both
    // talk to the broker, so they get what is left of the bound (at least a second)
    // and are abandoned after it: the process is exiting anyway.
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(consumer);
        drop(worker_state);
        let _ = closed_tx.send(());
    });
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    if closed_rx.recv_timeout(left).is_err() {
        warn!("the Kafka clients did not close in time (broker unreachable?)");
        drained = false;
    }
    result?;
    if !drained {
        return Err(ServiceError::DrainTimeout(drain));
    }
    info!("drained");
    Ok(RunSummary {
        processed: shared.metrics.processed_events.get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Shared {
        Shared::new(Arc::new(Metrics::new(10)), Policy::default())
    }

    #[test]
    fn health_fails_when_the_loop_stops_reporting() {
        let mut s = shared();
        s.beat();
        assert!(s.health().is_ok());
        // The loop last reported at start-up, 61 s ago.
        s.started = Instant::now() - HEARTBEAT_LIMIT - Duration::from_secs(1);
        let e = s.health().unwrap_err();
        assert!(e.contains("has not reported for 61s"), "{e}");
        s.beat();
        assert!(s.health().is_ok());
    }

    #[test]
    fn readiness_waits_for_the_group_and_every_restore() {
        let s = shared();
        assert!(s.readiness().unwrap_err().contains("not yet joined"));
        s.joined.store(true, Ordering::Relaxed);
        assert!(s.readiness().is_ok(), "joined with no partitions is ready");
        let dir = tempfile::tempdir().unwrap();
        let db = open_sled_db(dir.path()).unwrap();
        let store = Store::with_kv(SledTreeKv::open(&db, "partition-4").unwrap()).unwrap();
        s.parts.write().unwrap().insert(
            4,
            PartView {
                store,
                watermark: None,
                ready: false,
            },
        );
        assert!(s.readiness().unwrap_err().contains("restoring: 4"));
        s.parts.write().unwrap().get_mut(&4).unwrap().ready = true;
        assert!(s.readiness().is_ok());
        assert_eq!(s.customer("C1").unwrap(), None);
    }
}
