//! Validation and normalisation: a JSON-shaped record to a [`Validated`] input, or the
//! reason it cannot be one. The same function serves JSON lines and Avro datums (the
//! Avro decoder hands over the same shape), so a bad value gives the same error in every
//! format. Pure: no I/O.

use super::*;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::borrow::Cow;

/// Largest amount accepted in any amount field.
pub const MAX_AMOUNT: f64 = 1e9;

/// Longest identifier accepted (event, customer, dealer, contract, RO number).
pub const MAX_ID_LEN: usize = 128;

/// Longest text accepted in any other string field, in bytes (a vehicle model, a
/// VIN, a phone number, a visit type): everything a record carries ends up in state,
/// in status changes and in dead letters, so nothing may be unbounded.
pub const MAX_TEXT_LEN: usize = 256;

/// Invisible formatting characters (zero-width spaces and joiners, bidirectional
/// overrides and isolates, word joiners, the byte-order mark, the soft hyphen): an id
/// containing one looks like another id but is not, so ids with them are rejected
/// rather than silently normalised into a different customer.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

/// One top-level field of a record as validation reads it (null counts as absent).
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Bool(bool),
    /// A number (`None`: one that has no `f64` form).
    Num(Option<f64>),
    Str(&'a str),
    Array,
    Object,
}

/// The top-level fields of a record: a parsed [`Value`] object (Avro datums, tests),
/// or a [`Flat`] record decoded straight from a JSON line.
trait Record<'a> {
    /// The field `f`; `None` when it is absent or null.
    fn field(&self, f: &str) -> Option<Val<'a>>;
}

impl<'a> Record<'a> for &'a Map<String, Value> {
    fn field(&self, f: &str) -> Option<Val<'a>> {
        Some(match self.get(f)? {
            Value::Null => return None,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n.as_f64()),
            Value::String(s) => Val::Str(s),
            Value::Array(_) => Val::Array,
            Value::Object(_) => Val::Object,
        })
    }
}

struct Fields<R> {
    map: R,
}

impl<'a, R: Record<'a>> Fields<R> {
    fn get(&self, f: &str) -> Option<Val<'a>> {
        self.map.field(f)
    }

    fn opt_str(&self, f: &str) -> Result<Option<&'a str>, InvalidEvent> {
        match self.get(f) {
            None => Ok(None),
            Some(Val::Str(s)) if s.trim().is_empty() => Ok(None),
            Some(Val::Str(s)) if s.trim().len() > MAX_TEXT_LEN.max(MAX_ID_LEN) => {
                Err(InvalidEvent::invalid(
                    f,
                    format!(
                        "{} bytes; at most {} allowed",
                        s.trim().len(),
                        MAX_TEXT_LEN.max(MAX_ID_LEN)
                    ),
                ))
            }
            Some(Val::Str(s)) => Ok(Some(s.trim())),
            Some(other) => Err(InvalidEvent::invalid(
                f,
                format!("expected a string, found {}", kind_of(other)),
            )),
        }
    }

    fn req_str(&self, f: &str) -> Result<&'a str, InvalidEvent> {
        self.opt_str(f)?
            .ok_or_else(|| InvalidEvent::Missing(f.to_string()))
    }

    fn id(&self, f: &str) -> Result<String, InvalidEvent> {
        let s = self.req_str(f)?;
        if s.len() > MAX_ID_LEN {
            return Err(InvalidEvent::invalid(
                f,
                format!("{} characters; at most {MAX_ID_LEN} allowed", s.len()),
            ));
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(InvalidEvent::invalid(f, "contains control characters"));
        }
        if let Some(c) = s.chars().find(|c| is_invisible(*c)) {
            return Err(InvalidEvent::invalid(
                f,
                format!(
                    "contains the invisible character U+{:04X}; an id that looks like another must not name another customer, so fix the source record",
                    c as u32
                ),
            ));
        }
        Ok(s.to_string())
    }

    fn opt_num(&self, f: &str) -> Result<Option<f64>, InvalidEvent> {
        let n = match self.get(f) {
            None => return Ok(None),
            Some(Val::Num(n)) => n,
            Some(Val::Str(s)) => match s.trim().parse::<f64>() {
                Ok(n) => Some(n),
                Err(_) => return Err(InvalidEvent::invalid(f, format!("`{s}` is not a number"))),
            },
            Some(other) => {
                return Err(InvalidEvent::invalid(
                    f,
                    format!("expected a number, found {}", kind_of(other)),
                ))
            }
        };
        match n {
            Some(n) if n.is_finite() => Ok(Some(n)),
            _ => Err(InvalidEvent::invalid(f, "not a finite number")),
        }
    }

    fn amount(&self, f: &str) -> Result<Option<f64>, InvalidEvent> {
        match self.opt_num(f)? {
            Some(n) if n < 0.0 => Err(InvalidEvent::invalid(
                f,
                format!("amount {n} is negative; amounts must be >= 0 (send refunds as their own correction)"),
            )),
            Some(n) if n > MAX_AMOUNT => Err(InvalidEvent::invalid(
                f,
                format!("amount {n} is implausibly large (more than {MAX_AMOUNT})"),
            )),
            other => Ok(other),
        }
    }

    fn opt_date(&self, f: &str) -> Result<Option<Ts>, InvalidEvent> {
        match self.opt_str(f)? {
            None => Ok(None),
            Some(s) => Ts::parse_date(s)
                .map(Some)
                .map_err(|p| InvalidEvent::invalid(f, p)),
        }
    }

    fn opt_bool(&self, f: &str) -> Result<Option<bool>, InvalidEvent> {
        match self.get(f) {
            None => Ok(None),
            Some(Val::Bool(b)) => Ok(Some(b)),
            Some(Val::Str(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "y" => Ok(Some(true)),
                "false" | "no" | "0" | "n" => Ok(Some(false)),
                _ => Err(InvalidEvent::invalid(
                    f,
                    format!("`{s}` is not a boolean (true/false)"),
                )),
            },
            Some(other) => Err(InvalidEvent::invalid(
                f,
                format!("expected true or false, found {}", kind_of(other)),
            )),
        }
    }

    fn enum_of<T: Copy>(&self, f: &str, names: &[&str], values: &[T]) -> Result<T, InvalidEvent> {
        let s = self.req_str(f)?;
        let lower = s.to_ascii_lowercase();
        names
            .iter()
            .position(|n| *n == lower)
            .map(|i| values[i])
            .ok_or_else(|| {
                InvalidEvent::invalid(f, format!("`{s}` is not one of {}", names.join(", ")))
            })
    }
}

