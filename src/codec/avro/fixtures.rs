//! Test fixtures shared by the Avro codec's unit tests: valid records of every input
//! kind, status changes, and a union of the four input schemas.

use super::input::input_to_value;
use super::schema::{InputKind, CONTRACT_AVSC, REPAIR_ORDER_AVSC, TICK_AVSC, VISIT_AVSC};
use crate::core::status::{Level, Lifecycle, Reason, StatusChange, Tier, Trigger};
use apache_avro::schema::Schema;
use apache_avro::types::Value as AvroValue;
use serde_json::{json, Value as Json};

/// A complete, valid repair order.
pub(super) fn repair_order() -> Json {
    json!({"type":"repair_order","event_id":"e1","event_time":"2024-01-10T17:00:00+08:00",
           "dealer_id":"D1","customer_id":"C1","vin":"lsvaa4182e2123456",
           "vehicle_model":"Lavida","vehicle_purchase_date":"2021-05-01","ro_number":"RO1",
           "ro_type":"maintenance","mileage_km":30500,"labor_amount":200.0,
           "parts_amount":380.5,"total_amount":580.5,"phone":"138-0013-8000"})
}

/// A valid visit.
pub(super) fn visit() -> Json {
    json!({"type":"visit","event_id":"v1","event_time":"2024-02-01T10:00:00Z",
           "dealer_id":"D1","customer_id":"C2","visit_type":"Showroom",
           "in_service_region":false})
}

/// A valid contract signing.
pub(super) fn contract() -> Json {
    json!({"type":"contract","event_id":"k1","event_time":"2024-02-01T00:00:00Z",
           "dealer_id":"D1","customer_id":"C3","contract_id":"P1",
           "contract_type":"maintenance_plan","action":"signed","start_date":"2024-02-01",
           "end_date":"2026-02-01","amount":3000})
}

/// A valid tick.
pub(super) fn tick() -> Json {
    json!({"type":"tick","event_time":"2024-03-01T00:00:00Z"})
}

/// Valid records of every kind, including ones that exercise normalisation.
pub(super) fn samples() -> Vec<(InputKind, Json)> {
    let mut ro_issues = repair_order();
    ro_issues["vin"] = json!("LSVAA4182E21234O6");
    ro_issues["phone"] = json!("12345");
    ro_issues["event_id"] = json!("e2");
    let mut ro_minimal = repair_order();
    for k in [
        "vin",
        "vehicle_model",
        "vehicle_purchase_date",
        "mileage_km",
        "phone",
    ] {
        ro_minimal.as_object_mut().unwrap().remove(k);
    }
    ro_minimal.as_object_mut().unwrap().remove("total_amount");
    ro_minimal["labor_amount"] = json!("120.5");
    let mut visit_unknown_region = visit();
    visit_unknown_region["in_service_region"] = json!("yes");
    visit_unknown_region["phone"] = json!("+49 30 1234567");
    let mut cancelled = contract();
    cancelled["action"] = json!("cancelled");
    cancelled.as_object_mut().unwrap().remove("end_date");
    cancelled.as_object_mut().unwrap().remove("amount");
    vec![
        (InputKind::RepairOrder, repair_order()),
        (InputKind::RepairOrder, ro_issues),
        (InputKind::RepairOrder, ro_minimal),
        (InputKind::Visit, visit()),
        (InputKind::Visit, visit_unknown_region),
        (InputKind::Contract, contract()),
        (InputKind::Contract, cancelled),
        (InputKind::Tick, tick()),
    ]
}

/// A status change that varies with `i` (enums, reasons, optional doubles).
pub(super) fn change(i: u32) -> StatusChange {
    StatusChange {
        event_id: format!("id-{i}"),
        customer_id: format!("C{i}"),
        dealer_id: "D1".into(),
        event_time: "2024-07-10T09:30:00Z".into(),
        trigger: if i % 2 == 0 {
            Trigger::Timer
        } else {
            Trigger::Event
        },
        previous_level: Level::Normal,
        level: Level::ALL[(i % 4) as usize],
        previous_lifecycle: Lifecycle::Active,
        lifecycle: Lifecycle::ALL[(i % 4) as usize],
        tier: Tier::ALL[(i % 3) as usize],
        previous_cell: "AG".into(),
        cell: "BG".into(),
        days_since_last_visit: 200 + i64::from(i),
        last_visit_date: "2023-12-23".into(),
        reasons: (0..i % 3)
            .map(|r| Reason {
                code: format!("reason_{r}"),
                text: format!("no visit for {} days — 准流失", 200 + i),
            })
            .collect(),
        recommended_actions: vec!["maintenance_reminder".into(), "voucher".into()],
        p_alive: (i % 2 == 0).then_some(0.25 + f64::from(i) / 100.0),
        expected_visits_12m: (i % 2 == 0).then_some(1.5),
        clv: (i % 4 == 0).then_some(1234.5),
    }
}

/// A union of the four input schemas, in [`InputKind::ALL`] order.
pub(super) fn union_schema() -> Schema {
    let text = format!("[{REPAIR_ORDER_AVSC},{VISIT_AVSC},{CONTRACT_AVSC},{TICK_AVSC}]");
    Schema::parse_str(&text).unwrap()
}

/// `record` as a value of [`union_schema`].
pub(super) fn union_value(kind: InputKind, record: &Json) -> AvroValue {
    AvroValue::Union(
        kind.index() as u32,
        Box::new(input_to_value(record, kind).unwrap()),
    )
}
