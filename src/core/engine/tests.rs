//! Unit tests of the engine: timers, lateness, corrections, duplicates, restore.
use super::*;
use crate::core::event::decode_json_line;
use serde_json::json;

fn ev(v: serde_json::Value) -> Input {
    decode_json_line(&v.to_string()).unwrap().input
}

fn visit(id: &str, cust: &str, t: &str) -> Input {
    ev(
        json!({"type":"visit","event_id":id,"event_time":t,"dealer_id":"D1",
              "customer_id":cust,"visit_type":"service","in_service_region":true}),
    )
}

fn ro(id: &str, cust: &str, t: &str, ty: &str, km: f64, amount: f64) -> Input {
    ev(
        json!({"type":"repair_order","event_id":id,"event_time":t,"dealer_id":"D1",
              "customer_id":cust,"ro_number":id,"ro_type":ty,"mileage_km":km,
              "total_amount":amount}),
    )
}

fn contract(
    id: &str,
    cust: &str,
    t: &str,
    ty: &str,
    action: &str,
    start: &str,
    end: &str,
) -> Input {
    ev(
        json!({"type":"contract","event_id":id,"event_time":t,"dealer_id":"D1",
              "customer_id":cust,"contract_id":format!("K-{cust}-{ty}"),"contract_type":ty,
              "action":action,"start_date":start,"end_date":end,"amount":2000}),
    )
}

fn tick(t: &str) -> Input {
    ev(json!({"type":"tick","event_time":t}))
}

fn run(engine: &mut Engine, inputs: Vec<Input>) -> Vec<StatusChange> {
    let mut out = Vec::new();
    for i in inputs {
        engine.process(i, &NoSource, &mut out).unwrap();
    }
    out
}

fn no_factory_warranty() -> Policy {
    let mut p = Policy::default();
    p.prevent.factory_warranty_months = 0;
    p
}

#[test]
fn silent_customer_moves_through_every_level_exactly_on_time() {
    let mut e = Engine::new(Policy::default());
    let out = run(
        &mut e,
        vec![
            visit("v1", "C1", "2024-01-10T09:00:00Z"),
            tick("2026-06-01T00:00:00Z"),
        ],
    );
    let got: Vec<_> = out
        .iter()
        .map(|c| (c.event_time.as_str(), c.level, c.lifecycle, c.trigger))
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "2024-07-10T09:00:00Z",
                Level::Retain,
                Lifecycle::QuasiChurned,
                Trigger::Timer
            ),
            (
                "2025-01-10T09:00:00Z",
                Level::WinBack,
                Lifecycle::Churned,
                Trigger::Timer
            ),
            (
                "2026-01-10T09:00:00Z",
                Level::WinBack,
                Lifecycle::FullyChurned,
                Trigger::Timer
            ),
        ]
    );
    assert_eq!(out[0].previous_level, Level::Normal);
    assert_eq!(out[0].cell, "BS");
    assert_eq!(out[1].cell, "CS");
    assert_eq!(out[0].days_since_last_visit, 182);
    assert_eq!(e.counters().timers_fired, 3);
    assert_eq!(e.timers_pending(), 0);
}

#[test]
fn timers_wait_for_stream_time_minus_lateness() {
    let mut e = Engine::new(Policy::default());
    // Stream time = 2024-07-10T11:00 - 120 min = 09:00 exactly: the timer fires.
    let out = run(
        &mut e,
        vec![
            visit("v1", "C1", "2024-01-10T09:00:00Z"),
            tick("2024-07-10T10:59:59Z"),
        ],
    );
    assert!(out.is_empty());
    let out = run(&mut e, vec![tick("2024-07-10T11:00:00Z")]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].level, Level::Retain);
}

#[test]
fn cadence_overdue_raises_prevent() {
    let mut e = Engine::new(no_factory_warranty());
    // Quarterly customer: visits 90 days apart; overdue after 135 days.
    let out = run(
        &mut e,
        vec![
            visit("a", "C", "2024-01-01T10:00:00Z"),
            visit("b", "C", "2024-03-31T10:00:00Z"),
            visit("c", "C", "2024-06-29T10:00:00Z"),
            tick("2024-12-01T00:00:00Z"),
        ],
    );
    assert_eq!(out[0].level, Level::Prevent);
    assert_eq!(out[0].lifecycle, Lifecycle::Active);
    assert_eq!(out[0].event_time, "2024-11-11T10:00:00Z"); // 29 Jun + 1.5 x 90 days
    assert!(out[0].reasons.iter().any(|r| r.code == "cadence_overdue"));
    assert_eq!(out.len(), 1);
}

