//! The driver: the one path every edge takes from a decoded record to committed
//! state. record → validation result → engine → status changes, dead letters and one
//! [`Outcome`] per record → checkpoint (state, progress and whatever the edge adds, in
//! one atomic store batch).
//!
//! The Kafka service holds a [`Driver`] (one engine) per partition; file replay holds
//! a [`ShardedDriver`] (the customers split over engines on several threads, see
//! [`Shards`]). Both check records alike and differ only in how they read records and
//! where they write outputs. The driver is the one place
//! that decides a record's outcome and the shape of a dead letter, so both edges name
//! them alike. It may use `crate::core` and `crate::store`; it performs no I/O of its
//! own beyond the store and never reads a clock.

use crate::core::engine::EngineMeta;
use crate::core::engine::{Arrival, Counters, Dirty, Engine};
use crate::core::event::{Input, InvalidEvent, Validated};
use crate::core::policy::Policy;
use crate::core::status::StatusChange;
use crate::core::time::Ts;
use crate::store::{Batch, Kv, Store, StoreError};

mod shards;

pub use shards::{shard_of, Shards};

/// Longest raw input kept in a dead letter, in bytes (longer ones are cut, at a UTF-8
/// character boundary when the input is text).
pub const MAX_RAW: usize = 4096;

/// Longest reason kept in a dead letter, in bytes.
pub const MAX_REASON: usize = 1024;

/// What became of one input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A customer event accepted (applied now or when stream time passes it).
    Ok,
    /// An event whose id was already waiting or applied: a no-op.
    Duplicate,
    /// An event not newer than stream time: applied at once, maybe with a correction.
    Late,
    /// A record that failed decoding or validation: dead-lettered.
    Invalid,
    /// A tick record.
    Tick,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::Duplicate,
        Outcome::Late,
        Outcome::Invalid,
        Outcome::Tick,
    ];

    /// The outcome's name (metric label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Duplicate => "duplicate",
            Outcome::Late => "late",
            Outcome::Invalid => "invalid",
            Outcome::Tick => "tick",
        }
    }
}

/// What a dead letter stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadOutcome {
    /// The whole record was rejected.
    Rejected,
    /// One field was dropped; the rest of the event was kept.
    FieldDropped,
}

impl DeadOutcome {
    /// The name used in both edges' dead letters.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadOutcome::Rejected => "rejected",
            DeadOutcome::FieldDropped => "field_dropped",
        }
    }

    /// Whether the event was kept.
    pub fn kept(self) -> bool {
        self == DeadOutcome::FieldDropped
    }
}

/// The code of a dropped-field dead letter.
pub const INVALID_FIELD: &str = "invalid_field";

/// Where a record came from: a file and record number, or a topic partition and
/// offset.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// File or topic name.
    pub source: &'a str,
    /// Topic partition (none for files).
    pub partition: Option<i32>,
    /// 1-based record number in a file, or the Kafka offset.
    pub position: i64,
}

/// A record (or one field of it) that could not be used, in the one shape both edges
/// write: the replay's dead-letter file and the Kafka dead-letter topic carry the same
/// codes, outcomes and reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    /// File or topic name.
    pub source: String,
    /// Topic partition (none for files).
    pub partition: Option<i32>,
    /// Record number or offset.
    pub position: i64,
    /// Rejected, or a field dropped.
    pub outcome: DeadOutcome,
    /// Short code: [`InvalidEvent::code`], or [`INVALID_FIELD`].
    pub code: &'static str,
    /// The field at fault, if one is.
    pub field: Option<String>,
    /// What was wrong.
    pub reason: String,
    /// The raw record, at most [`MAX_RAW`] bytes.
    pub raw: Vec<u8>,
}

/// The outputs of handled records, drained by the edge.
#[derive(Debug, Default)]
pub struct Outputs {
    /// Status changes, in emission order.
    pub changes: Vec<StatusChange>,
    /// Dead letters, in record order.
    pub dead: Vec<DeadLetter>,
}

/// What [`Driver::handle`] reports of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// What became of it.
    pub outcome: Outcome,
    /// Its type: an event type name, `tick`, or `unknown` for a rejected record.
    pub kind: &'static str,
    /// Fields dropped from it (each also a dead letter).
    pub fields_dropped: usize,
}

