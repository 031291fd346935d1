//! Reading object container files: [`read_container`] for input records (each validated
//! like a JSON line) and [`read_status_changes`] for churnwatch's own status-change
//! output. Reads from the [`Read`] it is given; opens no files.
//!
//! The reader is hardened for untrusted files: header sizes, block sizes and record
//! counts are bounded before anything is allocated, deflate output is capped, and every
//! record goes through the [scanner](super::scan) before `apache_avro` decodes it. A
//! damaged record costs the rest of its block; a damaged or truncated block ends the
//! file, and each error says which block and record it was.

use super::block::{unzigzag, BlockCodec, MAGIC, MAX_BLOCK_BYTES};
use super::error::AvroError;
use super::input::input_json;
use super::scan::{decode_value, zero_sized, MAX_EMPTY_ITEMS};
use super::schema::{input_kinds, schema_kind, InputKind};
use super::status::status_change_from_value;
use crate::core::event::{self, InvalidEvent, Validated};
use crate::core::status::StatusChange;
use apache_avro::schema::Schema;
use apache_avro::types::Value as AvroValue;
use std::io::{self, BufReader, Read};

/// Largest header metadata value (e.g. the schema) a container reader accepts.
const MAX_META_VALUE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest number of header metadata entries a container reader accepts.
const MAX_META_ENTRIES: i64 = 1024;
/// What to do about a damaged block or record.
const REMEDY: &str = "restore the file from a copy or write it again";

/// Low-level read failure.
enum RawErr {
    /// The underlying reader failed.
    Io(io::Error),
    /// The input ended inside the item.
    Eof,
    /// The bytes are not a valid item.
    Bad(String),
}

/// Reads one byte; `Ok(None)` at end of input.
fn read_byte<R: Read>(r: &mut R) -> Result<Option<u8>, RawErr> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RawErr::Io(e)),
        }
    }
}

/// Reads a zig-zag varint; `Ok(None)` on end of input before its first byte.
fn read_long<R: Read>(r: &mut R) -> Result<Option<i64>, RawErr> {
    let mut z: u64 = 0;
    for i in 0..10 {
        match read_byte(r)? {
            None if i == 0 => return Ok(None),
            None => return Err(RawErr::Eof),
            Some(b) => {
                z |= u64::from(b & 0x7F) << (7 * i);
                if b & 0x80 == 0 {
                    return Ok(Some(unzigzag(z)));
                }
            }
        }
    }
    Err(RawErr::Bad(
        "variable-length integer longer than 10 bytes".into(),
    ))
}

/// Reads a zig-zag varint that must be there.
fn read_required_long<R: Read>(r: &mut R) -> Result<i64, RawErr> {
    read_long(r)?.ok_or(RawErr::Eof)
}

/// Reads exactly `len` bytes without trusting `len` for the allocation.
fn read_vec<R: Read>(r: &mut R, len: u64) -> Result<Vec<u8>, RawErr> {
    let mut v = Vec::new();
    r.by_ref()
        .take(len)
        .read_to_end(&mut v)
        .map_err(RawErr::Io)?;
    if (v.len() as u64) < len {
        return Err(RawErr::Eof);
    }
    Ok(v)
}

/// A container's header and the state of reading its blocks.
struct BlockReader<R: Read> {
    r: BufReader<R>,
    /// The writer schema from the header.
    schema: Schema,
    codec: BlockCodec,
    /// The sync marker from the header.
    marker: [u8; 16],
    /// The current block's data, decompressed.
    block: Vec<u8>,
    /// Read position in `block`.
    pos: usize,
    /// Records still to read from the current block.
    left: u64,
    /// Records the current block holds.
    count: u64,
    /// 1-based number of the current block.
    block_no: u64,
    /// Whether a record of the schema can take zero bytes (bounds the record count).
    record_can_be_empty: bool,
    /// Reading has ended (cleanly or after a block error).
    done: bool,
}

