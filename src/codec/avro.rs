//! The Avro side of the public contract: schemas, single-datum decoding and encoding,
//! and object container files.
//!
//! The schemas live in `schemas/*.avsc` (namespace `churnwatch`) and are embedded here
//! with `include_str!`:
//!
//! | record                    | file                  | role                         |
//! |---------------------------|-----------------------|------------------------------|
//! | `churnwatch.RepairOrder`  | `repair_order.avsc`   | input, JSON `type` `repair_order` |
//! | `churnwatch.Visit`        | `visit.avsc`          | input, JSON `type` `visit`   |
//! | `churnwatch.Contract`     | `contract.avsc`       | input, JSON `type` `contract` |
//! | `churnwatch.Tick`         | `tick.avsc`           | input, JSON `type` `tick`    |
//! | `churnwatch.StatusChange` | `status_change.avsc`  | output ([`StatusChange`])    |
//!
//! Input records have exactly the field names of the JSON contract; timestamps and dates
//! are strings (the same RFC 3339 / `YYYY-MM-DD` text as in JSON), amounts and mileage
//! are doubles, optional fields are `["null", T]` with default `null`, and the closed
//! value sets (`ro_type`, `visit_type`, `contract_type`, `action`) are Avro enums whose
//! symbols are the JSON wire names. Avro records carry no `type` field: the record name
//! says which input it is.
//!
//! Decoding never trusts the bytes: every datum is first walked against its writer
//! schema by a bounds-checking scanner (lengths, counts, enum and union indexes, UTF-8),
//! and only a datum that fits is handed to `apache_avro` for decoding. The decoded value
//! is turned into the JSON shape (`type` inserted from the record name, unions
//! unwrapped) and goes through [`event::validate`], the single validation path shared
//! with JSON lines, so both wire formats obey the same rules and give the same errors.
//!
//! Container files written by churnwatch ([`StatusChangeWriter`], [`InputWriter`]) are
//! deterministic: the header is built here with a fixed metadata order and the sync
//! marker is the constant [`SYNC_MARKER`], so the same records always give the same
//! bytes, and a file truncated at a block boundary can be continued with `resume` to
//! give exactly the bytes of an uninterrupted run.

use crate::core::event::{self, EventBody, Input, InvalidEvent, Validated};
use crate::core::status::{Level, Lifecycle, Reason, StatusChange, Tier, Trigger};
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema, Schema, SchemaKind};
use apache_avro::types::Value as AvroValue;
use chrono::{DateTime, NaiveDate, SecondsFormat};
use serde_json::{Map, Value as Json};
use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::sync::OnceLock;
use thiserror::Error;

/// Avro namespace of every churnwatch schema.
pub const NAMESPACE: &str = "churnwatch";

/// Source text of `schemas/repair_order.avsc`.
pub const REPAIR_ORDER_AVSC: &str = include_str!("../../schemas/repair_order.avsc");
/// Source text of `schemas/visit.avsc`.
pub const VISIT_AVSC: &str = include_str!("../../schemas/visit.avsc");
/// Source text of `schemas/contract.avsc`.
pub const CONTRACT_AVSC: &str = include_str!("../../schemas/contract.avsc");
/// Source text of `schemas/tick.avsc`.
pub const TICK_AVSC: &str = include_str!("../../schemas/tick.avsc");
/// Source text of `schemas/status_change.avsc`.
pub const STATUS_CHANGE_AVSC: &str = include_str!("../../schemas/status_change.avsc");

/// Sync marker of every object container file churnwatch writes.
///
/// Avro normally uses a random marker per file; a constant one makes output files
/// byte-for-byte reproducible and lets a file truncated at a block boundary be continued
/// ([`StatusChangeWriter::resume`]) with bytes identical to an uninterrupted run.
pub const SYNC_MARKER: [u8; 16] =
    0x63_77_1c_e5_a0_4d_97_b2_5e_0f_c8_3a_d1_26_6b_f4u128.to_be_bytes();

/// Magic bytes that open every Avro object container file.
const MAGIC: [u8; 4] = *b"Obj\x01";
/// Marker that opens an Avro single-object encoding.
const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
/// Length of the single-object header: the marker and an 8-byte schema fingerprint.
const SINGLE_OBJECT_HEADER_LEN: usize = 10;

/// Largest data block (after decompression) a container reader accepts.
const MAX_BLOCK_BYTES: u64 = 256 * 1024 * 1024;
/// Largest header metadata value (e.g. the schema) a container reader accepts.
const MAX_META_VALUE_BYTES: u64 = 16 * 1024 * 1024;
/// Largest number of header metadata entries a container reader accepts.
const MAX_META_ENTRIES: i64 = 1024;
/// Deepest nesting of records, arrays, maps and unions the datum scanner follows.
const MAX_DEPTH: usize = 64;
/// Most items of a zero-byte type (e.g. `null`) accepted in one array, map or block.
const MAX_EMPTY_ITEMS: i64 = 1 << 16;

/// The four kinds of input record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputKind {
    /// A repair order (`churnwatch.RepairOrder`, JSON `type` `repair_order`).
    RepairOrder,
    /// A visit (`churnwatch.Visit`, JSON `type` `visit`).
    Visit,
    /// A contract event (`churnwatch.Contract`, JSON `type` `contract`).
    Contract,
    /// A clock tick (`churnwatch.Tick`, JSON `type` `tick`).
    Tick,
}

impl InputKind {
    /// Every input kind.
    pub const ALL: [InputKind; 4] = [
        InputKind::RepairOrder,
        InputKind::Visit,
        InputKind::Contract,
        InputKind::Tick,
    ];

    /// The JSON `type` value.
    pub fn type_name(self) -> &'static str {
        match self {
            InputKind::RepairOrder => "repair_order",
            InputKind::Visit => "visit",
            InputKind::Contract => "contract",
            InputKind::Tick => "tick",
        }
    }

    /// The Avro record name (without namespace).
    pub fn record_name(self) -> &'static str {
        match self {
            InputKind::RepairOrder => "RepairOrder",
            InputKind::Visit => "Visit",
            InputKind::Contract => "Contract",
            InputKind::Tick => "Tick",
        }
    }

    /// The kind with this JSON `type` value.
    pub fn from_type_name(name: &str) -> Option<InputKind> {
        InputKind::ALL.into_iter().find(|k| k.type_name() == name)
    }

    /// The kind with this Avro record name (without namespace).
    pub fn from_record_name(name: &str) -> Option<InputKind> {
        InputKind::ALL.into_iter().find(|k| k.record_name() == name)
    }

    /// The kind of a decoded input.
    pub fn of(input: &Input) -> InputKind {
        match input {
            Input::Tick(_) => InputKind::Tick,
            Input::Event(e) => match e.body {
                EventBody::RepairOrder(_) => InputKind::RepairOrder,
                EventBody::Visit(_) => InputKind::Visit,
                EventBody::Contract(_) => InputKind::Contract,
            },
        }
    }

    /// Source text of the kind's `.avsc` file.
    pub fn avsc(self) -> &'static str {
        match self {
            InputKind::RepairOrder => REPAIR_ORDER_AVSC,
            InputKind::Visit => VISIT_AVSC,
            InputKind::Contract => CONTRACT_AVSC,
            InputKind::Tick => TICK_AVSC,
        }
    }

    fn index(self) -> usize {
        match self {
            InputKind::RepairOrder => 0,
            InputKind::Visit => 1,
            InputKind::Contract => 2,
            InputKind::Tick => 3,
        }
    }
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.type_name())
    }
}

/// Compression of the data blocks of a container file churnwatch writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BlockCodec {
    /// No compression (Avro codec `null`).
    #[default]
    Null,
    /// Raw deflate, RFC 1951 (Avro codec `deflate`).
    Deflate,
}

impl BlockCodec {
    /// The Avro codec name written to the header (`avro.codec`).
    pub fn name(self) -> &'static str {
        match self {
            BlockCodec::Null => "null",
            BlockCodec::Deflate => "deflate",
        }
    }

    fn from_name(name: &str) -> Option<BlockCodec> {
        match name {
            "null" => Some(BlockCodec::Null),
            "deflate" => Some(BlockCodec::Deflate),
            _ => None,
        }
    }

    fn compress(self, data: Vec<u8>) -> Result<Vec<u8>, AvroError> {
        match self {
            BlockCodec::Null => Ok(data),
            BlockCodec::Deflate => {
                let mut enc = libflate::deflate::Encoder::new(Vec::with_capacity(data.len() / 2));
                enc.write_all(&data).map_err(|source| AvroError::Io {
                    doing: "deflate-compressing a block",
                    source,
                })?;
                enc.finish().into_result().map_err(|source| AvroError::Io {
                    doing: "deflate-compressing a block",
                    source,
                })
            }
        }
    }

    /// Decompresses a block, refusing to produce more than [`MAX_BLOCK_BYTES`].
    fn decompress(self, data: Vec<u8>) -> Result<Vec<u8>, String> {
        match self {
            BlockCodec::Null => Ok(data),
            BlockCodec::Deflate => {
                let mut out = Vec::new();
                libflate::deflate::Decoder::new(&data[..])
                    .take(MAX_BLOCK_BYTES + 1)
                    .read_to_end(&mut out)
                    .map_err(|e| format!("deflate data is corrupt ({e})"))?;
                if out.len() as u64 > MAX_BLOCK_BYTES {
                    return Err(format!(
                        "block inflates to more than {MAX_BLOCK_BYTES} bytes; \
                         rewrite the file with smaller blocks"
                    ));
                }
                Ok(out)
            }
        }
    }
}

