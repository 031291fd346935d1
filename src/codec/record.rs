//! Kafka record payloads: decoding input records per topic format (JSON, plain Avro,
//! Confluent wire format), tick records, and encoding (and decoding) status changes.
//!
//! Works on record values (byte slices) only: the Kafka edge consumes and produces the
//! records; this module opens no sockets, files or store.

use crate::codec::avro::{decode_datum, input_schema, status_change_schema, InputKind};
use crate::codec::Format;
use crate::core::event::{decode_json_line, InvalidEvent, Validated};
use crate::core::status::StatusChange;
use std::collections::HashMap;
use thiserror::Error;

/// Header that marks a tick record (value `tick`), whatever the topic's format.
pub const RECORD_TYPE_HEADER: &str = "churnwatch-record";

/// How one input topic's values are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// One JSON object per record (the `type` field says which event).
    Json,
    /// A plain Avro datum of the topic's own schema (ticks carry the tick header and
    /// the tick schema).
    Avro(InputKind),
    /// The Confluent wire format: magic byte 0, a 4-byte big-endian schema id, then
    /// the Avro datum of the schema the id maps to.
    Confluent,
}

/// A topic's decoder configuration could not be built.
#[derive(Debug, Error)]
pub enum CodecError {
    /// Confluent format without any id mapping.
    #[error("input topic `{topic}` uses the confluent format but maps no schema ids; set confluent_schema_ids")]
    NoIds {
        /// Topic.
        topic: String,
    },
}

/// Decodes the values of one input topic.
#[derive(Debug, Clone)]
pub struct TopicDecoder {
    encoding: Encoding,
    ids: HashMap<u32, InputKind>,
}

impl TopicDecoder {
    /// A decoder for `topic` with `encoding`; `ids` maps Confluent schema ids to record
    /// kinds (required for [`Encoding::Confluent`]).
    pub fn new(
        topic: &str,
        encoding: Encoding,
        ids: std::collections::BTreeMap<u32, InputKind>,
    ) -> Result<Self, CodecError> {
        if encoding == Encoding::Confluent && ids.is_empty() {
            return Err(CodecError::NoIds {
                topic: topic.into(),
            });
        }
        Ok(TopicDecoder {
            encoding,
            ids: ids.into_iter().collect(),
        })
    }

    /// The topic's encoding.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Decodes and validates one record value. `tick_header` says the record carries
    /// the tick marker header.
    pub fn decode(
        &self,
        value: Option<&[u8]>,
        tick_header: bool,
    ) -> Result<Validated, InvalidEvent> {
        let bytes = value.ok_or_else(|| {
            InvalidEvent::Malformed(
                "record has no value (a tombstone?); input records carry the event as their value"
                    .into(),
            )
        })?;
        match self.encoding {
            Encoding::Json => {
                let text = std::str::from_utf8(bytes).map_err(|e| {
                    InvalidEvent::Malformed(format!(
                        "value is not UTF-8 ({e}); a json topic takes UTF-8 JSON objects — if the \
                         producer writes Avro, set the topic's format to avro or confluent"
                    ))
                })?;
                decode_json_line(text.trim())
            }
            Encoding::Avro(kind) => {
                let kind = if tick_header { InputKind::Tick } else { kind };
                decode_datum(bytes, input_schema(kind))
            }
            Encoding::Confluent => {
                if bytes.len() < 5 || bytes[0] != 0 {
                    return Err(InvalidEvent::Malformed(
                        "not in the Confluent wire format (magic byte 0 and a 4-byte schema id); \
                         produce with a schema-registry serializer, or set the topic's format to \
                         avro or json"
                            .into(),
                    ));
                }
                let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                let kind = self.ids.get(&id).ok_or_else(|| {
                    InvalidEvent::Malformed(format!(
                        "schema id {id} is not mapped to a churnwatch schema; add it to the \
                         topic's confluent_schema_ids (e.g. {id} = \"visit\")"
                    ))
                })?;
                decode_datum(&bytes[5..], input_schema(*kind))
            }
        }
    }

    /// Encodes a tick at `time` (RFC 3339) for this topic (to be sent with the tick
    /// header); None for a Confluent topic that maps no schema id to `tick`.
    pub fn encode_tick(&self, time: &str) -> Option<Vec<u8>> {
        let json = serde_json::json!({"type": "tick", "event_time": time});
        let datum = || {
            crate::codec::avro::encode_input(&json, InputKind::Tick)
                .expect("a tick with a valid time always encodes")
        };
        match self.encoding {
            Encoding::Json => Some(json.to_string().into_bytes()),
            Encoding::Avro(_) => Some(datum()),
            Encoding::Confluent => {
                let id = self
                    .ids
                    .iter()
                    .filter(|(_, k)| **k == InputKind::Tick)
                    .map(|(id, _)| *id)
                    .min()?;
                let mut v = vec![0u8];
                v.extend_from_slice(&id.to_be_bytes());
                v.extend_from_slice(&datum());
                Some(v)
            }
        }
    }
}

