//! Persistence: typed tables over a key-value backend, committed in atomic batches.
//!
//! One key space per store (a sled tree), prefixed by table, so that a whole commit —
//! every dirty customer, the timer-index changes, the engine meta, the source progress
//! and the outbox — is one atomic [`Batch`]:
//!
//! | key | value |
//! |---|---|
//! | `c/<customer_id>` | [`CustomerState`] |
//! | `t/<deadline: 8 bytes big-endian, sign-flipped><customer_id>` | empty (timer index, range-scannable) |
//! | `m/engine` | [`EngineMeta`] |
//! | `m/format` | store format version (4 bytes big-endian) |
//! | `p/<source>` | the source's own typed progress record (file position, Kafka offsets) |
//! | `o/<commit seq: 8 bytes><index: 4 bytes>` | an outbox entry, typed by the edge |
//!
//! Every value goes through the one codec in [`codec`]; this module builds every key,
//! so callers never see raw keys or bytes. Scans stream ([`kv::Scan`]): a full pass over
//! the customers holds one customer at a time.
//!
//! Beside sled's files a store directory may hold a commit mark ([`mark`]), written
//! outside sled after each durable commit, which shows when sled's recovery of damaged
//! files dropped acknowledged commits. The sled backend ([`sled`]) turns sled's
//! corruption errors and its panics on damaged files into [`StoreError::Damaged`].
//!
//! This module may use `crate::core` (the values it stores) and nothing above it.

pub mod codec;
pub mod fjall;
pub mod kv;
pub mod mark;
pub mod sled;

pub use self::fjall::{FjallKv, FjallMemory};
pub use self::sled::{open_sled_db, SledKv, SledTreeKv, LOCK_WAIT};
pub use kv::{Kv, MemKv};