/// What went wrong encoding records or reading and writing container files.
#[derive(Debug, Error)]
pub enum AvroError {
    /// The record to encode is not a JSON object.
    #[error("an input record must be a JSON object, found {found}; pass one record such as {{\"event_time\": ...}}")]
    NotAnObject {
        /// What was passed instead.
        found: &'static str,
    },
    /// The record's `type` is not the kind it is being encoded as.
    #[error("the record has `type` {found} but is being encoded as {expected}; encode it with the matching InputKind or fix its `type`")]
    TypeMismatch {
        /// The kind requested.
        expected: InputKind,
        /// The record's `type` value (as JSON).
        found: String,
    },
    /// A field the Avro schema requires is absent or null.
    #[error("field `{field}` is required by the Avro schema churnwatch.{record} but is missing or null; add it")]
    MissingField {
        /// Avro record name.
        record: &'static str,
        /// The field.
        field: String,
    },
    /// The record has a field the Avro schema does not know.
    #[error("field `{field}` is not part of the Avro schema churnwatch.{record}; remove it from the record (or add it to the schema first)")]
    UnknownField {
        /// Avro record name.
        record: &'static str,
        /// The field.
        field: String,
    },
    /// A field's value does not fit its Avro type.
    #[error("field `{field}`: {problem}")]
    Field {
        /// The field.
        field: String,
        /// What was wrong with it.
        problem: String,
    },
    /// One record of a block could not be encoded; nothing of the block was written.
    #[error("record {index} of the block (0-based): {source}; nothing of this block was written")]
    InBlock {
        /// Position of the record in the block.
        index: usize,
        /// Why it could not be encoded.
        #[source]
        source: Box<AvroError>,
    },
    /// `apache_avro` refused to encode a value built for the schema.
    #[error("encoding a churnwatch.{record} datum failed ({source}); the value does not match the schema, which is a churnwatch bug worth reporting")]
    Encode {
        /// Avro record name.
        record: &'static str,
        /// The library's error.
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// Reading or writing failed.
    #[error("I/O error while {doing}: {source}")]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes do not start like an Avro object container file.
    #[error("not an Avro object container file: {0}")]
    NotAContainer(String),
    /// The container header is damaged.
    #[error(
        "corrupt Avro container header: {0}; the file is damaged or was not written completely"
    )]
    BadHeader(String),
    /// The schema in the container header is not valid Avro.
    #[error("the schema in the container header is not valid Avro ({0}); the file was written by a broken writer")]
    BadSchema(#[source] Box<apache_avro::Error>),
    /// The container holds something other than churnwatch input records.
    #[error("the container holds {0}, not churnwatch input records; expected a record named RepairOrder, Visit, Contract or Tick (or a union of them) as written from schemas/*.avsc")]
    NotInput(String),
    /// The container holds something other than status changes.
    #[error("the container holds {0}, not churnwatch.StatusChange records; pass a status-change file written by churnwatch")]
    NotStatusChange(String),
    /// The container uses a compression codec churnwatch cannot read.
    #[error("the container uses codec `{0}`; churnwatch reads only `null` and `deflate` — rewrite the file with one of those")]
    UnsupportedCodec(String),
    /// A data block of a status-change container is damaged.
    #[error("corrupt Avro container data: {0}")]
    BadBlock(String),
    /// A decoded value does not have the shape of a status change.
    #[error("status change field `{field}`: {problem}")]
    BadStatusChange {
        /// The field.
        field: String,
        /// What was wrong with it.
        problem: String,
    },
}

// ---------------------------------------------------------------------------------------
// Embedded schemas
// ---------------------------------------------------------------------------------------

/// A parsed embedded schema with its compact JSON text (for container headers).
struct Embedded {
    schema: Schema,
    record: RecordSchema,
    compact: String,
}

impl Embedded {
    fn load(file: &str, text: &str) -> Embedded {
        // The schemas are part of the binary and covered by unit tests; a failure here is a
        // build defect, not bad input.
        let schema = Schema::parse_str(text)
            .unwrap_or_else(|e| panic!("embedded schema schemas/{file} does not parse: {e}"));
        let record = match &schema {
            Schema::Record(r) => r.clone(),
            _ => panic!("embedded schema schemas/{file} is not a record"),
        };
        Embedded {
            schema,
            record,
            compact: compact_json(text),
        }
    }
}

struct Embeds {
    inputs: [Embedded; 4],
    status_change: Embedded,
}

fn embeds() -> &'static Embeds {
    static EMBEDS: OnceLock<Embeds> = OnceLock::new();
    EMBEDS.get_or_init(|| Embeds {
        inputs: [
            Embedded::load("repair_order.avsc", REPAIR_ORDER_AVSC),
            Embedded::load("visit.avsc", VISIT_AVSC),
            Embedded::load("contract.avsc", CONTRACT_AVSC),
            Embedded::load("tick.avsc", TICK_AVSC),
        ],
        status_change: Embedded::load("status_change.avsc", STATUS_CHANGE_AVSC),
    })
}

fn input_embedded(kind: InputKind) -> &'static Embedded {
    &embeds().inputs[kind.index()]
}

/// The parsed Avro schema of an input kind (parsed once, on first use).
pub fn input_schema(kind: InputKind) -> &'static Schema {
    &input_embedded(kind).schema
}

/// The parsed Avro schema of [`StatusChange`] (parsed once, on first use).
pub fn status_change_schema() -> &'static Schema {
    &embeds().status_change.schema
}

/// Removes insignificant whitespace from JSON text, keeping key order and string
/// contents exactly, so the header text does not depend on any map ordering.
fn compact_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Decoding one datum
// ---------------------------------------------------------------------------------------

/// Decodes one Avro binary datum (no header, no framing) written with `schema` and
/// validates it with [`event::validate`].
///
/// `schema` is the writer schema: one of [`input_schema`], a compatible evolution of it
/// (same record name, fields added or removed), or a union of such records. The record
/// name decides the JSON `type`. Bytes that do not form exactly one datum of the schema
/// give [`InvalidEvent::Malformed`] saying where they went wrong; this function never
/// panics, whatever the bytes.
pub fn decode_datum(bytes: &[u8], schema: &Schema) -> Result<Validated, InvalidEvent> {
    input_kinds(schema).map_err(|what| {
        InvalidEvent::Malformed(format!(
            "the writer schema is {what}, not a churnwatch input record (RepairOrder, Visit, \
             Contract or Tick, or a union of them); decode with avro::input_schema(kind) or a \
             compatible writer schema"
        ))
    })?;
    let (value, used) = decode_value(bytes, schema)
        .map_err(|e| InvalidEvent::Malformed(format!("{e}{}", framing_hint(bytes))))?;
    if used < bytes.len() {
        return Err(InvalidEvent::Malformed(format!(
            "{} bytes left over after the record; the data was written with a different schema \
             than the one given{}",
            bytes.len() - used,
            framing_hint(bytes)
        )));
    }
    let json = input_json(value, schema)?;
    event::validate(&json)
}

/// A hint for the common mistake of passing framed bytes as a bare datum.
fn framing_hint(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xC3, 0x01, ..] if bytes.len() >= 10 => {
            " (the bytes start with C3 01: Avro single-object encoding; strip its 10-byte header first)"
        }
        [0x00, _, _, _, _, ..] => {
            " (the bytes start with 00: possibly the Confluent wire format; strip its 5-byte prefix first)"
        }
        [b'O', b'b', b'j', 0x01, ..] => {
            " (the bytes are an object container file; read them with read_container)"
        }
        _ => "",
    }
}

/// Decodes one datum from the front of `bytes`; returns it and the number of bytes used.
fn decode_value(bytes: &[u8], schema: &Schema) -> Result<(AvroValue, usize), String> {
    let used = Scanner::new(schema, bytes).datum()?;
    let mut datum = &bytes[..used];
    let value = apache_avro::from_avro_datum(schema, &mut datum, None)
        .map_err(|e| format!("Avro decoding failed: {e}"))?;
    Ok((value, used))
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

fn lookup_name<'s>(resolved: &ResolvedSchema<'s>, name: &Name) -> Option<&'s Schema> {
    let names = resolved.get_names();
    names.get(name).copied().or_else(|| {
        names
            .iter()
            .find(|(n, _)| n.name == name.name)
            .map(|(_, s)| *s)
    })
}

