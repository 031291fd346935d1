//! A damaged block of an Avro object container costs that block only.
//!
//! Each test writes a container of many blocks with the crate's own
//! [`InputWriter`], damages one block (a byte of its data, its record count, its byte
//! size or its sync marker), replays it through the library `replay`, and compares the
//! result with a replay of the same file written *without* that block: the status
//! changes must be byte-identical, every record of the intact blocks must be read, and
//! the damaged block must become exactly one `damaged_block` dead letter naming it.
//! A resumed replay of a damaged file must write the same bytes as an uninterrupted one.

use churnwatch::codec::avro::{BlockCodec, InputKind, InputWriter};
use churnwatch::edge::replay::{replay, ReplayOptions, ReplaySummary};
use churnwatch::generate::{generate, GenConfig};
use serde_json::Value as Json;
use std::path::Path;

/// Records per block.
const PER_BLOCK: usize = 40;
/// The damaged block, 0-based (block 3 of the file).
const DAMAGED: usize = 2;

/// Valid repair orders of a generated history, in file order.
fn repair_orders(dir: &Path) -> Vec<Json> {
    let cfg = GenConfig {
        customers: 120,
        dealers: 3,
        years: 3,
        seed: 11,
        ..GenConfig::default()
    };
    let s = generate(&cfg, &dir.join("history"), &mut |_| {}).unwrap();
    let jsonl = s
        .files
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "jsonl"))
        .unwrap();
    let ros: Vec<Json> = std::fs::read_to_string(jsonl)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Json>(l).ok())
        .filter(|v| v["type"] == "repair_order" && churnwatch::core::event::validate(v).is_ok())
        .collect();
    assert!(
        ros.len() > 6 * PER_BLOCK,
        "history too small: {}",
        ros.len()
    );
    ros
}

/// A container of `records` in blocks of [`PER_BLOCK`], leaving out block `skip`;
/// returns the bytes and the byte offset where each written block starts.
fn container(records: &[Json], codec: BlockCodec, skip: Option<usize>) -> (Vec<u8>, Vec<usize>) {
    let mut w = InputWriter::with_codec(Vec::new(), InputKind::RepairOrder, codec).unwrap();
    let mut starts = Vec::new();
    for (i, chunk) in records.chunks(PER_BLOCK).enumerate() {
        if Some(i) == skip {
            continue;
        }
        starts.push(w.bytes_written() as usize);
        w.write_block(chunk).unwrap();
    }
    (w.into_inner(), starts)
}

/// Length of the Avro varint at the front of `bytes`.
fn varint_len(bytes: &[u8]) -> usize {
    bytes.iter().position(|b| b & 0x80 == 0).unwrap() + 1
}

/// Where in a block a byte is damaged.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// The first byte of the block's data.
    DataStart,
    /// The first byte of the record count.
    Count,
    /// The first byte of the byte size.
    Size,
    /// The last byte of the trailing sync marker.
    Marker,
}

/// Flips bits of one byte of the block starting at `start` (ending at `end`).
fn damage(file: &mut [u8], start: usize, end: usize, how: Damage) {
    let count_len = varint_len(&file[start..]);
    let size_len = varint_len(&file[start + count_len..]);
    let data = start + count_len + size_len;
    let (at, mask) = match how {
        Damage::DataStart => (data, 0xff),
        Damage::Count => (start, 0x01),
        Damage::Size => (start + count_len, 0x40),
        Damage::Marker => (end - 1, 0xff),
    };
    file[at] ^= mask;
}

/// Replays `file` (written to `<name>.avro`) with `commit_every`.
fn run(dir: &Path, name: &str, file: &[u8], commit_every: u64) -> (ReplaySummary, Out) {
    let input = dir.join(format!("{name}.avro"));
    std::fs::write(&input, file).unwrap();
    let mut o = options(dir, name, &input);
    o.commit_every = commit_every;
    let s = replay(&o, &mut |_| {}).unwrap();
    (s, Out::read(&o))
}

