//! A stable 64-bit hash of identifiers, shared by the core (event-id de-duplication in
//! per-customer state) and `fit` (the same de-duplication while reading history), so
//! both count a re-delivered event once in the same way.
//!
//! Depends on nothing; it lives in the model layer so that `fit` need not import
//! `core::state` (the core depends on the model layer, not the other way round).

/// A stable 64-bit FNV-1a hash (event-id de-duplication).
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A fast hasher for in-memory maps keyed by customer ids (not for anything
/// persisted, and not for keys an adversary chooses to collide: the ids come from the
/// operator's own systems). FNV-1a over the bytes, then a 64-bit finaliser so that
/// every bit of the result depends on every input bit (hash maps take both the low
/// and the top bits).
#[derive(Debug, Clone, Copy)]
pub struct IdHasher(u64);

impl Default for IdHasher {
    fn default() -> Self {
        IdHasher(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// Builds [`IdHasher`]s for `HashMap::with_hasher`.
pub type BuildIdHasher = std::hash::BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn id_hasher_spreads_neighbouring_ids_over_low_and_top_bits() {
        use std::hash::BuildHasher;
        let b = BuildIdHasher::default();
        let n = 4096u64;
        let mut low = std::collections::HashSet::new();
        let mut top = std::collections::HashSet::new();
        for i in 0..n {
            let h = b.hash_one(format!("C{i:08}").as_str());
            low.insert(h & 1023);
            top.insert(h >> 57);
        }
        // 4,096 ids into 1,024 low buckets and 128 top-bit tags: nearly all used.
        assert!(low.len() > 1000, "{}", low.len());
        assert_eq!(top.len(), 128);
    }
}
