//! The durable backend: sled trees behind the [`Kv`] port. Owns opening the database
//! (with a short wait for a lock released a moment ago) and nothing else; keys and
//! values are the typed tables' business.

use crate::store::kv::{Kv, Op, Scan};
use crate::store::StoreError;
use std::path::Path;

/// How long [`open_sled_db`] waits for a lock held by a store closed a moment ago.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

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

    fn scan_prefix(&self, prefix: &[u8]) -> Scan<'_> {
        Box::new(self.tree.scan_prefix(prefix).map(|r| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(StoreError::from)
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

/// Opens (or creates) the sled database in `dir`, waiting up to [`LOCK_WAIT`] for a
/// lock released a moment ago.
///
/// sled releases its file lock from its own threads shortly after the last handle is
/// dropped, so a store closed a moment ago in this process can still be locked.
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
