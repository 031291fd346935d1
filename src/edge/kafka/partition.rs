//! One input partition of the Kafka service: the event-time merge of its input
//! topics in front of a [`Driver`], and the outbox that turns the driver's outputs into
//! Kafka records.
//!
//! Partition `p` of every input topic feeds one driver (inputs are co-partitioned by
//! customer) over the partition's own sled tree. Each commit writes, in one atomic
//! batch of that tree: the dirty customers, timer-index changes, engine meta, the input
//! offsets, and an *outbox* of everything to publish — status changes, dead letters,
//! changelog records. The outbox is delivered after the commit and removed after the
//! broker's ack, so a crash never loses an output and at worst re-sends an identical
//! record. This module decides nothing about records (the driver does); it orders them
//! and encodes what comes out.

pub use super::changelog::{
    changelog_end, has_state, restore_from_changelog, ChangelogFold, ChangelogRecord, FoldError,
    Progress, CHANGELOG_END, PROGRESS,
};
use crate::codec::record::encode_change;
use crate::codec::Format;
use crate::core::engine::Engine;
use crate::core::event::{InvalidEvent, Validated};
use crate::core::policy::Policy;
use crate::core::status::StatusChange;
use crate::core::time::Ts;
use crate::driver::{DeadLetter, Driver, Handled, Origin, Outputs, TimeBounds};
use crate::store::{Batch, OutboxKey, SledTreeKv, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// What one outgoing record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutKind {
    /// A status change for the status topic.
    Change,
    /// A rejected input (or a dropped-field note) for the dead-letter topic.
    DeadLetter,
    /// A customer's state for the changelog.
    ChangelogCustomer,
    /// The commit's engine meta and offsets for the changelog: sent last, after every
    /// other record of the commit is acknowledged.
    ChangelogMeta,
}

/// A record waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// Kind (decides the topic).
    pub kind: OutKind,
    /// Explicit partition (changelog records go to the input partition's number).
    pub partition: Option<i32>,
    /// Record key.
    pub key: Vec<u8>,
    /// Record value.
    pub value: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Kafka timestamp (ms) of the input record that caused it, for end-to-end latency.
    pub source_ts_ms: Option<i64>,
}

/// One commit's outbox entries, in order, with its sequence number.
pub type OutboxBatch = crate::store::OutboxBatch<Outgoing>;

/// One buffered input record of a source.
#[derive(Debug)]
pub struct Buffered {
    /// Offset in its topic partition.
    pub offset: i64,
    /// Kafka timestamp (ms), if any.
    pub ts_ms: Option<i64>,
    /// The decoded and validated record, or why it cannot be used.
    pub record: Result<Validated, InvalidEvent>,
    /// The raw value, kept only when a dead letter will quote it.
    pub raw: Vec<u8>,
}

impl Buffered {
    /// A record read at `offset`; the raw value is kept only for a record a dead letter
    /// will quote: a rejected one, one with dropped fields, or one dated after
    /// `latest` (the latest plausible record time, see [`Partition::latest_plausible`]).
    pub fn new(
        offset: i64,
        ts_ms: Option<i64>,
        record: Result<Validated, InvalidEvent>,
        value: Option<&[u8]>,
        latest: Option<Ts>,
    ) -> Self {
        let quoted = match &record {
            Ok(v) => !v.issues.is_empty() || latest.is_some_and(|l| v.input.time() > l),
            Err(_) => true,
        };
        let raw = if quoted {
            crate::driver::truncate_raw(value.unwrap_or_default()).to_vec()
        } else {
            Vec::new()
        };
        Buffered {
            offset,
            ts_ms,
            record,
            raw,
        }
    }

    fn time(&self) -> Option<Ts> {
        self.record.as_ref().ok().map(|v| v.input.time())
    }

    /// Whether the record needs no place in the event-time merge because it becomes a
    /// dead letter whatever the other sources hold: it is rejected, or dated after
    /// `latest`.
    fn dead_on_arrival(&self, latest: Option<Ts>) -> bool {
        match &self.record {
            Err(_) => true,
            Ok(v) => latest.is_some_and(|l| v.input.time() > l),
        }
    }
}

