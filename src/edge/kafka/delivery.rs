//! Outbox delivery with the idempotent producer: [`Delivery`] sends each committed
//! batch of a partition's outbox (status changes, dead letters, changelog customers,
//! then — once those are acknowledged — the commit's changelog meta record), waits for
//! the acks within a deadline, and clears the delivered entries from sled.
//!
//! Owns the producer (the tick producer borrows it) and the count of entries still
//! pending per partition. Reads the partitions' outboxes and marks entries delivered
//! (through [`Partition::outbox`] and [`Partition::delivered`]); touches no consumer.
//! Waits on the tokio runtime's handle from the processing thread; a shutdown
//! interrupts a wait unless the drain itself is waiting.

use crate::edge::kafka::config::Config;
use crate::edge::kafka::partition::{OutKind, OutboxBatch, Outgoing, Partition};
use crate::edge::kafka::shared::Shared;
use crate::edge::kafka::ticks::now_ms;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

/// The outbox's way out: the producer and what is still pending.
pub(crate) struct Delivery {
    producer: FutureProducer,
    rt: tokio::runtime::Handle,
    shutdown: CancellationToken,
    draining: bool,
    status_topic: String,
    dead_letter_topic: String,
    changelog_topic: String,
    shared: Arc<Shared>,
    /// Outbox entries not yet acknowledged, per partition.
    pending: BTreeMap<i32, usize>,
}

impl Delivery {
    /// Delivery through `producer` to `cfg`'s output topics; waits run on `rt` and are
    /// cut short by `shutdown` (until [`Delivery::start_draining`]).
    pub(crate) fn new(
        cfg: &Config,
        producer: FutureProducer,
        rt: tokio::runtime::Handle,
        shutdown: CancellationToken,
        shared: Arc<Shared>,
    ) -> Self {
        Delivery {
            producer,
            rt,
            shutdown,
            draining: false,
            status_topic: cfg.output.status_topic.clone(),
            dead_letter_topic: cfg.output.dead_letter_topic.clone(),
            changelog_topic: cfg.output.changelog_topic.clone(),
            shared,
            pending: BTreeMap::new(),
        }
    }

    /// The producer (the tick producer shares it).
    pub(crate) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// From now on a shutdown no longer interrupts a wait: the drain bounds it.
    pub(crate) fn start_draining(&mut self) {
        self.draining = true;
    }

    /// Forgets a partition given up.
    pub(crate) fn forget(&mut self, p: i32) {
        self.pending.remove(&p);
    }

    /// Whether no outbox entry is known to be pending.
    pub(crate) fn all_delivered(&self) -> bool {
        self.pending.values().all(|n| *n == 0)
    }

    /// Waits until the producer's queue is empty or `timeout` passes.
    pub(crate) fn flush(&self, timeout: Duration) {
        let _ = self.producer.flush(timeout);
    }

    /// Delivers the outboxes of partitions `ids` (of `parts`) in commit order until
    /// `deadline`: each commit's status changes, dead letters and changelog customers
    /// first, then — once all are acknowledged — its changelog meta record; then
    /// removes the commit's entries. The partitions' commits go out side by side, so
    /// one round trip serves all of them. Returns whether the outboxes are empty.
    pub(crate) fn deliver(
        &mut self,
        parts: &BTreeMap<i32, Partition>,
        ids: &[i32],
        deadline: Instant,
    ) -> bool {
        let done = self.rounds(parts, ids, deadline);
        let pending: usize = self.pending.values().sum();
        self.shared.metrics.outbox_pending.set(pending as i64);
        done
    }

    fn rounds(&mut self, parts: &BTreeMap<i32, Partition>, ids: &[i32], deadline: Instant) -> bool {
        let mut queues: Vec<(i32, VecDeque<OutboxBatch>)> = Vec::new();
        for &p in ids {
            let Some(part) = parts.get(&p) else {
                continue;
            };
            match part.outbox() {
                Ok(b) => {
                    self.pending.insert(p, b.iter().map(|(_, e)| e.len()).sum());
                    queues.push((p, b.into()));
                }
                Err(e) => {
                    error!(partition = p, error = %e, "cannot read the outbox");
                    return false;
                }
            }
        }
        loop {
            let round: Vec<(i32, OutboxBatch)> = queues
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
            self.count_published(&rest);
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
                let keys = entries.iter().map(|(k, _)| *k).collect();
                if let Err(e) = parts[p].delivered(keys, off + 1) {
                    error!(partition = p, error = %e, "cannot clear the delivered outbox entries");
                    return false;
                }
                if let Some(n) = self.pending.get_mut(p) {
                    *n = n.saturating_sub(entries.len());
                }
            }
        }
        true
    }

    /// Counts acknowledged status changes and dead letters, and observes the end-to-end
    /// latency of the changes.
    fn count_published(&self, acked: &[&Outgoing]) {
        let now = now_ms();
        let (mut changes, mut dead) = (0, 0);
        for o in acked {
            match o.kind {
                OutKind::DeadLetter => dead += 1,
                OutKind::Change => {
                    changes += 1;
                    if let Some(ts) = o.source_ts_ms {
                        self.shared
                            .metrics
                            .end_to_end_seconds
                            .observe((now - ts).max(0) as f64 / 1000.0);
                    }
                }
                OutKind::ChangelogCustomer | OutKind::ChangelogMeta => {}
            }
        }
        self.shared.count_published(changes, dead);
    }

    fn out_topic(&self, kind: OutKind) -> &str {
        match kind {
            OutKind::Change => &self.status_topic,
            OutKind::DeadLetter => &self.dead_letter_topic,
            OutKind::ChangelogCustomer | OutKind::ChangelogMeta => &self.changelog_topic,
        }
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
            let topic = self.out_topic(o.kind);
            let mut headers = OwnedHeaders::new();
            for (k, v) in &o.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut rec = FutureRecord::to(topic)
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
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
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
}