#[test]
fn a_visit_brings_a_customer_back_to_normal() {
    let mut e = Engine::new(Policy::default());
    let out = run(
        &mut e,
        vec![
            visit("a", "C", "2024-01-10T09:00:00Z"),
            visit("b", "C", "2025-03-01T09:00:00Z"),
            tick("2025-03-02T00:00:00Z"),
        ],
    );
    let last = out.last().unwrap();
    assert_eq!(
        (last.previous_level, last.level),
        (Level::WinBack, Level::Normal)
    );
    assert_eq!(last.trigger, Trigger::Event);
    assert!(last.reasons.iter().any(|r| r.code == "visited"));
}

#[test]
fn mileage_due_raises_prevent() {
    let mut e = Engine::new(no_factory_warranty());
    // 100 km/day; maintenance at 20,000 km; due at 30,000 km = 100 days later.
    let out = run(
        &mut e,
        vec![
            ro(
                "r1",
                "C",
                "2024-01-01T00:00:00Z",
                "general_repair",
                10_000.0,
                800.0,
            ),
            ro(
                "r2",
                "C",
                "2024-04-10T00:00:00Z",
                "maintenance",
                20_000.0,
                600.0,
            ),
            tick("2024-12-31T00:00:00Z"),
        ],
    );
    // The second repair order lifts the tier (cell AS -> AG), then mileage comes due.
    assert_eq!((out[0].cell.as_str(), out[0].level), ("AG", Level::Normal));
    assert_eq!(out[1].level, Level::Prevent);
    assert_eq!(out[1].event_time, "2024-07-19T00:00:00Z");
    assert!(out[1]
        .reasons
        .iter()
        .any(|r| r.code == "maintenance_due_mileage"));
}

#[test]
fn plan_expiry_and_plan_lowering() {
    let mut e = Engine::new(no_factory_warranty());
    let out = run(
        &mut e,
        vec![
            visit("v", "C", "2024-01-10T09:00:00Z"),
            contract(
                "k",
                "C",
                "2024-01-10T10:00:00Z",
                "maintenance_plan",
                "signed",
                "2024-01-10",
                "2025-03-01",
            ),
            tick("2025-12-31T00:00:00Z"),
        ],
    );
    let got: Vec<_> = out
        .iter()
        .map(|c| (c.event_time.as_str(), c.level))
        .collect();
    // The plan lowers retain to prevent at 6 months, until its warning window starts
    // 60 days before its end; then retain; then win_back at 12 months.
    assert_eq!(
        got,
        vec![
            ("2024-07-10T09:00:00Z", Level::Prevent),
            ("2024-12-31T00:00:00Z", Level::Retain),
            ("2025-01-10T09:00:00Z", Level::WinBack),
        ]
    );
    assert!(out[0]
        .reasons
        .iter()
        .any(|r| r.code == "maintenance_plan_active"));
}

#[test]
fn extended_warranty_expiring_raises_prevent_for_active_customer() {
    let mut e = Engine::new(no_factory_warranty());
    let out = run(
        &mut e,
        vec![
            visit("v", "C", "2024-01-10T09:00:00Z"),
            contract(
                "k",
                "C",
                "2024-01-11T09:00:00Z",
                "extended_warranty",
                "signed",
                "2023-05-01",
                "2024-05-01",
            ),
            tick("2024-05-05T00:00:00Z"),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].level, Level::Prevent);
    assert_eq!(out[0].event_time, "2024-03-02T00:00:00Z");
    assert!(out[0].reasons.iter().any(|r| r.code == "contract_expiring"));
}

#[test]
fn one_event_id_at_one_instant_under_two_customers_is_two_events() {
    let mut e = Engine::new(Policy::default());
    run(
        &mut e,
        vec![
            ro(
                "r1",
                "A",
                "2024-01-01T00:00:00Z",
                "maintenance",
                1000.0,
                500.0,
            ),
            ro(
                "r1",
                "B",
                "2024-01-01T00:00:00Z",
                "maintenance",
                1000.0,
                500.0,
            ),
            tick("2024-02-01T00:00:00Z"),
        ],
    );
    assert_eq!(e.counters().duplicates, 0);
    for c in ["A", "B"] {
        assert_eq!(e.cached(c).unwrap().ro_count, 1, "customer {c}");
    }
}

#[test]
fn duplicates_are_no_ops() {
    let mut e = Engine::new(Policy::default());
    run(
        &mut e,
        vec![
            ro(
                "r1",
                "C",
                "2024-01-01T00:00:00Z",
                "maintenance",
                1000.0,
                500.0,
            ),
            ro(
                "r1",
                "C",
                "2024-01-01T00:00:00Z",
                "maintenance",
                1000.0,
                500.0,
            ),
            tick("2024-02-01T00:00:00Z"),
            ro(
                "r1",
                "C",
                "2024-01-01T00:00:00Z",
                "maintenance",
                1000.0,
                500.0,
            ),
        ],
    );
    assert_eq!(e.counters().duplicates, 2);
    let s = e.cached("C").unwrap();
    assert_eq!(s.ro_count, 1);
    assert_eq!(s.lifetime_spend_cents, 50_000);
}