use crate::core::engine::{CustomerSource, Dirty, EngineMeta};
use crate::core::state::CustomerState;
use crate::core::time::Ts;
use codec::{decode, encode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Version of the key layout and value encodings (2: every progress record in the
/// store codec; 1 kept replay progress as JSON).
pub const FORMAT_VERSION: u32 = 2;

/// What to do about a store that cannot be used as it is.
const START_OVER: &str = "start a replay over with `replay --fresh`, or for the service remove state.dir (its partitions then restore from the changelog topic)";

/// A store operation that failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled could not open the directory.
    #[error("cannot open the state store at {path}: {source}; check the directory is writable and not used by another churnwatch process")]
    Open {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: ::sled::Error,
    },
    /// There is no store at the path given.
    #[error("no state store at {0}; run `churnwatch replay --store {0}` first, or pass the --store of an existing replay")]
    Missing(PathBuf),
    /// A read or write failed.
    #[error("state store I/O failed: {0}; check the disk (free space, permissions) and retry")]
    Sled(::sled::Error),
    /// The fjall backend failed for a reason other than damage (I/O, a lock).
    #[error("state store {store}: {message}; check the disk (free space, permissions) and that no other churnwatch process uses it")]
    Backend {
        /// The directory.
        store: String,
        /// What failed.
        message: String,
    },
    /// A store directory holds the other engine's files than the one asked for.
    #[error("the state store at {path} is a {found} store, but --store-engine {asked} was given; drop the flag to keep using it, or pass --fresh to rebuild it with {asked}")]
    EngineMismatch {
        /// The directory.
        path: PathBuf,
        /// The engine whose files are there.
        found: StoreEngine,
        /// The engine asked for.
        asked: StoreEngine,
    },
    /// The store's files are damaged: sled reported corruption, panicked on them, or
    /// the store lost commits it had acknowledged.
    #[error("the state store {store} is damaged: {detail}; {START_OVER}")]
    Damaged {
        /// Which store: its directory, or its tree.
        store: String,
        /// What is wrong.
        detail: String,
    },
    /// A stored value cannot be decoded.
    #[error("state store value under key `{key}` is corrupt ({reason}); {START_OVER}")]
    Corrupt {
        /// The key.
        key: String,
        /// What failed.
        reason: String,
    },
    /// The store was written by an incompatible version.
    #[error("state store format {found} is not supported (this build reads {FORMAT_VERSION}); {START_OVER}")]
    Version {
        /// Version found.
        found: u32,
    },
}

impl From<::sled::Error> for StoreError {
    fn from(e: ::sled::Error) -> StoreError {
        StoreError::from_sled(e, "(directory not known here)")
    }
}

impl StoreError {
    /// A sled error on `store` (a directory or tree): corruption and sled's own
    /// failures are [`StoreError::Damaged`], I/O errors [`StoreError::Sled`].
    pub fn from_sled(e: ::sled::Error, store: &str) -> StoreError {
        let detail = match &e {
            ::sled::Error::Corruption { at: Some(at), .. } => {
                format!("sled found corrupt data at {at:?} in its files")
            }
            ::sled::Error::Corruption { at: None, .. } => {
                "sled found corrupt data in its files".to_string()
            }
            ::sled::Error::ReportableBug(m) => format!("sled failed on its files ({m})"),
            ::sled::Error::Unsupported(m) => format!("sled cannot use its files ({m})"),
            _ => return StoreError::Sled(e),
        };
        StoreError::Damaged {
            store: store.to_string(),
            detail,
        }
    }

    /// The store in `dir` is damaged: `detail` says how.
    pub fn damaged(dir: &Path, detail: impl ToString) -> StoreError {
        StoreError::Damaged {
            store: dir.display().to_string(),
            detail: detail.to_string(),
        }
    }

    /// A corrupt value under `key`.
    pub fn corrupt(key: &[u8], reason: impl ToString) -> StoreError {
        StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            reason: reason.to_string(),
        }
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

const CUSTOMERS: &[u8] = b"c/";
const TIMERS: &[u8] = b"t/";
const PROGRESS: &[u8] = b"p/";
const OUTBOX: &[u8] = b"o/";
const META_KEY: &[u8] = b"m/engine";
const FORMAT_KEY: &[u8] = b"m/format";
/// Present in a store whose timers are not kept as keys but derived from the stored
/// customers (each customer's `next_deadline`) when it is opened.
const TIMERS_DERIVED_KEY: &[u8] = b"m/timers-derived";

fn key(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + rest.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(rest);
    k
}

fn timer_key(at: Ts, id: &str) -> Vec<u8> {
    let mut k = TIMERS.to_vec();
    k.extend_from_slice(&((at.0 as u64) ^ (1 << 63)).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn parse_timer_key(k: &[u8]) -> Result<(Ts, String), StoreError> {
    if k.len() < 10 {
        return Err(StoreError::corrupt(k, "timer key too short"));
    }
    let b: [u8; 8] = k[2..10].try_into().expect("8 bytes");
    let at = Ts((u64::from_be_bytes(b) ^ (1 << 63)) as i64);
    let id = String::from_utf8(k[10..].to_vec()).map_err(|e| StoreError::corrupt(k, e))?;
    Ok((at, id))
}

/// Where an outbox entry sits: its commit and its index within the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OutboxKey {
    /// The commit's sequence number.
    pub seq: u64,
    /// Position within the commit.
    pub index: u32,
}

impl OutboxKey {
    /// The key of one entry as earlier versions kept them (`o/`, seq, index).
    #[cfg(test)]
    fn bytes(self) -> Vec<u8> {
        let mut k = commit_key(self.seq);
        k.extend_from_slice(&self.index.to_be_bytes());
        k
    }

    fn parse(k: &[u8]) -> Result<OutboxKey, StoreError> {
        if k.len() != 14 {
            return Err(StoreError::corrupt(k, "outbox key has the wrong length"));
        }
        Ok(OutboxKey {
            seq: u64::from_be_bytes(k[2..10].try_into().expect("8 bytes")),
            index: u32::from_be_bytes(k[10..14].try_into().expect("4 bytes")),
        })
    }
}

/// The key of commit `seq`'s outbox: `o/` and the sequence number, big-endian (so a
/// scan comes in commit order).
fn commit_key(seq: u64) -> Vec<u8> {
    let mut k = OUTBOX.to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// One commit's outbox entries, in order, with the commit's sequence number.
pub type OutboxBatch<O> = (u64, Vec<(OutboxKey, O)>);

/// Writes to apply together, atomically and durably, with [`Store::write`].
#[derive(Default)]
pub struct Batch {
    ops: Vec<kv::Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// The engine's changes: dirty customers, timer-index changes and the meta.
    pub fn dirty(&mut self, dirty: &Dirty) -> Result<&mut Self, StoreError> {
        self.ops.reserve(
            dirty.customers.len() + dirty.timers_added.len() + dirty.timers_removed.len() + 1,
        );
        for c in &dirty.customers {
            self.customer(c)?;
        }
        for (at, id) in &dirty.timers_removed {
            self.ops.push((timer_key(*at, id), None));
        }
        for (at, id) in &dirty.timers_added {
            self.ops.push((timer_key(*at, id), Some(Vec::new())));
        }
        let meta = encode(&dirty.meta, META_KEY)?;
        self.ops.push((META_KEY.to_vec(), Some(meta)));
        Ok(self)
    }

    /// The engine's changes for a store whose timers are derived from the customers
    /// ([`Store::timers_derived`]): the dirty customers and the meta, no timer keys
    /// (a third of the writes of [`Batch::dirty`]); marks the store so. `legacy` are
    /// timer keys the store still holds from before (deleted here).
    pub fn dirty_timers_derived(
        &mut self,
        dirty: &Dirty,
        legacy: &[(Ts, String)],
    ) -> Result<&mut Self, StoreError> {
        self.ops.reserve(dirty.customers.len() + legacy.len() + 2);
        for c in &dirty.customers {
            self.customer(c)?;
        }
        for (at, id) in legacy {
            self.ops.push((timer_key(*at, id), None));
        }
        let meta = encode(&dirty.meta, META_KEY)?;
        self.ops.push((META_KEY.to_vec(), Some(meta)));
        self.ops
            .push((TIMERS_DERIVED_KEY.to_vec(), Some(Vec::new())));
        Ok(self)
    }

    /// One customer's state (replaces the stored one).
    pub fn customer(&mut self, c: &CustomerState) -> Result<&mut Self, StoreError> {
        let k = key(CUSTOMERS, c.customer_id.as_bytes());
        let v = encode(c, &k)?;
        self.ops.push((k, Some(v)));
        Ok(self)
    }

    /// A source's progress record (replaces the previous one).
    pub fn progress<P: Serialize>(
        &mut self,
        source: &str,
        progress: &P,
    ) -> Result<&mut Self, StoreError> {
        let k = key(PROGRESS, source.as_bytes());
        let v = encode(progress, &k)?;
        self.ops.push((k, Some(v)));
        Ok(self)
    }

    /// Commit `seq`'s outbox entries, in order: one value for the whole commit (one
    /// write now and one delete when it is delivered, however many records it holds).
    pub fn outbox<O: Serialize>(
        &mut self,
        seq: u64,
        entries: &[O],
    ) -> Result<&mut Self, StoreError> {
        let k = commit_key(seq);
        let v = encode(&entries, &k)?;
        self.ops.push((k, Some(v)));
        Ok(self)
    }

    /// Removes delivered outbox entries: the whole commits they belong to (a commit is
    /// delivered as a whole).
    pub fn remove_outbox(&mut self, keys: impl IntoIterator<Item = OutboxKey>) -> &mut Self {
        let mut seqs: Vec<u64> = keys.into_iter().map(|k| k.seq).collect();
        seqs.dedup();
        self.ops
            .extend(seqs.into_iter().map(|seq| (commit_key(seq), None)));
        self
    }
}

impl SledStore {
    /// Opens (or creates) a store directory; see [`open_sled_db`] for the lock wait.
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        Store::with_kv(SledTreeKv::open_dir(dir)?)
    }

    /// Opens an existing store directory, without creating one. A directory that holds
    /// sled's data but lost its `conf` file is damaged, not missing.
    pub fn open_existing(dir: &Path) -> Result<SledStore, StoreError> {
        if !dir.join("conf").exists() {
            let has_data = std::fs::read_dir(dir).is_ok_and(|entries| {
                entries.filter_map(Result::ok).any(|e| {
                    let n = e.file_name();
                    let n = n.to_string_lossy();
                    n == "db" || n.starts_with("snap.")
                })
            });
            if has_data {
                return Err(StoreError::damaged(dir, "its `conf` file is missing"));
            }
            return Err(StoreError::Missing(dir.to_path_buf()));
        }
        Self::open(dir)
    }
}

/// The embedded engine under a store directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    /// fjall, an LSM tree: bounded memory, fast appends (the default).
    Fjall,
    /// sled, a B-tree: the original engine.
    Sled,
}

impl StoreEngine {
    /// The engine's name.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreEngine::Fjall => "fjall",
            StoreEngine::Sled => "sled",
        }
    }

    /// The engine whose files `dir` holds, if any.
    pub fn found_in(dir: &Path) -> Option<StoreEngine> {
        if fjall::is_fjall_dir(dir) {
            Some(StoreEngine::Fjall)
        } else if ["conf", "db"].iter().any(|f| dir.join(f).exists())
            || std::fs::read_dir(dir).is_ok_and(|mut d| {
                d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("snap.")))
            })
        {
            Some(StoreEngine::Sled)
        } else {
            None
        }
    }
}

