//! Input events: the public contract (repair orders, visits, contracts, clock ticks),
//! their validation and normalisation.
//!
//! Decoders (JSON lines, Avro) turn bytes into a `serde_json::Value`-shaped record and
//! hand it to [`validate`], so every wire format obeys exactly the same rules and gives
//! the same precise errors. This module does no I/O.

use crate::core::time::Ts;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// Type of a repair order (维修工单).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum RoType {
    /// Periodic maintenance (保养).
    Maintenance,
    /// General (mechanical) repair.
    GeneralRepair,
    /// Accident / insurance repair.
    Accident,
    /// Repair under warranty.
    Warranty,
    /// Quick service (tyres, wipers, fluids).
    QuickService,
    /// Manufacturer recall.
    Recall,
    /// Accessories fitted.
    Accessories,
}

impl RoType {
    /// Every repair-order type, in the order of [`RoType::index`].
    pub const ALL: [RoType; 7] = [
        RoType::Maintenance,
        RoType::GeneralRepair,
        RoType::Accident,
        RoType::Warranty,
        RoType::QuickService,
        RoType::Recall,
        RoType::Accessories,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RoType::Maintenance => "maintenance",
            RoType::GeneralRepair => "general_repair",
            RoType::Accident => "accident",
            RoType::Warranty => "warranty",
            RoType::QuickService => "quick_service",
            RoType::Recall => "recall",
            RoType::Accessories => "accessories",
        }
    }

    /// Position in [`RoType::ALL`].
    pub fn index(self) -> usize {
        RoType::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// Kind of a dealer visit (进店).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitType {
    /// Service check-in.
    Service,
    /// Showroom visit.
    Showroom,
    /// Participation in a dealer event.
    Event,
    /// Vehicle inspection.
    Inspection,
}

impl VisitType {
    /// Wire names accepted.
    pub const NAMES: [&'static str; 4] = ["service", "showroom", "event", "inspection"];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Kind of contract (合同).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContractType {
    /// Prepaid maintenance package card (保养套餐卡).
    MaintenancePlan,
    /// Extended warranty (延保).
    ExtendedWarranty,
    /// Insurance (续保).
    Insurance,
    /// Membership / club.
    Membership,
}

impl ContractType {
    /// Wire names accepted.
    pub const NAMES: [&'static str; 4] = [
        "maintenance_plan",
        "extended_warranty",
        "insurance",
        "membership",
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// What happened to a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ContractAction {
    /// Newly signed.
    Signed,
    /// Renewed (a new term).
    Renewed,
    /// Ran out.
    Expired,
    /// Cancelled before its end.
    Cancelled,
}

impl ContractAction {
    /// Wire names accepted.
    pub const NAMES: [&'static str; 4] = ["signed", "renewed", "expired", "cancelled"];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// A repair order's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepairOrder {
    /// Vehicle identification number, upper-cased and checked (absent if missing or invalid).
    pub vin: Option<String>,
    /// Vehicle model.
    pub vehicle_model: Option<String>,
    /// Date the vehicle was bought.
    pub vehicle_purchase_date: Option<Ts>,
    /// Repair-order number in the dealer system.
    pub ro_number: String,
    /// Repair-order type.
    pub ro_type: RoType,
    /// Odometer reading in km.
    pub mileage_km: Option<f64>,
    /// Labour amount.
    pub labor_amount: Option<f64>,
    /// Parts amount.
    pub parts_amount: Option<f64>,
    /// Total amount (labour + parts when not given).
    pub total_amount: f64,
}

/// A visit's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Visit {
    /// Kind of visit.
    pub visit_type: VisitType,
    /// Whether the customer lives in the dealer's service region (unknown if absent).
    pub in_service_region: Option<bool>,
}

/// A contract event's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    /// Contract identifier.
    pub contract_id: String,
    /// Kind of contract.
    pub contract_type: ContractType,
    /// What happened.
    pub action: ContractAction,
    /// Start of the (new) term.
    pub start_date: Option<Ts>,
    /// End of the term.
    pub end_date: Option<Ts>,
    /// Amount paid.
    pub amount: Option<f64>,
}

/// The type-specific part of an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventBody {
    /// A repair order.
    RepairOrder(RepairOrder),
    /// A visit.
    Visit(Visit),
    /// A contract event.
    Contract(Contract),
}

/// A validated, normalised customer event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id of the event at its source; duplicates are applied once.
    pub event_id: String,
    /// When it happened.
    pub event_time: Ts,
    /// Dealer.
    pub dealer_id: String,
    /// Customer.
    pub customer_id: String,
    /// Phone number normalised to `+<country><number>` (absent if missing or invalid).
    pub phone: Option<String>,
    /// Type-specific fields.
    pub body: EventBody,
}

