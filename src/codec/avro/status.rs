//! Status changes as Avro values: [`StatusChange`] → a value of
//! `schemas/status_change.avsc` (for container blocks and Kafka datums), and back (for
//! reading such files and messages). Values only; no bytes, files or sockets.

use super::error::AvroError;
use crate::core::status::{Level, Lifecycle, Reason, StatusChange, Tier, Trigger};
use apache_avro::types::Value as AvroValue;

/// The Avro enum symbol of a trigger.
pub(super) fn trigger_name(t: Trigger) -> &'static str {
    match t {
        Trigger::Event => "event",
        Trigger::Timer => "timer",
    }
}

/// Every trigger, in the order of the schema's enum symbols.
pub(super) const TRIGGERS: [Trigger; 2] = [Trigger::Event, Trigger::Timer];

/// The Avro enum value of `v`, whose symbols are `all` in order.
fn enum_value<T: Copy + PartialEq>(v: T, all: &[T], name: fn(T) -> &'static str) -> AvroValue {
    let index = all.iter().position(|x| *x == v).unwrap_or(0);
    AvroValue::Enum(index as u32, name(v).to_string())
}

/// The Avro value of a status change, matching
/// [`status_change_schema`](super::status_change_schema).
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

/// A `["null", "double"]` union value.
fn opt_double(v: Option<f64>) -> AvroValue {
    match v {
        None => AvroValue::Union(0, Box::new(AvroValue::Null)),
        Some(x) => AvroValue::Union(1, Box::new(AvroValue::Double(x))),
    }
}

/// Reads a `["null", "double"]` field.
fn sc_opt_double(v: &AvroValue, field: &str) -> Result<Option<f64>, AvroError> {
    match unwrap_union(v) {
        AvroValue::Null => Ok(None),
        AvroValue::Double(x) => Ok(Some(*x)),
        _ => Err(sc_err(field, "expected null or a double")),
    }
}

/// A status-change shape error for `field`.
fn sc_err(field: &str, problem: impl Into<String>) -> AvroError {
    AvroError::BadStatusChange {
        field: field.to_string(),
        problem: problem.into(),
    }
}

/// The value inside any union wrappers.
fn unwrap_union(v: &AvroValue) -> &AvroValue {
    match v {
        AvroValue::Union(_, inner) => unwrap_union(inner),
        v => v,
    }
}

/// Reads a string (or enum symbol) field.
fn sc_string(v: &AvroValue, field: &str) -> Result<String, AvroError> {
    match unwrap_union(v) {
        AvroValue::String(s) | AvroValue::Enum(_, s) => Ok(s.clone()),
        other => Err(sc_err(field, format!("expected a string, found {other:?}"))),
    }
}

/// Reads an enum field as one of `all`.
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

/// Reads an array field.
fn sc_array<'v>(v: &'v AvroValue, field: &str) -> Result<&'v [AvroValue], AvroError> {
    match unwrap_union(v) {
        AvroValue::Array(items) => Ok(items),
        other => Err(sc_err(field, format!("expected an array, found {other:?}"))),
    }
}

/// Reads a status change back from its Avro value (as decoded with
/// [`status_change_schema`](super::status_change_schema) or a compatible writer schema).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::avro::fixtures::change;
    use crate::codec::avro::input::value_json;
    use crate::codec::avro::schema::status_change_schema;
    use apache_avro::schema::Schema;

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
}
