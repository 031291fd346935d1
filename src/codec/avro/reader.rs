//! Reading object container files: [`read_container`] for input records (each validated
//! like a JSON line) and [`read_status_changes`] for churnwatch's own status-change
//! output. Reads from the [`Read`] it is given; opens no files.
//!
//! The reader is hardened for untrusted files: header sizes, block sizes and record
//! counts are bounded before anything is allocated, deflate output is capped, and every
//! record goes through the [scanner](super::scan) before `apache_avro` decodes it.
//!
//! # Damage
//!
//! A damaged header (magic, metadata, schema, codec) is an [`AvroError`]: nothing of the
//! file can be read. A damaged *block* costs that block only. A block is damaged when its
//! record count or byte size is unreadable or implausible, the file ends inside it, the
//! 16 bytes after its data are not the header's sync marker, its data does not
//! decompress, or its data is not exactly the claimed number of records of the schema
//! (every record of a block is scanned before the first is handed out, so a damaged
//! block gives none of its records). It becomes one item: an error naming the block
//! (1-based, counting the blocks read), its byte offset, what was wrong and how many
//! records it claimed. Reading then goes on with the next block:
//!
//! - right after the damaged block, when its framing held (only its data was bad);
//! - right after it too, when only its sync marker is wrong and a whole block (with a
//!   matching marker) follows there;
//! - otherwise after the next occurrence of the sync marker past the block's start
//!   (searching the bytes already read, then the rest of the file).
//!
//! If no sync marker follows, the error says so and reading ends. The items a file gives
//! depend only on its bytes, so a caller counting items (the replay resumes a file at an
//! item index) sees the same sequence every time. An I/O error of the underlying reader
//! is not damage: reading stops, and [`ContainerRecords::take_error`] hands it over.

use super::block::{unzigzag, BlockCodec, MAGIC, MAX_BLOCK_BYTES};
use super::error::AvroError;
use super::input::input_json;
use super::scan::{datum_len, decode_scanned, zero_sized, MAX_EMPTY_ITEMS};
use super::schema::{input_kinds, schema_kind, InputKind};
use super::status::status_change_from_value;
use crate::core::event::{self, InvalidEvent, Validated};
use crate::core::status::StatusChange;
use apache_avro::schema::Schema;
use apache_avro::types::Value as AvroValue;
use std::io::{self, BufReader, Read};
use std::ops::Range;

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

/// The file as a byte stream that knows its offset and can be given bytes back (after
/// a look-ahead or a search for the sync marker read past the point to go on from).
struct Source<R: Read> {
    r: BufReader<R>,
    /// Bytes given back; read again from `back_pos` on, before `r`.
    back: Vec<u8>,
    /// Read position in `back`.
    back_pos: usize,
    /// File offset of the next byte read.
    offset: u64,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.back_pos < self.back.len() {
            let n = buf.len().min(self.back.len() - self.back_pos);
            buf[..n].copy_from_slice(&self.back[self.back_pos..self.back_pos + n]);
            self.back_pos += n;
            if self.back_pos == self.back.len() {
                self.back.clear();
                self.back_pos = 0;
            }
            n
        } else {
            self.r.read(buf)?
        };
        self.offset += n as u64;
        Ok(n)
    }
}

impl<R: Read> Source<R> {
    /// Gives back `bytes`, the last ones read: they are read again next.
    fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut back = Vec::with_capacity(bytes.len() + self.back.len() - self.back_pos);
        back.extend_from_slice(bytes);
        back.extend_from_slice(&self.back[self.back_pos..]);
        self.back = back;
        self.back_pos = 0;
        self.offset -= bytes.len() as u64;
    }
}

/// Reads through `r`, keeping a copy of every byte read.
struct Tee<'a, R: Read> {
    r: &'a mut R,
    copy: &'a mut Vec<u8>,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.r.read(buf)?;
        self.copy.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// What reading one block's framing (count, size, data, sync marker) found.
