//! Persistence of customer state, the timer index, engine meta and per-source progress.
//!
//! One key space, prefixed by kind, so that a whole commit (every dirty customer, the
//! timer-index changes, the engine meta and the source progress) is one atomic batch:
//!
//! | key | value |
//! |---|---|
//! | `c/<customer_id>` | bincode [`CustomerState`] |
//! | `t/<deadline: 8 bytes big-endian, sign-flipped><customer_id>` | empty (timer index, range-scannable) |
//! | `m/engine` | bincode [`EngineMeta`] |
//! | `m/format` | store format version |
//! | `p/<source>` | the source's own progress record (file position, Kafka offsets) |
//!
//! [`SledStore`] is the durable backend; [`MemStore`] keeps the same layout in memory
//! for tests. The engine never calls the store on its per-event path except to load a
//! customer it does not hold (its cache is write-back).

use crate::core::engine::{CustomerSource, Dirty, EngineMeta};
use crate::core::state::CustomerState;
use crate::core::time::Ts;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use thiserror::Error;

/// How long [`SledStore::open`] waits for a lock held by a store closed a moment ago.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Version of the key layout and value encodings.
pub const FORMAT_VERSION: u32 = 1;

/// A store operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled could not open the directory.
    #[error("cannot open the state store at {path}: {source}; check the directory is writable and not used by another churnwatch process")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("state store I/O failed: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value cannot be decoded.
    #[error("state store value under key `{key}` is corrupt ({reason}); start over with --fresh or restore a backup")]
    Corrupt {
        /// The key.
        key: String,
        /// What failed.
        reason: String,
    },
    /// The store was written by an incompatible version.
    #[error("state store format {found} is not supported (this build reads {FORMAT_VERSION}); start over with --fresh")]
    Version {
        /// Version found.
        found: u32,
    },
}

/// Key-value pairs from a scan.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The operations a key-value backend must offer.
pub trait Kv: Send + Sync {
    /// Value under a key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// All pairs whose key starts with `prefix`, ascending.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError>;
    /// Applies puts (`Some`) and deletes (`None`) atomically and durably.
    fn apply(&self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError>;
    /// Bytes used on disk (0 in memory).
    fn size_on_disk(&self) -> u64;
    /// Removes every key, durably.
    fn clear(&self) -> Result<(), StoreError>;
}

/// One named sled tree of a shared database (the Kafka service keeps one per input
/// partition, so each partition's commit is one atomic batch of its own).
#[derive(Clone)]
pub struct SledTreeKv {
    db: sled::Db,
    tree: sled::Tree,
}

/// sled-backed key-value storage: the database's default tree (file replay).
pub type SledKv = SledTreeKv;

impl SledTreeKv {
    /// The default tree of `db`.
    pub fn default_tree(db: sled::Db) -> Self {
        SledTreeKv {
            tree: (*db).clone(),
            db,
        }
    }

    /// Opens (or creates) the tree `name` in `db`.
    pub fn open(db: &sled::Db, name: &str) -> Result<Self, StoreError> {
        Ok(SledTreeKv {
            db: db.clone(),
            tree: db.open_tree(name)?,
        })
    }
}

impl Kv for SledTreeKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError> {
        self.tree
            .scan_prefix(prefix)
            .map(|r| {
                r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(StoreError::from)
            })
            .collect()
    }

    fn apply(&self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        self.tree.apply_batch(batch)?;
        self.tree.flush()?;
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.tree.clear()?;
        self.tree.flush()?;
        Ok(())
    }
}

