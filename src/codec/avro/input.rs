//! Input datums: one Avro binary datum → a validated input (through the same
//! [`event::validate`] as JSON lines), and a JSON-shaped input record → an Avro value or
//! datum of its embedded schema (for producers, exports and tests).
//!
//! Bytes are always walked by the [scanner](super::scan) before `apache_avro` decodes
//! them. Works on byte slices and values only; no files, sockets or store.

use super::error::AvroError;
use super::scan::decode_value;
use super::schema::{
    input_embedded, input_kinds, input_schema, lookup_name, schema_kind, InputKind,
};
use crate::core::event::{self, InvalidEvent, Validated};
use apache_avro::schema::{ResolvedSchema, Schema};
use apache_avro::types::Value as AvroValue;
use chrono::{DateTime, NaiveDate, SecondsFormat};
use serde_json::{Map, Value as Json};

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
    let (value, used) = decode_value(bytes, schema).map_err(|e| {
        let fix = framing_hint(bytes).unwrap_or(
            "check that the producer wrote it with this writer schema and that the bytes \
             arrived whole",
        );
        InvalidEvent::Malformed(format!("{e}; {fix}"))
    })?;
    if used < bytes.len() {
        let hint = framing_hint(bytes).map_or(String::new(), |h| format!("; {h}"));
        return Err(InvalidEvent::Malformed(format!(
            "{} bytes left over after the record; the data was written with a different schema \
             than the one given — decode with the producer's writer schema{hint}",
            bytes.len() - used,
        )));
    }
    let json = input_json(value, schema)?;
    event::validate(&json)
}

/// What to do about the common mistake of passing framed bytes as a bare datum, if the
/// bytes look framed.
fn framing_hint(bytes: &[u8]) -> Option<&'static str> {
    match bytes {
        [0xC3, 0x01, ..] if bytes.len() >= 10 => Some(
            "the bytes start with C3 01 (Avro single-object encoding): strip its 10-byte header \
             first",
        ),
        [0x00, _, _, _, _, ..] => Some(
            "the bytes start with 00 (possibly the Confluent wire format): strip its 5-byte \
             prefix first",
        ),
        [b'O', b'b', b'j', 0x01, ..] => {
            Some("the bytes are an object container file: read them with read_container")
        }
        _ => None,
    }
}

/// Turns a decoded input datum into the JSON shape [`event::validate`] takes.
pub(super) fn input_json(value: AvroValue, schema: &Schema) -> Result<Json, InvalidEvent> {
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

/// The JSON object of a decoded input record, `type` set from the kind.
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

/// A validation error for `field`.
fn invalid(field: &str, problem: impl Into<String>) -> InvalidEvent {
    InvalidEvent::Invalid {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A finite double as a JSON number.
fn finite(x: f64, field: &str) -> Result<Json, InvalidEvent> {
    serde_json::Number::from_f64(x)
        .map(Json::Number)
        .ok_or_else(|| {
            invalid(
                field,
                format!("{x} is not a finite number; send a finite value"),
            )
        })
}

/// Converts a decoded Avro value to JSON; `field` is the top-level field it belongs to.
pub(super) fn value_json(value: AvroValue, field: &str) -> Result<Json, InvalidEvent> {
    let instant = |dt: Option<DateTime<chrono::Utc>>| {
        dt.map(|d| Json::String(d.to_rfc3339_opts(SecondsFormat::AutoSi, true)))
            .ok_or_else(|| {
                invalid(
                    field,
                    "timestamp is out of the representable range; send the time as an RFC 3339 \
                 string (as in schemas/*.avsc)",
                )
            })
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
            .ok_or_else(|| {
                invalid(
                    field,
                    format!(
                        "date {days} days from 1970 is out of range; send the date as YYYY-MM-DD \
                     text (as in schemas/*.avsc)"
                    ),
                )
            })?,
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

/// What a JSON value is, for messages ("a number", ...).
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

/// An encoding error for `field`.
fn field_err(field: &str, problem: impl Into<String>) -> AvroError {
    AvroError::Field {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// A JSON number, or a numeric string, as a finite double.
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

/// Converts a JSON value to an Avro value of `schema` the way [`event::validate`] reads it.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::avro::block::put_long;
    use crate::codec::avro::fixtures::*;
    use crate::codec::avro::schema::{status_change_schema, REPAIR_ORDER_AVSC};
    use crate::core::event::decode_json_line;
    use serde_json::json;

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
}