/// Whether a value of the schema can occupy zero bytes.
fn zero_sized(schema: &Schema) -> bool {
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

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

fn put_long(buf: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z > 0x7F {
        buf.push((z & 0x7F) as u8 | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

fn put_bytes(buf: &mut Vec<u8>, bytes: &[u8]) {
    put_long(buf, bytes.len() as i64);
    buf.extend_from_slice(bytes);
}

/// The input kinds a writer schema can carry: a churnwatch input record, or a union of
/// them. The error describes what the schema is instead (e.g. "record `x.Y`").
fn input_kinds(schema: &Schema) -> Result<Vec<InputKind>, String> {
    match schema {
        Schema::Record(r) => InputKind::from_record_name(&r.name.name)
            .map(|k| vec![k])
            .ok_or_else(|| format!("record `{}`", r.name)),
        Schema::Union(u) => {
            let resolved = ResolvedSchema::try_from(schema)
                .map_err(|e| format!("a union whose named types do not resolve ({e})"))?;
            let mut kinds = Vec::new();
            for v in u.variants() {
                let v = match v {
                    Schema::Ref { name } => lookup_name(&resolved, name).unwrap_or(v),
                    v => v,
                };
                match v {
                    Schema::Record(r) => match InputKind::from_record_name(&r.name.name) {
                        Some(k) => kinds.push(k),
                        None => return Err(format!("a union with record `{}`", r.name)),
                    },
                    other => return Err(format!("a union with a {} branch", schema_kind(other))),
                }
            }
            if kinds.is_empty() {
                return Err("an empty union".into());
            }
            Ok(kinds)
        }
        other => Err(format!("a {}", schema_kind(other))),
    }
}

fn schema_kind(schema: &Schema) -> String {
    match schema {
        Schema::Record(r) => format!("record `{}`", r.name),
        Schema::Enum(e) => format!("enum `{}`", e.name),
        Schema::Fixed(f) => format!("fixed `{}`", f.name),
        Schema::Ref { name } => format!("reference to `{name}`"),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(_) => "union".into(),
        other => format!("{:?}", SchemaKind::from(other)).to_ascii_lowercase(),
    }
}

/// Turns a decoded input datum into the JSON shape [`event::validate`] takes.
fn input_json(value: AvroValue, schema: &Schema) -> Result<Json, InvalidEvent> {
    match (schema, value) {
        (Schema::Record(r), AvroValue::Record(fields)) => {
            let kind = InputKind::from_record_name(&r.name.name)
                .ok_or_else(|| InvalidEvent::UnknownType(r.name.to_string()))?;
            record_json(kind, fields)
        }
        (Schema::Union(u), AvroValue::Union(i, inner)) => {
            let variant = u.variants().get(i as usize).ok_or_else(|| {
                InvalidEvent::Malformed(format!("union branch {i} does not exist"))
            })?;
            match variant {
                Schema::Ref { name } => {
                    let resolved = ResolvedSchema::try_from(schema).map_err(|e| {
                        InvalidEvent::Malformed(format!(
                            "the writer schema's named types do not resolve ({e})"
                        ))
                    })?;
                    let target = lookup_name(&resolved, name).ok_or_else(|| {
                        InvalidEvent::Malformed(format!(
                            "the writer schema refers to `{name}`, which it never defines"
                        ))
                    })?;
                    input_json(*inner, target)
                }
                v => input_json(*inner, v),
            }
        }
        (s, _) => Err(InvalidEvent::Malformed(format!(
            "the writer schema is a {}, not a churnwatch input record",
            schema_kind(s)
        ))),
    }
}

fn record_json(kind: InputKind, fields: Vec<(String, AvroValue)>) -> Result<Json, InvalidEvent> {
    let mut map = Map::new();
    for (name, value) in fields {
        if name == "type" {
            // The record name decides the type; a stray field cannot override it.
            continue;
        }
        let json = value_json(value, &name)?;
        map.insert(name, json);
    }
    map.insert("type".into(), Json::String(kind.type_name().into()));
    Ok(Json::Object(map))
}

fn invalid(field: &str, problem: impl Into<String>) -> InvalidEvent {
    InvalidEvent::Invalid {
        field: field.to_string(),
        problem: problem.into(),
    }
}

fn finite(x: f64, field: &str) -> Result<Json, InvalidEvent> {
    serde_json::Number::from_f64(x)
        .map(Json::Number)
        .ok_or_else(|| invalid(field, format!("{x} is not a finite number")))
}

/// Converts a decoded Avro value to JSON; `field` is the top-level field it belongs to.
fn value_json(value: AvroValue, field: &str) -> Result<Json, InvalidEvent> {
    let instant = |dt: Option<DateTime<chrono::Utc>>| {
        dt.map(|d| Json::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
            .ok_or_else(|| invalid(field, "timestamp is out of the representable range"))
    };
    Ok(match value {
        AvroValue::Null => Json::Null,
        AvroValue::Boolean(b) => Json::Bool(b),
        AvroValue::Int(i) => Json::from(i),
        AvroValue::Long(i) => Json::from(i),
        AvroValue::Float(x) => finite(f64::from(x), field)?,
        AvroValue::Double(x) => finite(x, field)?,
        AvroValue::String(s) => Json::String(s),
        AvroValue::Enum(_, symbol) => Json::String(symbol),
        AvroValue::Union(_, inner) => value_json(*inner, field)?,
        AvroValue::Bytes(b) | AvroValue::Fixed(_, b) => {
            Json::Array(b.into_iter().map(Json::from).collect())
        }
        AvroValue::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|v| value_json(v, field))
                .collect::<Result<_, _>>()?,
        ),
        AvroValue::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k, value_json(v, field)?);
            }
            Json::Object(out)
        }
        AvroValue::Record(fields) => {
            let mut out = Map::new();
            for (k, v) in fields {
                out.insert(k, value_json(v, field)?);
            }
            Json::Object(out)
        }
        AvroValue::Date(days) => NaiveDate::from_num_days_from_ce_opt(days.saturating_add(719_163))
            .map(|d| Json::String(d.format("%Y-%m-%d").to_string()))
            .ok_or_else(|| invalid(field, format!("date {days} days from 1970 is out of range")))?,
        AvroValue::TimestampMillis(t) => instant(DateTime::from_timestamp_millis(t))?,
        AvroValue::TimestampMicros(t) => instant(DateTime::from_timestamp_micros(t))?,
        AvroValue::TimestampNanos(t) => instant(Some(DateTime::from_timestamp_nanos(t)))?,
        AvroValue::LocalTimestampMillis(_)
        | AvroValue::LocalTimestampMicros(_)
        | AvroValue::LocalTimestampNanos(_) => {
            return Err(invalid(
                field,
                "a local-timestamp carries no time zone, so it names no instant; \
                 send an RFC 3339 string with offset (as in schemas/*.avsc)",
            ))
        }
        AvroValue::TimeMillis(t) => Json::from(t),
        AvroValue::TimeMicros(t) => Json::from(t),
        AvroValue::BigDecimal(d) => Json::String(d.to_string()),
        AvroValue::Uuid(u) => Json::String(u.to_string()),
        AvroValue::Decimal(_) | AvroValue::Duration(_) => {
            return Err(invalid(
                field,
                "Avro decimal and duration values are not part of the churnwatch contract; \
                 send amounts as double (as in schemas/*.avsc)",
            ))
        }
    })
}

// ---------------------------------------------------------------------------------------
// Encoding inputs
// ---------------------------------------------------------------------------------------

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// Converts a JSON-shaped input record to an Avro value of [`input_schema`]`(kind)`.
///
/// The record may carry `"type"` (it must then name `kind`); every other key must be a
/// field of the schema. Values are converted as [`event::validate`] reads them: numbers
/// may be given as numeric strings, booleans as `"yes"`/`"no"`, enum values in any case.
/// Everything else (strings, dates, ids) is carried as the same text, so decoding the
/// result gives the same [`Validated`] as validating the JSON.
pub fn input_to_value(record: &Json, kind: InputKind) -> Result<AvroValue, AvroError> {
    let obj = record.as_object().ok_or(AvroError::NotAnObject {
        found: json_kind(record),
    })?;
    let record_schema = &input_embedded(kind).record;
    let record_name = kind.record_name();
    if let Some(value) = obj.get("type") {
        let matches = match value {
            Json::Null => true,
            Json::String(s) => s.trim() == kind.type_name(),
            _ => false,
        };
        if !matches {
            return Err(AvroError::TypeMismatch {
                expected: kind,
                found: value.to_string(),
            });
        }
    }
    for key in obj.keys() {
        if key != "type" && !record_schema.lookup.contains_key(key) {
            return Err(AvroError::UnknownField {
                record: record_name,
                field: key.clone(),
            });
        }
    }
    let mut fields = Vec::with_capacity(record_schema.fields.len());
    for f in &record_schema.fields {
        let value = match obj.get(&f.name) {
            None | Some(Json::Null) => {
                null_value(&f.schema).ok_or_else(|| AvroError::MissingField {
                    record: record_name,
                    field: f.name.clone(),
                })?
            }
            Some(v) => json_to_avro(v, &f.schema, &f.name)?,
        };
        fields.push((f.name.clone(), value));
    }
    Ok(AvroValue::Record(fields))
}