/// Opens (or creates) the sled database behind per-partition trees, waiting up to
/// [`LOCK_WAIT`] for a lock released a moment ago.
pub fn open_sled_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .flush_every_ms(None)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(source) => {
                return Err(StoreError::Open {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}

/// In-memory key-value storage with the same semantics (tests, dry runs).
#[derive(Default)]
pub struct MemKv {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.lock().expect("lock").get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Pairs, StoreError> {
        Ok(self
            .map
            .lock()
            .expect("lock")
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn apply(&self, ops: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> Result<(), StoreError> {
        let mut m = self.map.lock().expect("lock");
        for (k, v) in ops {
            match v {
                Some(v) => m.insert(k, v),
                None => m.remove(&k),
            };
        }
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        0
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.map.lock().expect("store lock").clear();
        Ok(())
    }
}

/// The churnwatch store over a key-value backend (cloning shares the backend).
#[derive(Clone)]
pub struct Store<K: Kv = SledKv> {
    kv: K,
}

/// The durable store.
pub type SledStore = Store<SledKv>;
/// The in-memory store.
pub type MemStore = Store<MemKv>;

fn customer_key(id: &str) -> Vec<u8> {
    let mut k = b"c/".to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

fn timer_key(at: Ts, id: &str) -> Vec<u8> {
    let mut k = b"t/".to_vec();
    k.extend_from_slice(&((at.0 as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn progress_key(source: &str) -> Vec<u8> {
    let mut k = b"p/".to_vec();
    k.extend_from_slice(source.as_bytes());
    k
}

const META_KEY: &[u8] = b"m/engine";
const FORMAT_KEY: &[u8] = b"m/format";

/// Compact value encoding: bincode with variable-length integers.
fn codec() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

fn encode<T: serde::Serialize>(v: &T, key: &[u8]) -> Result<Vec<u8>, StoreError> {
    bincode::Options::serialize(codec(), v).map_err(|e| corrupt(key, e))
}

fn decode<T: serde::de::DeserializeOwned>(v: &[u8], key: &[u8]) -> Result<T, StoreError> {
    bincode::Options::deserialize(codec(), v).map_err(|e| corrupt(key, e))
}

fn corrupt(key: &[u8], reason: impl ToString) -> StoreError {
    StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason: reason.to_string(),
    }
}

impl SledStore {
    /// Opens (or creates) a store directory.
    ///
    /// sled releases its file lock from its own threads shortly after the last handle
    /// is dropped, so a store closed a moment ago in this process can still be locked:
    /// opening waits up to [`LOCK_WAIT`] for the lock before reporting that another
    /// process holds it.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        Store::with_kv(SledTreeKv::default_tree(open_sled_db(dir)?))
    }
}

impl MemStore {
    /// An empty in-memory store.
    pub fn in_memory() -> MemStore {
        Store::with_kv(MemKv::default()).expect("empty memory store is valid")
    }
}

impl<K: Kv> Store<K> {
    /// Wraps a backend, checking (or writing) the format version.
    pub fn with_kv(kv: K) -> Result<Self, StoreError> {
        match kv.get(FORMAT_KEY)? {
            Some(v) => {
                let found = v
                    .as_slice()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt(FORMAT_KEY, "not a 4-byte version"))?;
                if found != FORMAT_VERSION {
                    return Err(StoreError::Version { found });
                }
            }
            None => kv.apply(vec![(
                FORMAT_KEY.to_vec(),
                Some(FORMAT_VERSION.to_be_bytes().to_vec()),
            )])?,
        }
        Ok(Store { kv })
    }

    /// Removes everything (customers, timers, meta, progress and any other keys),
    /// keeping the store usable: the format version is written again.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.kv.clear()?;
        self.kv.apply(vec![(
            FORMAT_KEY.to_vec(),
            Some(FORMAT_VERSION.to_be_bytes().to_vec()),
        )])
    }

    /// The engine meta, if any was committed.
    pub fn load_meta(&self) -> Result<Option<EngineMeta>, StoreError> {
        self.kv
            .get(META_KEY)?
            .map(|v| decode(&v, META_KEY))
            .transpose()
    }

    /// Every timer entry, ascending by deadline.
    pub fn load_timers(&self) -> Result<Vec<(Ts, String)>, StoreError> {
        self.kv
            .scan_prefix(b"t/")?
            .into_iter()
            .map(|(k, _)| {
                if k.len() < 10 {
                    return Err(corrupt(&k, "timer key too short"));
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&k[2..10]);
                let at = Ts((u64::from_be_bytes(b) ^ (1 << 63)) as i64);
                let id = String::from_utf8(k[10..].to_vec()).map_err(|e| corrupt(&k, e))?;
                Ok((at, id))
            })
            .collect()
    }

    /// A source's committed progress record.
    pub fn load_progress(&self, source: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.kv.get(&progress_key(source))
    }

    /// Every stored customer id (for reports; scans the whole store).
    pub fn customer_ids(&self) -> Result<Vec<String>, StoreError> {
        self.kv
            .scan_prefix(b"c/")?
            .into_iter()
            .map(|(k, _)| String::from_utf8(k[2..].to_vec()).map_err(|e| corrupt(&k, e)))
            .collect()
    }

    /// Commits the engine's changes and the sources' progress in one atomic batch.
    pub fn commit(&self, dirty: &Dirty, progress: &[(&str, Vec<u8>)]) -> Result<(), StoreError> {
        self.commit_with(dirty, progress, Vec::new())
    }

    /// Like [`Store::commit`], with further raw operations (keys outside the prefixes
    /// above, such as an outbox) in the same atomic batch.
    pub fn commit_with(
        &self,
        dirty: &Dirty,
        progress: &[(&str, Vec<u8>)],
        extra: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), StoreError> {
        let mut ops = Vec::with_capacity(
            dirty.customers.len() + dirty.timers_added.len() + dirty.timers_removed.len() + 2,
        );
        for c in &dirty.customers {
            let key = customer_key(&c.customer_id);
            let v = encode(c, &key)?;
            ops.push((key, Some(v)));
        }
        for (at, id) in &dirty.timers_removed {
            ops.push((timer_key(*at, id), None));
        }
        for (at, id) in &dirty.timers_added {
            ops.push((timer_key(*at, id), Some(Vec::new())));
        }
        let meta = encode(&dirty.meta, META_KEY)?;
        ops.push((META_KEY.to_vec(), Some(meta)));
        for (source, p) in progress {
            ops.push((progress_key(source), Some(p.clone())));
        }
        ops.extend(extra);
        self.kv.apply(ops)
    }

    /// The backend, for keys this module does not define (outbox entries).
    pub fn kv(&self) -> &K {
        &self.kv
    }

    /// The key under which a source's progress is stored (for raw batches).
    pub fn progress_key(source: &str) -> Vec<u8> {
        progress_key(source)
    }

    /// Calls `f` with every stored customer state (a full scan, for periodic reports).
    pub fn for_each_customer(&self, mut f: impl FnMut(CustomerState)) -> Result<(), StoreError> {
        for (k, v) in self.kv.scan_prefix(b"c/")? {
            f(decode(&v, &k)?);
        }
        Ok(())
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.kv.size_on_disk()
    }
}

impl<K: Kv> CustomerSource for Store<K> {
    type Error = StoreError;

    fn load(&self, customer_id: &str) -> Result<Option<CustomerState>, StoreError> {
        let key = customer_key(customer_id);
        self.kv.get(&key)?.map(|v| decode(&v, &key)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::engine::Counters;

    fn dirty() -> Dirty {
        let mut c = CustomerState::new("C1", "D1");
        c.next_deadline = Some(Ts(-5));
        Dirty {
            customers: vec![c],
            timers_removed: vec![],
            timers_added: vec![(Ts(-5), "C1".into()), (Ts(10), "C2".into())],
            meta: EngineMeta {
                max_seen: Some(Ts(7)),
                watermark: Some(Ts(3)),
                pending: vec![],
                counters: Counters {
                    events: 9,
                    ..Counters::default()
                },
            },
        }
    }

    fn round_trip<K: Kv>(s: Store<K>) {
        s.commit(&dirty(), &[("replay", b"pos".to_vec())]).unwrap();
        assert_eq!(s.load("C1").unwrap().unwrap().next_deadline, Some(Ts(-5)));
        assert!(s.load("C9").unwrap().is_none());
        assert_eq!(
            s.load_timers().unwrap(),
            vec![(Ts(-5), "C1".to_string()), (Ts(10), "C2".to_string())]
        );
        assert_eq!(s.load_meta().unwrap().unwrap().counters.events, 9);
        assert_eq!(s.load_progress("replay").unwrap().unwrap(), b"pos");
        let mut d = dirty();
        d.customers.clear();
        d.timers_added.clear();
        d.timers_removed = vec![(Ts(-5), "C1".into())];
        s.commit(&d, &[]).unwrap();
        assert_eq!(s.load_timers().unwrap(), vec![(Ts(10), "C2".to_string())]);
        assert_eq!(s.customer_ids().unwrap(), vec!["C1".to_string()]);
    }

    #[test]
    fn memory_round_trip() {
        round_trip(MemStore::in_memory());
    }

    #[test]
    fn clear_empties_the_store_and_keeps_it_usable() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        s.commit(&dirty(), &[("replay", b"pos".to_vec())]).unwrap();
        s.clear().unwrap();
        assert!(s.load_meta().unwrap().is_none());
        assert!(s.load_timers().unwrap().is_empty());
        assert!(s.load_progress("replay").unwrap().is_none());
        drop(s);
        // Still a valid store (format version present).
        round_trip(SledStore::open(dir.path()).unwrap());
    }

    #[test]
    fn sled_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        round_trip(SledStore::open(dir.path()).unwrap());
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.load_timers().unwrap().len(), 1);
        assert!(s.size_on_disk() > 0);
    }

    #[test]
    fn reopening_right_after_closing_works_and_a_held_lock_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..20 {
            let s = SledStore::open(dir.path()).unwrap();
            s.commit(&dirty(), &[]).unwrap();
        }
        let held = SledStore::open(dir.path()).unwrap();
        let started = std::time::Instant::now();
        let e = SledStore::open(dir.path()).err().expect("locked by `held`");
        assert!(started.elapsed() >= LOCK_WAIT);
        assert!(e.to_string().contains("another churnwatch process"), "{e}");
        drop(held);
    }

    #[test]
    fn timer_keys_sort_by_time_across_sign() {
        assert!(timer_key(Ts(-1), "z") < timer_key(Ts(0), "a"));
        assert!(timer_key(Ts(1), "z") < timer_key(Ts(2), "a"));
    }
}
