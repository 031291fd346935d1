//! The partitions this instance owns and the work on them between polls: [`Worker`]
//! keeps fetched records per partition, decodes them into their partition's queues,
//! releases them to the engines in event-time order, pauses a source that runs far
//! ahead, commits (state, offsets and outbox in one sled batch per partition) and has
//! the outbox delivered, keeps the gauges current, and drains on shutdown.
//!
//! The partitions are independent (each its own engine and sled tree), so the heavy
//! work of a step — decoding, the engines, encoding and writing the commits — runs on
//! up to `state.threads` threads side by side, each partition on one thread at a time
//! and its records in their order: the outcome is the same for any thread count.
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
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
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
    /// Records polled but not yet decoded, per owned partition, in poll order.
    fetched: HashMap<i32, Vec<Fetched>>,
    /// How many threads a step's partitions are worked on by.
    threads: usize,
}

/// One record as polled, before decoding (decoding waits for the step, where the
/// partitions are decoded side by side).
struct Fetched {
    src: usize,
    offset: i64,
    ts_ms: Option<i64>,
    tick: bool,
    value: Option<Vec<u8>>,
}

/// Below this many records to decode and hand on in a step, the step runs on the
/// processing thread alone (starting threads would cost more than it saves).
const PARALLEL_MIN_RECORDS: usize = 256;