/// Encodes a JSON-shaped input record as one Avro binary datum of
/// [`input_schema`]`(kind)` (no header, no framing). See [`input_to_value`].
pub fn encode_input(record: &Json, kind: InputKind) -> Result<Vec<u8>, AvroError> {
    let value = input_to_value(record, kind)?;
    apache_avro::to_avro_datum(input_schema(kind), value).map_err(|source| AvroError::Encode {
        record: kind.record_name(),
        source: Box::new(source),
    })
}

/// The value of a schema for JSON null/absent, if the schema admits null.
fn null_value(schema: &Schema) -> Option<AvroValue> {
    match schema {
        Schema::Null => Some(AvroValue::Null),
        Schema::Union(u) => u
            .variants()
            .iter()
            .position(|v| matches!(v, Schema::Null))
            .map(|i| AvroValue::Union(i as u32, Box::new(AvroValue::Null))),
        _ => None,
    }
}

fn field_err(field: &str, problem: impl Into<String>) -> AvroError {
    AvroError::Field {
        field: field.to_string(),
        problem: problem.into(),
    }
}

fn json_number(v: &Json, field: &str) -> Result<f64, AvroError> {
    let x = match v {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => Some(
            s.trim()
                .parse::<f64>()
                .map_err(|_| field_err(field, format!("`{s}` is not a number")))?,
        ),
        other => {
            return Err(field_err(
                field,
                format!("expected a number, found {}", json_kind(other)),
            ))
        }
    };
    match x {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(field_err(field, "not a finite number")),
    }
}

