//! The changelog of a partition's state: the records another instance reads to take
//! the partition over, and the restore that rebuilds a partition's store from them.
//!
//! Each commit sends every dirty customer (tagged with the commit's sequence number)
//! and then, once those are acknowledged, a meta record with the engine meta and the
//! input offsets. This module owns the record type, its encoding (the store's codec)
//! and the restore; reading the topic is the consumer's business.

use crate::core::engine::{Dirty, EngineMeta};
use crate::core::state::CustomerState;
use crate::store::{codec, Batch, SledTreeKv, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The progress record's source name in a partition's tree.
pub const PROGRESS: &str = "kafka";
/// The source name under which the changelog end offset is kept.
pub const CHANGELOG_END: &str = "changelog_end";

/// The progress record kept in a partition's tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Commit sequence number of the last commit.
    pub seq: u64,
    /// Next offset to read per input topic.
    pub offsets: Vec<(String, i64)>,
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

/// [`ChangelogRecord`] borrowing what it carries: the same variants in the same
/// order with the same fields, so it encodes to the same bytes without a copy.
#[derive(Serialize)]
enum ChangelogRecordRef<'a> {
    Customer {
        seq: u64,
        state: &'a CustomerState,
    },
    Meta {
        seq: u64,
        meta: &'a EngineMeta,
        offsets: &'a [(String, i64)],
    },
}

impl ChangelogRecord {
    /// The bytes of a [`ChangelogRecord::Customer`] record of `state`, without a copy
    /// of the state.
    pub fn encode_customer(seq: u64, state: &CustomerState) -> Vec<u8> {
        codec::encode(
            &ChangelogRecordRef::Customer { seq, state },
            b"changelog record",
        )
        .expect("in-memory values always serialise")
    }

    /// The bytes of a [`ChangelogRecord::Meta`] record, without a copy of the meta.
    pub fn encode_meta(seq: u64, meta: &EngineMeta, offsets: &[(String, i64)]) -> Vec<u8> {
        codec::encode(
            &ChangelogRecordRef::Meta { seq, meta, offsets },
            b"changelog record",
        )
        .expect("in-memory values always serialise")
    }

    /// The record's bytes on the changelog topic.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self, b"changelog record").expect("in-memory values always serialise")
    }

    /// Decodes a changelog record value.
    pub fn decode(bytes: &[u8]) -> Result<ChangelogRecord, StoreError> {
        codec::decode(bytes, b"changelog record")
    }
}

/// The changelog end offset this partition's tree last wrote or restored (0 if none).
pub fn changelog_end(store: &Store<SledTreeKv>) -> Result<i64, StoreError> {
    Ok(store.load_progress::<i64>(CHANGELOG_END)?.unwrap_or(0))
}

/// Whether the tree holds any committed state.
pub fn has_state(store: &Store<SledTreeKv>) -> Result<bool, StoreError> {
    store.has_progress(PROGRESS)
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
) -> Result<usize, FoldError> {
    let mut fold = ChangelogFold::default();
    for (offset, r) in (0i64..).zip(records) {
        let key = match &r {
            ChangelogRecord::Customer { state, .. } => format!("c/{}", state.customer_id),
            ChangelogRecord::Meta { .. } => "m".to_string(),
        };
        fold.push(Some(key.as_bytes()), r.encode(), offset)?;
    }
    fold.write(store, end)
}

/// What a restore from the changelog can fail on.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    /// A changelog record does not decode.
    #[error("the changelog record at offset {offset} does not decode: {source}")]
    Record {
        /// Its offset in the changelog partition.
        offset: i64,
        /// Why.
        source: StoreError,
    },
    /// The partition's tree could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The head of an encoded [`ChangelogRecord`]: the variant and, for a customer, its
/// commit sequence number, which comes first; the rest (the state, the meta) is left
/// undecoded.
#[derive(Deserialize)]
enum Head {
    Customer { seq: u64 },
    Meta,
}

impl Head {
    fn peek(bytes: &[u8]) -> Result<Head, StoreError> {
        use bincode::Options;
        bincode::DefaultOptions::new()
            .allow_trailing_bytes()
            .deserialize(bytes)
            .map_err(|e| StoreError::corrupt(b"changelog record", e))
    }
}

/// A customer record kept by a fold, still encoded: (commit, offset, value).
type Kept = (u64, i64, Vec<u8>);

/// One partition's changelog folded record by record as it is read, so that a restore
/// holds one record per customer rather than the whole log (an uncompacted changelog
/// holds a customer once per commit that changed it). Only each record's commit
/// number is decoded as it comes; the states kept are decoded once, by
/// [`ChangelogFold::write`], which puts the result into the partition's tree. See
/// [`restore_from_changelog`] for what is kept.
#[derive(Default)]
pub struct ChangelogFold {
    meta: Option<(Box<EngineMeta>, Progress)>,
    /// Latest record confirmed by a meta record seen so far, by record key.
    customers: HashMap<Vec<u8>, Kept>,
    /// The newest record whose commit is not confirmed yet, by record key.
    newer: HashMap<Vec<u8>, Kept>,
    records: u64,
}

