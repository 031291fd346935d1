//! One input partition's processing: the event-time merge of its input topics, the
//! engine, the sled tree holding its state, offsets and outbox, and the changelog
//! records that let another instance restore it.
//!
//! Partition `p` of every input topic feeds one engine (inputs are co-partitioned by
//! customer). Each commit writes, in one atomic sled batch of the partition's tree:
//! the dirty customers, timer-index changes, engine meta, the input offsets, and an
//! *outbox* of everything to publish — status changes, dead letters, changelog records.
//! The outbox is delivered after the commit and removed after the broker's ack, so a
//! crash never loses an output and at worst re-sends an identical record.

use crate::codec::record::encode_change;
use crate::codec::Format;
use crate::core::engine::{Dirty, Engine, EngineMeta};
use crate::core::event::{FieldIssue, Input};
use crate::core::policy::Policy;
use crate::core::state::CustomerState;
use crate::core::status::StatusChange;
use crate::core::time::Ts;
use crate::store::{Kv, SledTreeKv, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The progress record's source name in the partition's tree.
pub const PROGRESS: &str = "kafka";
/// The source name under which the changelog end offset is kept.
pub const CHANGELOG_END: &str = "changelog_end";

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

/// A changelog value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChangelogRecord {
    /// A customer's state as of commit `seq`.
    Customer {
        /// Commit sequence number.
        seq: u64,
        /// The state.
        state: Box<CustomerState>,
    },
    /// A commit's engine meta and the input offsets it reflects.
    Meta {
        /// Commit sequence number.
        seq: u64,
        /// Engine meta.
        meta: Box<EngineMeta>,
        /// Next offset to read per input topic.
        offsets: Vec<(String, i64)>,
    },
}

/// One commit's outbox entries (key, record), in order, with its sequence number.
pub type OutboxBatch = (u64, Vec<(Vec<u8>, Outgoing)>);

/// The progress record kept in the partition's tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Commit sequence number of the last commit.
    pub seq: u64,
    /// Next offset to read per input topic.
    pub offsets: Vec<(String, i64)>,
}

fn codec() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

/// Encodes a value with the store's compact encoding.
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    bincode::Options::serialize(codec(), v).expect("in-memory values always serialise")
}

/// Decodes a value encoded by [`encode`].
pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8], what: &str) -> Result<T, StoreError> {
    bincode::Options::deserialize(codec(), b).map_err(|e| StoreError::Corrupt {
        key: what.to_string(),
        reason: e.to_string(),
    })
}

fn outbox_key(seq: u64, idx: u32) -> Vec<u8> {
    let mut k = b"o/".to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(&idx.to_be_bytes());
    k
}

/// One buffered input record of a source.
#[derive(Debug)]
pub struct Buffered {
    /// Offset in its topic partition.
    pub offset: i64,
    /// Kafka timestamp (ms), if any.
    pub ts_ms: Option<i64>,
    /// What it is.
    pub item: Item,
}

/// A decoded input record, or a rejected one.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // valid records are the common case; boxing them costs more
pub enum Item {
    /// A valid record (possibly with dropped fields to note).
    Input {
        /// The record.
        input: Input,
        /// Fields dropped, each noted in the dead-letter topic.
        issues: Vec<FieldIssue>,
        /// Raw value, kept only when there are issues.
        raw: Vec<u8>,
    },
    /// A record that cannot be used.
    Dead {
        /// Short code.
        code: String,
        /// What was wrong.
        reason: String,
        /// The raw value.
        raw: Vec<u8>,
    },
}

/// One input topic's queue within a partition.
#[derive(Debug)]
pub struct Source {
    /// Topic name.
    pub topic: String,
    /// Records read but not yet handed to the engine.
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
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.high_watermark >= 0 && self.next_offset >= self.high_watermark
    }
}

/// Outcome counts of one [`Partition::release`] call, for metrics.
#[derive(Debug, Default)]
pub struct Released {
    /// Status changes emitted.
    pub changes: Vec<StatusChange>,
    /// (topic, type name, outcome) per record handed on.
    pub outcomes: Vec<(usize, &'static str, &'static str)>,
    /// Dead letters by (source index, code).
    pub dead: Vec<(usize, String)>,
    /// Seconds spent in the engine per record.
    pub engine_seconds: Vec<f64>,
}

