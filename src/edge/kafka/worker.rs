//! The partitions this instance owns and the work on them between polls: [`Worker`]
//! decodes fetched records into their partition's queues, releases them to the
//! engines in event-time order, pauses a source that runs far ahead, commits (state,
//! offsets and outbox in one sled batch per partition) and has the outbox delivered,
//! keeps the gauges current, and drains on shutdown.
//!
//! Owned by the processing loop alone (no lock): the loop lends it the group consumer
//! for flow control, lag and the offsets reported for monitoring. Taking partitions
//! over and giving them up is in [`super::rebalance`]; restores in
//! [`super::restore`]; deliveries in [`super::delivery`].

use crate::codec::record::{TopicDecoder, RECORD_TYPE_HEADER};
use crate::driver::Outcome;
use crate::edge::kafka::config::Config;
use crate::edge::kafka::delivery::Delivery;
use crate::edge::kafka::error::{kafka, ServiceError};
use crate::edge::kafka::partition::{Buffered, Partition, Released};
use crate::edge::kafka::restore::Restorer;
use crate::edge::kafka::shared::Shared;
use crate::edge::kafka::ticks::produce_ticks;
use crate::edge::kafka::topics::Inputs;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, error, info_span};

/// Everything the processing loop owns besides the consumer.
pub(crate) struct Worker {
    pub(super) cfg: Arc<Config>,
    topics: Vec<String>,
    decoders: Vec<TopicDecoder>,
    /// The owned partitions.
    pub(super) parts: BTreeMap<i32, Partition>,
    /// Sources paused by flow control, as (source index, partition).
    pub(super) paused: BTreeSet<(usize, i32)>,
    pub(super) delivery: Delivery,
    pub(super) restorer: Restorer,
    pub(super) shared: Arc<Shared>,
    last_commit: Instant,
}

impl Worker {
    /// A worker owning no partition yet.
    pub(crate) fn new(
        cfg: Arc<Config>,
        inputs: Inputs,
        delivery: Delivery,
        restorer: Restorer,
        shared: Arc<Shared>,
    ) -> Self {
        Worker {
            cfg,
            topics: inputs.topics,
            decoders: inputs.decoders,
            parts: BTreeMap::new(),
            paused: BTreeSet::new(),
            delivery,
            restorer,
            shared,
            last_commit: Instant::now(),
        }
    }

    /// Decodes a fetched record into its partition's queue (a record that does not
    /// decode becomes a dead letter in order; one of a partition not owned is dropped).
    pub(crate) fn on_message(&mut self, m: &BorrowedMessage<'_>) {
        let Some(src) = self.topics.iter().position(|t| t == m.topic()) else {
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
        let record = self.decoders[src].decode(m.payload(), tick);
        if let Err(e) = &record {
            self.shared
                .metrics
                .decode_errors
                .with_label_values(&[e.code()])
                .inc();
        }
        let part = self.parts.get_mut(&p).expect("checked");
        let latest = part.latest_plausible();
        part.push(
            src,
            Buffered::new(
                m.offset(),
                m.timestamp().to_millis(),
                record,
                m.payload(),
                latest,
            ),
        );
    }

    /// Hands buffered records on, commits when due (or when `force`d), and keeps the
    /// flow control and the caught-up flag current.
    pub(crate) fn step<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        force: bool,
    ) -> Result<(), ServiceError> {
        let align = Duration::from_millis(self.cfg.input.align_wait_ms);
        let now = Instant::now();
        let ids: Vec<i32> = self.parts.keys().copied().collect();
        for p in ids {
            let _span = info_span!("partition", partition = p).entered();
            let part = self.parts.get_mut(&p).expect("listed");
            for s in part.sources.iter_mut() {
                if s.queue.is_empty() {
                    s.high_watermark = cached_high_watermark(consumer, &s.topic, p);
                }
            }
            let released = part.release(now, align, force)?;
            self.count_released(&released);
            self.flow_control(consumer, p)?;
        }
        let due = self.last_commit.elapsed()
            >= Duration::from_millis(self.cfg.state.commit_interval_ms)
            || self
                .parts
                .values()
                .any(|p| p.since_commit() >= self.cfg.state.commit_max_records);
        if due || force {
            self.commit_all(consumer)?;
        }
        let caught = !self.parts.is_empty()
            && self.delivery.all_delivered()
            && self.parts.values().all(|p| {
                p.since_commit() == 0
                    && p.sources.iter().all(|s| {
                        s.queue.is_empty()
                            && s.high_watermark >= 0
                            && s.next_offset >= s.high_watermark
                    })
            });
        self.shared.set_caught_up(caught);
        Ok(())
    }

