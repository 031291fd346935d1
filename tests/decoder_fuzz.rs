//! A standing fuzz check of every decoder that reads untrusted bytes: the JSON line
//! decoder ([`decode_json_line`]), the Avro datum decoder ([`decode_datum`], for each
//! input kind), the Kafka record decoder ([`TopicDecoder::decode`], for JSON, plain
//! Avro and Confluent topics), and the container reader ([`read_container`]).
//!
//! Each is fed arbitrary bytes and valid inputs mutated by bit flips, truncations,
//! insertions, deletions, copied ranges and stray sync markers. The checks:
//!
//! - no decoder panics, whatever the bytes;
//! - reading a container terminates (each read runs on its own thread and must finish
//!   within [`LIMIT`]) and yields at most one item per byte of the file;
//! - one flipped byte in a container's block costs at most that block: every record of
//!   the other blocks is read exactly as from the undamaged file, and the damaged block
//!   gives either one `damaged_block` error or (damage the format cannot detect, such as
//!   a changed letter in a string) as many items as it holds.
//!
//! The default number of cases per property ([`DEFAULT_CASES`]) keeps a debug run of
//! this file to seconds, for CI. For a longer run set `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=20000 cargo test --release --test decoder_fuzz`.

use churnwatch::codec::avro::{
    decode_datum, encode_input, input_schema, read_container, BlockCodec, InputKind, InputWriter,
    SYNC_MARKER,
};
use churnwatch::codec::record::{Encoding, TopicDecoder};
use churnwatch::core::event::{decode_json_line, validate, InvalidEvent, Validated};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::Duration;

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 256;

/// How long reading one (small) container may take before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(30);

/// The proptest configuration: [`DEFAULT_CASES`], or `PROPTEST_CASES` if set.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A valid record of `kind`, varied by `i`.
fn record(kind: InputKind, i: usize) -> Json {
    let common = |mut v: Json| {
        v["event_id"] = json!(format!("e{i}"));
        v["event_time"] = json!(format!("2024-0{}-1{}T10:00:00Z", 1 + i % 9, i % 10));
        v["dealer_id"] = json!(format!("D{}", i % 3));
        v["customer_id"] = json!(format!("C{}", i % 7));
        v
    };
    match kind {
        InputKind::RepairOrder => common(json!({
            "type": "repair_order", "ro_number": format!("RO{i}"),
            "ro_type": (["maintenance", "general_repair"][i % 2]),
            "mileage_km": 1000 * i, "total_amount": 99.5 + i as f64,
            "vin": "LSVAA4182E2123456", "phone": "138-0013-8000",
        })),
        InputKind::Visit => common(json!({
            "type": "visit", "visit_type": (["service", "showroom"][i % 2]),
            "in_service_region": i % 3 == 0,
        })),
        InputKind::Contract => common(json!({
            "type": "contract", "contract_id": format!("P{i}"),
            "contract_type": "maintenance_plan", "action": (["signed", "cancelled"][i % 2]),
            "start_date": "2024-02-01", "end_date": "2026-02-01", "amount": 3000,
        })),
        InputKind::Tick => json!({"type": "tick", "event_time": "2024-03-01T00:00:00Z"}),
    }
}

/// A valid container and what reading it gives.
struct Sample {
    bytes: Vec<u8>,
    /// Byte offset where each block starts (the last entry is the end of the file).
    bounds: Vec<usize>,
    /// The items of each block, read from the undamaged file.
    items: Vec<Vec<Result<Validated, InvalidEvent>>>,
}

