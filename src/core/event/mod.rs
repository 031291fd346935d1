//! Input events: the public contract (repair orders, visits, contracts, clock ticks),
//! their validation and normalisation.
//!
//! Decoders (JSON lines, Avro) turn bytes into a `serde_json::Value`-shaped record and
//! hand it to [`validate`], so every wire format obeys exactly the same rules and gives
//! the same precise errors. This module does no I/O.

use crate::core::time::Ts;
use serde::{Deserialize, Serialize};

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

mod validate;
pub use validate::{
    decode_json_line, normalize_phone, normalize_vin, validate, MAX_AMOUNT, MAX_ID_LEN,
    MAX_TEXT_LEN,
};

#[cfg(test)]
mod tests;
