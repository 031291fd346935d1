//! [`AvroError`]: what went wrong encoding records or reading and writing container
//! files. Each message says what was wrong, with which record, field, block or header
//! part, and what to do about it; callers add the file or topic.
//!
//! Datum decoding reports through the core's
//! [`InvalidEvent`](crate::core::event::InvalidEvent) instead, so Avro and JSON input
//! give the same errors.

use super::schema::InputKind;
use std::io;
use thiserror::Error;

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
    #[error(
        "field `{field}`: {problem}; give it a value of the type schemas/*.avsc declares for it"
    )]
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
    #[error("I/O error while {doing}: {source}; check that the file is accessible and the disk has space, then retry")]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The bytes do not start like an Avro object container file.
    #[error("not an Avro object container file: {0}; convert it to an Avro object container file, or read it as what it is (e.g. JSON lines)")]
    NotAContainer(String),
    /// The container header is damaged.
    #[error("corrupt Avro container header: {0}; the file is damaged or was not written completely — re-create it from its source")]
    BadHeader(String),
    /// The schema in the container header is not valid Avro.
    #[error("the schema in the container header is not valid Avro ({0}); the file was written by a broken writer — re-create it with a writer that embeds a valid schema")]
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
    #[error("status change field `{field}`: {problem}; the data was not written with schemas/status_change.avsc or a compatible schema — read it with the schema it was written with")]
    BadStatusChange {
        /// The field.
        field: String,
        /// What was wrong with it.
        problem: String,
    },
}