enum Framing {
    /// The file ends cleanly before the block.
    End,
    /// Count, size, data and a matching sync marker; the data is at `data` in the bytes
    /// read.
    Whole {
        /// The record count.
        count: u64,
        /// Where the data is in the bytes read.
        data: Range<usize>,
    },
    /// Count, size and data were read, but the 16 bytes after the data are not the
    /// file's sync marker.
    BadMarker {
        /// The record count.
        count: u64,
    },
    /// The framing is unusable.
    Broken {
        /// The record count, if it could be read.
        count: Option<i64>,
        /// What was wrong.
        problem: String,
    },
}

/// Reads one block's framing from `src` into `raw` (cleared first; it receives every
/// byte read). Only an error of the underlying reader is an `Err`.
fn read_framing<R: Read>(
    src: &mut Source<R>,
    marker: &[u8; 16],
    raw: &mut Vec<u8>,
) -> io::Result<Framing> {
    raw.clear();
    let broken = |count: Option<i64>, problem: String| Ok(Framing::Broken { count, problem });
    let mut tee = Tee {
        r: &mut *src,
        copy: &mut *raw,
    };
    let count = match read_long(&mut tee) {
        Ok(None) => return Ok(Framing::End),
        Ok(Some(c)) => c,
        Err(RawErr::Io(e)) => return Err(e),
        Err(RawErr::Eof) => return broken(None, "the file ends inside its record count".into()),
        Err(RawErr::Bad(m)) => {
            return broken(None, format!("its record count is unreadable ({m})"))
        }
    };
    let size = match read_long(&mut tee) {
        Ok(Some(size)) => size,
        Ok(None) | Err(RawErr::Eof) => {
            return broken(Some(count), "the file ends inside its byte size".into())
        }
        Err(RawErr::Io(e)) => return Err(e),
        Err(RawErr::Bad(m)) => {
            return broken(Some(count), format!("its byte size is unreadable ({m})"))
        }
    };
    if count < 0 {
        return broken(Some(count), format!("its record count {count} is negative"));
    }
    if size < 0 {
        return broken(Some(count), format!("its byte size {size} is negative"));
    }
    if size as u64 > MAX_BLOCK_BYTES {
        return broken(
            Some(count),
            format!(
                "it claims {size} bytes, more than the {MAX_BLOCK_BYTES} accepted (a damaged \
                 size, or a file written with huge blocks)"
            ),
        );
    }
    let head = raw.len();
    let want = size as u64 + 16;
    // `take` bounds the read; the buffer grows with the bytes actually there.
    src.by_ref().take(want).read_to_end(raw)?;
    let got = (raw.len() - head) as u64;
    if got < want {
        let inside = if got < size as u64 {
            "its data"
        } else {
            "its sync marker"
        };
        return broken(
            Some(count),
            format!("the file ends inside {inside} (it was cut off mid-write)"),
        );
    }
    let end = head + size as usize;
    if raw[end..] != marker[..] {
        return Ok(Framing::BadMarker {
            count: count as u64,
        });
    }
    Ok(Framing::Whole {
        count: count as u64,
        data: head..end,
    })
}

/// Where the sync marker first occurs in `hay`.
fn find_marker(hay: &[u8], marker: &[u8; 16]) -> Option<usize> {
    hay.windows(marker.len()).position(|w| w == marker)
}

/// Why [`BlockReader::next_datum`] gives no datum.
enum Fault {
    /// A damaged block, described; reading has gone on past it (or ended, if nothing
    /// after it could be found).
    Block(String),
    /// One record that `apache_avro` would not decode; reading goes on with the next.
    Record(String),
    /// The underlying reader failed; reading has stopped.
    Io(io::Error),
}

/// A container's header and the state of reading its blocks.
struct BlockReader<R: Read> {
    src: Source<R>,
    /// The writer schema from the header.
    schema: Schema,
    codec: BlockCodec,
    /// The sync marker from the header.
    marker: [u8; 16],
    /// The current block's data, decompressed.
    block: Vec<u8>,
    /// Where each record of the current block ends in `block` (the first starts at 0);
    /// every record was scanned before the first is handed out.
    ends: Vec<usize>,
    /// Records of the current block handed out so far.
    next: usize,
    /// 1-based number of the current block.
    block_no: u64,
    /// Whether a record of the schema can take zero bytes (bounds the record count).
    record_can_be_empty: bool,
    /// Reading has ended (cleanly, after an I/O error, or after damage with nothing
    /// readable after it).
    done: bool,
}