impl std::fmt::Display for StoreEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StoreEngine {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fjall" => Ok(StoreEngine::Fjall),
            "sled" => Ok(StoreEngine::Sled),
            other => Err(format!(
                "unknown store engine `{other}`; use `fjall` (the default) or `sled`"
            )),
        }
    }
}

/// How to open a store directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// The engine for a new store; for an existing one, the engine it must have (none:
    /// whichever it has, fjall for a new one).
    pub engine: Option<StoreEngine>,
    /// Bytes the engine may use for its caches and write buffers (fjall; sled is
    /// given its cache capacity from it, which it does not keep to).
    pub memory: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            engine: None,
            memory: 128 << 20,
        }
    }
}

/// Either engine behind the one [`Kv`] port (a file replay picks it per directory).
#[derive(Clone)]
pub enum AnyKv {
    /// A sled tree.
    Sled(SledTreeKv),
    /// A fjall keyspace.
    Fjall(FjallKv),
}

impl AnyKv {
    /// Which engine this is.
    pub fn engine(&self) -> StoreEngine {
        match self {
            AnyKv::Sled(_) => StoreEngine::Sled,
            AnyKv::Fjall(_) => StoreEngine::Fjall,
        }
    }
}

impl Kv for AnyKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            AnyKv::Sled(k) => k.get(key),
            AnyKv::Fjall(k) => k.get(key),
        }
    }
    fn scan_prefix(&self, prefix: &[u8]) -> kv::Scan<'_> {
        match self {
            AnyKv::Sled(k) => k.scan_prefix(prefix),
            AnyKv::Fjall(k) => k.scan_prefix(prefix),
        }
    }
    fn apply(&self, ops: Vec<kv::Op>) -> Result<(), StoreError> {
        match self {
            AnyKv::Sled(k) => k.apply(ops),
            AnyKv::Fjall(k) => k.apply(ops),
        }
    }
    fn size_on_disk(&self) -> u64 {
        match self {
            AnyKv::Sled(k) => k.size_on_disk(),
            AnyKv::Fjall(k) => k.size_on_disk(),
        }
    }
    fn clear(&self) -> Result<(), StoreError> {
        match self {
            AnyKv::Sled(k) => k.clear(),
            AnyKv::Fjall(k) => k.clear(),
        }
    }
}

