//! The durable backend: sled trees behind the [`Kv`] port. Owns opening the database
//! (with a short wait for a lock released a moment ago) and nothing else; keys and
//! values are the typed tables' business.
//!
//! Every call into sled is guarded. sled 0.34 panics on some damaged files (an index
//! out of bounds in its segment accounting when `db` is cut short, "tried to serialize
//! Uninitialized" when its page table has holes), so each call runs under
//! [`std::panic::catch_unwind`] and a panic becomes [`StoreError::Damaged`], as do
//! sled's own corruption errors. The default panic message is not printed for a
//! panic caught this way (the error says it all); any other panic prints as usual.
//! This needs unwinding panics (`panic = "unwind"`, the default).

use crate::store::kv::{Kv, Op, Scan};
use crate::store::StoreError;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Once};

/// How long [`open_sled_db`] waits for a lock held by a store closed a moment ago.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

thread_local! {
    /// How many guarded sled calls this thread is inside.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    /// The message of the last panic caught by a guard on this thread.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that keeps quiet about panics inside a
/// guarded sled call, remembering their message instead, and hands every other panic
/// to the hook that was there before.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(Cell::get) > 0 {
                // sled's source path from the crate's directory on ("sled-0.34.7/src/…").
                let at = info
                    .location()
                    .map(|l| {
                        let f = l.file();
                        let f = ["sled-", "fjall-", "lsm-tree-"]
                            .iter()
                            .find_map(|c| f.find(c))
                            .map_or(f, |i| &f[i..]);
                        format!(" at {f}:{}", l.line())
                    })
                    .unwrap_or_default();
                let msg = payload_text(info.payload());
                CAUGHT.with(|c| *c.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

fn payload_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// Runs `f` (a call into sled), turning a panic into the panic's message.
pub(super) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    GUARDED.with(|g| g.set(g.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    r.map_err(|payload| {
        CAUGHT
            .with(|c| c.borrow_mut().take())
            .unwrap_or_else(|| payload_text(&*payload))
    })
}

/// The error for a panic inside sled while using `store`.
pub(super) fn panicked(store: &str, msg: String) -> StoreError {
    StoreError::Damaged {
        store: store.to_string(),
        detail: format!("the storage engine failed on its files ({msg})"),
    }
}

/// Runs a sled call under a guard: a panic or a corruption error is reported as
/// damage to `store`, any other error as it is.
fn guarded<T>(store: &str, f: impl FnOnce() -> sled::Result<T>) -> Result<T, StoreError> {
    match catch(f) {
        Ok(r) => r.map_err(|e| StoreError::from_sled(e, store)),
        Err(msg) => Err(panicked(store, msg)),
    }
}

/// One named sled tree of a shared database (the Kafka service keeps one per input
/// partition, so each partition's commit is one atomic batch of its own).
#[derive(Clone)]
pub struct SledTreeKv {
    db: sled::Db,
    tree: sled::Tree,
    /// Names the store in errors: its directory, or the tree.
    label: Arc<str>,
}

/// sled-backed key-value storage: the database's default tree (file replay).
pub type SledKv = SledTreeKv;

impl SledTreeKv {
    /// The default tree of `db`.
    pub fn default_tree(db: sled::Db) -> Self {
        SledTreeKv {
            tree: (*db).clone(),
            db,
            label: Arc::from("(default tree)"),
        }
    }

    /// The default tree of the database in `dir`, opened (or created) with
    /// [`open_sled_db`]; errors name the directory.
    pub fn open_dir(dir: &Path) -> Result<Self, StoreError> {
        let mut kv = Self::default_tree(open_sled_db(dir)?);
        kv.label = Arc::from(dir.display().to_string());
        Ok(kv)
    }

    /// Opens (or creates) the tree `name` in `db`.
    pub fn open(db: &sled::Db, name: &str) -> Result<Self, StoreError> {
        let label = format!("tree `{name}`");
        Ok(SledTreeKv {
            db: db.clone(),
            tree: guarded(&label, || db.open_tree(name))?,
            label: Arc::from(label),
        })
    }
}

impl Kv for SledTreeKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        guarded(&self.label, || Ok(self.tree.get(key)?.map(|v| v.to_vec())))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Scan<'_> {
        let label = &self.label;
        let mut iter = match catch(|| self.tree.scan_prefix(prefix)) {
            Ok(iter) => Some(iter),
            Err(msg) => return Box::new(std::iter::once(Err(panicked(label, msg)))),
        };
        // After an error sled's iterator is not trusted further: the scan ends.
        Box::new(std::iter::from_fn(move || {
            let it = iter.as_mut()?;
            let next = guarded(label, || it.next().transpose()).transpose();
            if !matches!(next, Some(Ok(_))) {
                iter = None;
            }
            next.map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
        }))
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (k, v) in ops {
            match v {
                Some(v) => batch.insert(k, v),
                None => batch.remove(k),
            }
        }
        guarded(&self.label, || {
            self.tree.apply_batch(batch)?;
            self.tree.flush()
        })?;
        Ok(())
    }

    fn size_on_disk(&self) -> u64 {
        catch(|| self.db.size_on_disk().unwrap_or(0)).unwrap_or(0)
    }

    fn clear(&self) -> Result<(), StoreError> {
        guarded(&self.label, || {
            self.tree.clear()?;
            self.tree.flush()
        })?;
        Ok(())
    }
}

/// Opens (or creates) the sled database in `dir`, waiting up to [`LOCK_WAIT`] for a
/// lock released a moment ago.
///
/// sled releases its file lock from its own threads shortly after the last handle is
/// dropped, so a store closed a moment ago in this process can still be locked. A
/// store whose files sled cannot read (or panics on) is [`StoreError::Damaged`].
pub fn open_sled_db(dir: &Path) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    let label = dir.display().to_string();
    loop {
        let opened = catch(|| {
            sled::Config::new()
                .path(dir)
                .cache_capacity(256 * 1024 * 1024)
                .flush_every_ms(None)
                .open()
        })
        .map_err(|msg| panicked(&label, msg))?;
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(source) => {
                return Err(match StoreError::from_sled(source, &label) {
                    StoreError::Sled(source) => StoreError::Open {
                        path: dir.to_path_buf(),
                        source,
                    },
                    damaged => damaged,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_inside_a_guard_is_damage_and_others_still_panic() {
        let e = guarded("/some/store", || -> sled::Result<()> {
            panic!("tried to serialize Uninitialized")
        })
        .unwrap_err();
        assert!(matches!(e, StoreError::Damaged { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("/some/store") && msg.contains("Uninitialized"),
            "{msg}"
        );
        assert!(
            msg.contains("replay --fresh") && msg.contains("state.dir"),
            "{msg}"
        );
        // Outside a guard a panic is a panic.
        assert!(std::panic::catch_unwind(|| panic!("not sled")).is_err());
        assert_eq!(GUARDED.with(Cell::get), 0);
    }

    #[test]
    fn sled_corruption_errors_are_damage_io_errors_are_not() {
        let e = guarded("s", || -> sled::Result<()> {
            Err(sled::Error::Corruption { at: None, bt: () })
        });
        assert!(matches!(e, Err(StoreError::Damaged { .. })));
        let e = guarded("s", || -> sled::Result<()> {
            Err(sled::Error::Unsupported("old".into()))
        });
        assert!(matches!(e, Err(StoreError::Damaged { .. })));
        let e = guarded("s", || -> sled::Result<()> {
            Err(sled::Error::Io(std::io::Error::other("disk full")))
        });
        assert!(matches!(e, Err(StoreError::Sled(_))));
    }
}