#[test]
fn late_visit_corrects_a_warning_already_sent() {
    let mut e = Engine::new(Policy::default());
    let out = run(
        &mut e,
        vec![
            visit("a", "C", "2024-01-10T09:00:00Z"),
            tick("2024-08-01T00:00:00Z"),
        ],
    );
    assert_eq!(out[0].level, Level::Retain);
    let out = run(&mut e, vec![visit("late", "C", "2024-06-01T09:00:00Z")]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].previous_level, out[0].level),
        (Level::Retain, Level::Normal)
    );
    assert_eq!(out[0].event_time, "2024-07-31T22:00:00Z");
    assert!(out[0].reasons.iter().any(|r| r.code == "late_event"));
    assert_eq!(e.counters().late, 1);
    assert_eq!(e.counters().corrections, 1);
    // And the timer follows the corrected last visit.
    let out = run(&mut e, vec![tick("2024-12-02T00:00:00Z")]);
    assert_eq!(out[0].event_time, "2024-12-01T09:00:00Z");
}

#[test]
fn dwell_delays_flapping() {
    let mut p = Policy::default();
    p.stream.min_dwell_hours = 24 * 10;
    let mut e = Engine::new(p);
    let out = run(
        &mut e,
        vec![
            visit("a", "C", "2024-01-10T09:00:00Z"),
            tick("2024-07-11T00:00:00Z"),
            visit("b", "C", "2024-07-12T09:00:00Z"),
            tick("2024-07-30T00:00:00Z"),
        ],
    );
    let got: Vec<_> = out
        .iter()
        .map(|c| (c.event_time.as_str(), c.level))
        .collect();
    assert_eq!(
        got,
        vec![
            ("2024-07-10T09:00:00Z", Level::Retain),
            ("2024-07-20T09:00:00Z", Level::Normal)
        ]
    );
}

#[test]
fn dwell_counts_from_published_changes_only() {
    let mut e = Engine::new(no_factory_warranty());
    // First sight is recorded silently (AS); a big repair an hour later lifts the
    // tier at once: the silent record does not start a dwell period.
    let out = run(
        &mut e,
        vec![
            visit("a", "C", "2024-01-10T09:00:00Z"),
            ro("r", "C", "2024-01-10T10:00:00Z", "accident", 1000.0, 9000.0),
            tick("2024-01-12T00:00:00Z"),
        ],
    );
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].previous_cell.as_str(), out[0].cell.as_str()),
        ("AS", "AD")
    );
    assert_eq!(out[0].event_time, "2024-01-10T10:00:00Z");
    assert_eq!(out[0].trigger, Trigger::Event);
}

#[test]
fn tier_from_value_window_and_cell_changes() {
    let mut e = Engine::new(no_factory_warranty());
    let out = run(
        &mut e,
        vec![
            ro(
                "r1",
                "C",
                "2024-01-10T09:00:00Z",
                "general_repair",
                1000.0,
                9000.0,
            ),
            tick("2025-02-01T00:00:00Z"),
        ],
    );
    assert!(out
        .iter()
        .all(|c| c.tier == crate::core::status::Tier::Diamond));
    assert_eq!(out.last().unwrap().cell, "CD");
    assert!(out
        .last()
        .unwrap()
        .recommended_actions
        .contains(&"win_back_call".to_string()));
}

#[test]
fn take_dirty_tracks_timer_changes() {
    let mut e = Engine::new(Policy::default());
    run(
        &mut e,
        vec![
            visit("a", "C", "2024-01-10T09:00:00Z"),
            tick("2024-01-11T00:00:00Z"),
        ],
    );
    let d = e.take_dirty();
    assert_eq!(d.customers.len(), 1);
    assert_eq!(
        d.timers_added,
        vec![(Ts::ymd_hms(2024, 7, 10, 9, 0, 0), "C".to_string())]
    );
    assert!(e.take_dirty().customers.is_empty());
    run(&mut e, vec![tick("2024-08-01T00:00:00Z")]);
    let d = e.take_dirty();
    assert_eq!(d.timers_removed.len(), 1);
    assert_eq!(d.timers_added[0].0, Ts::ymd_hms(2025, 1, 10, 9, 0, 0));
}

