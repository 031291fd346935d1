//! Consumer-group rebalances, in two halves.
//!
//! - [`Recorder`], the consumer's context: librdkafka runs its rebalance callback
//!   inside `poll`, on the processing thread. The callback only records what happened
//!   ([`RebalanceEvent`]: the partitions assigned or revoked) in a small queue behind a
//!   lock of its own, held for a push or a take and never across a poll. It touches no
//!   worker state, so a rebalance may land in any poll, even one made in the middle of
//!   a burst.
//! - [`handle_recorded`], called by the processing loop right after every poll: it
//!   takes the recorded events and, for each, takes partitions over (local or
//!   changelog restore of all of them together, polling the group consumer meanwhile
//!   so that it stays in the group; then [`Consumer::assign`] at the offsets kept in
//!   sled) or gives
//!   them up (commit, outbox delivery within the revoke bound, then
//!   [`Consumer::unassign`]). librdkafka holds the group's rebalance until that
//!   assign/unassign call, which with the eager protocol may come after the callback.
//!
//! While the consumer closes, nobody polls on the loop's behalf any more: the recorder
//! is switched to [`Recorder::close`] mode and unassigns at once itself.

use crate::edge::kafka::error::{kafka, ServiceError};
use crate::edge::kafka::restore::KeepAlive;
use crate::edge::kafka::shared::Shared;
use crate::edge::kafka::worker::Worker;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::{debug, error, info, info_span, warn};

/// The group consumer of the service.
pub(crate) type GroupConsumer = BaseConsumer<Recorder>;

/// A (topic, partition) pair of a rebalance.
pub(crate) type TopicPartition = (String, i32);

/// What a rebalance callback saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RebalanceEvent {
    /// These partitions are now ours.
    Assign(Vec<TopicPartition>),
    /// These partitions are taken away.
    Revoke(Vec<TopicPartition>),
    /// The rebalance failed; the assignment is dropped.
    Failed {
        /// librdkafka's error code.
        error: RDKafkaRespErr,
        /// The partitions concerned.
        partitions: Vec<TopicPartition>,
    },
}

impl RebalanceEvent {
    /// The event of a rebalance callback's arguments.
    fn new(err: RDKafkaRespErr, tpl: &TopicPartitionList) -> Self {
        let partitions = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => Self::Assign(partitions),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => Self::Revoke(partitions),
            error => Self::Failed { error, partitions },
        }
    }
}

/// The group consumer's context: records rebalances for the processing loop.
#[derive(Default)]
pub(crate) struct Recorder {
    events: Mutex<Vec<RebalanceEvent>>,
    closing: AtomicBool,
}

impl Recorder {
    /// Takes the events recorded so far, oldest first.
    pub(crate) fn take(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().expect("not poisoned"))
    }

    /// The consumer is closing: the loop no longer handles rebalances (it has drained),
    /// so from now on a rebalance is answered at once with an unassign.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        if self.closing.load(Ordering::Relaxed) {
            // Shutting down: the drain already committed everything.
            let _ = consumer.unassign();
            return;
        }
        let event = RebalanceEvent::new(err, tpl);
        debug!(?event, "rebalance recorded");
        self.events.lock().expect("not poisoned").push(event);
    }
}

/// Handles the rebalances the last poll recorded, in order: takes partitions over or
/// gives them up, then answers librdkafka with the assign or unassign it waits for.
pub(crate) fn handle_recorded(
    consumer: &GroupConsumer,
    worker: &mut Worker,
) -> Result<(), ServiceError> {
    for event in consumer.context().take() {
        match event {
            RebalanceEvent::Assign(list) => assign(consumer, worker, &list)?,
            RebalanceEvent::Revoke(list) => {
                worker.give_up(&partitions(&list), consumer);
                let _ = consumer.unassign();
            }
            RebalanceEvent::Failed {
                error,
                partitions: list,
            } => {
                warn!(error = ?error, "rebalance error; dropping the assignment");
                worker.give_up(&partitions(&list), consumer);
                let _ = consumer.unassign();
            }
        }
    }
    Ok(())
}

fn partitions(list: &[TopicPartition]) -> BTreeSet<i32> {
    list.iter().map(|(_, p)| *p).collect()
}

/// Takes over the assigned partitions and assigns them at the offsets kept in sled.
/// While restores run, the group consumer is polled every
/// [`KEEP_ALIVE_EVERY`](crate::edge::kafka::restore::KEEP_ALIVE_EVERY) (see
/// [`serve_group`]). On failure the consumer is unassigned and the error ends the loop.
fn assign(
    consumer: &GroupConsumer,
    worker: &mut Worker,
    list: &[TopicPartition],
) -> Result<(), ServiceError> {
    let shared = worker.shared.clone();
    let mut keep_alive = || serve_group(consumer, &shared);
    let assigned = worker
        .take_over(&partitions(list), &mut keep_alive)
        .and_then(|offsets| {
            let mut tpl = TopicPartitionList::new();
            for (topic, p) in list {
                let o = offsets
                    .get(&(topic.clone(), *p))
                    .copied()
                    .unwrap_or(Offset::Beginning);
                tpl.add_partition_offset(topic, *p, o)
                    .map_err(kafka("building the assignment"))?;
            }
            consumer.assign(&tpl).map_err(kafka("assigning partitions"))
        });
    if let Err(e) = &assigned {
        error!(error = %e, "cannot take over partitions");
        let _ = consumer.unassign();
    }
    assigned
}

