//! The bounds-checking datum scanner: the hardened front of Avro decoding for untrusted
//! bytes (Kafka values, container blocks).
//!
//! A datum is walked against its writer schema without building it, checking every
//! length, count, enum and union index and every string's UTF-8 against the bytes
//! actually there; only a datum that fits is handed to `apache_avro`, which would
//! otherwise allocate from untrusted lengths (or decode a truncated string as null).
//! Errors name the field path where the bytes stopped fitting. Works on byte slices
//! only; no files, sockets or store.

use super::block::unzigzag;
use super::schema::lookup_name;
use apache_avro::schema::{Name, ResolvedSchema, Schema};
use apache_avro::types::Value as AvroValue;

/// Deepest nesting of records, arrays, maps and unions the datum scanner follows.
const MAX_DEPTH: usize = 64;
/// Most items of a zero-byte type (e.g. `null`) accepted in one array, map or block.
pub(super) const MAX_EMPTY_ITEMS: i64 = 1 << 16;

/// Decodes one datum from the front of `bytes`; returns it and the number of bytes used.
pub(super) fn decode_value(bytes: &[u8], schema: &Schema) -> Result<(AvroValue, usize), String> {
    let used = datum_len(bytes, schema)?;
    Ok((decode_scanned(&bytes[..used], schema)?, used))
}

/// Scans one datum at the front of `bytes` without decoding it; returns the number of
/// bytes it occupies.
pub(super) fn datum_len(bytes: &[u8], schema: &Schema) -> Result<usize, String> {
    Scanner::new(schema, bytes).datum()
}

/// Decodes `datum`, exactly the bytes [`datum_len`] accepted, with `apache_avro`.
pub(super) fn decode_scanned(mut datum: &[u8], schema: &Schema) -> Result<AvroValue, String> {
    apache_avro::from_avro_datum(schema, &mut datum, None)
        .map_err(|e| format!("Avro decoding failed: {e}"))
}

/// Walks a datum against its schema without building it, checking every length, count
/// and index against the bytes actually there. Only a datum that passes is handed to
/// `apache_avro`, which would otherwise allocate from untrusted lengths (or decode a
/// truncated string as null).
struct Scanner<'s, 'b> {
    root: &'s Schema,
    names: Option<ResolvedSchema<'s>>,
    buf: &'b [u8],
    pos: usize,
    path: String,
}

impl<'s, 'b> Scanner<'s, 'b> {
    fn new(root: &'s Schema, buf: &'b [u8]) -> Self {
        Scanner {
            root,
            names: None,
            buf,
            pos: 0,
            path: String::new(),
        }
    }

    /// Scans one datum of the root schema; returns the bytes it occupies.
    fn datum(mut self) -> Result<usize, String> {
        let root = self.root;
        self.scan(root, 0).map_err(|problem| {
            if self.path.is_empty() {
                format!("Avro datum does not fit the writer schema: {problem}")
            } else {
                format!(
                    "Avro datum does not fit the writer schema at field `{}`: {problem}",
                    self.path
                )
            }
        })?;
        Ok(self.pos)
    }

    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'b [u8], String> {
        if n > self.left() {
            return Err(format!(
                "{what} needs {n} bytes but only {} are left (truncated data or wrong writer schema)",
                self.left()
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(
                    "the data ends inside a variable-length integer (truncated data or wrong writer schema)"
                        .into(),
                );
            };
            self.pos += 1;
            z |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(unzigzag(z));
            }
        }
        Err("variable-length integer longer than 10 bytes".into())
    }

    fn int(&mut self) -> Result<i32, String> {
        let n = self.long()?;
        i32::try_from(n).map_err(|_| format!("{n} does not fit an Avro int"))
    }

    fn len(&mut self, what: &str) -> Result<usize, String> {
        let n = self.long()?;
        if n < 0 {
            return Err(format!("{what} has negative length {n}"));
        }
        usize::try_from(n).map_err(|_| format!("{what} length {n} is too large"))
    }

    fn scan(&mut self, schema: &'s Schema, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                let b = self.take(1, "a boolean")?[0];
                if b > 1 {
                    return Err(format!("boolean byte {b:#04x} is neither 0 nor 1"));
                }
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                self.int()?;
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                self.long()?;
            }
            Schema::Float => {
                self.take(4, "a float")?;
            }
            Schema::Double => {
                self.take(8, "a double")?;
            }
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid => {
                let n = self.len("a byte string")?;
                self.take(n, "a byte string")?;
            }
            Schema::String => {
                let n = self.len("a string")?;
                let s = self.take(n, "a string")?;
                if let Err(e) = std::str::from_utf8(s) {
                    return Err(format!("string is not valid UTF-8 ({e})"));
                }
            }
            Schema::Fixed(f) => {
                self.take(f.size, "a fixed")?;
            }
            Schema::Duration => {
                self.take(12, "a duration")?;
            }
            Schema::Decimal(d) => self.scan(&d.inner, depth + 1)?,
            Schema::Enum(e) => {
                let i = self.long()?;
                if i < 0 || i as u64 >= e.symbols.len() as u64 {
                    return Err(format!(
                        "enum index {i} is outside the {} symbols of {} ({})",
                        e.symbols.len(),
                        e.name,
                        e.symbols.join(", ")
                    ));
                }
            }
            Schema::Union(u) => {
                let i = self.long()?;
                let variants = u.variants();
                let Some(v) = usize::try_from(i).ok().and_then(|i| variants.get(i)) else {
                    return Err(format!(
                        "union branch {i} does not exist (the union has {} branches)",
                        variants.len()
                    ));
                };
                self.scan(v, depth + 1)?;
            }
            Schema::Record(r) => {
                for f in &r.fields {
                    let mark = self.path.len();
                    if !self.path.is_empty() {
                        self.path.push('.');
                    }
                    self.path.push_str(&f.name);
                    self.scan(&f.schema, depth + 1)?;
                    self.path.truncate(mark);
                }
            }
            Schema::Array(a) => self.items(&a.items, false, depth)?,
            Schema::Map(m) => self.items(&m.types, true, depth)?,
            Schema::Ref { name } => {
                let target = self.resolve(name)?;
                self.scan(target, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Scans the blocks of an array (`keyed == false`) or map.
    fn items(&mut self, item: &'s Schema, keyed: bool, depth: usize) -> Result<(), String> {
        let can_be_empty = !keyed && zero_sized(item);
        let mut index: u64 = 0;
        loop {
            let raw = self.long()?;
            let count = match raw {
                0 => return Ok(()),
                n if n < 0 => {
                    let size = self.long()?;
                    if size < 0 {
                        return Err(format!("block byte size {size} is negative"));
                    }
                    n.checked_neg()
                        .ok_or_else(|| format!("block count {n} is out of range"))?
                }
                n => n,
            };
            if can_be_empty && count > MAX_EMPTY_ITEMS {
                return Err(format!(
                    "block of {count} zero-byte items; at most {MAX_EMPTY_ITEMS} accepted"
                ));
            }
            for _ in 0..count {
                let mark = self.path.len();
                if keyed {
                    let n = self.len("a map key")?;
                    let key = self.take(n, "a map key")?;
                    let key = std::str::from_utf8(key)
                        .map_err(|e| format!("map key is not valid UTF-8 ({e})"))?;
                    self.path.push_str(&format!("[{key:?}]"));
                } else {
                    self.path.push_str(&format!("[{index}]"));
                }
                self.scan(item, depth + 1)?;
                self.path.truncate(mark);
                index += 1;
            }
        }
    }

    fn resolve(&mut self, name: &Name) -> Result<&'s Schema, String> {
        if self.names.is_none() {
            self.names =
                Some(ResolvedSchema::try_from(self.root).map_err(|e| {
                    format!("the writer schema's named types do not resolve ({e})")
                })?);
        }
        let Some(resolved) = &self.names else {
            return Err("the writer schema's named types do not resolve".into());
        };
        lookup_name(resolved, name)
            .ok_or_else(|| format!("the writer schema refers to `{name}`, which it never defines"))
    }
}