/// A store directory with either engine.
pub type DirStore = Store<AnyKv>;

impl DirStore {
    /// Opens (or creates) the store in `dir` with the engine its files show, or for a
    /// new store the one `opts` asks (fjall by default). An existing store of another
    /// engine than the one asked is [`StoreError::EngineMismatch`].
    pub fn open_dir(dir: &Path, opts: StoreOptions) -> Result<DirStore, StoreError> {
        let found = StoreEngine::found_in(dir);
        let engine = match (found, opts.engine) {
            (Some(f), Some(a)) if f != a => {
                return Err(StoreError::EngineMismatch {
                    path: dir.to_path_buf(),
                    found: f,
                    asked: a,
                })
            }
            (Some(f), _) => f,
            (None, a) => a.unwrap_or(StoreEngine::Fjall),
        };
        let kv = match engine {
            StoreEngine::Sled => AnyKv::Sled(SledTreeKv::open_dir(dir)?),
            StoreEngine::Fjall => {
                AnyKv::Fjall(FjallKv::open_dir(dir, FjallMemory::of_budget(opts.memory))?)
            }
        };
        Store::with_kv(kv)
    }

    /// Opens an existing store directory, without creating one. A directory that holds
    /// an engine's data but lost the file naming its format is damaged, not missing.
    pub fn open_existing_dir(dir: &Path, opts: StoreOptions) -> Result<DirStore, StoreError> {
        match StoreEngine::found_in(dir) {
            Some(StoreEngine::Sled) => Ok(Store {
                kv: AnyKv::Sled(SledStore::open_existing(dir)?.kv),
            }),
            Some(StoreEngine::Fjall) => {
                if !dir.join("version").exists() {
                    return Err(StoreError::damaged(
                        dir,
                        "its fjall `version` file is missing",
                    ));
                }
                Self::open_dir(dir, opts)
            }
            None if dir.join(mark::MARK_FILE).exists() => Err(StoreError::damaged(
                dir,
                "its engine's files are missing (only the commit mark is left)",
            )),
            None => Err(StoreError::Missing(dir.to_path_buf())),
        }
    }

