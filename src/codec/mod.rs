//! Wire formats: JSON lines and Avro (datum scanning, values, containers), and the
//! per-record encodings used on Kafka topics. Codecs turn bytes into the core's
//! validated inputs and status changes into bytes; they never touch files, sockets or
//! the store.

pub mod avro;
pub mod record;