impl<R: Read> BlockReader<R> {
    /// Reads and checks the header.
    fn open(r: R) -> Result<Self, AvroError> {
        let mut r = Source {
            r: BufReader::new(r),
            back: Vec::new(),
            back_pos: 0,
            offset: 0,
        };
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
        let schema = parse_schema(schema_text)?;
        let codec = match codec_name {
            None => BlockCodec::Null,
            Some(name) => {
                let name = String::from_utf8_lossy(&name).into_owned();
                BlockCodec::from_name(&name).ok_or(AvroError::UnsupportedCodec(name))?
            }
        };
        let record_can_be_empty = zero_sized(&schema);
        Ok(BlockReader {
            src: r,
            schema,
            codec,
            marker,
            block: Vec::new(),
            ends: Vec::new(),
            next: 0,
            block_no: 0,
            record_can_be_empty,
            done: false,
        })
    }

    /// The next datum, a fault, or `None` at the end of the file (or after an I/O
    /// error).
    fn next_datum(&mut self) -> Option<Result<AvroValue, Fault>> {
        loop {
            if self.done {
                return None;
            }
            if self.next < self.ends.len() {
                let i = self.next;
                self.next += 1;
                let from = if i == 0 { 0 } else { self.ends[i - 1] };
                let datum = &self.block[from..self.ends[i]];
                return Some(decode_scanned(datum, &self.schema).map_err(|e| {
                    Fault::Record(format!(
                        "block {}, record {}: {e}; {REMEDY} to read this record",
                        self.block_no,
                        i + 1
                    ))
                }));
            }
            match self.load_block() {
                Ok(None) => continue,
                Ok(Some(damage)) => return Some(Err(Fault::Block(damage))),
                Err(e) => {
                    self.done = true;
                    return Some(Err(Fault::Io(e)));
                }
            }
        }
    }

    /// Reads the next block. `Ok(None)`: a block was loaded, or the file ended (`done`).
    /// `Ok(Some(reason))`: the block was damaged; reading has been moved to the block
    /// after it (or has ended, if none can be found), and `reason` says which block it
    /// was, where, what was wrong, how many records it claimed and how reading went on.
    fn load_block(&mut self) -> io::Result<Option<String>> {
        self.ends.clear();
        self.next = 0;
        let n = self.block_no + 1;
        self.block_no = n;
        let start = self.src.offset;
        let mut raw = Vec::new();
        let (claimed, problem) = match read_framing(&mut self.src, &self.marker, &mut raw)? {
            Framing::End => {
                self.done = true;
                return Ok(None);
            }
            Framing::Whole { count, data } => match self.unpack(count, &raw[data]) {
                Ok(()) => return Ok(None),
                Err(problem) => {
                    // Its framing holds unless the marker also occurs inside it (a damaged
                    // size that happens to end at a later block's marker): then the
                    // search below resynchronises at that first occurrence.
                    let trailing = raw.len() - self.marker.len();
                    if find_marker(&raw[1..], &self.marker).map(|i| i + 1) == Some(trailing) {
                        let next = self.src.offset;
                        return Ok(Some(damaged(
                            n,
                            start,
                            Some(count as i64),
                            &problem,
                            &format!("reading goes on with the next block, at byte {next}"),
                        )));
                    }
                    (Some(count as i64), problem)
                }
            },
            Framing::BadMarker { count } => {
                let problem = "the 16 bytes after its data are not the file's sync marker";
                // If only the marker is damaged, the next block starts right after it:
                // look ahead for a sound block there (framing, marker and records), which
                // is then the one handed out next.
                let next = self.src.offset;
                let mut ahead = Vec::new();
                let found = read_framing(&mut self.src, &self.marker, &mut ahead)?;
                let outcome = match found {
                    Framing::End => {
                        self.done = true;
                        Some("it is the last block of the file".to_string())
                    }
                    Framing::Whole { count, data } => {
                        self.unpack(count, &ahead[data]).ok().map(|()| {
                            self.block_no = n + 1;
                            format!(
                                "a sound block follows right after it, at byte {next}, and \
                                 reading goes on with that"
                            )
                        })
                    }
                    _ => None,
                };
                if let Some(outcome) = outcome {
                    return Ok(Some(damaged(
                        n,
                        start,
                        Some(count as i64),
                        problem,
                        &outcome,
                    )));
                }
                raw.extend_from_slice(&ahead);
                (Some(count as i64), problem.to_string())
            }
            Framing::Broken { count, problem } => (count, problem),
        };
        // The framing is lost: go on after the next sync marker past the block's start.
        raw.drain(..1.min(raw.len()));
        let outcome = match self.resync(raw)? {
            Some(at) => format!(
                "reading resynchronised at the next sync marker and goes on at byte {at} \
                 ({} bytes skipped)",
                at - start
            ),
            None => {
                self.done = true;
                format!(
                    "no sync marker follows, so the rest of the file ({} bytes from byte \
                     {start} on) cannot be read and reading ends here",
                    self.src.offset - start
                )
            }
        };
        Ok(Some(damaged(n, start, claimed, &problem, &outcome)))
    }

