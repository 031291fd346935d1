//! Outbox delivery with the idempotent producer: [`Delivery`] sends each committed
//! batch of a partition's outbox (status changes, dead letters, changelog customers,
//! then — once those are acknowledged — the commit's changelog meta record), waits for
//! the acks within a deadline, and clears the delivered entries from sled.
//!
//! A record the producer or broker refuses for good (too large, invalid) must not
//! block everything behind it: a status change or dead letter is replaced by a small
//! `undeliverable` dead letter (no payload; the original's key, identifying headers,
//! size and the refusal), a changelog record is skipped; both are counted in
//! `churnwatch_undeliverable_total{kind}` and logged. Transient errors are retried from
//! the outbox; how long its oldest commit has waited is reported to [`Shared`] (the
//! `churnwatch_outbox_oldest_seconds` gauge and `/healthz`).
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
use std::collections::BTreeMap;
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
    /// Per partition with a non-empty outbox: its oldest commit and since when that
    /// commit has been the oldest (the partition's outbox last made progress).
    heads: BTreeMap<i32, (u64, Instant)>,
}

/// What became of one record sent.
#[derive(Debug, Clone, PartialEq)]
enum Sent {
    /// Acknowledged at this offset.
    Acked(i64),
    /// Refused for good, for this reason: sending it again would fail the same way.
    Refused(String),
}

/// The header values the `undeliverable` stand-in copies from the refused record.
const KEPT_HEADERS: [&str; 5] = [
    "churnwatch-event-id",
    "churnwatch-source-topic",
    "churnwatch-source-partition",
    "churnwatch-source-offset",
    "churnwatch-field",
];

/// The error code of the stand-in for a record refused for good.
pub const UNDELIVERABLE: &str = "undeliverable";

/// Whether a produce error refuses the record for good: it is too large for the
/// producer's `message.max.bytes` or the topic's `max.message.bytes`, or invalid.
fn refused_for_good(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// The `kind` label of an output record.
fn kind_label(kind: OutKind) -> &'static str {
    match kind {
        OutKind::Change => "status_change",
        OutKind::DeadLetter => "dead_letter",
        OutKind::ChangelogCustomer | OutKind::ChangelogMeta => "changelog",
    }
}