/// One input topic's queue within a partition.
#[derive(Debug)]
pub struct Source {
    /// Topic name.
    pub topic: String,
    /// Records read but not yet handed to the driver.
    pub queue: VecDeque<Buffered>,
    /// The offset to resume from: the first buffered record, or the next unread one.
    pub next_offset: i64,
    /// The topic partition's high watermark as last reported by the broker (-1 unknown).
    pub high_watermark: i64,
    /// Since when this source is empty while others have records.
    pub waiting_since: Option<std::time::Instant>,
}

impl Source {
    fn resume_offset(&self) -> i64 {
        self.queue.front().map_or(self.next_offset, |b| b.offset)
    }

    /// Whether nothing more is to be read right now (caught up with the log end).
    pub fn idle(&self) -> bool {
        self.queue.is_empty() && self.high_watermark >= 0 && self.next_offset >= self.high_watermark
    }
}

/// What one [`Partition::release`] call handed on, for metrics.
#[derive(Debug, Default)]
pub struct Released {
    /// Status changes emitted.
    pub changes: Vec<StatusChange>,
    /// (source index, what the driver reported) per record handed on.
    pub handled: Vec<(usize, Handled)>,
    /// Dead letters by (source index, code).
    pub dead: Vec<(usize, &'static str)>,
    /// Seconds spent in the driver per record.
    pub engine_seconds: Vec<f64>,
}

/// A partition's processing state.
pub struct Partition {
    /// Partition number.
    pub id: i32,
    driver: Driver<SledTreeKv>,
    /// One queue per distinct input topic.
    pub sources: Vec<Source>,
    /// Outputs of records handed on since the last commit.
    pending_out: Vec<Outgoing>,
    /// The committed outbox not yet delivered, by commit, in order: what the tree's
    /// outbox holds, kept in memory so that a delivery need not read it back.
    unsent: VecDeque<OutboxBatch>,
    /// Last commit sequence number.
    pub seq: u64,
    /// Kafka timestamp of the latest record handed on.
    latest_ts: Option<i64>,
    /// How status changes are encoded.
    encoding: Format,
    produced: Outputs,
    /// How far past the wall clock a record may be dated (none: no bound).
    clock_skew_ms: Option<i64>,
}

/// The default clock skew allowed between a record's time and the wall clock: one day,
/// for source systems that write local time as UTC (China is UTC+8).
pub const DEFAULT_CLOCK_SKEW_MS: i64 = 86_400_000;

impl Partition {
    /// Opens partition `id` from its tree: engine meta, timers and offsets as committed.
    pub fn open(
        id: i32,
        store: Store<SledTreeKv>,
        policy: Policy,
        topics: &[String],
        encoding: Format,
    ) -> Result<Self, StoreError> {
        let progress: Progress = store.load_progress(PROGRESS)?.unwrap_or_default();
        let offsets: BTreeMap<String, i64> = progress.offsets.into_iter().collect();
        let sources = topics
            .iter()
            .map(|t| Source {
                topic: t.clone(),
                queue: VecDeque::new(),
                next_offset: offsets.get(t).copied().unwrap_or(0),
                high_watermark: -1,
                waiting_since: None,
            })
            .collect();
        store.upgrade_outbox::<Outgoing>()?;
        let unsent = store.outbox()?.into();
        let mut driver = Driver::open(store, policy)?;
        // The wall clock bounds live records exactly; the jump check would refuse the
        // first live tick after a backfill of older history.
        driver.set_bounds(TimeBounds {
            max_jump_ms: None,
            ..driver.bounds()
        });
        Ok(Partition {
            id,
            driver,
            sources,
            pending_out: Vec::new(),
            unsent,
            seq: progress.seq,
            latest_ts: None,
            encoding,
            produced: Outputs::default(),
            clock_skew_ms: Some(DEFAULT_CLOCK_SKEW_MS),
        })
    }