    /// Decompresses a block's data and scans its `count` records; on success they are
    /// ready to hand out, otherwise says what is wrong with the block.
    fn unpack(&mut self, count: u64, data: &[u8]) -> Result<(), String> {
        let block = self.codec.decompress(data.to_vec())?;
        let plausible = if self.record_can_be_empty {
            count <= MAX_EMPTY_ITEMS as u64
        } else {
            count <= block.len() as u64
        };
        if !plausible {
            return Err(format!(
                "its data holds only {} bytes, too few for {count} records",
                block.len()
            ));
        }
        // `count` is bounded by the data's length (or MAX_EMPTY_ITEMS) here.
        let mut ends = Vec::with_capacity(count as usize);
        let mut pos = 0;
        for i in 0..count {
            pos += datum_len(&block[pos..], &self.schema)
                .map_err(|e| format!("record {} of {count}: {e}", i + 1))?;
            ends.push(pos);
        }
        if pos < block.len() {
            return Err(format!(
                "{} bytes are left after its {count} records (damaged data, or records \
                 written with a different schema)",
                block.len() - pos
            ));
        }
        self.block = block;
        self.ends = ends;
        Ok(())
    }

    /// Finds the next sync marker in `hay` (bytes just read, ending at the current
    /// offset) or after it in the file, and moves reading to the byte after it; returns
    /// that offset, or `None` if the file ends first.
    fn resync(&mut self, mut hay: Vec<u8>) -> io::Result<Option<u64>> {
        loop {
            if let Some(i) = find_marker(&hay, &self.marker) {
                self.src.unread(&hay[i + self.marker.len()..]);
                return Ok(Some(self.src.offset));
            }
            // Keep what could be the start of a marker cut off at the end of `hay`.
            let keep_from = hay.len().saturating_sub(self.marker.len() - 1);
            hay.drain(..keep_from);
            let before = hay.len();
            self.src.by_ref().take(1 << 16).read_to_end(&mut hay)?;
            if hay.len() == before {
                return Ok(None);
            }
        }
    }
}

/// The description of a damaged block.
fn damaged(n: u64, start: u64, claimed: Option<i64>, problem: &str, outcome: &str) -> String {
    let claims = match claimed {
        Some(c) => format!("claims {c} records"),
        None => "claims an unreadable number of records".to_string(),
    };
    format!(
        "block {n} at byte {start} ({claims}): {problem}; its records are skipped \
         and {outcome} — {REMEDY} to recover them"
    )
}