/// The dead letter that stands in for `o`, refused for good by `topic` for `reason`:
/// no payload, `o`'s key and identifying headers, its size and the refusal.
fn undeliverable(o: &Outgoing, topic: &str, reason: &str) -> Outgoing {
    let size = o.key.len()
        + o.value.len()
        + o.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    let why = crate::driver::bounded(
        format!(
            "the {} for topic {topic} ({size} bytes) was refused for good: {reason}",
            kind_label(o.kind).replace('_', " ")
        ),
        crate::driver::MAX_REASON,
    );
    let mut headers = vec![
        ("churnwatch-error-code".to_string(), UNDELIVERABLE.into()),
        ("churnwatch-error".into(), why.into_bytes()),
        ("churnwatch-outcome".into(), UNDELIVERABLE.into()),
        ("churnwatch-event-kept".into(), b"true".to_vec()),
        (
            "churnwatch-undeliverable-kind".into(),
            kind_label(o.kind).into(),
        ),
        ("churnwatch-undeliverable-topic".into(), topic.into()),
        (
            "churnwatch-undeliverable-bytes".into(),
            size.to_string().into_bytes(),
        ),
    ];
    for (k, v) in &o.headers {
        if k == "churnwatch-error-code" {
            headers.push(("churnwatch-original-error-code".into(), v.clone()));
        } else if KEPT_HEADERS.contains(&k.as_str()) {
            headers.push((k.clone(), v.clone()));
        }
    }
    Outgoing {
        kind: OutKind::DeadLetter,
        partition: None,
        key: o.key.clone(),
        value: Vec::new(),
        headers,
        source_ts_ms: None,
    }
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
            heads: BTreeMap::new(),
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
        self.heads.remove(&p);
        self.report_oldest();
    }

    /// Tells [`Shared`] since when the oldest undelivered outbox commit has waited.
    fn report_oldest(&self) {
        self.shared
            .set_outbox_oldest(self.heads.values().map(|(_, t)| *t).min());
    }

    /// Notes partition `p`'s oldest outbox commit (None: its outbox is empty).
    fn note_head(&mut self, p: i32, head: Option<u64>) {
        match head {
            None => {
                self.heads.remove(&p);
            }
            Some(seq) => match self.heads.get(&p) {
                Some((s, _)) if *s == seq => {}
                _ => {
                    self.heads.insert(p, (seq, Instant::now()));
                }
            },
        }
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
        parts: &mut BTreeMap<i32, Partition>,
        ids: &[i32],
        deadline: Instant,
    ) -> bool {
        let done = self.rounds(parts, ids, deadline);
        let pending: usize = self.pending.values().sum();
        self.shared.metrics.outbox_pending.set(pending as i64);
        self.report_oldest();
        done
    }

    fn rounds(
        &mut self,
        parts: &mut BTreeMap<i32, Partition>,
        ids: &[i32],
        deadline: Instant,
    ) -> bool {
        let ids: Vec<i32> = ids
            .iter()
            .copied()
            .filter(|p| parts.contains_key(p))
            .collect();
        for &p in &ids {
            let unsent = parts[&p].unsent();
            self.pending
                .insert(p, unsent.iter().map(|(_, e)| e.len()).sum());
            self.note_head(p, unsent.front().map(|(seq, _)| *seq));
        }
        loop {
            // One round: the oldest undelivered commit of every partition.
            let round: Vec<(i32, &OutboxBatch)> = ids
                .iter()
                .filter_map(|p| parts[p].unsent().front().map(|b| (*p, b)))
                .collect();
            if round.is_empty() {
                break;
            }
            let rest: Vec<&Outgoing> = round
                .iter()
                .flat_map(|(_, (_, e))| e.iter().map(|(_, o)| o))
                .filter(|o| o.kind != OutKind::ChangelogMeta)
                .collect();
            let Some(sent) = self.send_all(rest.iter().copied(), deadline) else {
                return false;
            };
            if !self.replace_refused(&rest, sent, deadline) {
                return false;
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
            let Some(sent) = self.send_all(metas.into_iter(), deadline) else {
                return false;
            };
            let mut offsets = Vec::with_capacity(sent.len());
            for s in sent {
                match s {
                    Sent::Acked(off) => offsets.push(off),
                    Sent::Refused(reason) => {
                        self.shared
                            .metrics
                            .undeliverable
                            .with_label_values(&["changelog"])
                            .inc();
                        error!(
                            %reason,
                            "a changelog meta record was refused for good; the outbox waits \
                             (check the changelog topic's max.message.bytes)"
                        );
                        return false;
                    }
                }
            }
            let done: Vec<(i32, Vec<crate::store::OutboxKey>)> = round
                .iter()
                .map(|(p, (_, entries))| (*p, entries.iter().map(|(k, _)| *k).collect()))
                .collect();
            for ((p, keys), off) in done.into_iter().zip(offsets) {
                let n = keys.len();
                let part = parts.get_mut(&p).expect("in the round");
                if let Err(e) = part.delivered(keys, off + 1) {
                    error!(partition = p, error = %e, "cannot clear the delivered outbox entries");
                    return false;
                }
                if let Some(left) = self.pending.get_mut(&p) {
                    *left = left.saturating_sub(n);
                }
                self.note_head(p, part.unsent().front().map(|(seq, _)| *seq));
            }
        }
        true
    }

    /// Counts what `sent` says of `records`, and stands in for the records refused for
    /// good: an `undeliverable` dead letter for a status change or dead letter (sent
    /// now), nothing for a changelog customer (its next change re-sends it). Returns
    /// false when the stand-ins could not be delivered before `deadline`.
    fn replace_refused(&self, records: &[&Outgoing], sent: Vec<Sent>, deadline: Instant) -> bool {
        let mut acked = Vec::with_capacity(records.len());
        let mut stand_ins = Vec::new();
        for (o, s) in records.iter().zip(sent) {
            let Sent::Refused(reason) = s else {
                acked.push(*o);
                continue;
            };
            let kind = kind_label(o.kind);
            self.shared
                .metrics
                .undeliverable
                .with_label_values(&[kind])
                .inc();
            let topic = self.out_topic(o.kind);
            match o.kind {
                OutKind::Change | OutKind::DeadLetter => {
                    error!(
                        kind, topic, %reason,
                        "an output record was refused for good; an `undeliverable` dead letter \
                         stands in for it"
                    );
                    stand_ins.push(undeliverable(o, topic, &reason));
                }
                OutKind::ChangelogCustomer | OutKind::ChangelogMeta => {
                    error!(
                        topic, %reason,
                        "a customer's changelog record was refused for good and is skipped: a \
                         restore from the changelog resumes this customer from its previous \
                         record (check the changelog topic's max.message.bytes)"
                    );
                }
            }
        }
        self.count_published(&acked);
        if stand_ins.is_empty() {
            return true;
        }
        let Some(sent) = self.send_all(stand_ins.iter(), deadline) else {
            return false;
        };
        let mut delivered = Vec::with_capacity(stand_ins.len());
        for (o, s) in stand_ins.iter().zip(sent) {
            match s {
                Sent::Acked(_) => delivered.push(o),
                Sent::Refused(reason) => error!(
                    %reason,
                    "even the `undeliverable` dead letter was refused; it is dropped \
                     (check the dead-letter topic)"
                ),
            }
        }
        self.count_published(&delivered);
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

    /// Sends records and waits for every ack; returns what became of each, in order,
    /// or None when one failed for a reason that may pass (retried from the outbox),
    /// or the deadline passed.
    fn send_all<'a>(
        &self,
        records: impl Iterator<Item = &'a Outgoing>,
        deadline: Instant,
    ) -> Option<Vec<Sent>> {
        let mut futures = Vec::new();
        // Per record: the index of its delivery future, or why it was refused at once.
        let mut slots: Vec<Result<usize, String>> = Vec::new();
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
                        slots.push(Ok(futures.len()));
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
                    Err((e, _)) if refused_for_good(&e) => {
                        self.shared.metrics.produce_errors.inc();
                        slots.push(Err(e.to_string()));
                        break;
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
        let mut acked = Vec::with_capacity(results.len());
        for r in results {
            match r {
                Ok(Ok(d)) => acked.push(Sent::Acked(d.offset)),
                Ok(Err((e, _))) if refused_for_good(&e) => {
                    self.shared.metrics.produce_errors.inc();
                    acked.push(Sent::Refused(e.to_string()));
                }
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
        Some(
            slots
                .into_iter()
                .map(|s| match s {
                    Ok(i) => acked[i].clone(),
                    Err(reason) => Sent::Refused(reason),
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(o: &'a Outgoing, k: &str) -> Option<&'a str> {
        o.headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }

    #[test]
    fn only_size_and_validity_errors_refuse_for_good() {
        let code = |c| KafkaError::MessageProduction(c);
        assert!(refused_for_good(&code(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(refused_for_good(&code(RDKafkaErrorCode::InvalidRecord)));
        assert!(refused_for_good(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageBatchTooLarge
        )));
        // Errors that pass are retried from the outbox.
        assert!(!refused_for_good(&code(RDKafkaErrorCode::QueueFull)));
        assert!(!refused_for_good(&code(RDKafkaErrorCode::MessageTimedOut)));
        assert!(!refused_for_good(&code(
            RDKafkaErrorCode::NotEnoughReplicas
        )));
    }

    #[test]
    fn the_stand_in_is_small_and_says_what_it_replaces() {
        let dead = Outgoing {
            kind: OutKind::DeadLetter,
            partition: None,
            key: b"customer-events/3/17".to_vec(),
            value: vec![b'x'; 4096],
            headers: vec![
                ("churnwatch-error-code".into(), b"too_long".to_vec()),
                ("churnwatch-error".into(), vec![b'r'; 1024]),
                (
                    "churnwatch-source-topic".into(),
                    b"customer-events".to_vec(),
                ),
                ("churnwatch-source-partition".into(), b"3".to_vec()),
                ("churnwatch-source-offset".into(), b"17".to_vec()),
            ],
            source_ts_ms: Some(5),
        };
        let s = undeliverable(
            &dead,
            "churnwatch-dead-letters",
            &"Broker: too large".repeat(200),
        );
        assert_eq!(s.kind, OutKind::DeadLetter);
        assert!(s.value.is_empty());
        assert_eq!(s.key, dead.key);
        assert_eq!(header(&s, "churnwatch-error-code"), Some(UNDELIVERABLE));
        assert_eq!(
            header(&s, "churnwatch-original-error-code"),
            Some("too_long")
        );
        assert_eq!(header(&s, "churnwatch-source-offset"), Some("17"));
        assert_eq!(
            header(&s, "churnwatch-undeliverable-kind"),
            Some("dead_letter")
        );
        assert_eq!(header(&s, "churnwatch-undeliverable-bytes"), Some("5277"));
        let why = header(&s, "churnwatch-error").unwrap();
        assert!(why.starts_with("the dead letter for topic churnwatch-dead-letters (5277 bytes)"));
        assert!(why.len() <= crate::driver::MAX_REASON, "{}", why.len());
        // Only bounded headers: the whole stand-in stays far below any broker's limit.
        let size: usize = s.key.len()
            + s.headers
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        assert!(size < 2048, "{size}");
        let change = Outgoing {
            kind: OutKind::Change,
            key: b"C1".to_vec(),
            headers: vec![("churnwatch-event-id".into(), b"e1".to_vec())],
            ..dead
        };
        let s = undeliverable(&change, "customer-status", "Broker: too large");
        assert_eq!(header(&s, "churnwatch-event-id"), Some("e1"));
        assert_eq!(
            header(&s, "churnwatch-undeliverable-kind"),
            Some("status_change")
        );
        assert_eq!(
            header(&s, "churnwatch-undeliverable-topic"),
            Some("customer-status")
        );
        assert_eq!(header(&s, "churnwatch-original-error-code"), None);
    }
}