/// Cuts a raw record to [`MAX_RAW`] bytes, at a character boundary if it is text.
pub fn truncate_raw(raw: &[u8]) -> &[u8] {
    if raw.len() <= MAX_RAW {
        return raw;
    }
    let mut end = MAX_RAW;
    if std::str::from_utf8(raw).is_ok() {
        while !is_char_boundary(raw, end) {
            end -= 1;
        }
    }
    &raw[..end]
}

fn is_char_boundary(b: &[u8], i: usize) -> bool {
    // A UTF-8 continuation byte is 0b10xx_xxxx.
    i >= b.len() || (b[i] as i8) >= -0x40
}

/// What one record may do to time: records outside these bounds are rejected
/// (`implausible_time`) before they reach the engine, so no single record can move
/// stream time for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBounds {
    /// Records before this instant are rejected (far past, pre-epoch).
    pub earliest: Ts,
    /// Records more than this many milliseconds ahead of the newest record time seen
    /// are rejected (none: no such check).
    pub max_jump_ms: Option<i64>,
    /// Records after this instant are rejected: the edge's notion of "now" plus the
    /// allowed clock skew (the service: the wall clock; replay: the instant the replay
    /// started, kept in its progress so a resumed run decides alike). None: no bound.
    pub latest: Option<Ts>,
}

impl TimeBounds {
    /// The bounds a policy sets (no `latest`: that is the edge's to give).
    pub fn from_policy(policy: &Policy) -> TimeBounds {
        TimeBounds {
            // `Policy::check` refuses a policy whose date does not parse.
            earliest: policy.earliest_event_time().unwrap_or(Ts(i64::MIN)),
            max_jump_ms: match policy.stream.max_event_jump_days {
                0 => None,
                d => Some(d as i64 * 86_400_000),
            },
            latest: None,
        }
    }

    /// Why `t` is implausible given the newest record time seen, if it is.
    pub fn check(&self, t: Ts, newest: Option<Ts>) -> Option<String> {
        if t < self.earliest {
            return Some(format!(
                "{} is before {}, the earliest plausible record time (stream.earliest_event_date); fix the source system's date",
                t.to_rfc3339(),
                self.earliest.to_rfc3339()
            ));
        }
        if let Some(latest) = self.latest {
            if t > latest {
                return Some(format!(
                    "{} is ahead of the latest plausible time {} (now plus the allowed clock skew); check the source system's clock",
                    t.to_rfc3339(),
                    latest.to_rfc3339()
                ));
            }
        }
        if let (Some(jump), Some(newest)) = (self.max_jump_ms, newest) {
            if t.0.saturating_sub(newest.0) > jump {
                return Some(format!(
                    "{} is more than {} days ahead of the newest record so far ({}); a stream does not jump that far (stream.max_event_jump_days)",
                    t.to_rfc3339(),
                    jump / 86_400_000,
                    newest.to_rfc3339()
                ));
            }
        }
        None
    }
}

/// Cuts a text to at most `max` bytes at a character boundary, marking the cut.
pub fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max.saturating_sub(3);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// One engine over one store: the shared path of every edge.
pub struct Driver<K: Kv> {
    engine: Engine,
    store: Store<K>,
    since_commit: usize,
    bounds: TimeBounds,
}

impl<K: Kv> Driver<K> {
    /// Opens the engine from what `store` committed (meta and timers).
    pub fn open(store: Store<K>, policy: Policy) -> Result<Self, StoreError> {
        let meta = store.load_meta()?.unwrap_or_default();
        let timers = store.load_timers()?;
        Ok(Driver {
            bounds: TimeBounds::from_policy(&policy),
            engine: Engine::restore(policy, meta, timers),
            store,
            since_commit: 0,
        })
    }

    /// Sets the latest plausible record time (the edge's "now" plus its clock skew).
    pub fn set_latest(&mut self, latest: Option<Ts>) {
        self.bounds.latest = latest;
    }

    /// Replaces the time bounds (the service drops the jump check: its wall-clock
    /// bound is exact, and a backfill followed by live ticks jumps legitimately).
    pub fn set_bounds(&mut self, bounds: TimeBounds) {
        self.bounds = bounds;
    }

    /// The time bounds in force.
    pub fn bounds(&self) -> TimeBounds {
        self.bounds
    }

