//! The Avro side of the public contract: schemas, single-datum decoding and encoding,
//! and object container files.
//!
//! Owns the Avro wire format and nothing else. Like every codec it turns bytes into the
//! core's validated inputs and status changes into bytes: it reads from any
//! [`std::io::Read`] and writes to any [`std::io::Write`] it is given, but opens no
//! files, no sockets and no store. It may use `crate::core` (events, validation, status
//! changes) and `apache_avro`; the edges use it, never the other way round.
//!
//! The schemas live in `schemas/*.avsc` (namespace `churnwatch`) and are embedded with
//! `include_str!`:
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
//! Reading a container file survives damage: a damaged header is an error, but a
//! damaged block costs only its own records — it becomes one
//! [`InvalidEvent::DamagedBlock`](crate::core::event::InvalidEvent::DamagedBlock) item,
//! and reading resynchronises at the next sync marker (see [`read_container`]'s module,
//! `reader`, for the rules).
//!
//! Container files written by churnwatch ([`StatusChangeWriter`], [`InputWriter`]) are
//! deterministic: the header is built with a fixed metadata order and the sync marker is
//! the constant [`SYNC_MARKER`], so the same records always give the same bytes, and a
//! file truncated at a block boundary can be continued with `resume` to give exactly the
//! bytes of an uninterrupted run.
//!
//! The parts, each re-exported here so every public item is `codec::avro::Item`:
//!
//! | module     | owns                                                                 |
//! |------------|----------------------------------------------------------------------|
//! | `schema`   | the embedded `.avsc` files, their parsed schemas, [`InputKind`]      |
//! | `scan`     | the bounds-checking datum scanner in front of `apache_avro` decoding |
//! | `input`    | input datums: bytes → validated inputs, JSON records → Avro values   |
//! | `status`   | [`StatusChange`] ↔ Avro values                                       |
//! | `block`    | container framing shared by reader and writer: magic, sync marker, block codecs |
//! | `writer`   | writing containers ([`StatusChangeWriter`], [`InputWriter`])         |
//! | `reader`   | reading containers ([`read_container`], [`read_status_changes`])     |
//! | `error`    | [`AvroError`]                                                        |
//!
//! [`event::validate`]: crate::core::event::validate
//! [`StatusChange`]: crate::core::status::StatusChange

mod block;
mod error;
mod input;
mod reader;
mod scan;
mod schema;
mod status;
mod writer;

#[cfg(test)]
mod fixtures;

pub use block::{BlockCodec, SYNC_MARKER};
pub use error::AvroError;
pub use input::{decode_datum, encode_input, input_to_value};
pub use reader::{read_container, read_status_changes, ContainerRecords};
pub use schema::{
    input_schema, status_change_schema, InputKind, CONTRACT_AVSC, NAMESPACE, REPAIR_ORDER_AVSC,
    STATUS_CHANGE_AVSC, TICK_AVSC, VISIT_AVSC,
};
pub use status::{status_change_from_value, status_change_to_value};
pub use writer::{InputWriter, StatusChangeWriter};