    /// Sets how far past the wall clock a record may be dated (none: no bound).
    pub fn set_clock_skew(&mut self, skew: Option<std::time::Duration>) {
        self.clock_skew_ms = skew.map(|d| d.as_millis() as i64);
    }

    /// The latest plausible record time now: the wall clock plus the allowed skew
    /// (none: no bound). Records dated later are dead-lettered (`implausible_time`).
    pub fn latest_plausible(&self) -> Option<Ts> {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        self.clock_skew_ms.map(|s| Ts(wall.saturating_add(s)))
    }

    /// The engine (counters, stream time).
    pub fn engine(&self) -> &Engine {
        self.driver.engine()
    }

    /// The partition's store.
    pub fn store(&self) -> &Store<SledTreeKv> {
        self.driver.store()
    }

    /// Records handed on since the last commit.
    pub fn since_commit(&self) -> usize {
        self.driver.since_commit()
    }

    /// The committed offsets (next to read) per topic.
    pub fn offsets(&self) -> Vec<(String, i64)> {
        self.sources
            .iter()
            .map(|s| (s.topic.clone(), s.resume_offset()))
            .collect()
    }

    /// Queues one record read from source `src`.
    pub fn push(&mut self, src: usize, b: Buffered) {
        let s = &mut self.sources[src];
        if s.queue.is_empty() && b.offset < s.next_offset {
            // Already handed on (a re-delivery after a seek): skip.
            return;
        }
        s.next_offset = b.offset + 1;
        s.waiting_since = None;
        s.queue.push_back(b);
    }

    /// Hands records to the driver in event-time order across the sources, as far as
    /// every source either has a record buffered, is caught up with its log end, or
    /// has kept the others waiting longer than `align_wait`. Returns what happened.
    pub fn release(
        &mut self,
        now: std::time::Instant,
        align_wait: std::time::Duration,
        force: bool,
    ) -> Result<Released, StoreError> {
        let mut r = Released::default();
        let latest = self.latest_plausible();
        self.driver.set_latest(latest);
        loop {
            // Records that become dead letters (rejected, or dated past the wall clock
            // and its skew) need no ordering: pass them on at once, so that they hold
            // nothing back.
            for i in 0..self.sources.len() {
                while self.sources[i]
                    .queue
                    .front()
                    .is_some_and(|b| b.dead_on_arrival(latest))
                {
                    let b = self.sources[i].queue.pop_front().expect("front exists");
                    self.hand_on(i, b, &mut r)?;
                }
            }
            let mut best: Option<(usize, Ts)> = None;
            for (i, s) in self.sources.iter().enumerate() {
                if let Some(t) = s.queue.front().and_then(Buffered::time) {
                    if best.is_none_or(|(_, bt)| t < bt) {
                        best = Some((i, t));
                    }
                }
            }
            let Some((i, _)) = best else { break };
            if !force {
                let mut blocked = false;
                for s in self.sources.iter_mut() {
                    if s.queue.is_empty() && !s.idle() {
                        let since = *s.waiting_since.get_or_insert(now);
                        if now.duration_since(since) < align_wait {
                            blocked = true;
                        }
                    }
                }
                if blocked {
                    break;
                }
            }
            let b = self.sources[i].queue.pop_front().expect("best has a front");
            self.hand_on(i, b, &mut r)?;
        }
        Ok(r)
    }

    fn hand_on(&mut self, src: usize, b: Buffered, r: &mut Released) -> Result<(), StoreError> {
        if b.ts_ms.is_some() && b.record.is_ok() {
            self.latest_ts = b.ts_ms;
        }
        let origin = Origin {
            source: &self.sources[src].topic,
            partition: Some(self.id),
            position: b.offset,
        };
        let started = std::time::Instant::now();
        let h = self
            .driver
            .handle(b.record, origin, &b.raw, &mut self.produced)?;
        r.engine_seconds.push(started.elapsed().as_secs_f64());
        r.handled.push((src, h));
        for d in self.produced.dead.drain(..) {
            r.dead.push((src, d.code));
            self.pending_out.push(dead_record(&d));
        }
        for c in self.produced.changes.drain(..) {
            self.pending_out
                .push(change_record(&c, self.encoding, b.ts_ms));
            r.changes.push(c);
        }
        Ok(())
    }