/// Parses the header's schema text.
///
/// `apache_avro` 0.17 panics (instead of failing) on some invalid names — a record,
/// alias or type name such as `Cont$act`, as one flipped byte in a header makes — so
/// every name is checked first, and a panic that still escapes is turned into an error.
fn parse_schema(text: &str) -> Result<Schema, AvroError> {
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| AvroError::BadHeader(format!("`avro.schema` is not valid JSON ({e})")))?;
    check_names(&json)?;
    match std::panic::catch_unwind(|| Schema::parse_str(text).map_err(Box::new)) {
        Ok(parsed) => parsed.map_err(AvroError::BadSchema),
        Err(_) => Err(AvroError::BadHeader(
            "`avro.schema` could not be parsed (the Avro library failed on it)".into(),
        )),
    }
}

/// Checks every name in a schema's JSON: type names (a string schema), and the
/// `name`, `namespace` and `aliases` of named types, through `type`, `fields`, `items`
/// and `values` (defaults and other attributes are data, not names).
fn check_names(schema: &serde_json::Value) -> Result<(), AvroError> {
    use serde_json::Value;
    let bad = |what: &str, name: &str| {
        AvroError::BadHeader(format!(
            "`avro.schema` has the {what} `{}`, which is not a valid Avro name (letters, \
             digits and `_`, not starting with a digit, dot-separated)",
            name.escape_debug()
        ))
    };
    match schema {
        Value::String(name) if !full_name(name) => Err(bad("type name", name)),
        Value::Array(branches) => branches.iter().try_for_each(check_names),
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get("name") {
                if !full_name(name) {
                    return Err(bad("name", name));
                }
            }
            if let Some(Value::String(ns)) = map.get("namespace") {
                if !(ns.is_empty() || dotted(ns)) {
                    return Err(bad("namespace", ns));
                }
            }
            if let Some(Value::Array(aliases)) = map.get("aliases") {
                for alias in aliases {
                    if let Value::String(a) = alias {
                        if !full_name(a) {
                            return Err(bad("alias", a));
                        }
                    }
                }
            }
            for key in ["type", "items", "values"] {
                if let Some(inner) = map.get(key) {
                    check_names(inner)?;
                }
            }
            if let Some(Value::Array(fields)) = map.get("fields") {
                fields.iter().try_for_each(check_names)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An Avro name with an optional (possibly empty) namespace: `[ns.]name`.
fn full_name(s: &str) -> bool {
    match s.rsplit_once('.') {
        Some((ns, name)) => (ns.is_empty() || dotted(ns)) && identifier(name),
        None => identifier(s),
    }
}

/// Dot-separated identifiers.
fn dotted(s: &str) -> bool {
    s.split('.').all(identifier)
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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
    Ok(ContainerRecords {
        blocks,
        kind,
        error: None,
    })
}

/// The records of an input container file, each validated with [`event::validate`].
///
/// Yields `Err(InvalidEvent)` for a record that does not validate or decode (reading
/// goes on with the next record), and one `Err(InvalidEvent::DamagedBlock)` for each
/// damaged block (reading goes on with the block after it; see the module docs). Ends
/// early only after damage with no sync marker after it (that block's error says so) or
/// on an I/O error of the underlying reader, which [`take_error`](Self::take_error)
/// returns.
pub struct ContainerRecords<R: Read> {
    blocks: BlockReader<R>,
    kind: Option<InputKind>,
    /// The I/O error that ended reading, until taken.
    error: Option<AvroError>,
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

    /// The I/O error of the underlying reader that ended the iteration, if one did.
    /// Check it after the last item: the iteration ends the same way at the end of the
    /// file and at an I/O error, and only this tells them apart.
    pub fn take_error(&mut self) -> Option<AvroError> {
        self.error.take()
    }
}

impl<R: Read> Iterator for ContainerRecords<R> {
    type Item = Result<Validated, InvalidEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        let value = match self.blocks.next_datum()? {
            Ok(v) => v,
            Err(Fault::Block(e)) => return Some(Err(InvalidEvent::DamagedBlock(e))),
            Err(Fault::Record(e)) => return Some(Err(InvalidEvent::Malformed(e))),
            Err(Fault::Io(source)) => {
                self.error = Some(AvroError::Io {
                    doing: "reading a container block",
                    source,
                });
                return None;
            }
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
        let value = item.map_err(|f| match f {
            Fault::Block(e) | Fault::Record(e) => AvroError::BadBlock(e),
            Fault::Io(source) => AvroError::Io {
                doing: "reading a container block",
                source,
            },
        })?;
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
        // Names apache_avro 0.17 would panic on are header errors.
        let text = compact_json(TICK_AVSC);
        for bad in [
            text.replace("\"Tick\"", "\"Ti$k\""),
            text.replace("\"type\":\"string\"", "\"type\":{\"type\":\"str ng\"}"),
            text.replace(
                "\"name\":\"Tick\"",
                "\"name\":\"Tick\",\"aliases\":[\"1x\"]",
            ),
            text.replace(
                "\"namespace\":\"churnwatch\"",
                "\"namespace\":\"churn..watch\"",
            ),
        ] {
            assert_ne!(bad, text);
            let e = err(&header_with("null", &bad));
            assert!(
                matches!(&e, AvroError::BadHeader(m) if m.contains("not a valid Avro name")),
                "{bad}: {e}"
            );
        }
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
        let e = got[2].as_ref().unwrap_err();
        assert_eq!(e.code(), "damaged_block");
        let e = e.to_string();
        assert!(e.contains(&format!("block 2 at byte {boundary}")), "{e}");
        assert!(e.contains("claims 1 records"), "{e}");
        assert!(e.contains("the file ends inside its data"), "{e}");
        assert!(e.contains("no sync marker follows"), "{e}");
        let e = read_status_changes(&status[..]).unwrap();
        assert!(e.is_empty());

        // A damaged record in block 1: one error for the whole block, block 2 read.
        let mut damaged = file.clone();
        let first_record = boundary as usize - 16 - 2 * 21; // two 21-byte tick datums
        assert_eq!(damaged[first_record], 40); // length prefix of "2024-03-01T00:00:00Z"
        damaged[first_record] = 0x7e;
        let got: Vec<_> = read_container(&damaged[..]).unwrap().collect();
        assert_eq!(got.len(), 2, "{got:?}");
        let e = got[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("block 1 at byte"), "{e}");
        assert!(e.contains("claims 2 records"), "{e}");
        assert!(e.contains("record 1 of 2"), "{e}");
        assert!(e.contains(&format!("at byte {boundary}")), "{e}");
        assert!(got[1].is_ok());

        // A wrong sync marker costs its own block: the whole block after it is read.
        let mut bad_marker = file.clone();
        bad_marker[boundary as usize - 1] ^= 0xff;
        let got: Vec<_> = read_container(&bad_marker[..]).unwrap().collect();
        assert_eq!(got.len(), 2, "{got:?}");
        let e = got[0].as_ref().unwrap_err().to_string();
        assert!(e.contains("sync marker"), "{e}");
        assert!(e.contains("block 1"), "{e}");
        assert!(got[1].is_ok());
        // ... and in the last block, the file ends after it.
        let mut last_marker = file.clone();
        *last_marker.last_mut().unwrap() ^= 0xff;
        let got: Vec<_> = read_container(&last_marker[..]).unwrap().collect();
        assert_eq!(got.len(), 3, "{got:?}");
        let e = got[2].as_ref().unwrap_err().to_string();
        assert!(e.contains("last block"), "{e}");
        // A status-change file stops at its first damage.
        let mut w = StatusChangeWriter::new(Vec::new()).unwrap();
        let end = w.bytes_written() + w.write_block(&[change(1)]).unwrap();
        let mut changes = w.into_inner();
        changes[end as usize - 3] ^= 0x10;
        let e = read_status_changes(&changes[..]).unwrap_err();
        assert!(matches!(e, AvroError::BadBlock(_)), "{e}");
    }

    /// Three blocks of ticks (1, 2 and 3 records); returns the file and where each block
    /// starts.
    fn three_blocks() -> (Vec<u8>, Vec<usize>) {
        let mut w = InputWriter::new(Vec::new(), InputKind::Tick).unwrap();
        let mut starts = Vec::new();
        for n in 1..=3 {
            starts.push(w.bytes_written() as usize);
            w.write_block(&vec![tick(); n]).unwrap();
        }
        (w.into_inner(), starts)
    }

    fn codes(file: &[u8]) -> Vec<&'static str> {
        read_container(file)
            .unwrap()
            .map(|r| r.map_or_else(|e| e.code(), |_| "ok"))
            .collect()
    }

    #[test]
    fn broken_framing_resynchronises_at_the_next_sync_marker() {
        let (file, starts) = three_blocks();
        // A size claiming more than the file holds: block 2 is lost, block 3 is read.
        let mut f = file.clone();
        f[starts[1] + 1] = 0x7e; // size 63 instead of 42
        assert_eq!(codes(&f), ["ok", "damaged_block", "ok", "ok", "ok"]);
        let e = read_container(&f[..]).unwrap().nth(1).unwrap().unwrap_err();
        let e = e.to_string();
        assert!(e.contains("resynchronised"), "{e}");
        assert!(e.contains(&format!("goes on at byte {}", starts[2])), "{e}");
        // A negative count.
        let mut f = file.clone();
        f[starts[1]] = 0x03;
        assert_eq!(codes(&f), ["ok", "damaged_block", "ok", "ok", "ok"]);
        // A count that claims fewer records than the data holds.
        let mut f = file.clone();
        f[starts[1]] = 0x02;
        assert_eq!(codes(&f), ["ok", "damaged_block", "ok", "ok", "ok"]);
        // A damaged marker after block 1 and damaged data in block 2: the look-ahead
        // finds no sound block, so reading resynchronises after block 2's marker.
        let mut f = file.clone();
        f[starts[1] - 1] ^= 0xff;
        f[starts[2] - 20] = 0xff;
        assert_eq!(codes(&f), ["damaged_block", "ok", "ok", "ok"]);
        let e = read_container(&f[..]).unwrap().next().unwrap().unwrap_err();
        let e = e.to_string();
        assert!(e.contains(&format!("goes on at byte {}", starts[2])), "{e}");
        // Garbage of any length between blocks 1 and 2 (crossing the search's read
        // chunks) costs block 2 unless a sync marker ends the garbage.
        for junk in [1usize, 17, 65_530, 65_541, 65_550, 140_000] {
            let mut f = file[..starts[1]].to_vec();
            f.extend(std::iter::repeat_n(0u8, junk));
            f.extend_from_slice(&SYNC_MARKER);
            f.extend_from_slice(&file[starts[1]..]);
            assert_eq!(
                codes(&f),
                ["ok", "damaged_block", "ok", "ok", "ok", "ok", "ok"],
                "{junk}"
            );
            let e = read_container(&f[..]).unwrap().nth(1).unwrap().unwrap_err();
            let e = e.to_string();
            let at = starts[1] + junk + 16;
            assert!(e.contains(&format!("goes on at byte {at}")), "{junk}: {e}");
            assert!(e.contains(&format!("({} bytes skipped)", junk + 16)), "{e}");
        }
        // Garbage at the end with no marker: one error, then the end.
        let mut f = file.clone();
        f.extend_from_slice(&[0x55; 100]);
        assert_eq!(
            codes(&f),
            ["ok", "ok", "ok", "ok", "ok", "ok", "damaged_block"]
        );
    }

    /// Reads `data`, then fails.
    struct Failing<'a>(&'a [u8]);

    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn an_io_error_ends_the_records_and_is_kept() {
        let (file, starts) = three_blocks();
        let mut records = read_container(Failing(&file[..starts[2] + 3])).unwrap();
        let got: Vec<_> = records.by_ref().collect();
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got.iter().all(Result::is_ok));
        let e = records.take_error().unwrap();
        assert!(e.to_string().contains("disk on fire"), "{e}");
        assert!(records.take_error().is_none());
        let mut whole = read_container(&file[..]).unwrap();
        assert_eq!(whole.by_ref().count(), 6);
        assert!(whole.take_error().is_none());
    }
}