/// Encodes one status change.
pub fn encode_change(c: &StatusChange, enc: Format) -> Vec<u8> {
    match enc {
        Format::Json => serde_json::to_vec(c).expect("status changes always serialise to JSON"),
        Format::Avro => apache_avro::to_avro_datum(
            status_change_schema(),
            crate::codec::avro::status_change_to_value(c),
        )
        .expect("status change values always match their schema"),
    }
}

/// Decodes one status change written by [`encode_change`].
pub fn decode_change(bytes: &[u8], enc: Format) -> Result<StatusChange, String> {
    match enc {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| {
            format!("not a JSON status change ({e}); read it with the format it was written in")
        }),
        Format::Avro => {
            let v = apache_avro::from_avro_datum(status_change_schema(), &mut &bytes[..], None)
                .map_err(|e| {
                    format!(
                        "not an Avro datum of schemas/status_change.avsc ({e}); read it with the \
                         format and schema it was written with"
                    )
                })?;
            crate::codec::avro::status_change_from_value(&v).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::Input;

    fn ids(pairs: &[(u32, InputKind)]) -> std::collections::BTreeMap<u32, InputKind> {
        pairs.iter().copied().collect()
    }

    const VISIT: &str = r#"{"type":"visit","event_id":"v1","event_time":"2024-03-01T10:00:00Z","dealer_id":"D1","customer_id":"C1","visit_type":"service"}"#;

    #[test]
    fn json_avro_and_confluent_decode_the_same_event() {
        let json: serde_json::Value = serde_json::from_str(VISIT).unwrap();
        let datum = crate::codec::avro::encode_input(&json, InputKind::Visit).unwrap();
        let j = TopicDecoder::new("t", Encoding::Json, Default::default()).unwrap();
        let a =
            TopicDecoder::new("t", Encoding::Avro(InputKind::Visit), Default::default()).unwrap();
        let m = ids(&[(7, InputKind::Visit), (9, InputKind::Tick)]);
        let c = TopicDecoder::new("t", Encoding::Confluent, m.clone()).unwrap();
        let mut wire = vec![0, 0, 0, 0, 7];
        wire.extend_from_slice(&datum);
        let from_json = j.decode(Some(VISIT.as_bytes()), false).unwrap().input;
        assert_eq!(a.decode(Some(&datum), false).unwrap().input, from_json);
        assert_eq!(c.decode(Some(&wire), false).unwrap().input, from_json);
        assert!(matches!(from_json, Input::Event(_)));
    }

    #[test]
    fn ticks_round_trip_in_every_encoding() {
        let m = ids(&[(7, InputKind::Visit), (9, InputKind::Tick)]);
        for d in [
            TopicDecoder::new("t", Encoding::Json, Default::default()).unwrap(),
            TopicDecoder::new("t", Encoding::Avro(InputKind::Visit), Default::default()).unwrap(),
            TopicDecoder::new("t", Encoding::Confluent, m.clone()).unwrap(),
        ] {
            let v = d.encode_tick("2024-05-01T00:00:00Z").unwrap();
            let input = d.decode(Some(&v), true).unwrap().input;
            assert!(matches!(input, Input::Tick(_)), "{:?}", d.encoding());
        }
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        let m = ids(&[(7, InputKind::Visit)]);
        let c = TopicDecoder::new("t", Encoding::Confluent, m.clone()).unwrap();
        assert!(c.encode_tick("2024-05-01T00:00:00Z").is_none());
        let e = c.decode(Some(&[1, 2]), false).unwrap_err();
        assert!(e.to_string().contains("Confluent wire format"), "{e}");
        let e = c.decode(Some(&[0, 0, 0, 0, 8, 1]), false).unwrap_err();
        assert!(e.to_string().contains("schema id 8"), "{e}");
        let j = TopicDecoder::new("t", Encoding::Json, Default::default()).unwrap();
        assert_eq!(j.decode(None, false).unwrap_err().code(), "malformed");
        assert_eq!(
            j.decode(Some(&[0xff, 0xfe]), false).unwrap_err().code(),
            "malformed"
        );
        let a =
            TopicDecoder::new("t", Encoding::Avro(InputKind::Visit), Default::default()).unwrap();
        assert!(a.decode(Some(&[0xff; 3]), false).is_err());
    }

    #[test]
    fn a_confluent_topic_without_ids_is_refused_naming_it() {
        let e = TopicDecoder::new("visits", Encoding::Confluent, Default::default()).unwrap_err();
        assert!(e.to_string().contains("visits"));
    }
}