    /// The metrics of one release.
    fn count_released(&self, released: &Released) {
        let m = &self.shared.metrics;
        for (src, h) in &released.handled {
            m.events_consumed
                .with_label_values(&[self.topics[*src].as_str(), h.kind, h.outcome.as_str()])
                .inc();
            match h.outcome {
                Outcome::Late => m.late_events.inc(),
                Outcome::Tick => m.ticks_consumed.inc(),
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
    }

    /// Flow control: pauses a source of partition `p` that runs far ahead of the
    /// others, and resumes it once it has fallen back to half.
    fn flow_control<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        p: i32,
    ) -> Result<(), ServiceError> {
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
        Ok(())
    }

    /// Commits partition `p` if it handed anything on since its last commit; returns
    /// whether it did.
    pub(crate) fn commit_partition(&mut self, p: i32) -> Result<bool, ServiceError> {
        let cap = self.cfg.state.cache_capacity;
        let part = self.parts.get_mut(&p).expect("owned partition");
        if part.since_commit() == 0 {
            return Ok(false);
        }
        let started = Instant::now();
        part.commit(cap)?;
        self.shared
            .metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        self.shared.set_watermark(p, part.engine().watermark());
        Ok(true)
    }

    /// Commits every partition, delivers their outboxes and reports the offsets.
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
        // With nothing new committed, an outbox still waiting from an earlier commit
        // (the broker failed then) is retried all the same: it must not wait for the
        // next record to arrive.
        if !any && self.delivery.all_delivered() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown.drain_timeout_ms);
        self.delivery.deliver(&self.parts, &ids, deadline);
        self.commit_kafka_offsets(consumer, None);
        self.refresh_gauges();
        Ok(())
    }

    /// Reports the committed offsets (of partition `only`, or of all) to the group
    /// coordinator, for lag monitoring only: sled holds the offsets that count.
    pub(crate) fn commit_kafka_offsets<C: ConsumerContext>(
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

    /// On shutdown: commits what was handed on and delivers the outbox before
    /// `deadline`. Returns whether everything was committed and delivered.
    pub(crate) fn drain<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        deadline: Instant,
    ) -> bool {
        self.delivery.start_draining();
        let mut drained = true;
        let ids: Vec<i32> = self.parts.keys().copied().collect();
        for &p in &ids {
            if let Err(e) = self.commit_partition(p) {
                error!(error = %e, partition = p, "cannot commit on shutdown");
                drained = false;
            }
        }
        drained &= self.delivery.deliver(&self.parts, &ids, deadline);
        self.commit_kafka_offsets(consumer, None);
        self.delivery
            .flush(deadline.saturating_duration_since(Instant::now()));
        self.refresh_gauges();
        drained
    }

    /// Produces a wall-clock tick into every owned partition of every input topic.
    pub(crate) fn produce_ticks(&self) {
        produce_ticks(
            self.delivery.producer(),
            &self.topics,
            &self.decoders,
            self.parts.keys().copied(),
            &self.shared.metrics,
        );
    }

    /// The population, timer and store-size gauges.
    pub(crate) fn refresh_gauges(&self) {
        let m = &self.shared.metrics;
        let (mut lvl, mut life, mut tier) = ([0u64; 4], [0u64; 4], [0u64; 3]);
        let mut timers = 0usize;
        for part in self.parts.values() {
            let c = part.engine().counters();
            for (a, b) in lvl.iter_mut().zip(c.customers_by_level) {
                *a += b;
            }
            for (a, b) in life.iter_mut().zip(c.customers_by_lifecycle) {
                *a += b;
            }
            for (a, b) in tier.iter_mut().zip(c.customers_by_tier) {
                *a += b;
            }
            timers += part.engine().timers_pending();
        }
        m.set_population(lvl, life, tier);
        m.timers_pending.set(timers as i64);
        m.store_size_bytes
            .set(self.restorer.db().size_on_disk().unwrap_or(0) as i64);
    }

    /// The consumer-lag gauges, from the consumer's cached high watermarks.
    pub(crate) fn update_lag<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
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
