//! Property tests of the engine's invariants: arrival order within the allowed lateness
//! does not matter, duplicates do not matter, and outputs are deterministic.

use churnwatch::core::engine::{Engine, NoSource};
use churnwatch::core::event::{decode_json_line, Input};
use churnwatch::core::policy::Policy;
use churnwatch::core::status::StatusChange;
use proptest::prelude::*;
use serde_json::json;

const BASE: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
const DAY: i64 = 86_400_000;

fn rfc(ms: i64) -> String {
    churnwatch::core::time::Ts(ms).to_rfc3339()
}

#[derive(Debug, Clone)]
struct Ev {
    kind: u8,
    customer: u8,
    time: i64,
    amount: u32,
    km: u32,
    id: usize,
}

fn to_input(e: &Ev) -> Input {
    let common = |v: serde_json::Value| {
        let mut v = v;
        v["event_id"] = json!(format!("e{}", e.id));
        v["event_time"] = json!(rfc(e.time));
        v["dealer_id"] = json!("D1");
        v["customer_id"] = json!(format!("C{}", e.customer));
        decode_json_line(&v.to_string()).unwrap().input
    };
    match e.kind % 4 {
        0 => common(
            json!({"type":"visit","visit_type":"service","in_service_region": e.amount % 2 == 0}),
        ),
        1 | 2 => common(
            json!({"type":"repair_order","ro_number":format!("R{}", e.id),
            "ro_type": if e.kind % 4 == 1 {"maintenance"} else {"general_repair"},
            "mileage_km": e.km, "total_amount": e.amount}),
        ),
        _ => common(
            json!({"type":"contract","contract_id":format!("K{}", e.customer),
            "contract_type": if e.amount % 2 == 0 {"maintenance_plan"} else {"extended_warranty"},
            "action": if e.amount % 3 == 0 {"cancelled"} else {"signed"},
            "start_date": rfc(e.time)[..10].to_string(),
            "end_date": rfc(e.time + 400 * DAY)[..10].to_string(), "amount": 1000}),
        ),
    }
}

fn events() -> impl Strategy<Value = Vec<Ev>> {
    prop::collection::vec(
        // Events cluster on a few days, minutes apart, so that arrival delays within
        // the lateness really reorder them.
        (
            0u8..4,
            0u8..5,
            (0i64..40, 0i64..300),
            0u32..6000,
            0u32..80_000,
        ),
        1..60,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(id, (kind, customer, (day, minute), amount, km))| Ev {
                kind,
                customer,
                time: BASE + day * 25 * DAY + minute * 60_000,
                amount,
                km,
                id,
            })
            .collect()
    })
}

fn run(policy: &Policy, inputs: &[Input]) -> (Vec<StatusChange>, Engine) {
    let mut e = Engine::new(policy.clone());
    let mut out = Vec::new();
    for i in inputs {
        e.process(i.clone(), &NoSource, &mut out).unwrap();
    }
    e.process(
        Input::Tick(churnwatch::core::time::Ts(BASE + 1200 * DAY)),
        &NoSource,
        &mut out,
    )
    .unwrap();
    e.flush(&NoSource, &mut out).unwrap();
    (out, e)
}

