//! The LSM backend: one fjall database per store directory, one keyspace in it,
//! behind the [`Kv`] port. Owns opening the database within a memory budget (block
//! cache and write buffers), the lock wait, and the mapping of fjall's errors; keys and
//! values are the typed tables' business.
//!
//! Why it exists beside sled: on the reference machine sled's memory grows with the
//! bytes written (about 5× a commit batch) and its inserts cost ~10 µs, so a replay of a
//! million customers does not fit in 1 GiB; fjall keeps a bounded block cache and
//! bounded memtables and appends each commit to its journal. A commit is one
//! [`fjall::WriteBatch`] persisted with `SyncAll` (fsync) before [`Kv::apply`]
//! returns, so a crash loses nothing acknowledged.
//!
//! Calls into fjall run under the same panic guard as sled's (see [`super::sled`]):
//! a panic on damaged files is [`StoreError::Damaged`], as are fjall's checksum,
//! format and recovery errors.

use super::sled::{catch, panicked};
use crate::store::kv::{Kv, Op, Scan};
use crate::store::StoreError;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;
use std::sync::Arc;

/// Name of the one keyspace a churnwatch store uses.
const KEYSPACE: &str = "churnwatch";

/// Files and folders fjall keeps in a store directory (to recognise a store).
pub const FILES: [&str; 3] = ["version", "keyspaces", "lock"];

/// Whether `dir` holds a fjall database (its `version` file, or its keyspaces).
pub fn is_fjall_dir(dir: &Path) -> bool {
    dir.join("version").exists() || dir.join("keyspaces").is_dir()
}

/// Memory fjall may use, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FjallMemory {
    /// Block cache (decompressed data blocks and index blocks read back).
    pub cache: u64,
    /// Write buffer: the size at which the memtable is sealed and flushed to disk.
    pub write_buffer: u64,
}

impl FjallMemory {
    /// The split of a store budget: a quarter for the block cache, a quarter for the
    /// write buffers, the rest left to fjall's own bookkeeping and to the journal's
    /// page cache (which the kernel may reclaim).
    pub fn of_budget(bytes: u64) -> FjallMemory {
        FjallMemory {
            cache: (bytes / 4).max(4 << 20),
            write_buffer: (bytes / 4).max(4 << 20),
        }
    }
}

/// Maps a fjall error on `store`: damage (checksums, formats, recovery) is
/// [`StoreError::Damaged`], anything else [`StoreError::Backend`].
pub fn from_fjall(e: fjall::Error, store: &str) -> StoreError {
    use fjall::Error as F;
    let backend = || StoreError::Backend {
        store: store.to_string(),
        message: e.to_string(),
    };
    let detail = match &e {
        F::Locked | F::Poisoned | F::KeyspaceDeleted => return backend(),
        // A missing, short or garbled file is damage; a full disk or a permission is not.
        F::Io(io) | F::Storage(fjall::LsmError::Io(io)) if is_environment(io.kind()) => {
            return backend()
        }
        other => format!("fjall cannot read its files ({other:?})"),
    };
    StoreError::Damaged {
        store: store.to_string(),
        detail,
    }
}

/// I/O errors that come from the machine (space, permissions, resources), not from
/// what the store's files hold.
fn is_environment(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        kind,
        K::PermissionDenied
            | K::StorageFull
            | K::QuotaExceeded
            | K::ReadOnlyFilesystem
            | K::OutOfMemory
            | K::Interrupted
            | K::WouldBlock
            | K::ResourceBusy
            | K::FileTooLarge
    )
}

/// Opens an existing database once in a child process first. fjall aborts the whole
/// process (a panic that cannot unwind, seen when a manifest has a flipped byte) on
/// some damaged files, which no guard in this process can catch; a child that dies
/// by a signal shows the files are damaged. A child that does not finish within a
/// minute (a lock held across `fork` by another thread) is killed and the probe
/// counts as passed: the real open then decides.
fn probe_open(dir: &Path, memory: FjallMemory) -> Result<(), StoreError> {
    let devnull = b"/dev/null\0";
    // SAFETY: fork in a process that may have other threads: the child only opens the
    // database, then leaves with `_exit` without running destructors or atexit hooks.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Ok(()); // cannot fork: skip the probe
    }
    if pid == 0 {
        // SAFETY: plain libc calls in the child; stderr goes to /dev/null so fjall's
        // abort message does not reach the user twice.
        unsafe {
            let fd = libc::open(devnull.as_ptr().cast(), libc::O_WRONLY);
            if fd >= 0 {
                libc::dup2(fd, 2);
                libc::dup2(fd, 1);
            }
        }
        let ok = Database::builder(dir)
            .cache_size(memory.cache.min(16 << 20))
            .worker_threads(1)
            .open()
            .and_then(|db| db.keyspace(KEYSPACE, KeyspaceCreateOptions::default))
            .is_ok();
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(if ok { 0 } else { 3 }) }
    }
    let started = std::time::Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break;
        }
        if r < 0 || started.elapsed() > std::time::Duration::from_secs(60) {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    if libc::WIFSIGNALED(status) {
        return Err(StoreError::damaged(
            dir,
            format!(
                "fjall aborted while recovering its files (signal {})",
                libc::WTERMSIG(status)
            ),
        ));
    }
    Ok(())
}