impl Event {
    /// Wire name of the event type.
    pub fn type_name(&self) -> &'static str {
        match self.body {
            EventBody::RepairOrder(_) => "repair_order",
            EventBody::Visit(_) => "visit",
            EventBody::Contract(_) => "contract",
        }
    }

    /// Whether the event is a visit to the dealer (visits and repair orders are;
    /// contract events are not).
    pub fn is_visit(&self) -> bool {
        !matches!(self.body, EventBody::Contract(_))
    }
}

/// One decoded input record: a customer event or a clock tick.
// Ticks are rare and events are the hot path: boxing events would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// A customer event.
    Event(Event),
    /// A clock tick: stream time may advance to this instant (minus the allowed lateness).
    Tick(Ts),
}

impl Input {
    /// Event time of the record.
    pub fn time(&self) -> Ts {
        match self {
            Input::Event(e) => e.event_time,
            Input::Tick(t) => *t,
        }
    }
}

/// Why a record was rejected. The message names the field and what was wrong.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InvalidEvent {
    /// The bytes are not a record at all.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// A required field is absent or null.
    #[error("field `{0}` is missing; it is required for this event type")]
    Missing(String),
    /// A field is present but wrong.
    #[error("field `{field}`: {problem}")]
    Invalid {
        /// The field.
        field: String,
        /// What was wrong with it.
        problem: String,
    },
    /// `type` names no known event type.
    #[error("unknown event type `{0}`; expected repair_order, visit, contract or tick")]
    UnknownType(String),
    /// The record's time is outside what the stream can plausibly hold (far future,
    /// far past or pre-epoch); applying it would move stream time for everyone.
    #[error("field `event_time`: {0}")]
    ImplausibleTime(String),
    /// A block of an Avro container file is damaged: its records cannot be read. The
    /// message names the block, its byte offset, what was wrong and how many records it
    /// claimed.
    #[error("damaged Avro block: {0}")]
    DamagedBlock(String),
}

impl InvalidEvent {
    /// A short stable code for metrics and dead-letter records.
    pub fn code(&self) -> &'static str {
        match self {
            InvalidEvent::Malformed(_) => "malformed",
            InvalidEvent::Missing(_) => "missing_field",
            InvalidEvent::Invalid { .. } => "invalid_field",
            InvalidEvent::UnknownType(_) => "unknown_type",
            InvalidEvent::ImplausibleTime(_) => "implausible_time",
            InvalidEvent::DamagedBlock(_) => "damaged_block",
        }
    }

    /// The field at fault, when one is.
    pub fn field(&self) -> Option<&str> {
        match self {
            InvalidEvent::Missing(f) => Some(f),
            InvalidEvent::Invalid { field, .. } => Some(field),
            InvalidEvent::ImplausibleTime(_) => Some("event_time"),
            _ => None,
        }
    }

    fn invalid(field: &str, problem: impl Into<String>) -> Self {
        InvalidEvent::Invalid {
            field: field.to_string(),
            problem: problem.into(),
        }
    }
}

/// A field that was wrong but not essential: it was dropped and the event kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldIssue {
    /// The field.
    pub field: String,
    /// What was wrong with it.
    pub problem: String,
}