fn options(dir: &Path, name: &str, input: &Path) -> ReplayOptions {
    let mut o = ReplayOptions::new(
        vec![input.to_path_buf()],
        dir.join(format!("{name}.store")),
        dir.join(format!("{name}.jsonl")),
    );
    o.fresh = true;
    o
}

/// A replay's output files.
struct Out {
    changes: Vec<u8>,
    dead_bytes: Vec<u8>,
    dead: Vec<Json>,
}

impl Out {
    fn read(o: &ReplayOptions) -> Out {
        let dead_bytes = std::fs::read(&o.dead_letter).unwrap();
        let dead = String::from_utf8_lossy(&dead_bytes)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        Out {
            changes: std::fs::read(&o.out).unwrap(),
            dead_bytes,
            dead,
        }
    }
}

/// The parts of a dead letter that do not depend on the file name or record number.
fn gist(d: &Json) -> (Json, Json, Json, Json) {
    (
        d["code"].clone(),
        d["field"].clone(),
        d["reason"].clone(),
        d["raw"].clone(),
    )
}

/// Replays the file damaged `how` and the file without the block, and compares.
fn check(dir: &Path, records: &[Json], codec: BlockCodec, how: Damage) {
    let (mut file, starts) = container(records, codec, None);
    let end = starts[DAMAGED + 1];
    damage(&mut file, starts[DAMAGED], end, how);
    let (without, _) = container(records, codec, Some(DAMAGED));
    let tag = format!("{}-{how:?}", codec.name());
    let (d, dout) = run(dir, &format!("damaged-{tag}"), &file, 50);
    let (w, wout) = run(dir, &format!("without-{tag}"), &without, 50);

    assert!(w.status_changes > 0, "{tag}: history too quiet: {w:?}");
    assert_eq!(
        d.events, w.events,
        "{tag}: records of intact blocks were lost: {d:?}"
    );
    assert_eq!(d.records, w.records + 1, "{tag}: {d:?}");
    assert_eq!(d.bad, w.bad + 1, "{tag}: {d:?}");
    assert!(
        dout.changes == wout.changes,
        "{tag}: status changes differ from the file without the block"
    );

    let blocks: Vec<&Json> = dout
        .dead
        .iter()
        .filter(|x| x["code"] == "damaged_block")
        .collect();
    assert_eq!(blocks.len(), 1, "{tag}: {:#?}", dout.dead);
    let reason = blocks[0]["reason"].as_str().unwrap();
    assert!(reason.contains("block 3"), "{tag}: {reason}");
    assert!(
        reason.contains(&format!("byte {}", starts[DAMAGED])),
        "{tag}: {reason}"
    );
    assert!(reason.contains("claims"), "{tag}: {reason}");
    assert_eq!(
        blocks[0]["record"],
        (DAMAGED * PER_BLOCK + 1) as u64,
        "{tag}: the damaged block takes the place of its first record"
    );
    let rest: Vec<_> = dout
        .dead
        .iter()
        .filter(|x| x["code"] != "damaged_block")
        .map(gist)
        .collect();
    let want: Vec<_> = wout.dead.iter().map(gist).collect();
    assert_eq!(rest, want, "{tag}: the other dead letters differ");
}

#[test]
fn a_damaged_block_costs_only_its_own_records() {
    let dir = tempfile::tempdir().unwrap();
    let records = repair_orders(dir.path());
    for how in [
        Damage::Count,
        Damage::Size,
        Damage::Marker,
        Damage::DataStart,
    ] {
        check(dir.path(), &records, BlockCodec::Null, how);
    }
    // Deflate data carries no checksum: a flip in the middle of it can inflate to
    // other, well-formed records and go unnoticed. A flip of its first byte (the
    // deflate block header) cannot.
    for how in [Damage::DataStart, Damage::Marker] {
        check(dir.path(), &records, BlockCodec::Deflate, how);
    }
}