    /// The engine under this store.
    pub fn engine(&self) -> StoreEngine {
        self.kv.engine()
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
                    .map_err(|_| StoreError::corrupt(FORMAT_KEY, "not a 4-byte version"))?;
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

    /// Removes everything (customers, timers, meta, progress, outbox), keeping the
    /// store usable: the format version is written again.
    pub fn clear(&self) -> Result<(), StoreError> {
        self.kv.clear()?;
        self.kv.apply(vec![(
            FORMAT_KEY.to_vec(),
            Some(FORMAT_VERSION.to_be_bytes().to_vec()),
        )])
    }

    /// Applies a batch atomically and durably.
    pub fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.kv.apply(batch.ops)
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
            .scan_prefix(TIMERS)
            .map(|r| r.and_then(|(k, _)| parse_timer_key(&k)))
            .collect()
    }

    /// Whether this store's timers are derived from its customers rather than kept as
    /// keys (written by [`Batch::dirty_timers_derived`]).
    pub fn timers_derived(&self) -> Result<bool, StoreError> {
        Ok(self.kv.get(TIMERS_DERIVED_KEY)?.is_some())
    }

    /// The timers of a store whose timers are derived: every stored customer's
    /// `next_deadline`, ascending by (deadline, customer), as [`Store::load_timers`]
    /// gives them. Reads every customer once.
    pub fn derive_timers(&self) -> Result<Vec<(Ts, String)>, StoreError> {
        let mut timers = Vec::new();
        self.for_each_customer(|c| {
            if let Some(at) = c.next_deadline {
                timers.push((at, c.customer_id));
            }
        })?;
        timers.sort_unstable();
        Ok(timers)
    }

    /// A source's committed progress record.
    pub fn load_progress<P: DeserializeOwned>(
        &self,
        source: &str,
    ) -> Result<Option<P>, StoreError> {
        let k = key(PROGRESS, source.as_bytes());
        self.kv.get(&k)?.map(|v| decode(&v, &k)).transpose()
    }

    /// Checks that a source's committed progress came with the engine meta it was
    /// committed with (one batch holds both): progress without meta means the store
    /// lost writes, and is reported as damage to `store` (its directory or tree).
    pub fn check_committed(&self, source: &str, store: &str) -> Result<(), StoreError> {
        if self.has_progress(source)? && self.kv.get(META_KEY)?.is_none() {
            return Err(StoreError::Damaged {
                store: store.to_string(),
                detail: format!(
                    "it holds progress of `{source}` but not the engine state committed with it"
                ),
            });
        }
        Ok(())
    }

    /// Whether a source has committed progress.
    pub fn has_progress(&self, source: &str) -> Result<bool, StoreError> {
        Ok(self.kv.get(&key(PROGRESS, source.as_bytes()))?.is_some())
    }