    /// Commits everything handed on since the last commit: state, offsets and the
    /// outbox in one atomic batch. Returns the number of outbox entries written.
    pub fn commit(&mut self, cache_capacity: usize) -> Result<usize, StoreError> {
        let seq = self.seq + 1;
        let offsets = self.offsets();
        let mut out: Vec<Outgoing> = std::mem::take(&mut self.pending_out);
        let (id, latest_ts) = (self.id, self.latest_ts);
        let mut n = 0;
        self.driver.commit(cache_capacity, |dirty, batch| {
            for c in &dirty.customers {
                out.push(Outgoing {
                    kind: OutKind::ChangelogCustomer,
                    partition: Some(id),
                    key: format!("c/{}", c.customer_id).into_bytes(),
                    value: ChangelogRecord::encode_customer(seq, c),
                    headers: Vec::new(),
                    source_ts_ms: None,
                });
            }
            out.push(Outgoing {
                kind: OutKind::ChangelogMeta,
                partition: Some(id),
                key: b"m".to_vec(),
                value: ChangelogRecord::encode_meta(seq, &dirty.meta, &offsets),
                headers: Vec::new(),
                source_ts_ms: latest_ts,
            });
            n = out.len();
            batch
                .progress(PROGRESS, &Progress { seq, offsets })?
                .outbox(seq, &out)?;
            Ok(())
        })?;
        self.seq = seq;
        let entries = out
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                let key = OutboxKey {
                    seq,
                    index: i as u32,
                };
                (key, o)
            })
            .collect();
        self.unsent.push_back((seq, entries));
        Ok(n)
    }

    /// Committed outbox entries, by commit sequence, in order, as the tree holds them.
    pub fn outbox(&self) -> Result<Vec<OutboxBatch>, StoreError> {
        self.store().outbox()
    }

    /// Committed outbox entries not yet delivered, by commit sequence, in order: the
    /// same as [`Partition::outbox`], from memory.
    pub fn unsent(&self) -> &VecDeque<OutboxBatch> {
        &self.unsent
    }

    /// Removes delivered outbox entries and records the changelog's end offset, in
    /// one batch.
    pub fn delivered(
        &mut self,
        keys: Vec<OutboxKey>,
        changelog_end: i64,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        batch
            .remove_outbox(keys.iter().copied())
            .progress(CHANGELOG_END, &changelog_end)?;
        self.store().write(batch)?;
        let gone: std::collections::HashSet<OutboxKey> = keys.into_iter().collect();
        for (_, entries) in self.unsent.iter_mut() {
            entries.retain(|(k, _)| !gone.contains(k));
        }
        self.unsent.retain(|(_, entries)| !entries.is_empty());
        Ok(())
    }
}

/// A status change's outgoing record.
fn change_record(c: &StatusChange, enc: Format, source_ts_ms: Option<i64>) -> Outgoing {
    Outgoing {
        kind: OutKind::Change,
        partition: None,
        key: c.customer_id.as_bytes().to_vec(),
        value: encode_change(c, enc),
        headers: vec![("churnwatch-event-id".into(), c.event_id.as_bytes().to_vec())],
        source_ts_ms,
    }
}