fn json_to_avro(v: &Json, schema: &Schema, field: &str) -> Result<AvroValue, AvroError> {
    match schema {
        Schema::Null if v.is_null() => Ok(AvroValue::Null),
        Schema::Union(u) => {
            if v.is_null() {
                return null_value(schema)
                    .ok_or_else(|| field_err(field, "null is not allowed here"));
            }
            let mut last = None;
            for (i, branch) in u.variants().iter().enumerate() {
                if matches!(branch, Schema::Null) {
                    continue;
                }
                match json_to_avro(v, branch, field) {
                    Ok(x) => return Ok(AvroValue::Union(i as u32, Box::new(x))),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| field_err(field, "only null is allowed here")))
        }
        Schema::String => match v {
            Json::String(s) => Ok(AvroValue::String(s.clone())),
            other => Err(field_err(
                field,
                format!("expected a string, found {}", json_kind(other)),
            )),
        },
        Schema::Double => Ok(AvroValue::Double(json_number(v, field)?)),
        Schema::Float => Ok(AvroValue::Float(json_number(v, field)? as f32)),
        Schema::Long | Schema::Int => {
            let x = json_number(v, field)?;
            if x.fract() != 0.0 || x.abs() > 9.0e15 {
                return Err(field_err(field, format!("{x} is not a whole number")));
            }
            if matches!(schema, Schema::Int) {
                i32::try_from(x as i64)
                    .map(AvroValue::Int)
                    .map_err(|_| field_err(field, format!("{x} does not fit an int")))
            } else {
                Ok(AvroValue::Long(x as i64))
            }
        }
        Schema::Boolean => match v {
            Json::Bool(b) => Ok(AvroValue::Boolean(*b)),
            Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "y" => Ok(AvroValue::Boolean(true)),
                "false" | "no" | "0" | "n" => Ok(AvroValue::Boolean(false)),
                _ => Err(field_err(
                    field,
                    format!("`{s}` is not a boolean (true/false)"),
                )),
            },
            other => Err(field_err(
                field,
                format!("expected true or false, found {}", json_kind(other)),
            )),
        },
        Schema::Enum(e) => {
            let s = match v {
                Json::String(s) => s,
                other => {
                    return Err(field_err(
                        field,
                        format!("expected a string, found {}", json_kind(other)),
                    ))
                }
            };
            let wanted = s.trim().to_ascii_lowercase();
            e.symbols
                .iter()
                .position(|sym| *sym == wanted)
                .map(|i| AvroValue::Enum(i as u32, e.symbols[i].clone()))
                .ok_or_else(|| {
                    field_err(
                        field,
                        format!("`{s}` is not one of {}", e.symbols.join(", ")),
                    )
                })
        }
        other => Err(field_err(
            field,
            format!("expected {}, found {}", schema_kind(other), json_kind(v)),
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Status changes
// ---------------------------------------------------------------------------------------

fn trigger_name(t: Trigger) -> &'static str {
    match t {
        Trigger::Event => "event",
        Trigger::Timer => "timer",
    }
}

const TRIGGERS: [Trigger; 2] = [Trigger::Event, Trigger::Timer];

fn enum_value<T: Copy + PartialEq>(v: T, all: &[T], name: fn(T) -> &'static str) -> AvroValue {
    let index = all.iter().position(|x| *x == v).unwrap_or(0);
    AvroValue::Enum(index as u32, name(v).to_string())
}

/// The Avro value of a status change, matching [`status_change_schema`].
pub fn status_change_to_value(c: &StatusChange) -> AvroValue {
    let s = |x: &str| AvroValue::String(x.to_string());
    AvroValue::Record(vec![
        ("event_id".into(), s(&c.event_id)),
        ("customer_id".into(), s(&c.customer_id)),
        ("dealer_id".into(), s(&c.dealer_id)),
        ("event_time".into(), s(&c.event_time)),
        (
            "trigger".into(),
            enum_value(c.trigger, &TRIGGERS, trigger_name),
        ),
        (
            "previous_level".into(),
            enum_value(c.previous_level, &Level::ALL, Level::as_str),
        ),
        (
            "level".into(),
            enum_value(c.level, &Level::ALL, Level::as_str),
        ),
        (
            "previous_lifecycle".into(),
            enum_value(c.previous_lifecycle, &Lifecycle::ALL, Lifecycle::as_str),
        ),
        (
            "lifecycle".into(),
            enum_value(c.lifecycle, &Lifecycle::ALL, Lifecycle::as_str),
        ),
        ("tier".into(), enum_value(c.tier, &Tier::ALL, Tier::as_str)),
        ("previous_cell".into(), s(&c.previous_cell)),
        ("cell".into(), s(&c.cell)),
        (
            "days_since_last_visit".into(),
            AvroValue::Long(c.days_since_last_visit),
        ),
        ("last_visit_date".into(), s(&c.last_visit_date)),
        (
            "reasons".into(),
            AvroValue::Array(
                c.reasons
                    .iter()
                    .map(|r| {
                        AvroValue::Record(vec![
                            ("code".into(), s(&r.code)),
                            ("text".into(), s(&r.text)),
                        ])
                    })
                    .collect(),
            ),
        ),
        (
            "recommended_actions".into(),
            AvroValue::Array(c.recommended_actions.iter().map(|a| s(a)).collect()),
        ),
        ("p_alive".into(), opt_double(c.p_alive)),
        (
            "expected_visits_12m".into(),
            opt_double(c.expected_visits_12m),
        ),
        ("clv".into(), opt_double(c.clv)),
    ])
}

fn opt_double(v: Option<f64>) -> AvroValue {
    match v {
        None => AvroValue::Union(0, Box::new(AvroValue::Null)),
        Some(x) => AvroValue::Union(1, Box::new(AvroValue::Double(x))),
    }
}

fn sc_opt_double(v: &AvroValue, field: &str) -> Result<Option<f64>, AvroError> {
    match unwrap_union(v) {
        AvroValue::Null => Ok(None),
        AvroValue::Double(x) => Ok(Some(*x)),
        _ => Err(sc_err(field, "expected null or a double")),
    }
}

fn sc_err(field: &str, problem: impl Into<String>) -> AvroError {
    AvroError::BadStatusChange {
        field: field.to_string(),
        problem: problem.into(),
    }
}

fn unwrap_union(v: &AvroValue) -> &AvroValue {
    match v {
        AvroValue::Union(_, inner) => unwrap_union(inner),
        v => v,
    }
}

fn sc_string(v: &AvroValue, field: &str) -> Result<String, AvroError> {
    match unwrap_union(v) {
        AvroValue::String(s) | AvroValue::Enum(_, s) => Ok(s.clone()),
        other => Err(sc_err(field, format!("expected a string, found {other:?}"))),
    }
}

fn sc_enum<T: Copy>(
    v: &AvroValue,
    field: &str,
    all: &[T],
    name: fn(T) -> &'static str,
) -> Result<T, AvroError> {
    let s = sc_string(v, field)?;
    all.iter().copied().find(|x| name(*x) == s).ok_or_else(|| {
        sc_err(
            field,
            format!(
                "`{s}` is not one of {}",
                all.iter().map(|x| name(*x)).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

fn sc_array<'v>(v: &'v AvroValue, field: &str) -> Result<&'v [AvroValue], AvroError> {
    match unwrap_union(v) {
        AvroValue::Array(items) => Ok(items),
        other => Err(sc_err(field, format!("expected an array, found {other:?}"))),
    }
}

/// Reads a status change back from its Avro value (as decoded with
/// [`status_change_schema`] or a compatible writer schema).
pub fn status_change_from_value(value: &AvroValue) -> Result<StatusChange, AvroError> {
    let AvroValue::Record(fields) = unwrap_union(value) else {
        return Err(sc_err(
            "(record)",
            format!("expected a record, found {value:?}"),
        ));
    };
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| sc_err(name, "missing"))
    };
    let string = |name: &str| sc_string(get(name)?, name);
    let level = |name: &str| sc_enum(get(name)?, name, &Level::ALL, Level::as_str);
    let lifecycle = |name: &str| sc_enum(get(name)?, name, &Lifecycle::ALL, Lifecycle::as_str);
    let days_since_last_visit = match unwrap_union(get("days_since_last_visit")?) {
        AvroValue::Long(n) => *n,
        AvroValue::Int(n) => i64::from(*n),
        other => {
            return Err(sc_err(
                "days_since_last_visit",
                format!("expected a long, found {other:?}"),
            ))
        }
    };
    let mut reasons = Vec::new();
    for (i, r) in sc_array(get("reasons")?, "reasons")?.iter().enumerate() {
        let AvroValue::Record(rf) = unwrap_union(r) else {
            return Err(sc_err(&format!("reasons[{i}]"), "expected a record"));
        };
        let part = |name: &str| {
            let path = format!("reasons[{i}].{name}");
            rf.iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| sc_err(&path, "missing"))
                .and_then(|(_, v)| sc_string(v, &path))
        };
        reasons.push(Reason {
            code: part("code")?,
            text: part("text")?,
        });
    }
    let recommended_actions = sc_array(get("recommended_actions")?, "recommended_actions")?
        .iter()
        .enumerate()
        .map(|(i, a)| sc_string(a, &format!("recommended_actions[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StatusChange {
        event_id: string("event_id")?,
        customer_id: string("customer_id")?,
        dealer_id: string("dealer_id")?,
        event_time: string("event_time")?,
        trigger: sc_enum(get("trigger")?, "trigger", &TRIGGERS, trigger_name)?,
        previous_level: level("previous_level")?,
        level: level("level")?,
        previous_lifecycle: lifecycle("previous_lifecycle")?,
        lifecycle: lifecycle("lifecycle")?,
        tier: sc_enum(get("tier")?, "tier", &Tier::ALL, Tier::as_str)?,
        previous_cell: string("previous_cell")?,
        cell: string("cell")?,
        days_since_last_visit,
        last_visit_date: string("last_visit_date")?,
        reasons,
        recommended_actions,
        p_alive: sc_opt_double(get("p_alive")?, "p_alive")?,
        expected_visits_12m: sc_opt_double(get("expected_visits_12m")?, "expected_visits_12m")?,
        clv: sc_opt_double(get("clv")?, "clv")?,
    })
}

// ---------------------------------------------------------------------------------------
// Writing container files
// ---------------------------------------------------------------------------------------

/// The container header for an embedded schema: magic, metadata in a fixed order
/// (`avro.schema`, `avro.codec`), then [`SYNC_MARKER`].
fn container_header(embedded: &Embedded, codec: BlockCodec) -> Vec<u8> {
    let mut h = Vec::with_capacity(embedded.compact.len() + 64);
    h.extend_from_slice(&MAGIC);
    put_long(&mut h, 2);
    put_bytes(&mut h, b"avro.schema");
    put_bytes(&mut h, embedded.compact.as_bytes());
    put_bytes(&mut h, b"avro.codec");
    put_bytes(&mut h, codec.name().as_bytes());
    put_long(&mut h, 0);
    h.extend_from_slice(&SYNC_MARKER);
    h
}

/// The shared machinery of the two container writers.
struct ContainerWriter<W: Write> {
    out: W,
    embedded: &'static Embedded,
    record: &'static str,
    codec: BlockCodec,
    written: u64,
    encoder: Option<apache_avro::GenericSingleObjectWriter>,
    scratch: Vec<u8>,
}

impl<W: Write> ContainerWriter<W> {
    fn create(
        out: W,
        embedded: &'static Embedded,
        record: &'static str,
        codec: BlockCodec,
    ) -> Result<Self, AvroError> {
        let mut w = ContainerWriter::resume(out, embedded, record, codec);
        let header = container_header(embedded, codec);
        w.out.write_all(&header).map_err(|source| AvroError::Io {
            doing: "writing the container header",
            source,
        })?;
        w.written = header.len() as u64;
        Ok(w)
    }

    fn resume(
        out: W,
        embedded: &'static Embedded,
        record: &'static str,
        codec: BlockCodec,
    ) -> Self {
        ContainerWriter {
            out,
            embedded,
            record,
            codec,
            written: 0,
            encoder: None,
            scratch: Vec::new(),
        }
    }

    /// Encodes one datum (plain Avro binary) onto `data`.
    ///
    /// Goes through `apache_avro`'s single-object writer, which validates and encodes with
    /// a schema resolved once per container writer (resolving it per value, as
    /// `to_avro_datum` does, costs about three times as much), and strips the
    /// single-object header (`C3 01` and the 8-byte schema fingerprint) the spec puts in
    /// front of the plain datum.
    fn encode_datum(
        &mut self,
        value: &AvroValue,
        data: &mut Vec<u8>,
    ) -> Result<(), Box<apache_avro::Error>> {
        if self.encoder.is_none() {
            self.encoder = Some(apache_avro::GenericSingleObjectWriter::new_with_capacity(
                &self.embedded.schema,
                1024,
            )?);
        }
        if let Some(encoder) = &mut self.encoder {
            self.scratch.clear();
            if let Err(e) = encoder.write_value_ref(value, &mut self.scratch) {
                // A failed write can leave the encoder's buffer in a state it refuses to
                // continue from; start afresh next time.
                self.encoder = None;
                return Err(Box::new(e));
            }
            if self.scratch.starts_with(&SINGLE_OBJECT_MAGIC) {
                if let Some(datum) = self.scratch.get(SINGLE_OBJECT_HEADER_LEN..) {
                    data.extend_from_slice(datum);
                    return Ok(());
                }
            }
        }
        // Not the single-object layout this code knows: encode the plain way.
        data.extend_from_slice(&apache_avro::to_avro_datum(
            &self.embedded.schema,
            value.clone(),
        )?);
        Ok(())
    }

    /// Encodes the values as one block and writes it with a single `write_all`.
    fn write_values(&mut self, values: &[AvroValue]) -> Result<u64, AvroError> {
        if values.is_empty() {
            return Ok(0);
        }
        let mut data = Vec::new();
        for (index, v) in values.iter().enumerate() {
            self.encode_datum(v, &mut data)
                .map_err(|source| AvroError::InBlock {
                    index,
                    source: Box::new(AvroError::Encode {
                        record: self.record,
                        source,
                    }),
                })?;
        }
        let data = self.codec.compress(data)?;
        let mut block = Vec::with_capacity(data.len() + 36);
        put_long(&mut block, values.len() as i64);
        put_long(&mut block, data.len() as i64);
        block.extend_from_slice(&data);
        block.extend_from_slice(&SYNC_MARKER);
        self.out.write_all(&block).map_err(|source| AvroError::Io {
            doing: "writing a container block",
            source,
        })?;
        self.written += block.len() as u64;
        Ok(block.len() as u64)
    }

    fn flush(&mut self) -> Result<(), AvroError> {
        self.out.flush().map_err(|source| AvroError::Io {
            doing: "flushing the container file",
            source,
        })
    }
}

/// Writes status changes as an Avro object container file (schema
/// [`status_change_schema`]), one block per [`write_block`](Self::write_block) call.
///
/// Output is deterministic: the header is fixed for a codec and the sync marker is
/// [`SYNC_MARKER`]. A file is therefore resumable: truncate it to the end of its last
/// complete block (a length the caller recorded from the byte counts returned here), open
/// it for appending, and continue with [`resume`](Self::resume); the result is byte-for-
/// byte what an uninterrupted run writes. Each block is written with one `write_all`, so
/// a crash leaves at most one partial block at the end.
pub struct StatusChangeWriter<W: Write> {
    inner: ContainerWriter<W>,
}

impl<W: Write> StatusChangeWriter<W> {
    /// Starts a fresh file: writes the header (codec `null`) at once, so even a run with
    /// no status changes leaves a valid, empty container.
    pub fn new(out: W) -> Result<Self, AvroError> {
        Self::with_codec(out, BlockCodec::Null)
    }

    /// Starts a fresh file with the given block codec.
    pub fn with_codec(out: W, codec: BlockCodec) -> Result<Self, AvroError> {
        Ok(StatusChangeWriter {
            inner: ContainerWriter::create(out, &embeds().status_change, "StatusChange", codec)?,
        })
    }

    /// Continues a file that ends at a block boundary (right after its header or a
    /// block): writes no header, only further blocks. `out` must append (e.g. a file opened
    /// with `append(true)` or positioned at its end); the codec is `null`.
    pub fn resume(out: W) -> Self {
        Self::resume_with_codec(out, BlockCodec::Null)
    }

    /// Continues a file written with the given codec; see [`resume`](Self::resume).
    pub fn resume_with_codec(out: W, codec: BlockCodec) -> Self {
        StatusChangeWriter {
            inner: ContainerWriter::resume(out, &embeds().status_change, "StatusChange", codec),
        }
    }

    /// The exact header bytes [`new`](Self::new)/[`with_codec`](Self::with_codec) write;
    /// a caller can compare them with an existing file before resuming it.
    pub fn header(codec: BlockCodec) -> Vec<u8> {
        container_header(&embeds().status_change, codec)
    }

    /// Writes the changes as one block and returns the bytes written; an empty slice
    /// writes nothing and returns 0. The block is encoded completely before a single
    /// `write_all`, so an encoding error writes nothing; only an I/O error can leave part
    /// of a block behind (truncate to the last boundary before resuming).
    pub fn write_block(&mut self, changes: &[StatusChange]) -> Result<u64, AvroError> {
        let values: Vec<AvroValue> = changes.iter().map(status_change_to_value).collect();
        self.inner.write_values(&values)
    }

    /// Bytes written by this writer so far (header included for a fresh file; only the
    /// appended blocks for a resumed one).
    pub fn bytes_written(&self) -> u64 {
        self.inner.written
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), AvroError> {
        self.inner.flush()
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        &self.inner.out
    }

    /// Gives back the underlying writer (not flushed; everything has been passed to it).
    pub fn into_inner(self) -> W {
        self.inner.out
    }
}

/// Writes JSON-shaped input records of one kind as an Avro object container file (schema
/// [`input_schema`]), deterministically, one block per
/// [`write_block`](Self::write_block) call; used for Avro exports of generated data.
/// The same header, marker and resume rules as [`StatusChangeWriter`] apply.
pub struct InputWriter<W: Write> {
    inner: ContainerWriter<W>,
    kind: InputKind,
}

impl<W: Write> InputWriter<W> {
    /// Starts a fresh file of `kind` records: writes the header (codec `null`) at once.
    pub fn new(out: W, kind: InputKind) -> Result<Self, AvroError> {
        Self::with_codec(out, kind, BlockCodec::Null)
    }

    /// Starts a fresh file of `kind` records with the given block codec.
    pub fn with_codec(out: W, kind: InputKind, codec: BlockCodec) -> Result<Self, AvroError> {
        Ok(InputWriter {
            inner: ContainerWriter::create(out, input_embedded(kind), kind.record_name(), codec)?,
            kind,
        })
    }

    /// Continues a file of `kind` records that ends at a block boundary; writes no header.
    pub fn resume(out: W, kind: InputKind, codec: BlockCodec) -> Self {
        InputWriter {
            inner: ContainerWriter::resume(out, input_embedded(kind), kind.record_name(), codec),
            kind,
        }
    }

    /// Converts the records with [`input_to_value`] and writes them as one block; returns
    /// the bytes written (0 for an empty slice). If a record does not convert, the error
    /// names it and nothing is written.
    pub fn write_block(&mut self, records: &[Json]) -> Result<u64, AvroError> {
        let values = records
            .iter()
            .enumerate()
            .map(|(index, r)| {
                input_to_value(r, self.kind).map_err(|e| AvroError::InBlock {
                    index,
                    source: Box::new(e),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.inner.write_values(&values)
    }

    /// Bytes written by this writer so far (header included for a fresh file).
    pub fn bytes_written(&self) -> u64 {
        self.inner.written
    }

    /// Flushes the underlying writer.
    pub fn flush(&mut self) -> Result<(), AvroError> {
        self.inner.flush()
    }

    /// Gives back the underlying writer (not flushed; everything has been passed to it).
    pub fn into_inner(self) -> W {
        self.inner.out
    }
}

// ---------------------------------------------------------------------------------------
// Reading container files
// ---------------------------------------------------------------------------------------

/// Low-level read failure.
enum RawErr {
    Io(io::Error),
    Eof,
    Bad(String),
}

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
    schema: Schema,
    codec: BlockCodec,
    marker: [u8; 16],
    block: Vec<u8>,
    pos: usize,
    /// Records still to read from the current block.
    left: u64,
    /// Records the current block holds.
    count: u64,
    /// 1-based number of the current block.
    block_no: u64,
    record_can_be_empty: bool,
    done: bool,
}

impl<R: Read> BlockReader<R> {
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
            RawErr::Eof => format!(
                "block {n} is truncated inside {what}; the file was cut off mid-write \
                 (everything before this block is intact)"
            ),
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
                         corrupt or was written with a different schema",
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
                        return Some(Err(e));
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
                        "block {}, record {record_no}: {e}{tail}",
                        self.block_no
                    )))
                }
            };
        }
    }
}

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