    /// Every stored customer id, ascending, read lazily.
    pub fn customer_ids(&self) -> impl Iterator<Item = Result<String, StoreError>> + '_ {
        self.kv.scan_prefix(CUSTOMERS).map(|r| {
            r.and_then(|(k, _)| {
                String::from_utf8(k[2..].to_vec()).map_err(|e| StoreError::corrupt(&k, e))
            })
        })
    }

    /// Calls `f` with every stored customer state, one at a time (a streaming scan, for
    /// periodic reports: memory holds one customer, not the store).
    pub fn for_each_customer(&self, mut f: impl FnMut(CustomerState)) -> Result<(), StoreError> {
        for r in self.kv.scan_prefix(CUSTOMERS) {
            let (k, v) = r?;
            f(decode(&v, &k)?);
        }
        Ok(())
    }

    /// Committed outbox entries, grouped by commit, in order. Reads the entries of
    /// stores written before one value held a whole commit too.
    pub fn outbox<O: DeserializeOwned>(&self) -> Result<Vec<OutboxBatch<O>>, StoreError> {
        let mut by_seq: Vec<OutboxBatch<O>> = Vec::new();
        for r in self.kv.scan_prefix(OUTBOX) {
            let (k, v) = r?;
            if k.len() == 10 {
                let seq = u64::from_be_bytes(k[2..10].try_into().expect("8 bytes"));
                let entries: Vec<O> = decode(&v, &k)?;
                let list = entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, o)| {
                        let index = i as u32;
                        (OutboxKey { seq, index }, o)
                    })
                    .collect();
                by_seq.push((seq, list));
                continue;
            }
            let key = OutboxKey::parse(&k)?;
            let o: O = decode(&v, &k)?;
            match by_seq.last_mut() {
                Some((s, list)) if *s == key.seq => list.push((key, o)),
                _ => by_seq.push((key.seq, vec![(key, o)])),
            }
        }
        Ok(by_seq)
    }

    /// Rewrites outbox entries kept one per key (stores written before one value held
    /// a whole commit) as one value per commit, in one batch; nothing when there are
    /// none.
    pub fn upgrade_outbox<O: Serialize + DeserializeOwned>(&self) -> Result<(), StoreError> {
        let mut old = Vec::new();
        for r in self.kv.scan_prefix(OUTBOX) {
            let (k, _) = r?;
            if k.len() != 10 {
                old.push(k);
            }
        }
        if old.is_empty() {
            return Ok(());
        }
        let commits = self.outbox::<O>()?;
        let mut batch = Batch::new();
        batch.ops.extend(old.into_iter().map(|k| (k, None)));
        for (seq, entries) in &commits {
            let values: Vec<&O> = entries.iter().map(|(_, o)| o).collect();
            batch.outbox(*seq, &values)?;
        }
        self.write(batch)
    }

    /// Outbox entries waiting for delivery.
    pub fn outbox_len(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for r in self.kv.scan_prefix(OUTBOX) {
            let (k, v) = r?;
            n += if k.len() == 10 {
                // A commit's value starts with its number of entries.
                bincode::Options::deserialize::<u64>(
                    bincode::Options::allow_trailing_bytes(codec::options()),
                    &v,
                )
                .map_err(|e| StoreError::corrupt(&k, e))? as usize
            } else {
                1
            };
        }
        Ok(n)
    }

    /// Bytes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.kv.size_on_disk()
    }
}

impl<K: Kv> CustomerSource for Store<K> {
    type Error = StoreError;