fn kind_of(v: Val<'_>) -> &'static str {
    match v {
        Val::Bool(_) => "a boolean",
        Val::Num(_) => "a number",
        Val::Str(_) => "a string",
        Val::Array => "an array",
        Val::Object => "an object",
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Normalises a VIN: strips spaces and dashes, upper-cases, and checks ISO 3779 shape
/// (17 characters, letters and digits, no I, O or Q).
pub fn normalize_vin(raw: &str) -> Result<String, String> {
    let v: String = raw
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_uppercase();
    if v.chars().count() != 17 {
        return Err(format!(
            "VIN has {} characters after cleaning; a VIN has exactly 17",
            v.chars().count()
        ));
    }
    if let Some(c) = v.chars().find(|c| !c.is_ascii_alphanumeric()) {
        return Err(format!(
            "VIN contains `{c}`; only letters and digits are allowed"
        ));
    }
    if let Some(c) = v.chars().find(|c| matches!(c, 'I' | 'O' | 'Q')) {
        return Err(format!(
            "VIN contains `{c}`; I, O and Q never occur in a VIN"
        ));
    }
    Ok(v)
}

/// Normalises a phone number to `+<country code><number>`.
///
/// Accepts the free forms seen in dealer systems: spaces, dashes, dots, brackets,
/// `+86`/`0086` prefixes; an 11-digit number starting with `1` is a Chinese mobile
/// (`+86…`), a number with a leading `0` and 10–12 digits is a Chinese landline with its
/// area code. Anything else must carry an explicit country code (`+` or `00`).
pub fn normalize_phone(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let mut digits = String::with_capacity(trimmed.len());
    for (i, c) in trimmed.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if i == 0 => {}
            ' ' | '-' | '.' | '(' | ')' | '/' => {}
            _ => return Err(format!("phone `{raw}` contains `{c}`")),
        }
    }
    let explicit = trimmed.starts_with('+') || digits.starts_with("00");
    let intl = if trimmed.starts_with('+') {
        digits.clone()
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest.to_string()
    } else if digits.len() == 11 && digits.starts_with('1') {
        format!("86{digits}")
    } else if digits.starts_with('0') && (10..=12).contains(&digits.len()) {
        format!("86{}", &digits[1..])
    } else {
        return Err(format!(
            "phone `{raw}` has {} digits and no country code; expected an 11-digit mobile, \
             a landline with area code, or +<country><number>",
            digits.len()
        ));
    };
    if explicit && intl.starts_with("86") && intl.len() == 13 && !intl[2..].starts_with('1') {
        return Err(format!(
            "phone `{raw}` is not a valid Chinese mobile number"
        ));
    }
    if !(8..=15).contains(&intl.len()) {
        return Err(format!(
            "phone `{raw}` has {} digits with country code; E.164 allows 8 to 15",
            intl.len()
        ));
    }
    Ok(format!("+{intl}"))
}

/// Validates and normalises one record given as a JSON object.
pub fn validate(record: &Value) -> Result<Validated, InvalidEvent> {
    let map = record.as_object().ok_or_else(|| {
        InvalidEvent::Malformed(format!("expected a JSON object, found {}", kind(record)))
    })?;
    validate_fields(Fields { map })
}

fn validate_fields<'a, R: Record<'a>>(f: Fields<R>) -> Result<Validated, InvalidEvent> {
    let ty = f.req_str("type")?;
    let event_time = Ts::parse_rfc3339(f.req_str("event_time")?)
        .map_err(|p| InvalidEvent::invalid("event_time", p))?;
    if ty == "tick" {
        return Ok(Validated {
            input: Input::Tick(event_time),
            issues: Vec::new(),
        });
    }
    let event_id = f.id("event_id")?;
    let dealer_id = f.id("dealer_id")?;
    let customer_id = f.id("customer_id")?;
    let mut issues = Vec::new();
    let phone = match f.opt_str("phone")? {
        None => None,
        Some(p) => match normalize_phone(p) {
            Ok(p) => Some(p),
            Err(problem) => {
                issues.push(FieldIssue {
                    field: "phone".into(),
                    problem,
                });
                None
            }
        },
    };
    let body = match ty {
        "repair_order" => {
            let vin = match f.opt_str("vin")? {
                None => None,
                Some(v) => match normalize_vin(v) {
                    Ok(v) => Some(v),
                    Err(problem) => {
                        issues.push(FieldIssue {
                            field: "vin".into(),
                            problem,
                        });
                        None
                    }
                },
            };
            let labor_amount = f.amount("labor_amount")?;
            let parts_amount = f.amount("parts_amount")?;
            let total_amount = match f.amount("total_amount")? {
                Some(t) => t,
                None => match (labor_amount, parts_amount) {
                    (Some(l), Some(p)) => l + p,
                    _ => return Err(InvalidEvent::Missing("total_amount".into())),
                },
            };
            let mileage_km = match f.opt_num("mileage_km")? {
                Some(m) if !(0.0..=2_000_000.0).contains(&m) => {
                    return Err(InvalidEvent::invalid(
                        "mileage_km",
                        format!("{m} km is outside 0..2,000,000"),
                    ))
                }
                m => m,
            };
            EventBody::RepairOrder(RepairOrder {
                vin,
                vehicle_model: f.opt_str("vehicle_model")?.map(str::to_string),
                vehicle_purchase_date: f.opt_date("vehicle_purchase_date")?,
                ro_number: f.id("ro_number")?,
                ro_type: f.enum_of("ro_type", &RoType::ALL.map(RoType::as_str), &RoType::ALL)?,
                mileage_km,
                labor_amount,
                parts_amount,
                total_amount,
            })
        }
        "visit" => EventBody::Visit(Visit {
            visit_type: f.enum_of(
                "visit_type",
                &VisitType::NAMES,
                &[
                    VisitType::Service,
                    VisitType::Showroom,
                    VisitType::Event,
                    VisitType::Inspection,
                ],
            )?,
            in_service_region: f.opt_bool("in_service_region")?,
        }),
        "contract" => {
            let start_date = f.opt_date("start_date")?;
            let end_date = f.opt_date("end_date")?;
            if let (Some(s), Some(e)) = (start_date, end_date) {
                if e < s {
                    return Err(InvalidEvent::invalid(
                        "end_date",
                        format!(
                            "{} is before start_date {}",
                            e.to_date_string(),
                            s.to_date_string()
                        ),
                    ));
                }
            }
            let action = f.enum_of(
                "action",
                &ContractAction::NAMES,
                &[
                    ContractAction::Signed,
                    ContractAction::Renewed,
                    ContractAction::Expired,
                    ContractAction::Cancelled,
                ],
            )?;
            if matches!(action, ContractAction::Signed | ContractAction::Renewed)
                && end_date.is_none()
            {
                return Err(InvalidEvent::Missing("end_date".into()));
            }
            EventBody::Contract(Contract {
                contract_id: f.id("contract_id")?,
                contract_type: f.enum_of(
                    "contract_type",
                    &ContractType::NAMES,
                    &[
                        ContractType::MaintenancePlan,
                        ContractType::ExtendedWarranty,
                        ContractType::Insurance,
                        ContractType::Membership,
                    ],
                )?,
                action,
                start_date,
                end_date,
                amount: f.amount("amount")?,
            })
        }
        other => return Err(InvalidEvent::UnknownType(other.to_string())),
    };
    Ok(Validated {
        input: Input::Event(Event {
            event_id,
            event_time,
            dealer_id,
            customer_id,
            phone,
            body,
        }),
        issues,
    })
}

/// Decodes and validates one JSON line. The line is parsed straight into its
/// top-level fields, borrowing the strings that need no unescaping (no tree of
/// [`Value`]s is built); the result, errors included, is what [`validate`] gives on
/// the parsed line.
pub fn decode_json_line(line: &str) -> Result<Validated, InvalidEvent> {
    let top: Top<'_> = serde_json::from_str(line)
        .map_err(|e| InvalidEvent::Malformed(format!("not valid JSON ({e})")))?;
    match top {
        Top::Object(flat) => validate_fields(Fields { map: &flat }),
        Top::Other(found) => Err(InvalidEvent::Malformed(format!(
            "expected a JSON object, found {found}"
        ))),
    }
}

/// A JSON line's top level: an object's fields, or the kind of anything else.
enum Top<'a> {
    Object(Flat<'a>),
    Other(&'static str),
}

/// The top-level fields of a JSON object in the order written; nested arrays and
/// objects are skipped and only their kind kept (no field of the contract is one).
struct Flat<'a> {
    fields: Vec<(Cow<'a, str>, FlatVal<'a>)>,
}

enum FlatVal<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl<'a, 'b> Record<'b> for &'b Flat<'a> {
    fn field(&self, f: &str) -> Option<Val<'b>> {
        // A repeated key: the last one counts, as in a parsed object.
        let (_, v) = self.fields.iter().rev().find(|(k, _)| k == f)?;
        Some(match v {
            FlatVal::Null => return None,
            FlatVal::Bool(b) => Val::Bool(*b),
            FlatVal::Num(n) => Val::Num(Some(*n)),
            FlatVal::Str(s) => Val::Str(s),
            FlatVal::Array => Val::Array,
            FlatVal::Object => Val::Object,
        })
    }
}