fn guarded<T>(store: &str, f: impl FnOnce() -> fjall::Result<T>) -> Result<T, StoreError> {
    match catch(f) {
        Ok(r) => r.map_err(|e| from_fjall(e, store)),
        Err(msg) => Err(panicked(store, msg)),
    }
}

/// A fjall-backed store: the `churnwatch` keyspace of the database in one directory.
#[derive(Clone)]
pub struct FjallKv {
    db: Database,
    ks: Keyspace,
    label: Arc<str>,
}

impl FjallKv {
    /// Opens (or creates) the database in `dir` within `memory`, waiting up to
    /// [`super::LOCK_WAIT`] for a lock released a moment ago.
    pub fn open_dir(dir: &Path, memory: FjallMemory) -> Result<FjallKv, StoreError> {
        let label = dir.display().to_string();
        if is_fjall_dir(dir) {
            probe_open(dir, memory)?;
        }
        let started = std::time::Instant::now();
        let db = loop {
            let opened = catch(|| {
                Database::builder(dir)
                    .cache_size(memory.cache)
                    .max_journaling_size(memory.write_buffer.saturating_mul(2).max(64 << 20))
                    .worker_threads(1)
                    .open()
            })
            .map_err(|msg| panicked(&label, msg))?;
            match opened {
                Ok(db) => break db,
                Err(fjall::Error::Locked) if started.elapsed() < super::LOCK_WAIT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(fjall::Error::Locked) => {
                    return Err(StoreError::Backend {
                        store: label,
                        message: "it is locked by another churnwatch process".into(),
                    })
                }
                Err(e) => return Err(from_fjall(e, &label)),
            }
        };
        let memtable = memory.write_buffer.max(1 << 20);
        let ks = guarded(&label, || {
            db.keyspace(KEYSPACE, || {
                KeyspaceCreateOptions::default().max_memtable_size(memtable)
            })
        })?;
        Ok(FjallKv {
            db,
            ks,
            label: Arc::from(label),
        })
    }
}

impl Kv for FjallKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(&self.label, || Ok(self.ks.get(key)?.map(|v| v.to_vec())))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Scan<'_> {
        let label = &self.label;
        let mut iter = match catch(|| self.ks.prefix(prefix)) {
            Ok(iter) => Some(iter),
            Err(msg) => return Box::new(std::iter::once(Err(panicked(label, msg)))),
        };
        Box::new(std::iter::from_fn(move || {
            let it = iter.as_mut()?;
            let next = match catch(|| it.next().map(|g| g.into_inner())) {
                Ok(None) => None,
                Ok(Some(Ok((k, v)))) => Some(Ok((k.to_vec(), v.to_vec()))),
                Ok(Some(Err(e))) => Some(Err(from_fjall(e, label))),
                Err(msg) => Some(Err(panicked(label, msg))),
            };
            if !matches!(next, Some(Ok(_))) {
                iter = None;
            }
            next
        }))
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(&self.ks, k, v),
                None => batch.remove(&self.ks, k),
            }
        }
        guarded(&self.label, || batch.commit())
    }

    fn size_on_disk(&self) -> u64 {
        catch(|| self.db.disk_space().unwrap_or(0)).unwrap_or(0)
    }

    fn clear(&self) -> Result<(), StoreError> {
        guarded(&self.label, || {
            self.ks.clear()?;
            self.db.persist(PersistMode::SyncAll)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_survive_reopening_and_scans_keep_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let mem = FjallMemory::of_budget(32 << 20);
        {
            let kv = FjallKv::open_dir(dir.path(), mem).unwrap();
            let put = |k: &str| (k.as_bytes().to_vec(), Some(k.as_bytes().to_vec()));
            kv.apply(vec![put("b/2"), put("a/1"), put("b/1"), put("c/0")])
                .unwrap();
            kv.apply(vec![(b"c/0".to_vec(), None)]).unwrap();
        }
        let kv = FjallKv::open_dir(dir.path(), mem).unwrap();
        let keys: Vec<Vec<u8>> = kv.scan_prefix(b"b/").map(|r| r.unwrap().0).collect();
        assert_eq!(keys, vec![b"b/1".to_vec(), b"b/2".to_vec()]);
        assert_eq!(kv.get(b"a/1").unwrap(), Some(b"a/1".to_vec()));
        assert_eq!(kv.get(b"c/0").unwrap(), None);
        assert!(is_fjall_dir(dir.path()));
        kv.clear().unwrap();
        assert_eq!(kv.scan_prefix(b"").count(), 0);
    }

    #[test]
    fn a_held_lock_is_reported_after_the_wait() {
        let dir = tempfile::tempdir().unwrap();
        let mem = FjallMemory::of_budget(16 << 20);
        let _held = FjallKv::open_dir(dir.path(), mem).unwrap();
        let e = FjallKv::open_dir(dir.path(), mem).err().expect("locked");
        assert!(e.to_string().contains("another churnwatch process"), "{e}");
    }
}