    fn load(&self, customer_id: &str) -> Result<Option<CustomerState>, StoreError> {
        let k = key(CUSTOMERS, customer_id.as_bytes());
        self.kv.get(&k)?.map(|v| decode(&v, &k)).transpose()
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

    fn commit<K: Kv>(s: &Store<K>, d: &Dirty, progress: Option<&str>) {
        let mut b = Batch::new();
        b.dirty(d).unwrap();
        if let Some(p) = progress {
            b.progress("replay", &p.to_string()).unwrap();
        }
        s.write(b).unwrap();
    }

    #[test]
    fn outbox_entries_come_back_by_commit_and_go_when_delivered() {
        let s = MemStore::in_memory();
        let mut b = Batch::new();
        b.outbox(1, &["a".to_string(), "b".to_string()]).unwrap();
        b.outbox(2, &["c".to_string()]).unwrap();
        s.write(b).unwrap();
        let o = s.outbox::<String>().unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!(o[0].0, 1);
        assert_eq!(o[0].1[1].1, "b");
        assert_eq!(o[1].1[0].0, OutboxKey { seq: 2, index: 0 });
        assert_eq!(s.outbox_len().unwrap(), 3);
        let mut b = Batch::new();
        b.remove_outbox(o[0].1.iter().map(|(k, _)| *k));
        s.write(b).unwrap();
        assert_eq!(s.outbox::<String>().unwrap().len(), 1);
        assert_eq!(s.outbox_len().unwrap(), 1);
    }

    #[test]
    fn an_outbox_kept_one_entry_per_key_reads_alike_and_is_upgraded() {
        let s = MemStore::in_memory();
        // As earlier versions wrote it: one key per entry.
        let mut b = Batch::new();
        for (seq, index, v) in [(4u64, 0u32, "a"), (4, 1, "b"), (5, 0, "c")] {
            let k = OutboxKey { seq, index }.bytes();
            b.ops
                .push((k.clone(), Some(encode(&v.to_string(), &k).unwrap())));
        }
        s.write(b).unwrap();
        let before = s.outbox::<String>().unwrap();
        assert_eq!(before.len(), 2);
        assert_eq!(
            before[0].1[1],
            (OutboxKey { seq: 4, index: 1 }, "b".to_string())
        );
        assert_eq!(s.outbox_len().unwrap(), 3);
        s.upgrade_outbox::<String>().unwrap();
        assert_eq!(s.outbox::<String>().unwrap(), before);
        let keys: Vec<Vec<u8>> = s.kv.scan_prefix(OUTBOX).map(|r| r.unwrap().0).collect();
        assert_eq!(
            keys,
            vec![commit_key(4), commit_key(5)],
            "one key per commit"
        );
        let mut b = Batch::new();
        b.remove_outbox(before[0].1.iter().map(|(k, _)| *k));
        s.write(b).unwrap();
        assert_eq!(s.outbox::<String>().unwrap(), before[1..].to_vec());
    }

    #[test]
    fn a_missing_store_is_reported_as_missing_not_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let e = SledStore::open_existing(&dir.path().join("nope"))
            .err()
            .unwrap();
        assert!(matches!(e, StoreError::Missing(_)), "{e}");
        assert!(e.to_string().contains("run `churnwatch replay"), "{e}");
    }

    #[test]
    fn progress_without_the_meta_committed_with_it_is_damage() {
        let s = MemStore::in_memory();
        s.check_committed("replay", "mem").unwrap();
        let mut b = Batch::new();
        b.progress("replay", &"pos".to_string()).unwrap();
        s.write(b).unwrap();
        let e = s.check_committed("replay", "mem").unwrap_err();
        assert!(matches!(e, StoreError::Damaged { .. }), "{e}");
        commit(&s, &dirty(), Some("pos"));
        s.check_committed("replay", "mem").unwrap();
    }

    #[test]
    fn a_store_that_lost_its_conf_is_damaged_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        commit(&SledStore::open(dir.path()).unwrap(), &dirty(), None);
        std::fs::remove_file(dir.path().join("conf")).unwrap();
        let e = SledStore::open_existing(dir.path()).err().unwrap();
        assert!(matches!(e, StoreError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains("replay --fresh"), "{e}");
    }

    fn round_trip<K: Kv>(s: Store<K>) {
        commit(&s, &dirty(), Some("pos"));
        assert_eq!(s.load("C1").unwrap().unwrap().next_deadline, Some(Ts(-5)));
        assert!(s.load("C9").unwrap().is_none());
        assert_eq!(
            s.load_timers().unwrap(),
            vec![(Ts(-5), "C1".to_string()), (Ts(10), "C2".to_string())]
        );
        assert_eq!(s.load_meta().unwrap().unwrap().counters.events, 9);
        assert_eq!(s.load_progress::<String>("replay").unwrap().unwrap(), "pos");
        let mut d = dirty();
        d.customers.clear();
        d.timers_added.clear();
        d.timers_removed = vec![(Ts(-5), "C1".into())];
        commit(&s, &d, None);
        assert_eq!(s.load_timers().unwrap(), vec![(Ts(10), "C2".to_string())]);
        let ids: Vec<String> = s.customer_ids().collect::<Result<_, _>>().unwrap();
        assert_eq!(ids, vec!["C1".to_string()]);
    }

    #[test]
    fn memory_round_trip() {
        round_trip(MemStore::in_memory());
    }

    #[test]
    fn clear_empties_the_store_and_keeps_it_usable() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        commit(&s, &dirty(), Some("pos"));
        s.clear().unwrap();
        assert!(s.load_meta().unwrap().is_none());
        assert!(s.load_timers().unwrap().is_empty());
        assert!(s.load_progress::<String>("replay").unwrap().is_none());
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
            commit(&s, &dirty(), None);
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
