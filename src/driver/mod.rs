//! The driver: the one path every edge takes from a decoded record to committed
//! state. record → validation result → engine → status changes, dead letters and one
//! [`Outcome`] per record → checkpoint (state, progress and whatever the edge adds, in
//! one atomic store batch).
//!
//! File replay and the Kafka service both hold a [`Driver`] per engine and differ only
//! in how they read records and where they write outputs. The driver is the one place
//! that decides a record's outcome and the shape of a dead letter, so both edges name
//! them alike. It may use `crate::core` and `crate::store`; it performs no I/O of its
//! own beyond the store and never reads a clock.

use crate::core::engine::{Arrival, Counters, Dirty, Engine};
use crate::core::event::{Input, InvalidEvent, Validated};
use crate::core::policy::Policy;
use crate::core::status::StatusChange;
use crate::core::time::Ts;
use crate::store::{Batch, Kv, Store, StoreError};

/// Longest raw input kept in a dead letter, in bytes (longer ones are cut, at a UTF-8
/// character boundary when the input is text).
pub const MAX_RAW: usize = 4096;

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

/// One engine over one store: the shared path of every edge.
pub struct Driver<K: Kv> {
    engine: Engine,
    store: Store<K>,
    since_commit: usize,
}

impl<K: Kv> Driver<K> {
    /// Opens the engine from what `store` committed (meta and timers).
    pub fn open(store: Store<K>, policy: Policy) -> Result<Self, StoreError> {
        let meta = store.load_meta()?.unwrap_or_default();
        let timers = store.load_timers()?;
        Ok(Driver {
            engine: Engine::restore(policy, meta, timers),
            store,
            since_commit: 0,
        })
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
        let dead = |outcome, code, field: Option<&str>, reason: String| DeadLetter {
            source: origin.source.to_string(),
            partition: origin.partition,
            position: origin.position,
            outcome,
            code,
            field: field.map(str::to_string),
            reason,
            raw: truncate_raw(raw).to_vec(),
        };
        match record {
            Err(e) => {
                out.dead.push(dead(
                    DeadOutcome::Rejected,
                    e.code(),
                    e.field(),
                    e.to_string(),
                ));
                Ok(Handled {
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
                let kind = match &v.input {
                    Input::Tick(_) => "tick",
                    Input::Event(e) => e.type_name(),
                };
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
                    fields_dropped: v.issues.len(),
                })
            }
        }
    }

    /// Advances stream time to `until` (as a tick would), firing due timers.
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
        let mut batch = Batch::new();
        batch.dirty(&dirty)?;
        with(&dirty, &mut batch)?;
        self.store.write(batch)?;
        self.since_commit = 0;
        self.engine.evict(cache_capacity);
        Ok(())
    }
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
        let tick = r#"{"type":"tick","event_time":"2025-01-01T00:00:00Z"}"#;
        let h = d
            .handle(decode_json_line(tick), origin(4), tick.as_bytes(), &mut out)
            .unwrap();
        assert_eq!(h.outcome, Outcome::Tick);
        // Stream time is now far past January 2024: another old visit is late.
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
        assert!(!out.changes.is_empty(), "C1 got a first status");
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

    #[test]
    fn raw_records_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_RAW);
        let cut = truncate_raw(long.as_bytes());
        assert!(cut.len() <= MAX_RAW && std::str::from_utf8(cut).is_ok());
        let bin = vec![0xffu8; MAX_RAW + 10];
        assert_eq!(truncate_raw(&bin).len(), MAX_RAW);
    }
}