#[test]
fn dirty_customers_counts_each_changed_customer_once_until_taken() {
    let mut e = Engine::new(Policy::default());
    assert_eq!(e.dirty_customers(), 0);
    run(
        &mut e,
        vec![
            visit("a", "C1", "2024-01-10T09:00:00Z"),
            visit("b", "C1", "2024-01-11T09:00:00Z"),
            visit("c", "C2", "2024-01-12T09:00:00Z"),
            tick("2024-01-13T00:00:00Z"),
        ],
    );
    assert_eq!(e.dirty_customers(), 2);
    assert_eq!(e.take_dirty().customers.len(), 2);
    assert_eq!(e.dirty_customers(), 0);
    // Evicting clean customers and firing a timer for one of them: it is loaded and
    // counted once, whatever the cache held.
    let mut src = std::collections::HashMap::new();
    for id in ["C1", "C2"] {
        src.insert(id.to_string(), e.cached(id).unwrap().clone());
    }
    e.evict(0);
    assert_eq!(e.cached_customers(), 0);
    let mut out = Vec::new();
    e.process(tick("2024-08-01T00:00:00Z"), &MapSource(&src), &mut out)
        .unwrap();
    assert_eq!(e.dirty_customers(), 2);
    assert_eq!(e.take_dirty().customers.len(), 2);
}

struct MapSource<'a>(&'a std::collections::HashMap<String, CustomerState>);

impl CustomerSource for MapSource<'_> {
    type Error = std::convert::Infallible;
    fn load(&self, id: &str) -> Result<Option<CustomerState>, Self::Error> {
        Ok(self.0.get(id).cloned())
    }
}

#[test]
fn engine_restores_from_store_and_continues_identically() {
    use crate::store::MemStore;
    let inputs = vec![
        visit("a", "C1", "2024-01-10T09:00:00Z"),
        visit("b", "C2", "2024-02-10T09:00:00Z"),
        tick("2024-08-01T00:00:00Z"),
        visit("c", "C1", "2024-09-01T09:00:00Z"),
        tick("2026-01-01T00:00:00Z"),
    ];
    let mut whole = Engine::new(Policy::default());
    let expected = run(&mut whole, inputs.clone());

    let store = MemStore::in_memory();
    let mut e = Engine::new(Policy::default());
    let mut out = Vec::new();
    for (i, input) in inputs.into_iter().enumerate() {
        e.process(input, &store, &mut out).unwrap();
        let mut batch = crate::store::Batch::new();
        batch.dirty(&e.take_dirty()).unwrap();
        store.write(batch).unwrap();
        // Drop everything in memory and come back from the store.
        if i % 2 == 0 {
            e = Engine::restore(
                Policy::default(),
                store.load_meta().unwrap().unwrap(),
                store.load_timers().unwrap(),
            );
        } else {
            e.evict(0);
        }
    }
    assert_eq!(out, expected);
}

#[test]
fn eviction_keeps_the_customers_whose_timers_come_soonest() {
    let mut e = Engine::new(Policy::default());
    // Visits a month apart: each customer's first timer comes a month after the
    // previous one's.
    let inputs: Vec<Input> = (1..=6)
        .map(|m| {
            visit(
                &format!("v{m}"),
                &format!("C{m}"),
                &format!("2024-0{m}-10T09:00:00Z"),
            )
        })
        .chain([tick("2024-07-01T00:00:00Z")])
        .collect();
    run(&mut e, inputs);
    e.take_dirty();
    let deadline = |e: &Engine, id: &str| e.cached(id).unwrap().next_deadline.unwrap();
    for m in 1..6 {
        assert!(deadline(&e, &format!("C{m}")) < deadline(&e, &format!("C{}", m + 1)));
    }
    // A customer still dirty stays whatever its deadline.
    run(
        &mut e,
        vec![
            visit("v7", "C6", "2024-07-02T09:00:00Z"),
            tick("2024-07-03T00:00:00Z"),
        ],
    );
    assert_eq!(e.dirty_customers(), 1);
    e.evict(3);
    let mut kept: Vec<&str> = ["C1", "C2", "C3", "C4", "C5", "C6"]
        .into_iter()
        .filter(|id| e.cached(id).is_some())
        .collect();
    kept.sort();
    assert_eq!(kept, ["C1", "C2", "C6"]);
    e.take_dirty();
    e.evict(1);
    assert_eq!(e.cached_customers(), 1);
    assert!(e.cached("C1").is_some());
}

#[test]
fn timer_keys_order_as_instant_then_customer_id() {
    let ids = [
        "",
        "a",
        "a\0",
        "a\0b",
        "ab",
        "C00099264",
        "C0009926",
        "C00099264x",
        "0123456789abcdefA",
        "0123456789abcdefB",
        "0123456789abcdef",
        "é",
        "z",
    ];
    let at = [Ts(5), Ts(-3), Ts(5)];
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i..] {
            for (ta, tb) in at.iter().zip(at.iter().rev()) {
                let (x, y) = (
                    TimerKey::new(*ta, Arc::from(*a)),
                    TimerKey::new(*tb, Arc::from(*b)),
                );
                assert_eq!(x.cmp(&y), (ta, a).cmp(&(tb, b)), "{a:?} {b:?}");
                assert_eq!(x == y, (ta, a) == (tb, b));
            }
        }
    }
}