/// Runs `f` on every job, on up to `threads` threads (the calling one among them),
/// each job on one thread; returns the results in the jobs' order.
fn in_parallel<T: Send, R: Send>(
    threads: usize,
    jobs: Vec<T>,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let n = jobs.len();
    let threads = threads.min(n).max(1);
    if threads == 1 {
        return jobs.into_iter().map(f).collect();
    }
    let queue: Mutex<VecDeque<(usize, T)>> = Mutex::new(jobs.into_iter().enumerate().collect());
    let work = || {
        let mut done = Vec::new();
        loop {
            let next = queue.lock().expect("no panic holds the queue").pop_front();
            let Some((i, job)) = next else { break };
            done.push((i, f(job)));
        }
        done
    };
    let mut all: Vec<(usize, R)> = std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut all = work();
        for h in others {
            match h.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
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
        let threads = processing_threads(cfg.state.threads);
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
            fetched: HashMap::new(),
            threads,
        }
    }

    /// Keeps a polled record for its partition's next decoding (one of a partition
    /// not owned is dropped). Decoding waits for [`Worker::absorb`]: a record that does
    /// not decode becomes a dead letter in order there.
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
        self.fetched.entry(p).or_default().push(Fetched {
            src,
            offset: m.offset(),
            ts_ms: m.timestamp().to_millis(),
            tick,
            value: m.payload().map(<[u8]>::to_vec),
        });
    }

    /// Decodes every record polled since the last step into its partition's queue
    /// (side by side across partitions), as [`Worker::on_message`] once did at once:
    /// whatever looks at the queues or the offsets read so far calls this first.
    pub(crate) fn absorb(&mut self) {
        if self.fetched.values().all(Vec::is_empty) {
            return;
        }
        let jobs = jobs(&mut self.parts, &mut self.fetched);
        let threads = threads_for(self.threads, &jobs);
        let decoders = &self.decoders;
        let errors = in_parallel(threads, jobs, |(part, fetched)| {
            decode_into(part, fetched, decoders)
        });
        self.count_decode_errors(errors.iter().flatten());
    }

    fn count_decode_errors<'a>(&self, codes: impl Iterator<Item = &'a &'static str>) {
        for code in codes {
            self.shared
                .metrics
                .decode_errors
                .with_label_values(&[code])
                .inc();
        }
    }

    /// Decodes what was polled, hands buffered records on, commits when due (or when
    /// `force`d), and keeps the flow control and the caught-up flag current.
    pub(crate) fn step<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        force: bool,
    ) -> Result<(), ServiceError> {
        let align = Duration::from_millis(self.cfg.input.align_wait_ms);
        let now = Instant::now();
        for (p, part) in self.parts.iter_mut() {
            for s in part.sources.iter_mut() {
                if s.queue.is_empty() {
                    s.high_watermark = cached_high_watermark(consumer, &s.topic, *p);
                }
            }
        }
        let jobs = jobs(&mut self.parts, &mut self.fetched);
        let threads = threads_for(self.threads, &jobs);
        let decoders = &self.decoders;
        let results = in_parallel(threads, jobs, |(part, fetched)| {
            let errors = decode_into(part, fetched, decoders);
            let _span = info_span!("partition", partition = part.id).entered();
            // A source whose queue was empty above had its high watermark read even
            // if records for it were decoded just now: a fresher end can only make it
            // look less caught up, never more.
            part.release(now, align, force)
                .map(|released| (part.id, errors, released))
        });
        let mut failed = None;
        for r in results {
            match r {
                Ok((p, errors, released)) => {
                    self.count_decode_errors(errors.iter());
                    self.count_released(&released);
                    self.flow_control(consumer, p)?;
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
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

    /// The metrics of one release (counted per kind of record, not per record).
    fn count_released(&self, released: &Released) {
        let m = &self.shared.metrics;
        let mut consumed: HashMap<(usize, &'static str, Outcome), u64> = HashMap::new();
        let (mut late, mut ticks) = (0, 0);
        for (src, h) in &released.handled {
            *consumed.entry((*src, h.kind, h.outcome)).or_default() += 1;
            match h.outcome {
                Outcome::Late => late += 1,
                Outcome::Tick => ticks += 1,
                _ => {}
            }
        }
        for ((src, kind, outcome), n) in consumed {
            m.events_consumed
                .with_label_values(&[self.topics[src].as_str(), kind, outcome.as_str()])
                .inc_by(n);
        }
        m.late_events.inc_by(late);
        m.ticks_consumed.inc_by(ticks);
        m.processed_events.inc_by(released.handled.len() as u64);
        let mut dead: HashMap<usize, u64> = HashMap::new();
        for (src, _) in &released.dead {
            *dead.entry(*src).or_default() += 1;
        }
        for (src, n) in dead {
            m.dead_letters
                .with_label_values(&[self.topics[src].as_str()])
                .inc_by(n);
        }
        for s in &released.engine_seconds {
            m.processing_seconds.observe(*s);
        }
        let mut changes: HashMap<(&str, &str), u64> = HashMap::new();
        for c in &released.changes {
            *changes
                .entry((c.previous_level.as_str(), c.level.as_str()))
                .or_default() += 1;
        }
        for ((from, to), n) in changes {
            m.status_changes.with_label_values(&[from, to]).inc_by(n);
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

    /// Commits every partition (side by side), delivers their outboxes and reports the
    /// offsets.
    fn commit_all<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
    ) -> Result<(), ServiceError> {
        self.last_commit = Instant::now();
        let ids: Vec<i32> = self.parts.keys().copied().collect();
        let cap = self.cfg.state.cache_capacity;
        let due: Vec<&mut Partition> = self
            .parts
            .values_mut()
            .filter(|p| p.since_commit() > 0)
            .collect();
        let records: usize = due.iter().map(|p| p.since_commit()).sum();
        let threads = if records >= PARALLEL_MIN_RECORDS {
            self.threads
        } else {
            1
        };
        let any = !due.is_empty();
        let results = in_parallel(threads, due, |part| {
            let started = Instant::now();
            let _span = info_span!("partition", partition = part.id).entered();
            part.commit(cap)
                .map(|_| (part.id, started.elapsed().as_secs_f64()))
        });
        let mut failed = None;
        for r in results {
            match r {
                Ok((p, secs)) => {
                    self.shared.metrics.commit_seconds.observe(secs);
                    self.shared
                        .set_watermark(p, self.parts[&p].engine().watermark());
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e.into());
        }
        // With nothing new committed, an outbox still waiting from an earlier commit
        // (the broker failed then) is retried all the same: it must not wait for the
        // next record to arrive.
        if !any && self.delivery.all_delivered() {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown.drain_timeout_ms);
        self.delivery.deliver(&mut self.parts, &ids, deadline);
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
        drained &= self.delivery.deliver(&mut self.parts, &ids, deadline);
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

/// The owned partitions paired with the records polled for them since the last step
/// (none for a partition nothing was polled for).
fn jobs<'a>(
    parts: &'a mut BTreeMap<i32, Partition>,
    fetched: &mut HashMap<i32, Vec<Fetched>>,
) -> Vec<(&'a mut Partition, Vec<Fetched>)> {
    parts
        .iter_mut()
        .map(|(p, part)| (part, fetched.remove(p).unwrap_or_default()))
        .collect()
}

/// The threads worth using for `jobs`: `threads` when there is enough to decode and
/// hand on, else one.
fn threads_for(threads: usize, jobs: &[(&mut Partition, Vec<Fetched>)]) -> usize {
    let records: usize = jobs
        .iter()
        .map(|(part, f)| f.len() + part.sources.iter().map(|s| s.queue.len()).sum::<usize>())
        .sum();
    if records >= PARALLEL_MIN_RECORDS {
        threads
    } else {
        1
    }
}

/// Decodes `fetched` (in poll order) into `part`'s queues; returns the codes of the
/// records that did not decode (each becomes a dead letter in order).
fn decode_into(
    part: &mut Partition,
    fetched: Vec<Fetched>,
    decoders: &[TopicDecoder],
) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if fetched.is_empty() {
        return errors;
    }
    let latest = part.latest_plausible();
    for f in fetched {
        let record = decoders[f.src].decode(f.value.as_deref(), f.tick);
        if let Err(e) = &record {
            errors.push(e.code());
        }
        part.push(
            f.src,
            Buffered::new(f.offset, f.ts_ms, record, f.value.as_deref(), latest),
        );
    }
    errors
}

/// The threads of `state.threads`: 0 is one per core.
fn processing_threads(configured: usize) -> usize {
    match configured {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
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