impl<R: Read> BlockReader<R> {
    /// Reads and checks the header.
    fn open(r: R) -> Result<Self, AvroError> {
        let mut r = BufReader::new(r);
        let header_err = |e: RawErr, what: &str| match e {
            RawErr::Io(source) => AvroError::Io {
                doing: "reading the container header",
                source,
            },
            RawErr::Eof => AvroError::BadHeader(format!("the file ends inside {what}")),
            RawErr::Bad(m) => AvroError::BadHeader(format!("{what}: {m}")),
        };
        let magic = read_vec(&mut r, 4).map_err(|e| match e {
            RawErr::Eof => AvroError::NotAContainer(
                "it is shorter than the 4-byte magic `Obj\\x01` (empty or cut-off file)".into(),
            ),
            e => header_err(e, "the magic"),
        })?;
        if magic != MAGIC {
            return Err(AvroError::NotAContainer(format!(
                "it starts with {magic:02x?} instead of `Obj\\x01` (4f 62 6a 01); \
                 is it JSON lines or bare Avro datums?"
            )));
        }
        let mut schema_text: Option<Vec<u8>> = None;
        let mut codec_name: Option<Vec<u8>> = None;
        let mut entries: i64 = 0;
        loop {
            let count = read_required_long(&mut r).map_err(|e| header_err(e, "the metadata"))?;
            let count = match count {
                0 => break,
                n if n < 0 => {
                    read_required_long(&mut r).map_err(|e| header_err(e, "the metadata"))?;
                    n.checked_neg().unwrap_or(i64::MAX)
                }
                n => n,
            };
            entries = entries.saturating_add(count);
            if entries > MAX_META_ENTRIES {
                return Err(AvroError::BadHeader(format!(
                    "more than {MAX_META_ENTRIES} metadata entries"
                )));
            }
            for _ in 0..count {
                let key = read_meta(&mut r, 1024).map_err(|e| header_err(e, "a metadata key"))?;
                let value = read_meta(&mut r, MAX_META_VALUE_BYTES)
                    .map_err(|e| header_err(e, "a metadata value"))?;
                match key.as_slice() {
                    b"avro.schema" => schema_text = Some(value),
                    b"avro.codec" => codec_name = Some(value),
                    _ => {}
                }
            }
        }
        let mut marker = [0u8; 16];
        let m = read_vec(&mut r, 16).map_err(|e| header_err(e, "the sync marker"))?;
        marker.copy_from_slice(&m);

        let schema_text = schema_text.ok_or_else(|| {
            AvroError::BadHeader("the metadata has no `avro.schema` entry".into())
        })?;
        let schema_text = std::str::from_utf8(&schema_text)
            .map_err(|e| AvroError::BadHeader(format!("`avro.schema` is not UTF-8 ({e})")))?;
        let schema =
            Schema::parse_str(schema_text).map_err(|e| AvroError::BadSchema(Box::new(e)))?;
        let codec = match codec_name {
            None => BlockCodec::Null,
            Some(name) => {
                let name = String::from_utf8_lossy(&name).into_owned();
                BlockCodec::from_name(&name).ok_or(AvroError::UnsupportedCodec(name))?
            }
        };
        let record_can_be_empty = zero_sized(&schema);
        Ok(BlockReader {
            r,
            schema,
            codec,
            marker,
            block: Vec::new(),
            pos: 0,
            left: 0,
            count: 0,
            block_no: 0,
            record_can_be_empty,
            done: false,
        })
    }

