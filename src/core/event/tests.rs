//! Unit tests of the event contract: validation, normalisation, bounds.
use super::*;
use serde_json::{json, Value};

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