/// A partition's processing state.
pub struct Partition {
    /// Partition number.
    pub id: i32,
    /// The partition's store.
    pub store: Store<SledTreeKv>,
    /// The engine.
    pub engine: Engine,
    /// One queue per distinct input topic.
    pub sources: Vec<Source>,
    /// Outputs of records handed to the engine since the last commit.
    pending_out: Vec<Outgoing>,
    /// Last commit sequence number.
    pub seq: u64,
    /// Records handed on since the last commit.
    pub since_commit: usize,
    /// Kafka timestamp of the latest record handed to the engine.
    latest_ts: Option<i64>,
    /// How status changes are encoded.
    encoding: Format,
}

impl Partition {
    /// Opens partition `id` from its tree: engine meta, timers and offsets as committed.
    pub fn open(
        id: i32,
        store: Store<SledTreeKv>,
        policy: Policy,
        topics: &[String],
        encoding: Format,
    ) -> Result<Self, StoreError> {
        let meta = store.load_meta()?.unwrap_or_default();
        let timers = store.load_timers()?;
        let progress: Progress = match store.load_progress(PROGRESS)? {
            Some(b) => decode(&b, "p/kafka")?,
            None => Progress::default(),
        };
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
        Ok(Partition {
            id,
            store,
            engine: Engine::restore(policy, meta, timers),
            sources,
            pending_out: Vec::new(),
            seq: progress.seq,
            since_commit: 0,
            latest_ts: None,
            encoding,
        })
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

    /// Hands records to the engine in event-time order across the sources, as far as
    /// every source either has a record buffered, is caught up with its log end, or
    /// has kept the others waiting longer than `align_wait`. Returns what happened.
    pub fn release(
        &mut self,
        now: std::time::Instant,
        align_wait: std::time::Duration,
        force: bool,
    ) -> Result<Released, StoreError> {
        let mut r = Released::default();
        loop {
            // Rejected records need no ordering: pass them on at once.
            for i in 0..self.sources.len() {
                while matches!(
                    self.sources[i].queue.front(),
                    Some(Buffered {
                        item: Item::Dead { .. },
                        ..
                    })
                ) {
                    let b = self.sources[i].queue.pop_front().expect("front exists");
                    self.dead_letter(i, b, &mut r);
                }
            }
            let mut best: Option<(usize, Ts)> = None;
            for (i, s) in self.sources.iter().enumerate() {
                if let Some(Buffered {
                    item: Item::Input { input, .. },
                    ..
                }) = s.queue.front()
                {
                    let t = input.time();
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
            self.apply(i, b, &mut r)?;
        }
        Ok(r)
    }

    fn dead_letter(&mut self, src: usize, b: Buffered, r: &mut Released) {
        if let Item::Dead { code, reason, raw } = b.item {
            let topic = self.sources[src].topic.clone();
            self.pending_out.push(dead_record(
                &topic, self.id, b.offset, &code, &reason, raw, false,
            ));
            r.dead.push((src, code));
            r.outcomes.push((src, "unknown", "invalid"));
            self.since_commit += 1;
        }
    }

    fn apply(&mut self, src: usize, b: Buffered, r: &mut Released) -> Result<(), StoreError> {
        let Item::Input { input, issues, raw } = b.item else {
            unreachable!("dead letters are released before")
        };
        for issue in &issues {
            self.pending_out.push(dead_record(
                &self.sources[src].topic,
                self.id,
                b.offset,
                "field_dropped",
                &format!("field `{}` dropped: {}", issue.field, issue.problem),
                raw.clone(),
                true,
            ));
            r.dead.push((src, "field_dropped".into()));
        }
        let counts = |c: &crate::core::engine::Counters| (c.duplicates, c.late);
        let (type_name, before) = match &input {
            Input::Tick(_) => ("tick", None),
            Input::Event(e) => (e.type_name(), Some(counts(self.engine.counters()))),
        };
        if b.ts_ms.is_some() {
            self.latest_ts = b.ts_ms;
        }
        let started = std::time::Instant::now();
        let mut changes = Vec::new();
        self.engine.process(input, &self.store, &mut changes)?;
        r.engine_seconds.push(started.elapsed().as_secs_f64());
        let outcome = match before {
            None => "tick",
            Some((duplicates, late)) => {
                let (d, l) = counts(self.engine.counters());
                if d > duplicates {
                    "duplicate"
                } else if l > late {
                    "late"
                } else {
                    "ok"
                }
            }
        };
        r.outcomes.push((src, type_name, outcome));
        for c in &changes {
            self.pending_out
                .push(change_record(c, self.encoding, b.ts_ms));
        }
        r.changes.extend(changes);
        self.since_commit += 1;
        Ok(())
    }

    /// Commits everything handed on since the last commit: state, offsets and the
    /// outbox in one atomic batch. Returns the number of outbox entries written.
    pub fn commit(&mut self, cache_capacity: usize) -> Result<usize, StoreError> {
        let dirty: Dirty = self.engine.take_dirty();
        let seq = self.seq + 1;
        let offsets = self.offsets();
        let mut out: Vec<Outgoing> = std::mem::take(&mut self.pending_out);
        for c in &dirty.customers {
            out.push(Outgoing {
                kind: OutKind::ChangelogCustomer,
                partition: Some(self.id),
                key: format!("c/{}", c.customer_id).into_bytes(),
                value: encode(&ChangelogRecord::Customer {
                    seq,
                    state: Box::new(c.clone()),
                }),
                headers: Vec::new(),
                source_ts_ms: None,
            });
        }
        out.push(Outgoing {
            kind: OutKind::ChangelogMeta,
            partition: Some(self.id),
            key: b"m".to_vec(),
            value: encode(&ChangelogRecord::Meta {
                seq,
                meta: Box::new(dirty.meta.clone()),
                offsets: offsets.clone(),
            }),
            headers: Vec::new(),
            source_ts_ms: self.latest_ts,
        });
        let n = out.len();
        let extra = out
            .iter()
            .enumerate()
            .map(|(i, o)| (outbox_key(seq, i as u32), Some(encode(o))))
            .collect();
        let progress = encode(&Progress { seq, offsets });
        self.store
            .commit_with(&dirty, &[(PROGRESS, progress)], extra)?;
        self.seq = seq;
        self.since_commit = 0;
        self.engine.evict(cache_capacity);
        Ok(n)
    }

    /// Committed outbox entries, by commit sequence, in order.
    pub fn outbox(&self) -> Result<Vec<OutboxBatch>, StoreError> {
        let mut by_seq: Vec<OutboxBatch> = Vec::new();
        for (k, v) in self.store.kv().scan_prefix(b"o/")? {
            if k.len() != 14 {
                return Err(StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    reason: "outbox key has the wrong length".into(),
                });
            }
            let seq = u64::from_be_bytes(k[2..10].try_into().expect("8 bytes"));
            let o: Outgoing = decode(&v, "o/")?;
            match by_seq.last_mut() {
                Some((s, list)) if *s == seq => list.push((k, o)),
                _ => by_seq.push((seq, vec![(k, o)])),
            }
        }
        Ok(by_seq)
    }

    /// Removes delivered outbox entries and records the changelog's end offset, in
    /// one batch.
    pub fn delivered(&self, keys: Vec<Vec<u8>>, changelog_end: i64) -> Result<(), StoreError> {
        let mut ops: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            keys.into_iter().map(|k| (k, None)).collect();
        ops.push((
            Store::<SledTreeKv>::progress_key(CHANGELOG_END),
            Some(changelog_end.to_be_bytes().to_vec()),
        ));
        self.store.kv().apply(ops)
    }
}

/// The changelog end offset this partition's tree last wrote or restored (0 if none).
pub fn changelog_end(store: &Store<SledTreeKv>) -> Result<i64, StoreError> {
    Ok(match store.load_progress(CHANGELOG_END)? {
        Some(b) if b.len() == 8 => i64::from_be_bytes(b.try_into().expect("8 bytes")),
        Some(_) => {
            return Err(StoreError::Corrupt {
                key: "p/changelog_end".into(),
                reason: "not an 8-byte offset".into(),
            })
        }
        None => 0,
    })
}

/// Whether the tree holds any committed state.
pub fn has_state(store: &Store<SledTreeKv>) -> Result<bool, StoreError> {
    Ok(store.load_progress(PROGRESS)?.is_some())
}

/// Rebuilds a partition's tree from its changelog records (in log order), ending at
/// changelog offset `end`: the last meta record gives the engine meta and offsets;
/// each customer's latest state no newer than that commit is kept (a newer one, from
/// a commit whose meta never arrived, only when nothing older survived compaction).
/// Returns the number of customers restored.
pub fn restore_from_changelog(
    store: &Store<SledTreeKv>,
    records: impl IntoIterator<Item = ChangelogRecord>,
    end: i64,
) -> Result<usize, StoreError> {
    let mut meta: Option<(u64, Box<EngineMeta>, Progress)> = None;
    // customer → (latest state with seq ≤ a meta seen so far, newest state overall)
    let mut customers: BTreeMap<String, (u64, Box<CustomerState>)> = BTreeMap::new();
    let mut newer: BTreeMap<String, (u64, Box<CustomerState>)> = BTreeMap::new();
    for r in records {
        match r {
            ChangelogRecord::Customer { seq, state } => {
                newer.insert(state.customer_id.clone(), (seq, state));
            }
            ChangelogRecord::Meta {
                seq,
                meta: m,
                offsets,
            } => {
                // Every customer record of commits up to `seq` is now confirmed.
                let confirmed: Vec<String> = newer
                    .iter()
                    .filter(|(_, (s, _))| *s <= seq)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in confirmed {
                    let v = newer.remove(&k).expect("listed");
                    customers.insert(k, v);
                }
                meta = Some((seq, m, Progress { seq, offsets }));
            }
        }
    }
    for (k, v) in newer {
        customers.entry(k).or_insert(v);
    }
    let (_, meta, progress) = meta.unwrap_or_default();
    let mut dirty = Dirty {
        meta: *meta,
        ..Dirty::default()
    };
    for (_, (_, state)) in customers {
        if let Some(d) = state.next_deadline {
            dirty.timers_added.push((d, state.customer_id.clone()));
        }
        dirty.customers.push(*state);
    }
    let n = dirty.customers.len();
    let progress = encode(&progress);
    store.commit_with(
        &dirty,
        &[
            (PROGRESS, progress),
            (CHANGELOG_END, end.to_be_bytes().to_vec()),
        ],
        Vec::new(),
    )?;
    Ok(n)
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

/// A dead-letter record: the raw value, with the reason and the source position in
/// headers.
fn dead_record(
    topic: &str,
    partition: i32,
    offset: i64,
    code: &str,
    reason: &str,
    raw: Vec<u8>,
    kept: bool,
) -> Outgoing {
    Outgoing {
        kind: OutKind::DeadLetter,
        partition: None,
        key: format!("{topic}/{partition}/{offset}").into_bytes(),
        value: raw,
        headers: vec![
            ("churnwatch-error-code".into(), code.as_bytes().to_vec()),
            ("churnwatch-error".into(), reason.as_bytes().to_vec()),
            ("churnwatch-source-topic".into(), topic.as_bytes().to_vec()),
            (
                "churnwatch-source-partition".into(),
                partition.to_string().into_bytes(),
            ),
            (
                "churnwatch-source-offset".into(),
                offset.to_string().into_bytes(),
            ),
            (
                "churnwatch-event-kept".into(),
                if kept {
                    b"true".to_vec()
                } else {
                    b"false".to_vec()
                },
            ),
        ],
        source_ts_ms: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::decode_json_line;
    use std::time::{Duration, Instant};

    fn visit(id: &str, customer: &str, t: &str) -> Item {
        let line = format!(
            r#"{{"type":"visit","event_id":"{id}","event_time":"{t}","dealer_id":"D1","customer_id":"{customer}","visit_type":"service"}}"#
        );
        let v = decode_json_line(&line).unwrap();
        Item::Input {
            input: v.input,
            issues: v.issues,
            raw: Vec::new(),
        }
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

    fn push(p: &mut Partition, src: usize, offset: i64, item: Item) {
        p.push(
            src,
            Buffered {
                offset,
                ts_ms: Some(1),
                item,
            },
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
        assert!(r.outcomes.is_empty());
        push(&mut p, 1, 0, visit("e2", "C2", "2024-02-01T10:00:00Z"));
        p.sources[1].high_watermark = 1;
        let r = p.release(now, wait, false).unwrap();
        // e1 (Jan), e2 (Feb); then b is caught up, so e3 (Mar) passes too.
        assert_eq!(r.outcomes.len(), 3);
        assert_eq!(p.engine.counters().events, 3);
        assert_eq!(p.offsets(), vec![("a".into(), 2), ("b".into(), 1)]);
        // After the wait a lagging source no longer blocks.
        push(&mut p, 0, 2, visit("e4", "C1", "2024-04-01T10:00:00Z"));
        p.sources[1].high_watermark = 5;
        assert!(p.release(now, wait, false).unwrap().outcomes.is_empty());
        let later = now + Duration::from_secs(61);
        assert_eq!(p.release(later, wait, false).unwrap().outcomes.len(), 1);
    }

    #[test]
    fn commit_writes_state_offsets_and_outbox_atomically_and_delivery_clears_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = open(dir.path());
        p.sources[1].high_watermark = 0;
        push(&mut p, 0, 0, visit("e1", "C1", "2024-01-01T10:00:00Z"));
        // A day later: stream time passes e1, so C1's state changes.
        push(&mut p, 0, 1, visit("e0", "C2", "2024-01-02T10:00:00Z"));
        push(
            &mut p,
            0,
            2,
            Item::Dead {
                code: "malformed".into(),
                reason: "not JSON".into(),
                raw: b"{".to_vec(),
            },
        );
        p.release(Instant::now(), Duration::ZERO, false).unwrap();
        let n = p.commit(10).unwrap();
        assert!(n >= 2, "a dead letter, a changelog customer and the meta");
        let outbox = p.outbox().unwrap();
        assert_eq!(outbox.len(), 1);
        let kinds: Vec<OutKind> = outbox[0].1.iter().map(|(_, o)| o.kind).collect();
        assert!(kinds.contains(&OutKind::DeadLetter));
        assert!(kinds.contains(&OutKind::ChangelogCustomer));
        assert_eq!(*kinds.last().unwrap(), OutKind::ChangelogMeta);
        let keys = outbox[0].1.iter().map(|(k, _)| k.clone()).collect();
        p.delivered(keys, 42).unwrap();
        assert!(p.outbox().unwrap().is_empty());
        assert_eq!(changelog_end(&p.store).unwrap(), 42);
        // Reopen: offsets and sequence come back from the tree.
        let seq = p.seq;
        drop(p);
        let p = open(dir.path());
        assert_eq!(p.seq, seq);
        assert_eq!(p.offsets(), vec![("a".into(), 3), ("b".into(), 0)]);
        assert_eq!(p.engine.pending_events(), 1, "C2's visit waits in the meta");
        assert!(has_state(&p.store).unwrap());
    }

    #[test]
    fn restore_keeps_each_customers_state_as_of_the_last_complete_commit() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_sled_db(dir.path()).unwrap();
        let store = Store::with_kv(SledTreeKv::open(&db, "partition-3").unwrap()).unwrap();
        let mut c1 = CustomerState::new("C1", "D1");
        c1.next_deadline = Some(Ts(500));
        let mut c1_newer = c1.clone();
        c1_newer.visit_day_count = 9;
        let c2 = CustomerState::new("C2", "D1");
        let meta = EngineMeta {
            watermark: Some(Ts(100)),
            ..EngineMeta::default()
        };
        let records = vec![
            ChangelogRecord::Customer {
                seq: 1,
                state: Box::new(c1.clone()),
            },
            ChangelogRecord::Meta {
                seq: 1,
                meta: Box::new(meta),
                offsets: vec![("a".into(), 7)],
            },
            // Commit 2 never completed (no meta): its C1 is ignored, its C2 (nothing
            // older survives) is kept.
            ChangelogRecord::Customer {
                seq: 2,
                state: Box::new(c1_newer),
            },
            ChangelogRecord::Customer {
                seq: 2,
                state: Box::new(c2),
            },
        ];
        assert_eq!(restore_from_changelog(&store, records, 4).unwrap(), 2);
        use crate::core::engine::CustomerSource;
        assert_eq!(store.load("C1").unwrap().unwrap(), c1);
        assert!(store.load("C2").unwrap().is_some());
        assert_eq!(
            store.load_timers().unwrap(),
            vec![(Ts(500), "C1".to_string())]
        );
        assert_eq!(store.load_meta().unwrap().unwrap().watermark, Some(Ts(100)));
        assert_eq!(changelog_end(&store).unwrap(), 4);
        let p = Partition::open(3, store, Policy::default(), &["a".into()], Format::Json).unwrap();
        assert_eq!(p.offsets(), vec![("a".into(), 7)]);
        assert_eq!(p.seq, 1);
    }
}