    /// The engine (read-only: counters, stream time, cache).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The store.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Totals so far.
    pub fn counters(&self) -> &Counters {
        self.engine.counters()
    }

    /// The customers changed since the last call, each once (see
    /// [`Engine::take_changed`]; only for a driver that never commits).
    pub fn take_changed(&mut self, each: impl FnMut(&crate::core::state::CustomerState)) {
        self.engine.take_changed(each);
    }

    /// Records handled since the last commit.
    pub fn since_commit(&self) -> usize {
        self.since_commit
    }

    /// Handles one record: a validated input goes to the engine (its dropped fields to
    /// dead letters), an invalid one to a dead letter. `raw` is the record as read,
    /// quoted (cut to [`MAX_RAW`]) in dead letters.
    pub fn handle(
        &mut self,
        record: Result<Validated, InvalidEvent>,
        origin: Origin<'_>,
        raw: &[u8],
        out: &mut Outputs,
    ) -> Result<Handled, StoreError> {
        self.since_commit += 1;
        let v = match admit(
            self.bounds,
            self.engine.max_seen(),
            record,
            origin,
            raw,
            out,
        ) {
            Ok(v) => v,
            Err(handled) => return Ok(handled),
        };
        let kind = input_kind(&v.input);
        let fields_dropped = v.issues.len();
        let arrival = self
            .engine
            .process(v.input, &self.store, &mut out.changes)?;
        let outcome = match arrival {
            Arrival::Tick => Outcome::Tick,
            Arrival::Accepted => Outcome::Ok,
            Arrival::Late => Outcome::Late,
            Arrival::Duplicate => Outcome::Duplicate,
        };
        Ok(Handled {
            outcome,
            kind,
            fields_dropped,
        })
    }

    /// Advances stream time to `until` (as a tick would), firing due timers. The
    /// caller chose `until` on purpose (`replay --until`), so no time bound applies.
    pub fn advance_to(&mut self, until: Ts, out: &mut Outputs) -> Result<(), StoreError> {
        self.engine
            .process(Input::Tick(until), &self.store, &mut out.changes)?;
        self.since_commit += 1;
        Ok(())
    }

    /// End of input: releases every buffered event and due timer (stream time jumps to
    /// the largest time seen).
    pub fn finish(&mut self, out: &mut Outputs) -> Result<(), StoreError> {
        self.engine.flush(&self.store, &mut out.changes)?;
        self.since_commit += 1;
        Ok(())
    }

    /// Commits everything handled since the last commit in one atomic batch: the
    /// engine's dirty customers, timer-index changes and meta, plus what `with` adds
    /// (the edge's progress record; the Kafka edge also its outbox, which needs the
    /// dirty customers for the changelog). Then keeps at most `cache_capacity`
    /// customers in memory.
    pub fn commit(
        &mut self,
        cache_capacity: usize,
        with: impl FnOnce(&Dirty, &mut Batch) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let dirty = self.engine.take_dirty();
        self.since_commit = 0;
        write_commit(&self.store, &dirty, with)?;
        self.engine.evict(cache_capacity);
        Ok(())
    }

    /// The first half of a commit, for an edge that writes it elsewhere (file replay
    /// writes on a thread of its own while the engine goes on): everything changed
    /// since the last commit as a store batch, customers encoded where they lie (no
    /// copy of their state), the cache marked clean. The caller adds its progress,
    /// writes the batch with [`Store::write`] and may call [`Driver::evict`] only once
    /// that write is done: an evicted customer is read back from the store.
    pub fn detach_commit(&mut self) -> Result<Batch, StoreError> {
        let mut batch = Batch::new();
        let dirty = self
            .engine
            .take_dirty_with(|c| batch.customer(c).map(drop))?;
        batch.dirty(&dirty)?;
        self.since_commit = 0;
        Ok(batch)
    }

    /// Keeps at most `cache_capacity` customers in memory; call it only when every
    /// detached commit is written (see [`Driver::detach_commit`]).
    pub fn evict(&mut self, cache_capacity: usize) {
        self.engine.evict(cache_capacity);
    }
}