/// The keep-alive of a take-over: reports the loop alive and polls the group consumer
/// once without waiting, so that it serves its events and the time since the
/// application's last poll stays far below `max.poll.interval.ms`. A rebalance this
/// poll records is handled after the take-over, in order. No record can come (with
/// the eager protocol nothing is assigned before the take-over's own assign, which
/// then sets every position explicitly), so one that does is ignored. A fatal
/// consumer error ends the take-over.
fn serve_group(consumer: &GroupConsumer, shared: &Shared) -> Result<(), ServiceError> {
    shared.beat();
    match consumer.poll(Duration::ZERO) {
        Some(Ok(m)) => debug!(
            topic = m.topic(),
            partition = m.partition(),
            "record of an unassigned partition ignored during a take-over"
        ),
        Some(Err(e)) => {
            if let Some((code, reason)) = consumer.client().fatal_error() {
                return Err(ServiceError::ConsumerFatal { code, reason });
            }
            warn!(error = %e, "consumer error during a take-over");
        }
        None => {}
    }
    Ok(())
}

impl Worker {
    /// Takes over partitions: every new one is shown as not ready first (and only then
    /// the group as joined, so `/readyz` cannot pass in between), then all are opened
    /// together — local state when it is current, else a restore from the changelog —
    /// calling `keep_alive` while they restore; their outboxes are delivered, the
    /// population gauges set from the restored counters, and only then are they
    /// marked ready. Returns the offsets to resume from.
    pub(crate) fn take_over(
        &mut self,
        parts: &BTreeSet<i32>,
        keep_alive: KeepAlive<'_>,
    ) -> Result<BTreeMap<TopicPartition, Offset>, ServiceError> {
        // Records polled for the partitions kept go to their queues first: the offsets
        // to resume from follow them.
        self.absorb();
        let mut offsets = BTreeMap::new();
        // Partitions kept from before resume where they are.
        for (p, part) in &self.parts {
            if parts.contains(p) {
                for s in &part.sources {
                    offsets.insert((s.topic.clone(), *p), Offset::Offset(s.next_offset));
                }
            }
        }
        let new: Vec<i32> = parts
            .iter()
            .copied()
            .filter(|p| !self.parts.contains_key(p))
            .collect();
        let registered = self.restorer.register(&new)?;
        self.shared.set_joined();
        self.shared.update_partition_gauges();
        for part in self.restorer.open_all(registered, keep_alive)? {
            let known = part.seq > 0;
            for s in &part.sources {
                offsets.insert(
                    (s.topic.clone(), part.id),
                    if known {
                        Offset::Offset(s.next_offset)
                    } else {
                        Offset::Beginning
                    },
                );
            }
            self.parts.insert(part.id, part);
        }
        // Outputs committed before a crash go out before anything new.
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown.revoke_timeout_ms);
        self.delivery.deliver(&mut self.parts, &new, deadline);
        // The gauges are right before the partitions count as ready.
        self.refresh_gauges();
        for &p in &new {
            self.shared
                .partition_ready(p, self.parts[&p].engine().watermark());
        }
        self.shared.update_partition_gauges();
        info!(partitions = new.len(), "partitions ready");
        Ok(offsets)
    }

    /// Gives up partitions: commits what was handed on and delivers the outbox within
    /// the revoke deadline, then forgets them.
    pub(crate) fn give_up(&mut self, parts: &BTreeSet<i32>, consumer: &GroupConsumer) {
        self.absorb();
        let deadline = Instant::now() + Duration::from_millis(self.cfg.shutdown.revoke_timeout_ms);
        for &p in parts {
            if !self.parts.contains_key(&p) {
                continue;
            }
            let _span = info_span!("partition", partition = p).entered();
            if let Err(e) = self.commit_partition(p) {
                error!(error = %e, "cannot commit a revoked partition; its records will be re-read by the next owner");
            }
            if !self.delivery.deliver(&mut self.parts, &[p], deadline) {
                warn!("outbox not fully delivered before the revoke deadline; the next owner restores from the last delivered commit");
            }
            self.commit_kafka_offsets(consumer, Some(p));
            self.parts.remove(&p);
            self.delivery.forget(p);
            self.paused.retain(|(_, q)| *q != p);
            self.shared.close_partition(p);
            info!("partition revoked");
        }
        self.shared.update_partition_gauges();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tpl(parts: &[(&str, i32)]) -> TopicPartitionList {
        let mut t = TopicPartitionList::new();
        for (topic, p) in parts {
            t.add_partition(topic, *p);
        }
        t
    }

    #[test]
    fn a_callback_only_records_and_the_loop_takes_in_order() {
        let r = Recorder::default();
        let events = [
            RebalanceEvent::new(
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS,
                &tpl(&[("visits", 0), ("visits", 1)]),
            ),
            RebalanceEvent::new(
                RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS,
                &tpl(&[("visits", 1)]),
            ),
            RebalanceEvent::new(RDKafkaRespErr::RD_KAFKA_RESP_ERR__FATAL, &tpl(&[])),
        ];
        for e in &events {
            r.events.lock().unwrap().push(e.clone());
        }
        assert_eq!(
            events[0],
            RebalanceEvent::Assign(vec![("visits".into(), 0), ("visits".into(), 1)])
        );
        assert_eq!(
            events[1],
            RebalanceEvent::Revoke(vec![("visits".into(), 1)])
        );
        assert!(matches!(events[2], RebalanceEvent::Failed { .. }));
        assert_eq!(r.take(), events);
        assert!(r.take().is_empty(), "taken once");
    }
}