/// Reads every status change of a container file written by [`StatusChangeWriter`] (or
/// any writer using [`status_change_schema`] or a compatible one). Loads the whole file;
/// the first damaged block or record is an error.
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
    use crate::core::event::{decode_json_line, RoType, VisitType};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use serde_json::json;

    fn repair_order() -> Json {
        json!({"type":"repair_order","event_id":"e1","event_time":"2024-01-10T17:00:00+08:00",
               "dealer_id":"D1","customer_id":"C1","vin":"lsvaa4182e2123456",
               "vehicle_model":"Lavida","vehicle_purchase_date":"2021-05-01","ro_number":"RO1",
               "ro_type":"maintenance","mileage_km":30500,"labor_amount":200.0,
               "parts_amount":380.5,"total_amount":580.5,"phone":"138-0013-8000"})
    }

    fn visit() -> Json {
        json!({"type":"visit","event_id":"v1","event_time":"2024-02-01T10:00:00Z",
               "dealer_id":"D1","customer_id":"C2","visit_type":"Showroom",
               "in_service_region":false})
    }

    fn contract() -> Json {
        json!({"type":"contract","event_id":"k1","event_time":"2024-02-01T00:00:00Z",
               "dealer_id":"D1","customer_id":"C3","contract_id":"P1",
               "contract_type":"maintenance_plan","action":"signed","start_date":"2024-02-01",
               "end_date":"2026-02-01","amount":3000})
    }

    fn tick() -> Json {
        json!({"type":"tick","event_time":"2024-03-01T00:00:00Z"})
    }

    /// Valid records of every kind, including ones that exercise normalisation.
    fn samples() -> Vec<(InputKind, Json)> {
        let mut ro_issues = repair_order();
        ro_issues["vin"] = json!("LSVAA4182E21234O6");
        ro_issues["phone"] = json!("12345");
        ro_issues["event_id"] = json!("e2");
        let mut ro_minimal = repair_order();
        for k in [
            "vin",
            "vehicle_model",
            "vehicle_purchase_date",
            "mileage_km",
            "phone",
        ] {
            ro_minimal.as_object_mut().unwrap().remove(k);
        }
        ro_minimal.as_object_mut().unwrap().remove("total_amount");
        ro_minimal["labor_amount"] = json!("120.5");
        let mut visit_unknown_region = visit();
        visit_unknown_region["in_service_region"] = json!("yes");
        visit_unknown_region["phone"] = json!("+49 30 1234567");
        let mut cancelled = contract();
        cancelled["action"] = json!("cancelled");
        cancelled.as_object_mut().unwrap().remove("end_date");
        cancelled.as_object_mut().unwrap().remove("amount");
        vec![
            (InputKind::RepairOrder, repair_order()),
            (InputKind::RepairOrder, ro_issues),
            (InputKind::RepairOrder, ro_minimal),
            (InputKind::Visit, visit()),
            (InputKind::Visit, visit_unknown_region),
            (InputKind::Contract, contract()),
            (InputKind::Contract, cancelled),
            (InputKind::Tick, tick()),
        ]
    }

    fn change(i: u32) -> StatusChange {
        StatusChange {
            event_id: format!("id-{i}"),
            customer_id: format!("C{i}"),
            dealer_id: "D1".into(),
            event_time: "2024-07-10T09:30:00Z".into(),
            trigger: if i % 2 == 0 {
                Trigger::Timer
            } else {
                Trigger::Event
            },
            previous_level: Level::Normal,
            level: Level::ALL[(i % 4) as usize],
            previous_lifecycle: Lifecycle::Active,
            lifecycle: Lifecycle::ALL[(i % 4) as usize],
            tier: Tier::ALL[(i % 3) as usize],
            previous_cell: "AG".into(),
            cell: "BG".into(),
            days_since_last_visit: 200 + i64::from(i),
            last_visit_date: "2023-12-23".into(),
            reasons: (0..i % 3)
                .map(|r| Reason {
                    code: format!("reason_{r}"),
                    text: format!("no visit for {} days — 准流失", 200 + i),
                })
                .collect(),
            recommended_actions: vec!["maintenance_reminder".into(), "voucher".into()],
            p_alive: (i % 2 == 0).then_some(0.25 + f64::from(i) / 100.0),
            expected_visits_12m: (i % 2 == 0).then_some(1.5),
            clv: (i % 4 == 0).then_some(1234.5),
        }
    }

    fn enum_symbols(schema: &Schema, field: &str) -> Vec<String> {
        let Schema::Record(r) = schema else {
            panic!("not a record")
        };
        let f = &r.fields[r.lookup[field]];
        let names = ResolvedSchema::try_from(schema).unwrap();
        let s = match &f.schema {
            Schema::Ref { name } => lookup_name(&names, name).unwrap(),
            s => s,
        };
        let Schema::Enum(e) = s else {
            panic!("{field} is not an enum")
        };
        e.symbols.clone()
    }

    fn check_docs(schema: &Schema, path: &str, missing: &mut Vec<String>) {
        match schema {
            Schema::Record(r) => {
                if r.doc.as_deref().is_none_or(str::is_empty) {
                    missing.push(format!("record {path}"));
                }
                for f in &r.fields {
                    let p = format!("{path}.{}", f.name);
                    if f.doc.as_deref().is_none_or(str::is_empty) {
                        missing.push(format!("field {p}"));
                    }
                    check_docs(&f.schema, &p, missing);
                }
            }
            Schema::Enum(e) if e.doc.as_deref().is_none_or(str::is_empty) => {
                missing.push(format!("enum {path}"));
            }
            Schema::Array(a) => check_docs(&a.items, path, missing),
            Schema::Map(m) => check_docs(&m.types, path, missing),
            Schema::Union(u) => u
                .variants()
                .iter()
                .for_each(|v| check_docs(v, path, missing)),
            _ => {}
        }
    }

    #[test]
    fn schemas_parse_and_document_every_field() {
        let mut all: Vec<(&str, &Schema)> = InputKind::ALL
            .iter()
            .map(|k| (k.record_name(), input_schema(*k)))
            .collect();
        all.push(("StatusChange", status_change_schema()));
        for (name, schema) in all {
            let Schema::Record(r) = schema else {
                panic!("{name} is not a record")
            };
            assert_eq!(r.name.name, name);
            assert_eq!(r.name.namespace.as_deref(), Some(NAMESPACE));
            assert!(
                !r.fields.iter().any(|f| f.name == "type"),
                "{name} has a type field"
            );
            let mut missing = Vec::new();
            check_docs(schema, name, &mut missing);
            assert!(missing.is_empty(), "undocumented: {missing:?}");
            // Every optional field is ["null", T] with default null.
            for f in &r.fields {
                if let Schema::Union(u) = &f.schema {
                    assert!(matches!(u.variants()[0], Schema::Null), "{name}.{}", f.name);
                    assert_eq!(f.default, Some(Json::Null), "{name}.{}", f.name);
                }
            }
        }
        // The text written into container headers is the same schema.
        for text in [
            REPAIR_ORDER_AVSC,
            VISIT_AVSC,
            CONTRACT_AVSC,
            TICK_AVSC,
            STATUS_CHANGE_AVSC,
        ] {
            let compact = compact_json(text);
            assert!(!compact.contains('\n'));
            assert_eq!(
                serde_json::from_str::<Json>(&compact).unwrap(),
                serde_json::from_str::<Json>(text).unwrap()
            );
        }
    }

    #[test]
    fn schema_enums_match_the_rust_enums() {
        let ro = input_schema(InputKind::RepairOrder);
        assert_eq!(enum_symbols(ro, "ro_type"), RoType::ALL.map(RoType::as_str));
        let v = input_schema(InputKind::Visit);
        assert_eq!(enum_symbols(v, "visit_type"), VisitType::NAMES);
        let c = input_schema(InputKind::Contract);
        assert_eq!(enum_symbols(c, "contract_type"), event::ContractType::NAMES);
        assert_eq!(enum_symbols(c, "action"), event::ContractAction::NAMES);
        let s = status_change_schema();
        for f in ["previous_level", "level"] {
            assert_eq!(enum_symbols(s, f), Level::ALL.map(Level::as_str));
        }
        for f in ["previous_lifecycle", "lifecycle"] {
            assert_eq!(enum_symbols(s, f), Lifecycle::ALL.map(Lifecycle::as_str));
        }
        assert_eq!(enum_symbols(s, "tier"), Tier::ALL.map(Tier::as_str));
        assert_eq!(enum_symbols(s, "trigger"), TRIGGERS.map(trigger_name));
    }

    #[test]
    fn status_change_schema_mirrors_the_struct() {
        let c = change(5);
        let json = serde_json::to_value(&c).unwrap();
        let Schema::Record(r) = status_change_schema() else {
            panic!()
        };
        let mut schema_fields: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
        let mut json_fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        schema_fields.sort_unstable();
        json_fields.sort_unstable();
        assert_eq!(schema_fields, json_fields);
        // The Avro value carries the same text as the JSON form, field by field.
        let AvroValue::Record(fields) = status_change_to_value(&c) else {
            panic!()
        };
        for (name, value) in fields {
            let as_json = value_json(value, &name).unwrap();
            assert_eq!(as_json, json[&name], "{name}");
        }
        assert!(status_change_to_value(&c).validate(status_change_schema()));
        assert_eq!(
            status_change_from_value(&status_change_to_value(&c)).unwrap(),
            c
        );
    }

    #[test]
    fn avro_and_json_validate_identically() {
        for (kind, record) in samples() {
            let bytes = encode_input(&record, kind).unwrap();
            let from_avro = decode_datum(&bytes, input_schema(kind));
            let from_json = event::validate(&record);
            assert!(from_json.is_ok(), "{record}: {from_json:?}");
            assert_eq!(from_avro, from_json, "{record}");
            assert_eq!(from_avro, decode_json_line(&record.to_string()), "{record}");
            assert_eq!(InputKind::of(&from_avro.unwrap().input), kind);
        }
    }

    #[test]
    fn validation_errors_are_the_same_in_both_formats() {
        let mut cases = Vec::new();
        let mut r = repair_order();
        r["total_amount"] = json!(-5);
        cases.push((InputKind::RepairOrder, r));
        let mut r = repair_order();
        r["event_time"] = json!("yesterday");
        cases.push((InputKind::RepairOrder, r));
        let mut r = repair_order();
        r["mileage_km"] = json!(3_000_000);
        cases.push((InputKind::RepairOrder, r));
        let mut r = repair_order();
        r["customer_id"] = json!("  ");
        cases.push((InputKind::RepairOrder, r));
        let mut r = repair_order();
        r["ro_number"] = json!("x".repeat(200));
        cases.push((InputKind::RepairOrder, r));
        let mut r = repair_order();
        r.as_object_mut().unwrap().remove("total_amount");
        r.as_object_mut().unwrap().remove("parts_amount");
        cases.push((InputKind::RepairOrder, r));
        let mut c = contract();
        c["end_date"] = json!("2023-01-01");
        cases.push((InputKind::Contract, c));
        let mut c = contract();
        c.as_object_mut().unwrap().remove("end_date");
        cases.push((InputKind::Contract, c));
        let mut c = contract();
        c["start_date"] = json!("01/02/2024");
        cases.push((InputKind::Contract, c));
        let mut t = tick();
        t["event_time"] = json!("2024-03-01");
        cases.push((InputKind::Tick, t));
        for (kind, record) in cases {
            let json_err = event::validate(&record).unwrap_err();
            let bytes = encode_input(&record, kind).unwrap();
            assert_eq!(
                decode_datum(&bytes, input_schema(kind)).unwrap_err(),
                json_err
            );
        }
    }

    #[test]
    fn bad_enum_values_name_the_field() {
        // Encoding: the value is outside the Avro enum.
        let mut r = repair_order();
        r["ro_type"] = json!("oil");
        let e = encode_input(&r, InputKind::RepairOrder).unwrap_err();
        assert!(
            matches!(&e, AvroError::Field { field, .. } if field == "ro_type"),
            "{e}"
        );
        assert!(
            e.to_string().contains("`oil` is not one of maintenance"),
            "{e}"
        );

        // Decoding with an evolved writer schema that knows a symbol churnwatch does not:
        // the validator names the field, exactly as for JSON.
        let evolved_text = REPAIR_ORDER_AVSC.replace("\"accessories\"", "\"accessories\", \"oil\"");
        let evolved = Schema::parse_str(&evolved_text).unwrap();
        let mut value = input_to_value(&repair_order(), InputKind::RepairOrder).unwrap();
        let AvroValue::Record(fields) = &mut value else {
            panic!()
        };
        for (name, v) in fields.iter_mut() {
            if name == "ro_type" {
                *v = AvroValue::Enum(7, "oil".into());
            }
        }
        let bytes = apache_avro::to_avro_datum(&evolved, value).unwrap();
        let err = decode_datum(&bytes, &evolved).unwrap_err();
        assert_eq!(err, event::validate(&r).unwrap_err());
        assert!(
            matches!(&err, InvalidEvent::Invalid { field, .. } if field == "ro_type"),
            "{err}"
        );

        // The same bytes read with churnwatch's schema: index 7 does not exist.
        let err = decode_datum(&bytes, input_schema(InputKind::RepairOrder)).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("field `ro_type`"), "{err}");
        assert!(err.to_string().contains("enum index 7"), "{err}");
    }

    #[test]
    fn encoding_errors_say_what_to_fix() {
        let mut r = visit();
        r.as_object_mut().unwrap().remove("customer_id");
        let e = encode_input(&r, InputKind::Visit).unwrap_err();
        assert!(matches!(&e, AvroError::MissingField { field, .. } if field == "customer_id"));
        let mut r = visit();
        r["colour"] = json!("red");
        let e = encode_input(&r, InputKind::Visit).unwrap_err();
        assert!(matches!(&e, AvroError::UnknownField { field, .. } if field == "colour"));
        assert!(e.to_string().contains("remove it"), "{e}");
        let e = encode_input(&visit(), InputKind::Contract).unwrap_err();
        assert!(matches!(e, AvroError::TypeMismatch { .. }), "{e}");
        let e = encode_input(&json!([1]), InputKind::Tick).unwrap_err();
        assert!(matches!(e, AvroError::NotAnObject { .. }), "{e}");
        let mut r = repair_order();
        r["total_amount"] = json!("lots");
        let e = encode_input(&r, InputKind::RepairOrder).unwrap_err();
        assert!(e.to_string().contains("total_amount"), "{e}");
        let mut r = visit();
        r["dealer_id"] = json!(7);
        let e = encode_input(&r, InputKind::Visit).unwrap_err();
        assert!(
            e.to_string()
                .contains("`dealer_id`: expected a string, found a number"),
            "{e}"
        );
    }

    #[test]
    fn datum_framing_problems_are_malformed() {
        let bytes = encode_input(&visit(), InputKind::Visit).unwrap();
        let mut longer = bytes.clone();
        longer.push(0);
        let e = decode_datum(&longer, input_schema(InputKind::Visit)).unwrap_err();
        assert!(e.to_string().contains("1 bytes left over"), "{e}");
        let mut confluent = vec![0, 0, 0, 0, 7];
        confluent.extend_from_slice(&bytes);
        let e = decode_datum(&confluent, input_schema(InputKind::Visit)).unwrap_err();
        assert!(e.to_string().contains("Confluent"), "{e}");
        let e =
            decode_datum(&bytes[..bytes.len() - 3], input_schema(InputKind::Visit)).unwrap_err();
        assert_eq!(e.code(), "malformed");
        let e = decode_datum(&bytes, status_change_schema()).unwrap_err();
        assert!(e.to_string().contains("StatusChange"), "{e}");
        // A string whose length prefix claims a terabyte.
        let mut huge = Vec::new();
        put_long(&mut huge, 1 << 40);
        huge.extend_from_slice(b"2024");
        let e = decode_datum(&huge, input_schema(InputKind::Tick)).unwrap_err();
        assert!(e.to_string().contains("field `event_time`"), "{e}");
    }

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

    fn union_schema() -> Schema {
        let text = format!("[{REPAIR_ORDER_AVSC},{VISIT_AVSC},{CONTRACT_AVSC},{TICK_AVSC}]");
        Schema::parse_str(&text).unwrap()
    }

    fn union_value(kind: InputKind, record: &Json) -> AvroValue {
        AvroValue::Union(
            kind.index() as u32,
            Box::new(input_to_value(record, kind).unwrap()),
        )
    }

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
    fn status_change_container_round_trips() {
        for codec in [BlockCodec::Null, BlockCodec::Deflate] {
            let first: Vec<StatusChange> = (0..3).map(change).collect();
            let second: Vec<StatusChange> = (3..10).map(change).collect();
            let mut w = StatusChangeWriter::with_codec(Vec::new(), codec).unwrap();
            let header_len = w.bytes_written();
            assert_eq!(
                header_len,
                StatusChangeWriter::<Vec<u8>>::header(codec).len() as u64
            );
            let n1 = w.write_block(&first).unwrap();
            assert_eq!(w.write_block(&[]).unwrap(), 0);
            let n2 = w.write_block(&second).unwrap();
            assert_eq!(w.bytes_written(), header_len + n1 + n2);
            let file = w.into_inner();
            assert_eq!(file.len() as u64, header_len + n1 + n2);

            let reader = apache_avro::Reader::new(&file[..]).unwrap();
            assert_eq!(reader.writer_schema(), status_change_schema());
            let read: Vec<StatusChange> = reader
                .map(|v| status_change_from_value(&v.unwrap()).unwrap())
                .collect();
            let all: Vec<StatusChange> = first.iter().chain(&second).cloned().collect();
            assert_eq!(read, all);
            assert_eq!(read_status_changes(&file[..]).unwrap(), all);

            // An empty run is a valid, empty container.
            let empty = StatusChangeWriter::with_codec(Vec::new(), codec)
                .unwrap()
                .into_inner();
            assert_eq!(apache_avro::Reader::new(&empty[..]).unwrap().count(), 0);
            assert!(read_status_changes(&empty[..]).unwrap().is_empty());
        }
    }

    #[test]
    fn output_is_deterministic_and_resumes_byte_identically() {
        let b1: Vec<StatusChange> = (0..4).map(change).collect();
        let b2: Vec<StatusChange> = (4..9).map(change).collect();
        for codec in [BlockCodec::Null, BlockCodec::Deflate] {
            let uninterrupted = || {
                let mut w = StatusChangeWriter::with_codec(Vec::new(), codec).unwrap();
                w.write_block(&b1).unwrap();
                w.write_block(&b2).unwrap();
                w.into_inner()
            };
            let full = uninterrupted();
            assert_eq!(full, uninterrupted());
            assert!(full.starts_with(&StatusChangeWriter::<Vec<u8>>::header(codec)));

            // Write both blocks, lose block 2 (truncate after block 1), resume, rewrite it.
            let mut w = StatusChangeWriter::with_codec(Vec::new(), codec).unwrap();
            let boundary = w.bytes_written() + w.write_block(&b1).unwrap();
            w.write_block(&b2).unwrap();
            let mut cut = w.into_inner();
            cut.truncate(boundary as usize);
            let mut w = StatusChangeWriter::resume_with_codec(cut, codec);
            w.write_block(&b2).unwrap();
            assert_eq!(w.bytes_written() as usize, full.len() - boundary as usize);
            assert_eq!(w.into_inner(), full);

            // The same through a real file truncated with set_len and reopened for append.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("changes.avro");
            let mut w =
                StatusChangeWriter::with_codec(std::fs::File::create(&path).unwrap(), codec)
                    .unwrap();
            let boundary = w.bytes_written() + w.write_block(&b1).unwrap();
            w.write_block(&b2[..2]).unwrap(); // a block that is then lost
            w.flush().unwrap();
            drop(w);
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(boundary).unwrap();
            drop(f);
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            let mut w = StatusChangeWriter::resume_with_codec(f, codec);
            w.write_block(&b2).unwrap();
            w.flush().unwrap();
            drop(w);
            assert_eq!(std::fs::read(&path).unwrap(), full);
        }
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
