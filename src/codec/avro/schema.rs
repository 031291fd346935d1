//! The embedded schemas: the `schemas/*.avsc` texts, their parsed forms (parsed once, on
//! first use) and [`InputKind`], the four kinds of input record they describe; plus the
//! helpers that say which input kinds a writer schema carries.
//!
//! Owns no I/O at all; the `.avsc` files are compiled in. Everything else in the Avro
//! codec takes its schemas from here.

use crate::core::event::{EventBody, Input};
use apache_avro::schema::{Name, RecordSchema, ResolvedSchema, Schema, SchemaKind};
use std::fmt;
use std::sync::OnceLock;

/// Avro namespace of every churnwatch schema.
pub const NAMESPACE: &str = "churnwatch";

/// Source text of `schemas/repair_order.avsc`.
pub const REPAIR_ORDER_AVSC: &str = include_str!("../../../schemas/repair_order.avsc");
/// Source text of `schemas/visit.avsc`.
pub const VISIT_AVSC: &str = include_str!("../../../schemas/visit.avsc");
/// Source text of `schemas/contract.avsc`.
pub const CONTRACT_AVSC: &str = include_str!("../../../schemas/contract.avsc");
/// Source text of `schemas/tick.avsc`.
pub const TICK_AVSC: &str = include_str!("../../../schemas/tick.avsc");
/// Source text of `schemas/status_change.avsc`.
pub const STATUS_CHANGE_AVSC: &str = include_str!("../../../schemas/status_change.avsc");

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

    /// Position of the kind in [`InputKind::ALL`] (and of its branch in a union of
    /// the four schemas in that order).
    pub(super) fn index(self) -> usize {
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

/// A parsed embedded schema with its compact JSON text (for container headers).
pub(super) struct Embedded {
    /// The parsed schema.
    pub(super) schema: Schema,
    /// The same schema as a record (every embedded schema is one).
    pub(super) record: RecordSchema,
    /// The source text without insignificant whitespace.
    pub(super) compact: String,
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

/// Every embedded schema, parsed.
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

/// The embedded schema of an input kind.
pub(super) fn input_embedded(kind: InputKind) -> &'static Embedded {
    &embeds().inputs[kind.index()]
}

/// The parsed Avro schema of an input kind (parsed once, on first use).
pub fn input_schema(kind: InputKind) -> &'static Schema {
    &input_embedded(kind).schema
}

/// The parsed Avro schema of [`StatusChange`](crate::core::status::StatusChange) (parsed
/// once, on first use).
pub fn status_change_schema() -> &'static Schema {
    &status_change_embedded().schema
}

/// The embedded schema of status changes.
pub(super) fn status_change_embedded() -> &'static Embedded {
    &embeds().status_change
}

/// Removes insignificant whitespace from JSON text, keeping key order and string
/// contents exactly, so the header text does not depend on any map ordering.
pub(super) fn compact_json(text: &str) -> String {
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

/// The input kinds a writer schema can carry: a churnwatch input record, or a union of
/// them. The error describes what the schema is instead (e.g. "record `x.Y`").
pub(super) fn input_kinds(schema: &Schema) -> Result<Vec<InputKind>, String> {
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

/// A short description of a schema for messages, e.g. "record `x.Y`" or "long".
pub(super) fn schema_kind(schema: &Schema) -> String {
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

/// The schema a name refers to, by full name or, failing that, by bare name.
pub(super) fn lookup_name<'s>(resolved: &ResolvedSchema<'s>, name: &Name) -> Option<&'s Schema> {
    let names = resolved.get_names();
    names.get(name).copied().or_else(|| {
        names
            .iter()
            .find(|(n, _)| n.name == name.name)
            .map(|(_, s)| *s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::avro::status::{trigger_name, TRIGGERS};
    use crate::core::event::{self, RoType, VisitType};
    use crate::core::status::{Level, Lifecycle, Tier};
    use serde_json::Value as Json;

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
}