/// Several engines over one store, each holding a shard of the customers, driven as
/// one: the path of file replay. Records are checked and taken one by one
/// ([`ShardedDriver::handle`]) and applied in batches ([`ShardedDriver::run`]), the
/// shards in parallel; the status changes come out as one engine's would, for any
/// number of shards (see [`Shards`]).
pub struct ShardedDriver<K: Kv> {
    shards: Shards,
    store: Store<K>,
    bounds: TimeBounds,
    /// Timer keys of a store written before its timers were derived from its
    /// customers, deleted by the next commit.
    legacy_timers: Vec<(Ts, String)>,
}

impl<K: Kv + Clone + 'static> ShardedDriver<K> {
    /// Opens `n` shards from what `store` committed (meta and timers), whatever number
    /// of shards (or the one engine) committed it.
    ///
    /// The store keeps no timer keys: a customer's timer is its stored
    /// `next_deadline`, so on opening the timers are read off the customers (one scan
    /// of the store), and a commit writes a third as many keys (a changed deadline
    /// used to cost the old timer's deletion and the new one's insertion beside the
    /// customer). A store written with timer keys is read as before and loses them at
    /// its next commit.
    pub fn open(store: Store<K>, policy: Policy, n: usize) -> Result<Self, StoreError> {
        let meta = store.load_meta()?.unwrap_or_default();
        let (timers, legacy_timers) = if store.timers_derived()? {
            (store.derive_timers()?, Vec::new())
        } else {
            let t = store.load_timers()?;
            (t.clone(), t)
        };
        Ok(ShardedDriver {
            bounds: TimeBounds::from_policy(&policy),
            shards: Shards::restore(policy, meta, timers, n),
            store,
            legacy_timers,
        })
    }

    /// Sets the latest plausible record time (the edge's "now" plus its clock skew).
    pub fn set_latest(&mut self, latest: Option<Ts>) {
        self.bounds.latest = latest;
    }

    /// The shards (read-only: counters, cache).
    pub fn shards(&self) -> &Shards {
        &self.shards
    }

    /// The store.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Checks one record and takes it into the batch (an invalid one, and each field
    /// dropped from a kept one, becomes a dead letter at once). The outcome is
    /// [`Outcome::Invalid`], [`Outcome::Tick`] or, for any event, [`Outcome::Ok`]:
    /// whether an event proves late or a duplicate is known only once the batch runs,
    /// and is counted in the counters.
    pub fn handle(
        &mut self,
        record: Result<Validated, InvalidEvent>,
        origin: Origin<'_>,
        raw: &[u8],
        out: &mut Outputs,
    ) -> Handled {
        let v = match admit(
            self.bounds,
            self.shards.max_seen(),
            record,
            origin,
            raw,
            out,
        ) {
            Ok(v) => v,
            Err(handled) => return handled,
        };
        let kind = input_kind(&v.input);
        let outcome = match v.input {
            Input::Tick(_) => Outcome::Tick,
            Input::Event(_) => Outcome::Ok,
        };
        self.shards.push(v.input);
        Handled {
            outcome,
            kind,
            fields_dropped: v.issues.len(),
        }
    }

    /// Applies the records taken since the last run; their status changes go to
    /// `out` in one engine's order.
    pub fn run(&mut self, out: &mut Outputs) -> Result<(), StoreError> {
        self.shards.run(&self.store, &mut out.changes)
    }

    /// Takes stream time to `until` (as a tick would) at the next run. The caller
    /// chose `until` on purpose (`replay --until`), so no time bound applies.
    pub fn advance_to(&mut self, until: Ts) {
        self.shards.push(Input::Tick(until));
    }

    /// End of input: at the next run, every buffered event and due timer is released
    /// (stream time jumps to the largest time seen).
    pub fn finish(&mut self) {
        self.shards.flush();
    }

    /// The meta as it stands (stream time, buffered events, totals).
    pub fn meta(&self) -> EngineMeta {
        self.shards.meta()
    }

    /// The first half of a commit, as [`Driver::detach_commit`]: everything changed
    /// since the last one, in all shards, as a store batch. Run the batch first.
    pub fn detach_commit(&mut self) -> Result<Batch, StoreError> {
        let mut batch = Batch::new();
        let dirty = self
            .shards
            .take_dirty_with(|c| batch.customer(c).map(drop))?;
        batch.dirty_timers_derived(&dirty, &std::mem::take(&mut self.legacy_timers))?;
        Ok(batch)
    }

    /// Keeps about `cache_capacity` customers in memory in all; call it only when
    /// every detached commit is written.
    pub fn evict(&mut self, cache_capacity: usize) {
        self.shards.evict(cache_capacity);
    }
}