/// A string, borrowed from the line unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Reads any JSON value as a field: scalars kept, arrays and objects skipped.
struct AnyVal<'a>(FlatVal<'a>);

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = FlatVal<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Bool(b))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Num(n as f64))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Num(n as f64))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Num(n))
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Str(Cow::Owned(s)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<FlatVal<'de>, E> {
        Ok(FlatVal::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FlatVal<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FlatVal::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FlatVal<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(FlatVal::Object)
    }
}

impl<'de> Deserialize<'de> for AnyVal<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor).map(AnyVal)
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(12));
                while let Some(Text(k)) = map.next_key::<Text<'de>>()? {
                    let AnyVal(v) = map.next_value::<AnyVal<'de>>()?;
                    fields.push((k, v));
                }
                Ok(Top::Object(Flat { fields }))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top<'de>, E> {
                Ok(Top::Other("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top<'de>, E> {
                Ok(Top::Other("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top<'de>, E> {
                Ok(Top::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top<'de>, E> {
                Ok(Top::Other("a number"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Top<'de>, E> {
                Ok(Top::Other("a string"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Top<'de>, E> {
                Ok(Top::Other("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
                AnyVisitor.visit_seq(seq).map(|_| Top::Other("an array"))
            }
        }
        d.deserialize_any(V)
    }
}