fn in_time_order(evs: &[Ev]) -> Vec<Input> {
    let mut v = evs.to_vec();
    v.sort_by_key(|e| (e.time, e.id));
    v.iter().map(to_input).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any arrival order in which no event is later than the allowed lateness gives the
    /// same status changes (same order, same ids) and the same final states.
    #[test]
    fn arrival_order_within_lateness_does_not_matter(
        evs in events(),
        delays in prop::collection::vec(0i64..(120 * 60_000), 60),
    ) {
        let policy = Policy::default();
        let (expected, e1) = run(&policy, &in_time_order(&evs));
        let mut arrived = evs.clone();
        let lateness = policy.lateness_ms();
        // Arrival key = time + delay (< lateness): no event can be late.
        arrived.sort_by_key(|e| (e.time + delays[e.id % delays.len()] % lateness, e.id));
        let inputs: Vec<Input> = arrived.iter().map(to_input).collect();
        let (got, e2) = run(&policy, &inputs);
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(e1.counters().late, 0);
        prop_assert_eq!(e2.counters().late, 0);
        for c in 0..5u8 {
            let id = format!("C{c}");
            prop_assert_eq!(e1.cached(&id), e2.cached(&id));
        }
    }

    /// Re-sent events (same event id) change nothing.
    #[test]
    fn duplicates_change_nothing(evs in events(), dup_every in 1usize..5) {
        let policy = Policy::default();
        let clean = in_time_order(&evs);
        let (expected, e1) = run(&policy, &clean);
        let mut with_dups = Vec::new();
        for (i, x) in clean.iter().enumerate() {
            with_dups.push(x.clone());
            if i % dup_every == 0 {
                with_dups.push(x.clone());
            }
        }
        let (got, e2) = run(&policy, &with_dups);
        prop_assert_eq!(&got, &expected);
        prop_assert!(e2.counters().duplicates > 0);
        for c in 0..5u8 {
            let id = format!("C{c}");
            prop_assert_eq!(e1.cached(&id), e2.cached(&id));
        }
    }

    /// Late events (any order at all) still end in the same customer state as the
    /// in-order run: state updates are order-independent.
    #[test]
    fn late_events_converge_to_the_same_state(evs in events(), seed in any::<u64>()) {
        let policy = Policy::default();
        let (_, e1) = run(&policy, &in_time_order(&evs));
        let mut shuffled = evs.clone();
        shuffled.sort_by_key(|e| (e.id as u64).wrapping_mul(seed | 1).rotate_left(17));
        let (_, e2) = run(&policy, &shuffled.iter().map(to_input).collect::<Vec<_>>());
        for c in 0..5u8 {
            let id = format!("C{c}");
            let (a, b) = (e1.cached(&id), e2.cached(&id));
            prop_assert_eq!(a.is_some(), b.is_some());
            if let (Some(a), Some(b)) = (a, b) {
                // Everything but the publication bookkeeping (which depends on when
                // changes were emitted) must agree.
                prop_assert_eq!(&a.applied, &b.applied);
                prop_assert_eq!(a.last_visit, b.last_visit);
                prop_assert_eq!(a.first_visit, b.first_visit);
                prop_assert_eq!(&a.visit_days, &b.visit_days);
                prop_assert_eq!(a.lifetime_spend_cents, b.lifetime_spend_cents);
                prop_assert_eq!(&a.recent_spend, &b.recent_spend);
                prop_assert_eq!(a.first_odometer, b.first_odometer);
                prop_assert_eq!(a.last_odometer, b.last_odometer);
                prop_assert_eq!(a.last_maintenance, b.last_maintenance);
                prop_assert_eq!(&a.contracts, &b.contracts);
                prop_assert_eq!(a.in_service_region, b.in_service_region);
                prop_assert_eq!(&a.dealer_id, &b.dealer_id);
            }
        }
    }

    /// The customers split over any number of shards, the records applied in batches
    /// cut anywhere, give one engine's status changes in one engine's order, its
    /// totals and its buffered events: with events late, early and repeated.
    #[test]
    fn sharded_engines_emit_one_engines_changes(
        evs in events(),
        seed in any::<u64>(),
        shards in 1usize..6,
        batch in 1usize..20,
        late_every in 2usize..9,
    ) {
        use churnwatch::driver::Shards;
        let policy = Policy::default();
        // Mostly in time order; every few records one from far back (late, or a
        // repeat), and ticks now and then.
        let mut arrived: Vec<Input> = Vec::new();
        let ordered = in_time_order(&evs);
        for (i, x) in ordered.iter().enumerate() {
            arrived.push(x.clone());
            if i % late_every == 0 {
                let back = (seed as usize).wrapping_add(i * 7) % (i + 1);
                arrived.push(ordered[back].clone());
            }
            if i % 11 == 5 {
                arrived.push(Input::Tick(churnwatch::core::time::Ts(x.time().0 + 30 * DAY)));
            }
        }
        let (want, one) = run(&policy, &arrived);
        let mut s = Shards::restore(policy.clone(), Default::default(), Vec::new(), shards);
        let mut got = Vec::new();
        for (i, x) in arrived.iter().enumerate() {
            s.push(x.clone());
            if i % batch == 0 {
                s.run(&NoSource, &mut got).unwrap();
            }
        }
        s.push(Input::Tick(churnwatch::core::time::Ts(BASE + 1200 * DAY)));
        s.run(&NoSource, &mut got).unwrap();
        s.flush();
        s.run(&NoSource, &mut got).unwrap();
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(&s.counters(), one.counters());
        prop_assert_eq!(s.meta(), one.meta());
        prop_assert_eq!(s.timers_pending(), one.timers_pending());
        for c in 0..5u8 {
            let id = format!("C{c}");
            prop_assert_eq!(s.cached(&id), one.cached(&id));
        }
    }

    /// Status invariants: the level matches the lifecycle, the cell matches level and
    /// tier, and a change always changes something.
    #[test]
    fn every_change_is_consistent(evs in events()) {
        let (out, _) = run(&Policy::default(), &in_time_order(&evs));
        for c in &out {
            prop_assert!(c.previous_level != c.level || c.previous_lifecycle != c.lifecycle || c.previous_cell != c.cell);
            prop_assert_eq!(&c.cell, &churnwatch::core::status::cell(c.level, c.tier));
            prop_assert!(c.days_since_last_visit >= 0);
            prop_assert!(!c.recommended_actions.is_empty());
        }
    }
}

/// Field values of the wrong kind, odd strings, numbers out of range.
fn any_json_value() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,24}".prop_map(serde_json::Value::from),
        Just(json!("2024-02-30T25:61:00Z")),
        Just(json!("LSVAA4182E2123456")),
        Just(json!([1, 2])),
        Just(json!({"nested": true})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Arbitrary text is decoded or rejected with a reason, never a panic.
    #[test]
    fn arbitrary_lines_never_panic(line in ".{0,200}") {
        if let Err(e) = decode_json_line(&line) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Records with every field present but of arbitrary value are accepted or
    /// rejected with a reason naming a field or the record, never a panic.
    #[test]
    fn arbitrary_field_values_never_panic(
        ty in prop_oneof![Just("repair_order"), Just("visit"), Just("contract"), Just("tick"), Just("x")],
        values in prop::collection::vec(any_json_value(), 24),
        drop in prop::collection::vec(any::<bool>(), 24),
    ) {
        let fields = ["event_id", "event_time", "dealer_id", "customer_id", "phone", "vin",
            "vehicle_model", "vehicle_purchase_date", "ro_number", "ro_type", "mileage_km",
            "labor_amount", "parts_amount", "total_amount", "visit_type", "in_service_region",
            "contract_id", "contract_type", "action", "start_date", "end_date", "amount",
            "event_time", "customer_id"];
        let mut obj = serde_json::Map::new();
        obj.insert("type".into(), json!(ty));
        for (i, f) in fields.iter().enumerate() {
            if !drop[i] {
                obj.insert(f.to_string(), values[i].clone());
            }
        }
        let line = serde_json::Value::Object(obj).to_string();
        match decode_json_line(&line) {
            Ok(v) => {
                let mut e = Engine::new(Policy::default());
                let mut out = Vec::new();
                e.process(v.input, &NoSource, &mut out).unwrap();
                e.flush(&NoSource, &mut out).unwrap();
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