/// Containers of each input kind and codec, with blocks of 1 to 5 records.
fn samples() -> &'static [Sample] {
    static SAMPLES: OnceLock<Vec<Sample>> = OnceLock::new();
    SAMPLES.get_or_init(|| {
        let mut out = Vec::new();
        for codec in [BlockCodec::Null, BlockCodec::Deflate] {
            for kind in InputKind::ALL {
                let mut w = InputWriter::with_codec(Vec::new(), kind, codec).unwrap();
                let mut bounds = Vec::new();
                let mut sizes = Vec::new();
                let mut i = 0;
                for size in [3, 1, 5, 2, 4] {
                    let block: Vec<Json> = (i..i + size).map(|i| record(kind, i)).collect();
                    i += size;
                    bounds.push(w.bytes_written() as usize);
                    w.write_block(&block).unwrap();
                    sizes.push(size);
                }
                bounds.push(w.bytes_written() as usize);
                let bytes = w.into_inner();
                let mut all: Vec<_> = read_container(&bytes[..]).unwrap().collect();
                assert!(all.iter().all(Result::is_ok), "{kind:?}: {all:?}");
                let items = sizes.iter().map(|&n| all.drain(..n).collect()).collect();
                out.push(Sample {
                    bytes,
                    bounds,
                    items,
                });
            }
        }
        out
    })
}

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    /// Cut the bytes off at a point.
    Truncate(Index),
    /// Insert bytes at a point.
    Insert(Index, Vec<u8>),
    /// Delete up to this many bytes from a point.
    Delete(Index, usize),
    /// Insert the sync marker at a point.
    Marker(Index),
    /// Copy up to this many bytes from one point to another (duplicated framing).
    Copy(Index, Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1u8..=255).prop_map(|(i, m)| Mutation::Flip(i, m)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..40))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        1 => any::<Index>().prop_map(Mutation::Marker),
        1 => (any::<Index>(), any::<Index>(), 1usize..200)
            .prop_map(|(a, b, n)| Mutation::Copy(a, b, n)),
    ]
}

/// Applies `m` to `bytes`.
fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    let at = |i: &Index| if len == 0 { 0 } else { i.index(len + 1) };
    match m {
        Mutation::Flip(i, mask) => {
            if len > 0 {
                bytes[i.index(len)] ^= mask;
            }
        }
        Mutation::Truncate(i) => bytes.truncate(at(i)),
        Mutation::Insert(i, b) => {
            let p = at(i);
            bytes.splice(p..p, b.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let p = at(i);
            let end = (p + n).min(len);
            bytes.drain(p..end);
        }
        Mutation::Marker(i) => {
            let p = at(i);
            bytes.splice(p..p, SYNC_MARKER);
        }
        Mutation::Copy(from, to, n) => {
            let p = at(from);
            let chunk: Vec<u8> = bytes[p..(p + n).min(len)].to_vec();
            let q = at(to);
            bytes.splice(q..q, chunk);
        }
    }
}