/// A validated record and the non-essential fields that had to be dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Validated {
    /// The record.
    pub input: Input,
    /// Dropped fields (bad VIN, bad phone), each worth a dead-letter note.
    pub issues: Vec<FieldIssue>,
}

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

struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn get(&self, f: &str) -> Option<&'a Value> {
        match self.map.get(f) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v),
        }
    }

    fn opt_str(&self, f: &str) -> Result<Option<&'a str>, InvalidEvent> {
        match self.get(f) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) if s.trim().len() > MAX_TEXT_LEN.max(MAX_ID_LEN) => {
                Err(InvalidEvent::invalid(
                    f,
                    format!(
                        "{} bytes; at most {} allowed",
                        s.trim().len(),
                        MAX_TEXT_LEN.max(MAX_ID_LEN)
                    ),
                ))
            }
            Some(Value::String(s)) => Ok(Some(s.trim())),
            Some(other) => Err(InvalidEvent::invalid(
                f,
                format!("expected a string, found {}", kind(other)),
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
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(n) => Some(n),
                Err(_) => return Err(InvalidEvent::invalid(f, format!("`{s}` is not a number"))),
            },
            Some(other) => {
                return Err(InvalidEvent::invalid(
                    f,
                    format!("expected a number, found {}", kind(other)),
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
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "y" => Ok(Some(true)),
                "false" | "no" | "0" | "n" => Ok(Some(false)),
                _ => Err(InvalidEvent::invalid(
                    f,
                    format!("`{s}` is not a boolean (true/false)"),
                )),
            },
            Some(other) => Err(InvalidEvent::invalid(
                f,
                format!("expected true or false, found {}", kind(other)),
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
    let f = Fields { map };
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

/// Decodes and validates one JSON line.
pub fn decode_json_line(line: &str) -> Result<Validated, InvalidEvent> {
    let v: Value = serde_json::from_str(line)
        .map_err(|e| InvalidEvent::Malformed(format!("not valid JSON ({e})")))?;
    validate(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ro() -> Value {
        json!({"type":"repair_order","event_id":"e1","event_time":"2024-01-10T09:00:00Z",
               "dealer_id":"D1","customer_id":"C1","vin":"lsvaa4182e2123456",
               "vehicle_model":"Lavida","vehicle_purchase_date":"2021-05-01","ro_number":"RO1",
               "ro_type":"maintenance","mileage_km":30500,"labor_amount":200.0,
               "parts_amount":380.5,"total_amount":580.5,"phone":"138-0013-8000"})
    }

    #[test]
    fn repair_order_normalises() {
        let v = validate(&ro()).unwrap();
        assert!(v.issues.is_empty());
        let Input::Event(e) = v.input else { panic!() };
        let EventBody::RepairOrder(r) = &e.body else {
            panic!()
        };
        assert_eq!(r.vin.as_deref(), Some("LSVAA4182E2123456"));
        assert_eq!(e.phone.as_deref(), Some("+8613800138000"));
        assert_eq!(r.ro_type, RoType::Maintenance);
        assert!(e.is_visit());
    }

    #[test]
    fn look_alike_ids_are_rejected() {
        for bad in ["C\u{200B}1", "\u{202E}1C", "\u{FEFF}C1", "C\u{2060}1"] {
            let mut r = ro();
            r["customer_id"] = json!(bad);
            let e = validate(&r).unwrap_err();
            assert_eq!(e.field(), Some("customer_id"), "{bad:?}");
            assert!(e.to_string().contains("invisible"), "{e}");
        }
        let mut r = ro();
        r["customer_id"] = json!("客户-001");
        assert!(validate(&r).is_ok(), "non-Latin ids are fine");
    }

    #[test]
    fn every_text_field_is_bounded() {
        let mut r = ro();
        r["vehicle_model"] = json!("x".repeat(600_000));
        let e = validate(&r).unwrap_err();
        assert_eq!(e.field(), Some("vehicle_model"));
        assert!(
            e.to_string().len() < 200,
            "the reason does not quote the value"
        );
        let mut r = ro();
        r["phone"] = json!("1".repeat(700_000));
        assert_eq!(validate(&r).unwrap_err().field(), Some("phone"));
        let mut r = ro();
        r["vehicle_model"] = json!("y".repeat(MAX_TEXT_LEN));
        assert!(validate(&r).is_ok());
    }

    #[test]
    fn bad_vin_is_dropped_with_issue() {
        let mut r = ro();
        r["vin"] = json!("LSVAA4182E21234O6");
        let v = validate(&r).unwrap();
        assert_eq!(v.issues.len(), 1);
        assert_eq!(v.issues[0].field, "vin");
        assert!(v.issues[0].problem.contains('O'));
    }

    #[test]
    fn precise_errors() {
        let mut r = ro();
        r.as_object_mut().unwrap().remove("customer_id");
        assert_eq!(
            validate(&r).unwrap_err(),
            InvalidEvent::Missing("customer_id".into())
        );
        let mut r = ro();
        r["total_amount"] = json!(-5);
        let e = validate(&r).unwrap_err();
        assert_eq!(e.code(), "invalid_field");
        assert!(e.to_string().contains("total_amount"), "{e}");
        r["total_amount"] = json!(5e12);
        assert!(validate(&r)
            .unwrap_err()
            .to_string()
            .contains("implausibly large"));
        let mut r = ro();
        r["ro_type"] = json!("oil");
        assert!(validate(&r)
            .unwrap_err()
            .to_string()
            .contains("`oil` is not one of"));
        let mut r = ro();
        r["event_time"] = json!("yesterday");
        assert!(validate(&r).unwrap_err().to_string().contains("event_time"));
        let mut r = ro();
        r["type"] = json!("sale");
        assert_eq!(validate(&r).unwrap_err().code(), "unknown_type");
        assert_eq!(
            decode_json_line("{not json").unwrap_err().code(),
            "malformed"
        );
        assert_eq!(decode_json_line("[1]").unwrap_err().code(), "malformed");
    }

    #[test]
    fn total_from_parts() {
        let mut r = ro();
        r.as_object_mut().unwrap().remove("total_amount");
        let Input::Event(e) = validate(&r).unwrap().input else {
            panic!()
        };
        let EventBody::RepairOrder(r) = e.body else {
            panic!()
        };
        assert!((r.total_amount - 580.5).abs() < 1e-9);
    }

    #[test]
    fn phones() {
        assert_eq!(
            normalize_phone("+86 138 0013 8000").unwrap(),
            "+8613800138000"
        );
        assert_eq!(
            normalize_phone("0086-13800138000").unwrap(),
            "+8613800138000"
        );
        assert_eq!(normalize_phone("(010) 6552-9988").unwrap(), "+861065529988");
        assert_eq!(normalize_phone("+49 30 1234567").unwrap(), "+49301234567");
        assert!(normalize_phone("12345").is_err());
        assert!(normalize_phone("138OO138000").is_err());
    }

    #[test]
    fn contracts_and_visits_and_ticks() {
        let c = json!({"type":"contract","event_id":"k","event_time":"2024-02-01T00:00:00Z",
            "dealer_id":"D","customer_id":"C","contract_id":"P1","contract_type":"maintenance_plan",
            "action":"signed","start_date":"2024-02-01","end_date":"2026-02-01","amount":3000});
        assert!(validate(&c).is_ok());
        let mut bad = c.clone();
        bad["end_date"] = json!("2023-01-01");
        assert!(validate(&bad)
            .unwrap_err()
            .to_string()
            .contains("before start_date"));
        let v = json!({"type":"visit","event_id":"v","event_time":"2024-02-01T00:00:00Z",
            "dealer_id":"D","customer_id":"C","visit_type":"showroom","in_service_region":false});
        assert!(validate(&v).is_ok());
        let t = json!({"type":"tick","event_time":"2024-02-01T00:00:00Z"});
        assert!(matches!(validate(&t).unwrap().input, Input::Tick(_)));
    }
}
