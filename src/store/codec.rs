//! The one value encoding of the store: bincode with variable-length integers, for
//! every table (customers, meta, progress records, outbox entries) and for the
//! changelog records that carry the same values between instances.

use crate::store::StoreError;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) fn options() -> impl bincode::Options {
    bincode::DefaultOptions::new()
}

/// Encodes a value. In-memory churnwatch values always serialise; an error here is a
/// bug, reported as a corrupt value under `what`.
pub fn encode<T: Serialize>(v: &T, what: &[u8]) -> Result<Vec<u8>, StoreError> {
    bincode::Options::serialize(options(), v).map_err(|e| StoreError::corrupt(what, e))
}

/// Decodes a value written by [`encode`]; `what` names it (a key) in the error.
pub fn decode<T: DeserializeOwned>(v: &[u8], what: &[u8]) -> Result<T, StoreError> {
    bincode::Options::deserialize(options(), v).map_err(|e| StoreError::corrupt(what, e))
}