/// Runs `f` on its own thread; fails if it panics or does not finish within [`LIMIT`].
fn finishes<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(v) => v,
        Err(RecvTimeoutError::Timeout) => panic!("{what} did not finish within {LIMIT:?}"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

/// Every item of the container `bytes`, read on its own thread, or the header error.
fn read_all(bytes: Vec<u8>) -> Result<Vec<Result<Validated, InvalidEvent>>, String> {
    let len = bytes.len();
    let items = finishes("reading a container", move || {
        let mut records = read_container(&bytes[..]).map_err(|e| e.to_string())?;
        let items: Vec<_> = records.by_ref().collect();
        assert!(
            records.take_error().is_none(),
            "a slice cannot fail to read"
        );
        Ok::<_, String>(items)
    })?;
    assert!(
        items.len() <= len,
        "{} items from {len} bytes: reading does not advance",
        items.len()
    );
    Ok(items)
}

/// A JSON text of a valid record of any kind.
fn valid_line() -> impl Strategy<Value = String> {
    (0usize..4, 0usize..50).prop_map(|(k, i)| record(InputKind::ALL[k], i).to_string())
}

/// A valid plain Avro datum of a record of `kind`.
fn datum(kind: InputKind, i: usize) -> Vec<u8> {
    encode_input(&record(kind, i), kind).unwrap()
}

/// A Confluent decoder mapping ids 1 to 4 to the four kinds.
fn confluent() -> TopicDecoder {
    let ids: BTreeMap<u32, InputKind> = (1..).zip(InputKind::ALL).collect();
    TopicDecoder::new("fuzz", Encoding::Confluent, ids).unwrap()
}

/// Decoders for every encoding a topic can have.
fn topic_decoders() -> Vec<TopicDecoder> {
    let mut d = vec![TopicDecoder::new("fuzz", Encoding::Json, BTreeMap::new()).unwrap()];
    for kind in InputKind::ALL {
        d.push(TopicDecoder::new("fuzz", Encoding::Avro(kind), BTreeMap::new()).unwrap());
    }
    d.push(confluent());
    d
}

/// A rejection must say why.
fn explained(r: &Result<Validated, InvalidEvent>) -> bool {
    r.as_ref().err().is_none_or(|e| !e.to_string().is_empty())
}

proptest! {
    #![proptest_config(config())]

    /// Arbitrary bytes, read as text, and mutated valid lines are decoded or rejected
    /// with a reason, never a panic.
    #[test]
    fn json_lines_never_panic(
        raw in prop::collection::vec(any::<u8>(), 0..300),
        line in valid_line(),
        muts in prop::collection::vec(mutation(), 1..5),
    ) {
        prop_assert!(explained(&decode_json_line(&String::from_utf8_lossy(&raw))));
        let mut bytes = line.clone().into_bytes();
        for m in &muts {
            apply(&mut bytes, m);
        }
        prop_assert!(explained(&decode_json_line(&String::from_utf8_lossy(&bytes))));
        prop_assert!(decode_json_line(&line).is_ok());
    }

    /// The JSON line decoder reads the top-level fields straight from the text; its
    /// result, errors included, is what validating the fully parsed line gives: on
    /// valid lines, mutated ones, arbitrary bytes, and lines with escapes, repeated
    /// keys, nulls, numbers as strings and nested values.
    #[test]
    fn json_lines_decode_as_their_parsed_value_validates(
        raw in prop::collection::vec(any::<u8>(), 0..300),
        line in valid_line(),
        muts in prop::collection::vec(mutation(), 0..4),
        extra in prop::collection::vec((0usize..12, 0usize..9), 0..4),
    ) {
        let parsed = |s: &str| {
            serde_json::from_str::<Json>(s)
                .map_err(|e| InvalidEvent::Malformed(format!("not valid JSON ({e})")))
                .and_then(|v| validate(&v))
        };
        let text = String::from_utf8_lossy(&raw).into_owned();
        prop_assert_eq!(decode_json_line(&text), parsed(&text));
        let mut bytes = line.clone().into_bytes();
        for m in &muts {
            apply(&mut bytes, m);
        }
        let mutated = String::from_utf8_lossy(&bytes).into_owned();
        prop_assert_eq!(decode_json_line(&mutated), parsed(&mutated));
        // Extra or repeated fields, written after the record's own.
        const KEYS: [&str; 12] = [
            "customer_id", "event_id", "dealer_id", "type", "amount", "total_amount",
            "in_service_region", "vin", "mileage_km", "phone", "x", "cust\\u006fmer_id",
        ];
        const VALUES: [&str; 9] = [
            "null", "\"C\\u00e9 1\"", "[1, {\"a\": []}]", "{\"b\": [null]}", "12.5",
            "\"7\"", "true", "18446744073709551615", "-0",
        ];
        let mut spliced = line.trim_end_matches('}').to_string();
        for (k, v) in &extra {
            spliced.push_str(&format!(", \"{}\": {}", KEYS[*k], VALUES[*v]));
        }
        spliced.push('}');
        prop_assert_eq!(decode_json_line(&spliced), parsed(&spliced), "{}", spliced);
    }

    /// Arbitrary bytes and mutated valid datums, decoded with each input schema, give a
    /// record or a reason, never a panic.
    #[test]
    fn avro_datums_never_panic(
        raw in prop::collection::vec(any::<u8>(), 0..300),
        k in 0usize..4,
        i in 0usize..50,
        muts in prop::collection::vec(mutation(), 1..5),
    ) {
        let kind = InputKind::ALL[k];
        let mut bytes = datum(kind, i);
        prop_assert!(decode_datum(&bytes, input_schema(kind)).is_ok());
        for m in &muts {
            apply(&mut bytes, m);
        }
        for schema_kind in InputKind::ALL {
            let schema = input_schema(schema_kind);
            prop_assert!(explained(&decode_datum(&raw, schema)));
            prop_assert!(explained(&decode_datum(&bytes, schema)));
        }
    }

    /// Kafka record values, arbitrary or mutated from valid JSON, Avro and Confluent
    /// values, with or without the tick header, never make a topic decoder panic.
    #[test]
    fn kafka_records_never_panic(
        raw in prop::collection::vec(any::<u8>(), 0..300),
        k in 0usize..4,
        i in 0usize..50,
        id in 0u32..6,
        tick in any::<bool>(),
        muts in prop::collection::vec(mutation(), 0..4),
    ) {
        let kind = InputKind::ALL[k];
        let mut confluent_value = vec![0u8];
        confluent_value.extend_from_slice(&id.to_be_bytes());
        confluent_value.extend(datum(kind, i));
        let mut values = vec![
            raw,
            record(kind, i).to_string().into_bytes(),
            datum(kind, i),
            confluent_value,
        ];
        for v in &mut values {
            for m in &muts {
                apply(v, m);
            }
        }
        for d in topic_decoders() {
            prop_assert!(explained(&d.decode(None, tick)));
            for v in &values {
                prop_assert!(explained(&d.decode(Some(v), tick)));
            }
        }
    }

    /// Mutated containers (and arbitrary bytes after a valid header) are read to the
    /// end without a panic or a hang, yielding records and errors.
    #[test]
    fn mutated_containers_are_read_to_the_end(
        s in 0usize..8,
        muts in prop::collection::vec(mutation(), 1..6),
        tail in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let sample = &samples()[s % samples().len()];
        let mut bytes = sample.bytes.clone();
        for m in &muts {
            apply(&mut bytes, m);
        }
        // Header errors are fine; anything else is read through.
        let _ = read_all(bytes);
        let mut after_header = sample.bytes[..sample.bounds[0]].to_vec();
        after_header.extend_from_slice(&tail);
        prop_assert!(read_all(after_header).is_ok());
        let mut magic = b"Obj\x01".to_vec();
        magic.extend_from_slice(&tail);
        let _ = read_all(magic);
    }

    /// One flipped byte in a block costs at most that block: the records of every
    /// other block are read exactly as from the undamaged file.
    #[test]
    fn one_flipped_byte_costs_at_most_its_block(
        s in 0usize..8,
        block in any::<Index>(),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let sample = &samples()[s % samples().len()];
        let k = block.index(sample.items.len());
        let (from, to) = (sample.bounds[k], sample.bounds[k + 1]);
        let mut bytes = sample.bytes.clone();
        bytes[from + at.index(to - from)] ^= mask;
        let got = read_all(bytes).unwrap();
        let before: Vec<_> = sample.items[..k].iter().flatten().cloned().collect();
        let after: Vec<_> = sample.items[k + 1..].iter().flatten().cloned().collect();
        prop_assert!(got.len() >= before.len() + after.len(), "{got:?}");
        prop_assert_eq!(&got[..before.len()], &before[..]);
        prop_assert_eq!(&got[got.len() - after.len()..], &after[..]);
        let middle = &got[before.len()..got.len() - after.len()];
        let damaged = |r: &Result<Validated, InvalidEvent>| {
            matches!(r, Err(InvalidEvent::DamagedBlock(_)))
        };
        let one_error = middle.len() == 1 && damaged(&middle[0]);
        let unnoticed = middle.len() == sample.items[k].len() && !middle.iter().any(damaged);
        prop_assert!(one_error || unnoticed, "block {}: {:?}", k + 1, middle);
    }
}