/// The type name of an input: an event type, or `tick`.
fn input_kind(input: &Input) -> &'static str {
    match input {
        Input::Tick(_) => "tick",
        Input::Event(e) => e.type_name(),
    }
}

/// The checks every record passes before an engine sees it: decoding and validation
/// (done by the caller), then the time bounds against the newest record time seen.
/// A record that fails becomes a dead letter and its [`Handled`] comes back as the
/// error; each field dropped from a kept record is a dead letter too.
fn admit(
    bounds: TimeBounds,
    newest: Option<Ts>,
    record: Result<Validated, InvalidEvent>,
    origin: Origin<'_>,
    raw: &[u8],
    out: &mut Outputs,
) -> Result<Validated, Handled> {
    let dead = |outcome, code, field: Option<&str>, reason: String| DeadLetter {
        source: origin.source.to_string(),
        partition: origin.partition,
        position: origin.position,
        outcome,
        code,
        field: field.map(|f| bounded(f.to_string(), 64)),
        reason: bounded(reason, MAX_REASON),
        raw: truncate_raw(raw).to_vec(),
    };
    let record = record.and_then(|v| match bounds.check(v.input.time(), newest) {
        Some(why) => Err(InvalidEvent::ImplausibleTime(why)),
        None => Ok(v),
    });
    match record {
        Err(e) => {
            out.dead.push(dead(
                DeadOutcome::Rejected,
                e.code(),
                e.field(),
                e.to_string(),
            ));
            Err(Handled {
                outcome: Outcome::Invalid,
                kind: "unknown",
                fields_dropped: 0,
            })
        }
        Ok(v) => {
            for issue in &v.issues {
                out.dead.push(dead(
                    DeadOutcome::FieldDropped,
                    INVALID_FIELD,
                    Some(&issue.field),
                    issue.problem.clone(),
                ));
            }
            Ok(v)
        }
    }
}

