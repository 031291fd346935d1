//! Wire formats: JSON lines and Avro (datum scanning, values, containers), and the
//! per-record encodings used on Kafka topics. Codecs turn bytes into the core's
//! validated inputs and status changes into bytes; they never touch files, sockets or
//! the store.

pub mod avro;
pub mod record;

use serde::{Deserialize, Serialize};

/// How status changes are written, by every edge: the one output-format choice
/// (`replay --format`, `output.format` of the service).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON: one object per line in files, one per message on Kafka.
    #[default]
    Json,
    /// Avro with `schemas/status_change.avsc`: an object container in files, plain
    /// binary datums on Kafka.
    Avro,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "avro" => Ok(Format::Avro),
            other => Err(format!("unknown format `{other}`; use json or avro")),
        }
    }
}