/// Whether a value of the schema can occupy zero bytes.
pub(super) fn zero_sized(schema: &Schema) -> bool {
    match schema {
        Schema::Null => true,
        Schema::Fixed(f) => f.size == 0,
        Schema::Decimal(d) => zero_sized(&d.inner),
        Schema::Record(r) => r.fields.iter().all(|f| zero_sized(&f.schema)),
        // Unknown without resolving; assuming it can be empty only tightens the limits.
        Schema::Ref { .. } => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::avro::block::put_long;
    use crate::codec::avro::fixtures::*;
    use crate::codec::avro::input::{decode_datum, encode_input};
    use crate::codec::avro::schema::{input_schema, status_change_schema, InputKind};
    use crate::codec::avro::status::status_change_to_value;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Datums for fuzzing: inputs of every kind plus status changes.
    fn fuzz_seeds() -> Vec<(&'static Schema, Vec<u8>)> {
        let mut seeds: Vec<(&'static Schema, Vec<u8>)> = samples()
            .into_iter()
            .map(|(k, r)| (input_schema(k), encode_input(&r, k).unwrap()))
            .collect();
        for i in 0..3 {
            let bytes = apache_avro::to_avro_datum(
                status_change_schema(),
                status_change_to_value(&change(i)),
            )
            .unwrap();
            seeds.push((status_change_schema(), bytes));
        }
        seeds
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
        let union = union_schema();
        let mut schemas: Vec<&Schema> = InputKind::ALL.iter().map(|k| input_schema(*k)).collect();
        schemas.push(status_change_schema());
        schemas.push(&union);
        for schema in &schemas {
            for _ in 0..3000 {
                let len = rng.gen_range(0..96);
                let mut bytes = vec![0u8; len];
                rng.fill(&mut bytes[..]);
                let _ = decode_datum(&bytes, schema);
                let _ = decode_value(&bytes, schema);
            }
        }
        for (schema, datum) in fuzz_seeds() {
            assert!(decode_value(&datum, schema).is_ok());
            for cut in 0..datum.len() {
                let _ = decode_datum(&datum[..cut], schema);
                assert!(decode_value(&datum[..cut], schema).map_or(true, |(_, used)| used <= cut));
            }
            for _ in 0..2000 {
                let mut bytes = datum.clone();
                for _ in 0..rng.gen_range(1..4) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] ^= rng.gen_range(1..=255u8);
                }
                let _ = decode_datum(&bytes, schema);
                let _ = decode_value(&bytes, schema);
            }
        }
        // An array count that would make a naive decoder reserve terabytes.
        let mut no_arrays = change(0);
        no_arrays.reasons.clear();
        no_arrays.recommended_actions.clear();
        no_arrays.p_alive = None;
        no_arrays.expected_visits_12m = None;
        no_arrays.clv = None;
        let mut bytes =
            apache_avro::to_avro_datum(status_change_schema(), status_change_to_value(&no_arrays))
                .unwrap();
        // Two empty arrays, then three null unions.
        assert_eq!(bytes[bytes.len() - 5..], [0, 0, 0, 0, 0]);
        bytes.truncate(bytes.len() - 5);
        put_long(&mut bytes, i64::MAX / 2);
        bytes.extend_from_slice(&[2, b'a', 2, b'b']);
        let e = decode_value(&bytes, status_change_schema()).unwrap_err();
        assert!(e.contains("reasons[1]") || e.contains("reasons[0]"), "{e}");
    }
}