/// Writes one commit into `store` in one atomic batch: the engine's changes in `dirty`
/// plus what `with` adds (the edge's progress record, outbox entries).
pub fn write_commit<K: Kv>(
    store: &Store<K>,
    dirty: &Dirty,
    with: impl FnOnce(&Dirty, &mut Batch) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut batch = Batch::new();
    batch.dirty(dirty)?;
    with(dirty, &mut batch)?;
    store.write(batch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::decode_json_line;
    use crate::store::MemStore;

    fn origin(position: i64) -> Origin<'static> {
        Origin {
            source: "in.jsonl",
            partition: None,
            position,
        }
    }

    const VISIT: &str = r#"{"type":"visit","event_id":"e1","event_time":"2024-01-01T10:00:00Z","dealer_id":"D1","customer_id":"C1","visit_type":"service"}"#;

    #[test]
    fn every_record_gets_one_outcome_and_dead_letters_one_shape() {
        let mut d = Driver::open(MemStore::in_memory(), Policy::default()).unwrap();
        let mut out = Outputs::default();
        let h = d
            .handle(
                decode_json_line(VISIT),
                origin(1),
                VISIT.as_bytes(),
                &mut out,
            )
            .unwrap();
        assert_eq!((h.outcome, h.kind), (Outcome::Ok, "visit"));
        let h = d
            .handle(
                decode_json_line(VISIT),
                origin(2),
                VISIT.as_bytes(),
                &mut out,
            )
            .unwrap();
        assert_eq!(h.outcome, Outcome::Duplicate);
        let h = d
            .handle(decode_json_line("{"), origin(3), b"{", &mut out)
            .unwrap();
        assert_eq!((h.outcome, h.kind), (Outcome::Invalid, "unknown"));
        let tick = r#"{"type":"tick","event_time":"2024-03-01T00:00:00Z"}"#;
        let h = d
            .handle(decode_json_line(tick), origin(4), tick.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(h.outcome, Outcome::Tick);
        // Stream time is now past January 2024: another old visit is late.
        let late = VISIT.replace("e1", "e2");
        let h = d
            .handle(
                decode_json_line(&late),
                origin(5),
                late.as_bytes(),
                &mut out,
            )
            .unwrap();
        assert_eq!(h.outcome, Outcome::Late);
        assert_eq!(out.dead.len(), 1);
        let dl = &out.dead[0];
        assert_eq!(
            (dl.outcome, dl.code, dl.position, dl.raw.as_slice()),
            (DeadOutcome::Rejected, "malformed", 3, b"{".as_slice())
        );
        assert_eq!(d.since_commit(), 5);
        assert_eq!((d.counters().events, d.counters().ticks), (3, 1));
    }

    #[test]
    fn a_dropped_field_is_a_dead_letter_and_the_event_is_kept() {
        let mut d = Driver::open(MemStore::in_memory(), Policy::default()).unwrap();
        let mut out = Outputs::default();
        let line = r#"{"type":"repair_order","event_id":"e1","event_time":"2024-01-10T09:00:00Z","dealer_id":"D1","customer_id":"C1","vin":"LSVAA4182E21234O6","ro_number":"RO1","ro_type":"maintenance","mileage_km":30500,"labor_amount":200.0,"parts_amount":380.5,"total_amount":580.5}"#;
        let v = decode_json_line(line).unwrap();
        assert!(!v.issues.is_empty(), "a bad VIN is dropped, not fatal");
        let h = d
            .handle(Ok(v), origin(1), line.as_bytes(), &mut out)
            .unwrap();
        assert_eq!((h.outcome, h.fields_dropped), (Outcome::Ok, 1));
        let dl = &out.dead[0];
        assert_eq!(
            (dl.outcome, dl.code, dl.field.as_deref()),
            (DeadOutcome::FieldDropped, INVALID_FIELD, Some("vin"))
        );
        assert!(dl.outcome.kept());
    }

    #[test]
    fn commit_persists_state_and_the_edges_progress_together() {
        let store = MemStore::in_memory();
        let mut d = Driver::open(store.clone(), Policy::default()).unwrap();
        let mut out = Outputs::default();
        d.handle(decode_json_line(VISIT), origin(1), b"", &mut out)
            .unwrap();
        d.finish(&mut out).unwrap();
        d.commit(10, |dirty, b| {
            assert_eq!(dirty.customers.len(), 1);
            b.progress("test", &7u64)?;
            Ok(())
        })
        .unwrap();
        assert_eq!(d.since_commit(), 0);
        assert_eq!(store.load_progress::<u64>("test").unwrap(), Some(7));
        let again = Driver::open(store, Policy::default()).unwrap();
        assert_eq!(again.counters().events, 1);
    }

    /// Visits of six customers in 2022, then monthly ticks through 2024 (their
    /// timers move them through the warning levels), as JSON lines.
    fn history() -> Vec<String> {
        let mut lines = Vec::new();
        for m in 0..12 {
            lines.push(format!(
                r#"{{"type":"visit","event_id":"e{m}","event_time":"2022-{:02}-15T10:00:00Z","dealer_id":"D1","customer_id":"C{}","visit_type":"service"}}"#,
                m + 1,
                m % 6
            ));
        }
        for m in 0..24 {
            lines.push(format!(
                r#"{{"type":"tick","event_time":"{}-{:02}-01T00:00:00Z"}}"#,
                2023 + m / 12,
                m % 12 + 1
            ));
        }
        lines
    }

    #[test]
    fn a_store_with_timer_keys_is_resumed_and_then_derives_its_timers() {
        let lines = history();
        let mut expected = Outputs::default();
        let mut one = Driver::open(MemStore::in_memory(), Policy::default()).unwrap();
        for (i, l) in lines.iter().enumerate() {
            one.handle(decode_json_line(l), origin(i as i64), b"", &mut expected)
                .unwrap();
        }
        one.finish(&mut expected).unwrap();

        // The first third through `Driver`, which keeps timer keys.
        let store = MemStore::in_memory();
        let mut out = Outputs::default();
        let mut d = Driver::open(store.clone(), Policy::default()).unwrap();
        for (i, l) in lines[..12].iter().enumerate() {
            d.handle(decode_json_line(l), origin(i as i64), b"", &mut out)
                .unwrap();
        }
        d.commit(10, |_, _| Ok(())).unwrap();
        let keys = store.load_timers().unwrap();
        assert!(!keys.is_empty());
        assert!(!store.timers_derived().unwrap());

        // The second third sharded: the timer keys are read, then dropped.
        let mut s = ShardedDriver::open(store.clone(), Policy::default(), 2).unwrap();
        assert_eq!(s.shards().timers_pending(), keys.len());
        for (i, l) in lines[12..24].iter().enumerate() {
            s.handle(decode_json_line(l), origin(12 + i as i64), b"", &mut out);
        }
        s.run(&mut out).unwrap();
        let pending = s.shards().timers_pending();
        store.write(s.detach_commit().unwrap()).unwrap();
        assert!(store.load_timers().unwrap().is_empty());
        assert!(store.timers_derived().unwrap());
        assert_eq!(store.derive_timers().unwrap().len(), pending);

        // The last third from the derived timers, with three shards.
        let mut s = ShardedDriver::open(store.clone(), Policy::default(), 3).unwrap();
        assert_eq!(s.shards().timers_pending(), pending);
        for (i, l) in lines[24..].iter().enumerate() {
            s.handle(decode_json_line(l), origin(24 + i as i64), b"", &mut out);
        }
        s.finish();
        s.run(&mut out).unwrap();
        assert!(!expected.changes.is_empty());
        assert_eq!(out.changes, expected.changes);
    }

    #[test]
    fn no_single_record_can_move_time_far_ahead_or_back() {
        let mut d = Driver::open(MemStore::in_memory(), Policy::default()).unwrap();
        let mut out = Outputs::default();
        let at = |id: &str, t: &str| VISIT.replace("e1", id).replace("2024-01-01T10:00:00Z", t);
        let mut feed = |d: &mut Driver<_>, line: String| {
            d.handle(
                decode_json_line(&line),
                origin(1),
                line.as_bytes(),
                &mut out,
            )
            .unwrap()
            .outcome
        };
        assert_eq!(feed(&mut d, at("a", "2024-01-01T10:00:00Z")), Outcome::Ok);
        for t in [
            "9999-12-31T00:00:00Z",
            "1969-12-31T00:00:00Z",
            "1985-06-01T00:00:00Z",
        ] {
            assert_eq!(feed(&mut d, at("b", t)), Outcome::Invalid, "{t}");
        }
        // 80 days ahead is a plausible gap; 100 days from there is not.
        assert_eq!(feed(&mut d, at("c", "2024-03-21T10:00:00Z")), Outcome::Ok);
        assert_eq!(
            feed(&mut d, at("d", "2024-06-29T10:00:00Z")),
            Outcome::Invalid
        );
        // The edge's clock bound: nothing after "now" plus skew.
        d.set_latest(Some(Ts::parse_rfc3339("2024-04-01T00:00:00Z").unwrap()));
        assert_eq!(
            feed(&mut d, at("e", "2024-04-02T00:00:00Z")),
            Outcome::Invalid
        );
        let tick = r#"{"type":"tick","event_time":"2099-01-01T00:00:00Z"}"#.to_string();
        assert_eq!(
            feed(&mut d, tick),
            Outcome::Invalid,
            "ticks are bounded too"
        );
        assert!(out.dead.iter().all(|x| x.code == "implausible_time"));
        assert_eq!(out.dead.len(), 6);
        assert_eq!(
            d.engine().max_seen(),
            Some(Ts::parse_rfc3339("2024-03-21T10:00:00Z").unwrap())
        );
    }

    #[test]
    fn every_part_of_a_dead_letter_is_bounded() {
        let mut d = Driver::open(MemStore::in_memory(), Policy::default()).unwrap();
        let mut out = Outputs::default();
        let huge = "x".repeat(1 << 20);
        let e = InvalidEvent::Malformed(huge.clone());
        d.handle(Err(e), origin(1), huge.as_bytes(), &mut out)
            .unwrap();
        let dl = &out.dead[0];
        assert!(dl.reason.len() <= MAX_REASON && dl.raw.len() <= MAX_RAW);
    }

    #[test]
    fn raw_records_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_RAW);
        let cut = truncate_raw(long.as_bytes());
        assert!(cut.len() <= MAX_RAW && std::str::from_utf8(cut).is_ok());
        let bin = vec![0xffu8; MAX_RAW + 10];
        assert_eq!(truncate_raw(&bin).len(), MAX_RAW);
    }
}