impl ChangelogFold {
    /// Adds the next record of the partition's changelog, in log order: its key (the
    /// customer's `c/<customer_id>`; a record without one is keyed by the customer
    /// it names), its value and its offset.
    pub fn push(
        &mut self,
        key: Option<&[u8]>,
        value: Vec<u8>,
        offset: i64,
    ) -> Result<(), FoldError> {
        self.records += 1;
        let bad = |source| FoldError::Record { offset, source };
        match Head::peek(&value).map_err(bad)? {
            Head::Customer { seq } => {
                let key = match key {
                    Some(k) => k.to_vec(),
                    None => match ChangelogRecord::decode(&value).map_err(bad)? {
                        ChangelogRecord::Customer { state, .. } => {
                            format!("c/{}", state.customer_id).into_bytes()
                        }
                        ChangelogRecord::Meta { .. } => unreachable!("the head said customer"),
                    },
                };
                self.newer.insert(key, (seq, offset, value));
            }
            Head::Meta => {
                let ChangelogRecord::Meta { seq, meta, offsets } =
                    ChangelogRecord::decode(&value).map_err(bad)?
                else {
                    return Err(bad(StoreError::corrupt(
                        b"changelog record",
                        "a meta head with a customer body",
                    )));
                };
                // Every customer record of commits up to `seq` is now confirmed.
                let confirmed: Vec<Vec<u8>> = self
                    .newer
                    .iter()
                    .filter(|(_, (s, _, _))| *s <= seq)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in confirmed {
                    let v = self.newer.remove(&k).expect("listed");
                    self.customers.insert(k, v);
                }
                self.meta = Some((meta, Progress { seq, offsets }));
            }
        }
        Ok(())
    }

    /// The records pushed so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Writes the folded state into `store` (which the caller has cleared) in one
    /// batch, with changelog offset `end` as the changelog's end. Returns the number
    /// of customers restored.
    pub fn write(self, store: &Store<SledTreeKv>, end: i64) -> Result<usize, FoldError> {
        let mut kept = self.customers;
        for (k, v) in self.newer {
            kept.entry(k).or_insert(v);
        }
        let mut states = Vec::with_capacity(kept.len());
        for (_, (_, offset, value)) in kept {
            match ChangelogRecord::decode(&value)
                .map_err(|source| FoldError::Record { offset, source })?
            {
                ChangelogRecord::Customer { state, .. } => states.push(*state),
                ChangelogRecord::Meta { .. } => unreachable!("only customer records are kept"),
            }
        }
        // In customer order, as the engine's own commits write them.
        states.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
        let (meta, progress) = self.meta.unwrap_or_default();
        let mut dirty = Dirty {
            meta: *meta,
            ..Dirty::default()
        };
        for state in states {
            if let Some(d) = state.next_deadline {
                dirty.timers_added.push((d, state.customer_id.clone()));
            }
            dirty.customers.push(state);
        }
        let n = dirty.customers.len();
        let mut batch = Batch::new();
        batch
            .dirty(&dirty)?
            .progress(PROGRESS, &progress)?
            .progress(CHANGELOG_END, &end)?;
        store.write(batch)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::CustomerSource;
    use crate::core::time::Ts;

    #[test]
    fn the_head_of_an_encoded_record_is_its_kind_and_commit() {
        let c = ChangelogRecord::Customer {
            seq: 300,
            state: Box::new(CustomerState::new("C1", "D1")),
        };
        assert!(matches!(
            Head::peek(&c.encode()).unwrap(),
            Head::Customer { seq: 300 }
        ));
        let m = ChangelogRecord::Meta {
            seq: 7,
            meta: Box::default(),
            offsets: vec![("a".into(), 1)],
        };
        assert!(matches!(Head::peek(&m.encode()).unwrap(), Head::Meta));
        let mut fold = ChangelogFold::default();
        let e = fold.push(Some(b"c/C1"), vec![9, 9], 41).unwrap_err();
        assert!(matches!(e, FoldError::Record { offset: 41, .. }), "{e}");
        // A customer record whose state is cut short is found when it is kept.
        let mut bytes = c.encode();
        bytes.truncate(bytes.len() - 2);
        fold.push(Some(b"c/C1"), bytes, 42).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::open_sled_db(dir.path()).unwrap();
        let store = Store::with_kv(SledTreeKv::open(&db, "partition-0").unwrap()).unwrap();
        let e = fold.write(&store, 43).unwrap_err();
        assert!(matches!(e, FoldError::Record { offset: 42, .. }), "{e}");
    }

    #[test]
    fn the_borrowing_encoders_write_the_records_bytes() {
        let mut c = CustomerState::new("C1", "D1");
        c.next_deadline = Some(Ts(500));
        c.visit_day_count = 3;
        let owned = ChangelogRecord::Customer {
            seq: 7,
            state: Box::new(c.clone()),
        };
        assert_eq!(ChangelogRecord::encode_customer(7, &c), owned.encode());
        let meta = EngineMeta {
            watermark: Some(Ts(100)),
            ..EngineMeta::default()
        };
        let offsets = vec![("a".to_string(), 7), ("b".to_string(), 9)];
        let owned = ChangelogRecord::Meta {
            seq: 8,
            meta: Box::new(meta.clone()),
            offsets: offsets.clone(),
        };
        let bytes = ChangelogRecord::encode_meta(8, &meta, &offsets);
        assert_eq!(bytes, owned.encode());
        assert_eq!(ChangelogRecord::decode(&bytes).unwrap(), owned);
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
        let records = [
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
        // Records survive the trip through their bytes.
        let records: Vec<ChangelogRecord> = records
            .iter()
            .map(|r| ChangelogRecord::decode(&r.encode()).unwrap())
            .collect();
        assert_eq!(restore_from_changelog(&store, records, 4).unwrap(), 2);
        assert_eq!(store.load("C1").unwrap().unwrap(), c1);
        assert!(store.load("C2").unwrap().is_some());
        assert_eq!(
            store.load_timers().unwrap(),
            vec![(Ts(500), "C1".to_string())]
        );
        assert_eq!(store.load_meta().unwrap().unwrap().watermark, Some(Ts(100)));
        assert_eq!(changelog_end(&store).unwrap(), 4);
        let p: Progress = store.load_progress(PROGRESS).unwrap().unwrap();
        assert_eq!((p.seq, p.offsets), (1, vec![("a".into(), 7)]));
    }
}