/// Damage in the last block whose framing leaves no sync marker to resynchronise at:
/// one dead letter that says so, every earlier record read, and the replay finishes.
#[test]
fn damage_with_no_sync_marker_after_it_ends_the_file_with_a_dead_letter() {
    let dir = tempfile::tempdir().unwrap();
    let records = repair_orders(dir.path());
    let records = &records[..5 * PER_BLOCK];
    let (file, starts) = container(records, BlockCodec::Null, None);
    let last = *starts.last().unwrap();
    // Cut the file inside the last block's data: no marker follows.
    let cut = &file[..file.len() - 40];
    let (s, out) = run(dir.path(), "cut", cut, 50);
    let (w, _) = run(
        dir.path(),
        "four",
        &container(records, BlockCodec::Null, Some(4)).0,
        50,
    );
    assert_eq!(s.events, w.events);
    assert_eq!(s.bad, w.bad + 1);
    let d: Vec<_> = out
        .dead
        .iter()
        .filter(|x| x["code"] == "damaged_block")
        .collect();
    assert_eq!(d.len(), 1, "{:#?}", out.dead);
    let reason = d[0]["reason"].as_str().unwrap();
    assert!(reason.contains("block 5"), "{reason}");
    assert!(reason.contains(&format!("byte {last}")), "{reason}");
    assert!(reason.contains("no sync marker"), "{reason}");
}

/// A replay interrupted after any commit and resumed writes the same status changes
/// and dead letters as an uninterrupted one, with the damaged block's dead letter
/// counting as one record position.
#[test]
fn a_resumed_replay_of_a_damaged_file_matches_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let records = repair_orders(dir.path());
    for (how, commit_every) in [
        (Damage::DataStart, (DAMAGED * PER_BLOCK + 1) as u64), // a commit right after it
        (Damage::Count, 33),
        (Damage::Marker, 29),
    ] {
        let (mut file, starts) = container(&records, BlockCodec::Null, None);
        damage(&mut file, starts[DAMAGED], starts[DAMAGED + 1], how);
        let name = format!("straight-{how:?}");
        let (whole, whole_out) = run(dir.path(), &name, &file, commit_every);

        // The same file, interrupted (a panic in the progress callback) after every
        // second commit, resumed until done.
        let input = dir.path().join(format!("resumed-{how:?}.avro"));
        std::fs::write(&input, &file).unwrap();
        let mut o = options(dir.path(), &format!("resumed-{how:?}"), &input);
        o.commit_every = commit_every;
        let mut interruptions = 0;
        let summary = loop {
            let mut commits = 0;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                replay(&o, &mut |_| {
                    commits += 1;
                    if commits == 2 {
                        panic!("simulated crash after a commit");
                    }
                })
            }));
            o.fresh = false;
            match result {
                Ok(s) => break s.unwrap(),
                Err(_) => interruptions += 1,
            }
            assert!(interruptions < 1000, "the replay never finishes");
        };
        assert!(
            interruptions >= 3,
            "{how:?}: only {interruptions} interruptions"
        );
        let out = Out::read(&o);
        assert_eq!(summary.records, whole.records, "{how:?}");
        assert_eq!(summary.bad, whole.bad, "{how:?}");
        assert_eq!(summary.events, whole.events, "{how:?}");
        assert!(out.changes == whole_out.changes, "{how:?}: outputs differ");
        let names = |b: &[u8], from: &str, to: &str| String::from_utf8_lossy(b).replace(from, to);
        assert_eq!(
            names(&out.dead_bytes, &format!("resumed-{how:?}"), "X"),
            names(&whole_out.dead_bytes, &name, "X"),
            "{how:?}: dead letters differ"
        );
        assert_eq!(
            whole_out
                .dead
                .iter()
                .filter(|x| x["code"] == "damaged_block")
                .count(),
            1
        );
    }
}