    /// Reads the next block; `Ok(false)` at a clean end of file.
    fn read_block(&mut self) -> Result<bool, String> {
        let n = self.block_no + 1;
        let raw = |e: RawErr, what: &str| match e {
            RawErr::Io(e) => format!("block {n}: I/O error reading {what}: {e}"),
            RawErr::Eof => {
                format!("block {n} is truncated inside {what}; the file was cut off mid-write")
            }
            RawErr::Bad(m) => format!("block {n}: {what}: {m}"),
        };
        let count = match read_long(&mut self.r) {
            Ok(None) => return Ok(false),
            Ok(Some(c)) => c,
            Err(e) => return Err(raw(e, "its record count")),
        };
        let size = read_required_long(&mut self.r).map_err(|e| raw(e, "its byte size"))?;
        if count < 0 || size < 0 {
            return Err(format!(
                "block {n} has a negative record count or size ({count}, {size}); the file is corrupt"
            ));
        }
        if size as u64 > MAX_BLOCK_BYTES {
            return Err(format!(
                "block {n} claims {size} bytes, more than the {MAX_BLOCK_BYTES} accepted; \
                 the file is corrupt or uses huge blocks"
            ));
        }
        let data = read_vec(&mut self.r, size as u64).map_err(|e| raw(e, "its data"))?;
        let marker = read_vec(&mut self.r, 16).map_err(|e| raw(e, "its sync marker"))?;
        if marker != self.marker {
            return Err(format!(
                "block {n}'s sync marker differs from the header's; the file is corrupt \
                 or two files were concatenated"
            ));
        }
        let data = self
            .codec
            .decompress(data)
            .map_err(|e| format!("block {n}: {e}"))?;
        let plausible = if self.record_can_be_empty {
            count <= MAX_EMPTY_ITEMS
        } else {
            count as u64 <= data.len() as u64
        };
        if !plausible {
            return Err(format!(
                "block {n} claims {count} records but holds only {} bytes; the file is corrupt",
                data.len()
            ));
        }
        self.block = data;
        self.pos = 0;
        self.left = count as u64;
        self.count = count as u64;
        self.block_no = n;
        Ok(true)
    }

    /// The next datum, an error for a damaged record or block, or `None` at the end.
    /// After a damaged record the rest of its block is skipped (record boundaries are
    /// unknown past it); after a damaged block reading stops.
    fn next_datum(&mut self) -> Option<Result<AvroValue, String>> {
        loop {
            if self.done {
                return None;
            }
            if self.left == 0 {
                if self.pos < self.block.len() {
                    let extra = self.block.len() - self.pos;
                    self.pos = self.block.len();
                    return Some(Err(format!(
                        "block {}: {extra} bytes left after its {} records; the block is \
                         corrupt or was written with a different schema — {REMEDY}",
                        self.block_no, self.count
                    )));
                }
                match self.read_block() {
                    Ok(true) => continue,
                    Ok(false) => {
                        self.done = true;
                        return None;
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(Err(format!(
                            "{e}; reading stops here (every record before this block was \
                             read) — {REMEDY} to read the rest"
                        )));
                    }
                }
            }
            let record_no = self.count - self.left + 1;
            self.left -= 1;
            return match decode_value(&self.block[self.pos..], &self.schema) {
                Ok((value, used)) => {
                    self.pos += used;
                    Some(Ok(value))
                }
                Err(e) => {
                    let skipped = self.left;
                    self.left = 0;
                    self.pos = self.block.len();
                    let tail = if skipped > 0 {
                        format!("; the {skipped} records after it in this block cannot be located and are skipped")
                    } else {
                        String::new()
                    };
                    Some(Err(format!(
                        "block {}, record {record_no}: {e}{tail}; {REMEDY} to read this block",
                        self.block_no
                    )))
                }
            };
        }
    }
}

/// Reads one metadata key or value of at most `max` bytes.
fn read_meta<R: Read>(r: &mut R, max: u64) -> Result<Vec<u8>, RawErr> {
    let len = read_required_long(r)?;
    if len < 0 || len as u64 > max {
        return Err(RawErr::Bad(format!("length {len} is outside 0..={max}")));
    }
    read_vec(r, len as u64)
}

/// Opens an Avro object container file of input records.
///
/// The file's schema must be a churnwatch input record (its name — `RepairOrder`,
/// `Visit`, `Contract` or `Tick` — decides the JSON `type`), a compatible evolution of
/// one, or a union of them. Codecs `null` and `deflate` are read. Header problems are
/// returned here as [`AvroError`] (messages do not name the path; the caller adds it).
/// The reader is buffered internally.
pub fn read_container<R: Read>(r: R) -> Result<ContainerRecords<R>, AvroError> {
    let blocks = BlockReader::open(r)?;
    let kinds = input_kinds(&blocks.schema).map_err(AvroError::NotInput)?;
    let kind = match kinds.as_slice() {
        [k] => Some(*k),
        _ => None,
    };
    Ok(ContainerRecords { blocks, kind })
}

