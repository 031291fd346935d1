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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a("foobar"), 0x8594_4171_f739_67e8);
    }
}