/// A dead letter's outgoing record: the raw value, with the driver's code, outcome,
/// field and reason and the source position in headers.
fn dead_record(d: &DeadLetter) -> Outgoing {
    let partition = d.partition.unwrap_or_default();
    let mut headers = vec![
        (
            "churnwatch-error-code".to_string(),
            d.code.as_bytes().to_vec(),
        ),
        ("churnwatch-error".into(), d.reason.as_bytes().to_vec()),
        (
            "churnwatch-outcome".into(),
            d.outcome.as_str().as_bytes().to_vec(),
        ),
        (
            "churnwatch-source-topic".into(),
            d.source.as_bytes().to_vec(),
        ),
        (
            "churnwatch-source-partition".into(),
            partition.to_string().into_bytes(),
        ),
        (
            "churnwatch-source-offset".into(),
            d.position.to_string().into_bytes(),
        ),
        (
            "churnwatch-event-kept".into(),
            d.outcome.kept().to_string().into_bytes(),
        ),
    ];
    if let Some(f) = &d.field {
        headers.push(("churnwatch-field".into(), f.as_bytes().to_vec()));
    }
    Outgoing {
        kind: OutKind::DeadLetter,
        partition: None,
        key: format!("{}/{}/{}", d.source, partition, d.position).into_bytes(),
        value: d.raw.clone(),
        headers,
        source_ts_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::decode_json_line;
    use std::time::{Duration, Instant};

    fn visit(id: &str, customer: &str, t: &str) -> Result<Validated, InvalidEvent> {
        decode_json_line(&format!(
            r#"{{"type":"visit","event_id":"{id}","event_time":"{t}","dealer_id":"D1","customer_id":"{customer}","visit_type":"service"}}"#
        ))
    }

    fn open(dir: &std::path::Path) -> Partition {
        let db = crate::store::open_sled_db(dir).unwrap();
        let store = Store::with_kv(SledTreeKv::open(&db, "partition-0").unwrap()).unwrap();
        Partition::open(
            0,
            store,
            Policy::default(),
            &["a".to_string(), "b".to_string()],
            Format::Json,
        )
        .unwrap()
    }

    fn push(p: &mut Partition, src: usize, offset: i64, record: Result<Validated, InvalidEvent>) {
        let latest = p.latest_plausible();
        p.push(
            src,
            Buffered::new(offset, Some(1), record, Some(b"{"), latest),
        );
    }

    #[test]
    fn release_merges_sources_by_event_time_and_waits_for_a_lagging_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path());
        push(&mut p, 0, 0, visit("e1", "C1", "2024-01-01T10:00:00Z"));
        push(&mut p, 0, 1, visit("e3", "C1", "2024-03-01T10:00:00Z"));
        let now = Instant::now();
        let wait = Duration::from_secs(60);
        // Source b has not reported its end yet: nothing may pass.
        let r = p.release(now, wait, false).unwrap();
        assert!(r.handled.is_empty());
        push(&mut p, 1, 0, visit("e2", "C2", "2024-02-01T10:00:00Z"));
        p.sources[1].high_watermark = 1;
        let r = p.release(now, wait, false).unwrap();
        // e1 (Jan), e2 (Feb); then b is caught up, so e3 (Mar) passes too.
        assert_eq!(r.handled.len(), 3);
        assert_eq!(p.engine().counters().events, 3);
        assert_eq!(p.offsets(), vec![("a".into(), 2), ("b".into(), 1)]);
        // After the wait a lagging source no longer blocks.
        push(&mut p, 0, 2, visit("e4", "C1", "2024-04-01T10:00:00Z"));
        p.sources[1].high_watermark = 5;
        assert!(p.release(now, wait, false).unwrap().handled.is_empty());
        let later = now + Duration::from_secs(61);
        assert_eq!(p.release(later, wait, false).unwrap().handled.len(), 1);
    }

    #[test]
    fn a_record_dated_past_the_wall_clock_is_a_dead_letter_not_a_time_jump() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path());
        p.sources[1].high_watermark = 0;
        push(&mut p, 0, 0, visit("e1", "C1", "2024-01-01T10:00:00Z"));
        push(&mut p, 0, 1, visit("e2", "C2", "9999-12-31T00:00:00Z"));
        // A live tick long after the history: no jump check in the service.
        push(&mut p, 0, 2, visit("e3", "C3", "2025-06-01T10:00:00Z"));
        let r = p.release(Instant::now(), Duration::ZERO, false).unwrap();
        assert_eq!(r.dead, vec![(0, "implausible_time")]);
        assert_eq!(
            p.engine().max_seen(),
            Some(Ts::parse_rfc3339("2025-06-01T10:00:00Z").unwrap())
        );
    }

    #[test]
    fn a_future_dated_record_is_dead_lettered_at_once_with_its_raw_value() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path());
        // Source b is behind (its end is not reached): the merge waits for it.
        p.sources[1].high_watermark = 5;
        let raw = br#"{"type":"visit","event_id":"e9","event_time":"9999-12-31T00:00:00Z"}"#;
        p.push(
            0,
            Buffered::new(
                0,
                Some(1),
                visit("e9", "C9", "9999-12-31T00:00:00Z"),
                Some(raw),
                p.latest_plausible(),
            ),
        );
        let r = p
            .release(Instant::now(), Duration::from_secs(60), false)
            .unwrap();
        // It cannot be applied whatever the other source holds: it does not wait.
        assert_eq!(r.dead, vec![(0, "implausible_time")]);
        assert!(p.sources[0].queue.is_empty());
        p.commit(10).unwrap();
        let outbox = p.outbox().unwrap();
        let dead = outbox[0]
            .1
            .iter()
            .find(|(_, o)| o.kind == OutKind::DeadLetter)
            .expect("a dead letter in the outbox");
        assert_eq!(dead.1.value, raw.to_vec(), "the raw record is quoted");
    }

    #[test]
    fn commit_writes_state_offsets_and_outbox_atomically_and_delivery_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path());
        p.sources[1].high_watermark = 0;
        push(&mut p, 0, 0, visit("e1", "C1", "2024-01-01T10:00:00Z"));
        // A day later: stream time passes e1, so C1's state changes.
        push(&mut p, 0, 1, visit("e0", "C2", "2024-01-02T10:00:00Z"));
        push(&mut p, 0, 2, decode_json_line("{"));
        let r = p.release(Instant::now(), Duration::ZERO, false).unwrap();
        assert_eq!(r.dead, vec![(0, "malformed")]);
        let n = p.commit(10).unwrap();
        assert!(n >= 2, "a dead letter, a changelog customer and the meta");
        let outbox = p.outbox().unwrap();
        assert_eq!(outbox.len(), 1);
        let kinds: Vec<OutKind> = outbox[0].1.iter().map(|(_, o)| o.kind).collect();
        assert!(kinds.contains(&OutKind::DeadLetter));
        assert!(kinds.contains(&OutKind::ChangelogCustomer));
        assert_eq!(*kinds.last().unwrap(), OutKind::ChangelogMeta);
        let dead = outbox[0]
            .1
            .iter()
            .find(|(_, o)| o.kind == OutKind::DeadLetter)
            .unwrap();
        let header = |k: &str| {
            dead.1
                .headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(
            header("churnwatch-error-code").as_deref(),
            Some("malformed")
        );
        assert_eq!(header("churnwatch-outcome").as_deref(), Some("rejected"));
        assert_eq!(header("churnwatch-source-offset").as_deref(), Some("2"));
        assert_eq!(dead.1.value, b"{");
        assert_eq!(
            p.unsent().iter().cloned().collect::<Vec<_>>(),
            outbox,
            "the outbox in memory is the tree's"
        );
        let keys = outbox[0].1.iter().map(|(k, _)| *k).collect();
        p.delivered(keys, 42).unwrap();
        assert!(p.outbox().unwrap().is_empty());
        assert!(p.unsent().is_empty());
        assert_eq!(changelog_end(p.store()).unwrap(), 42);
        // Reopen: offsets and sequence come back from the tree.
        let seq = p.seq;
        drop(p);
        let p = open(dir.path());
        assert_eq!(p.seq, seq);
        assert_eq!(p.offsets(), vec![("a".into(), 3), ("b".into(), 0)]);
        assert_eq!(
            p.engine().pending_events(),
            1,
            "C2's visit waits in the meta"
        );
        assert!(has_state(p.store()).unwrap());
    }
}
