//! The key-value port under the store: the [`Kv`] trait a backend implements, and
//! [`MemKv`], an in-memory backend with the same semantics for tests.
//!
//! Backends know nothing of churnwatch's keys or values; the typed tables in
//! [`crate::store`] build every key and encode every value.

use crate::store::StoreError;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One write of a batch: a put (`Some`) or a delete (`None`).
pub type Op = (Vec<u8>, Option<Vec<u8>>);

/// A streaming scan: key-value pairs in ascending key order, read lazily.
pub type Scan<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + 'a>;

/// The operations a key-value backend must offer.
pub trait Kv: Send + Sync {
    /// Value under a key.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Pairs whose key starts with `prefix`, ascending, read as the caller iterates
    /// (a scan never holds the whole range in memory).
    fn scan_prefix(&self, prefix: &[u8]) -> Scan<'_>;
    /// Applies puts and deletes atomically and durably.
    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError>;
    /// Bytes used on disk (0 in memory).
    fn size_on_disk(&self) -> u64;
    /// Removes every key, durably.
    fn clear(&self) -> Result<(), StoreError>;
}

/// In-memory key-value storage with the same semantics (tests, dry runs).
/// Clones share the map, as clones of a sled tree share the tree.
#[derive(Default, Clone)]
pub struct MemKv {
    map: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
}

impl MemKv {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        // A panic while holding the lock leaves the map consistent (every operation
        // completes under it), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Kv for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map().get(key).cloned())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Scan<'_> {
        // Walks the range one key at a time, re-taking the lock for each step, so a
        // scan of a large map holds one pair at a time.
        let prefix = prefix.to_vec();
        let mut next: Option<Vec<u8>> = Some(prefix.clone());
        let mut first = true;
        Box::new(std::iter::from_fn(move || {
            let from = next.take()?;
            let map = self.map();
            let mut range = map.range(from.clone()..);
            let mut item = range.next();
            if !first {
                // `from` is the key returned last time: step past it.
                if item.is_some_and(|(k, _)| *k == from) {
                    item = range.next();
                }
            }
            first = false;
            let (k, v) = item.filter(|(k, _)| k.starts_with(&prefix))?;
            next = Some(k.clone());
            Some(Ok((k.clone(), v.clone())))
        }))
    }

    fn apply(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        let mut m = self.map();
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
        self.map().clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_scans_stream_the_prefix_in_order() {
        let kv = MemKv::default();
        let put = |k: &str| (k.as_bytes().to_vec(), Some(Vec::new()));
        kv.apply(vec![put("a/1"), put("b/2"), put("b/1"), put("c/0")])
            .unwrap();
        let keys: Vec<Vec<u8>> = kv.scan_prefix(b"b/").map(|r| r.unwrap().0).collect();
        assert_eq!(keys, vec![b"b/1".to_vec(), b"b/2".to_vec()]);
        assert_eq!(kv.scan_prefix(b"z/").count(), 0);
    }
}