/// The records of an input container file, each validated with [`event::validate`].
///
/// Yields `Err(InvalidEvent)` for a record that does not validate (reading goes on), for
/// a damaged record (the rest of its block is skipped, reading goes on with the next
/// block), and for a damaged or truncated block (reading stops after that error).
pub struct ContainerRecords<R: Read> {
    blocks: BlockReader<R>,
    kind: Option<InputKind>,
}

impl<R: Read> ContainerRecords<R> {
    /// The file's writer schema.
    pub fn schema(&self) -> &Schema {
        &self.blocks.schema
    }

    /// The kind of every record in the file, or `None` for a union file holding several.
    pub fn kind(&self) -> Option<InputKind> {
        self.kind
    }

    /// The file's block codec.
    pub fn codec(&self) -> BlockCodec {
        self.blocks.codec
    }
}

impl<R: Read> Iterator for ContainerRecords<R> {
    type Item = Result<Validated, InvalidEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let value = match self.blocks.next_datum()? {
            Ok(v) => v,
            Err(e) => return Some(Err(InvalidEvent::Malformed(e))),
        };
        Some(input_json(value, &self.blocks.schema).and_then(|json| event::validate(&json)))
    }
}

/// Reads every status change of a container file written by
/// [`StatusChangeWriter`](super::StatusChangeWriter) (or any writer using
/// [`status_change_schema`](super::status_change_schema) or a compatible one). Loads the
/// whole file; the first damaged block or record is an error.
pub fn read_status_changes<R: Read>(r: R) -> Result<Vec<StatusChange>, AvroError> {
    let mut blocks = BlockReader::open(r)?;
    match &blocks.schema {
        Schema::Record(rec) if rec.name.name == "StatusChange" => {}
        other => return Err(AvroError::NotStatusChange(schema_kind(other))),
    }
    let mut out = Vec::new();
    while let Some(item) = blocks.next_datum() {
        let value = item.map_err(AvroError::BadBlock)?;
        out.push(status_change_from_value(&value)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::avro::block::{put_bytes, put_long, SYNC_MARKER};
    use crate::codec::avro::fixtures::*;
    use crate::codec::avro::input::decode_datum;
    use crate::codec::avro::schema::{compact_json, TICK_AVSC};
    use crate::codec::avro::writer::{InputWriter, StatusChangeWriter};
    use serde_json::{json, Value as Json};

    #[test]
    fn union_schemas_carry_mixed_inputs() {
        let union = union_schema();
        for (kind, record) in samples() {
            let bytes = apache_avro::to_avro_datum(&union, union_value(kind, &record)).unwrap();
            assert_eq!(decode_datum(&bytes, &union), event::validate(&record));
        }
        let mut writer = apache_avro::Writer::new(&union, Vec::new());
        for (kind, record) in samples() {
            writer.append(union_value(kind, &record)).unwrap();
        }
        let file = writer.into_inner().unwrap();
        let records = read_container(&file[..]).unwrap();
        assert_eq!(records.kind(), None);
        let got: Vec<_> = records.collect();
        let want: Vec<_> = samples().iter().map(|(_, r)| event::validate(r)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn input_containers_read_back_as_events() {
        for codec in [BlockCodec::Null, BlockCodec::Deflate] {
            for kind in InputKind::ALL {
                let records: Vec<Json> = samples()
                    .into_iter()
                    .filter(|(k, _)| *k == kind)
                    .map(|(_, r)| r)
                    .collect();
                let mut invalid = records[0].clone();
                invalid["event_time"] = json!("not a time");
                let mut w = InputWriter::with_codec(Vec::new(), kind, codec).unwrap();
                w.write_block(&records).unwrap();
                w.write_block(&[invalid.clone()]).unwrap();
                w.write_block(&records).unwrap();
                let file = w.into_inner();

                let reader = read_container(&file[..]).unwrap();
                assert_eq!(reader.kind(), Some(kind));
                assert_eq!(reader.codec(), codec);
                let got: Vec<_> = reader.collect();
                let want: Vec<_> = records
                    .iter()
                    .chain([&invalid])
                    .chain(&records)
                    .map(event::validate)
                    .collect();
                assert_eq!(got, want);
                assert!(got[records.len()]
                    .as_ref()
                    .unwrap_err()
                    .to_string()
                    .contains("event_time"));
                // apache_avro reads the same file.
                assert_eq!(
                    apache_avro::Reader::new(&file[..]).unwrap().count(),
                    2 * records.len() + 1
                );
            }
        }
        // A record that does not convert stops the whole block, naming the record.
        let mut w = InputWriter::new(Vec::new(), InputKind::Visit).unwrap();
        let before = w.bytes_written();
        let mut bad = visit();
        bad["visit_type"] = json!("drive_by");
        let e = w.write_block(&[visit(), bad]).unwrap_err();
        assert!(e.to_string().contains("record 1"), "{e}");
        assert!(e.to_string().contains("visit_type"), "{e}");
        assert_eq!(w.bytes_written(), before);
        assert_eq!(w.into_inner().len() as u64, before);
    }

    fn header_with(codec: &str, schema: &str) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        put_long(&mut h, 2);
        put_bytes(&mut h, b"avro.schema");
        put_bytes(&mut h, schema.as_bytes());
        put_bytes(&mut h, b"avro.codec");
        put_bytes(&mut h, codec.as_bytes());
        put_long(&mut h, 0);
        h.extend_from_slice(&SYNC_MARKER);
        h
    }

    #[test]
    fn damaged_containers_give_precise_errors() {
        let err = |bytes: &[u8]| read_container(bytes).err().unwrap();
        assert!(matches!(err(b""), AvroError::NotAContainer(_)));
        let e = err(br#"{"type":"tick"}"#);
        assert!(e.to_string().contains("JSON lines"), "{e}");
        let header = header_with("null", &compact_json(TICK_AVSC));
        assert!(matches!(
            err(&header[..header.len() - 5]),
            AvroError::BadHeader(_)
        ));
        assert!(matches!(err(&header[..30]), AvroError::BadHeader(_)));
        let e = err(&header_with("snappy", &compact_json(TICK_AVSC)));
        assert!(
            matches!(&e, AvroError::UnsupportedCodec(c) if c == "snappy"),
            "{e}"
        );
        assert!(matches!(
            err(&header_with("null", "{\"type\":\"nope\"}")),
            AvroError::BadSchema(_)
        ));
        let status = StatusChangeWriter::new(Vec::new()).unwrap().into_inner();
        let e = err(&status);
        assert!(matches!(e, AvroError::NotInput(_)), "{e}");
        let ticks = InputWriter::new(Vec::new(), InputKind::Tick)
            .unwrap()
            .into_inner();
        let e = read_status_changes(&ticks[..]).unwrap_err();
        assert!(matches!(e, AvroError::NotStatusChange(_)), "{e}");

        // A file cut off inside block 2: block 1 reads, then one error, then the end.
        let mut w = InputWriter::new(Vec::new(), InputKind::Tick).unwrap();
        let boundary = w.bytes_written() + w.write_block(&[tick(), tick()]).unwrap();
        w.write_block(&[tick()]).unwrap();
        let file = w.into_inner();
        let got: Vec<_> = read_container(&file[..file.len() - 20]).unwrap().collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok() && got[1].is_ok());
        let e = got[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("block 2 is truncated"), "{e}");
        let e = read_status_changes(&status[..]).unwrap();
        assert!(e.is_empty());

        // A damaged record in block 1: an error, the rest of block 1 skipped, block 2 read.
        let mut damaged = file.clone();
        let first_record = boundary as usize - 16 - 2 * 21; // two 21-byte tick datums
        assert_eq!(damaged[first_record], 40); // length prefix of "2024-03-01T00:00:00Z"
        damaged[first_record] = 0x7e;
        let got: Vec<_> = read_container(&damaged[..]).unwrap().collect();
        assert_eq!(got.len(), 2, "{got:?}");
        let e = got[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("block 1, record 1"), "{e}");
        assert!(e.contains("1 records after it"), "{e}");
        assert!(got[1].is_ok());

        // A wrong sync marker stops reading.
        let mut bad_marker = file.clone();
        bad_marker[boundary as usize - 1] ^= 0xff;
        let got: Vec<_> = read_container(&bad_marker[..]).unwrap().collect();
        assert_eq!(got.len(), 1);
        assert!(got[0]
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("sync marker"));
    }
}
