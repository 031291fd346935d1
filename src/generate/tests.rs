//! Tests of the generator as a whole: determinism, every line against its intent, time
//! order, the ground truth, the summary, realism of the histories, seasonality, I/O
//! errors and progress. Unit tests of the parts live next to them.

use super::calendar::{date_of, spring_festival, DAY_S};
use super::catalogue::MODELS;
use super::event::{Body, Delivery, Dirty, LineTag};
use super::ids::vin_check_digit;
use super::risk::Cause;
use super::*;
use crate::core::event::{
    decode_json_line, ContractAction, ContractType, EventBody, Input, InvalidEvent, RoType,
};
use crate::core::policy::StreamPolicy;
use crate::core::time::Ts;
use chrono::Datelike;
use std::collections::{BTreeMap, BTreeSet};

pub(super) fn small(seed: u64) -> GenConfig {
    GenConfig {
        customers: 300,
        dealers: 7,
        years: 3,
        seed,
        ..GenConfig::default()
    }
}

/// Builds a plan and renders it in memory, with a tag per line.
fn render(cfg: &GenConfig) -> (Plan, Vec<String>, Vec<LineTag>) {
    cfg.validate().unwrap();
    let mut cb = |_: GenProgress| {};
    let mut prog = Progress::new(&mut cb, cfg.customers * 2);
    let plan = Plan::build(cfg, &mut prog);
    let mut bytes = Vec::new();
    let mut tags = Vec::new();
    plan.write_events(&mut bytes, Some(&mut tags), &mut prog)
        .unwrap();
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    assert!(text.ends_with('\n'));
    assert_eq!(lines.len(), tags.len());
    (plan, lines, tags)
}

fn read(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join(EVENTS_FILE)).unwrap(),
        std::fs::read(dir.join(GROUND_TRUTH_FILE)).unwrap(),
    )
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    let cfg = small(42);
    generate(&cfg, &a, &mut |_| {}).unwrap();
    generate(&cfg, &b, &mut |_| {}).unwrap();
    generate(&small(43), &c, &mut |_| {}).unwrap();
    let (ea, ta) = read(&a);
    let (eb, tb) = read(&b);
    let (ec, tc) = read(&c);
    assert!(
        ea == eb && ta == tb,
        "same config must give identical files"
    );
    assert!(ea != ec && ta != tc, "another seed must give other files");
}

#[test]
fn every_line_validates_as_intended_and_every_dirty_kind_appears() {
    let cfg = GenConfig {
        dirty_rate: 0.2,
        disorder_rate: 0.05,
        late_rate: 0.01,
        ..small(5)
    };
    let (_, lines, tags) = render(&cfg);
    let mut seen = BTreeSet::new();
    let mut first_line_of: BTreeMap<String, &str> = BTreeMap::new();
    for (line, tag) in lines.iter().zip(&tags) {
        let res = decode_json_line(line);
        seen.insert(tag.dirty);
        let why = format!("{:?}: {line}", tag.dirty);
        match tag.dirty {
            Dirty::Clean => {
                let v = res.unwrap_or_else(|e| panic!("{e} in {line}"));
                assert!(v.issues.is_empty(), "{:?} in {line}", v.issues);
                match v.input {
                    Input::Tick(t) => {
                        assert!(tag.tick);
                        assert_eq!(t, cfg.end());
                    }
                    Input::Event(e) => {
                        assert!(!tag.tick);
                        // Event ids are unique: only re-sent duplicates repeat one.
                        assert!(
                            first_line_of.insert(e.event_id.clone(), line).is_none(),
                            "{why}"
                        );
                        assert_eq!(e.phone.is_some(), line.contains("\"phone\""), "{why}");
                        if let EventBody::RepairOrder(r) = &e.body {
                            assert_eq!(r.vin.is_some(), line.contains("\"vin\""), "{why}");
                        }
                    }
                }
            }
            Dirty::Duplicate => {
                let v = res.unwrap();
                let Input::Event(e) = v.input else {
                    panic!("{why}")
                };
                assert_eq!(
                    first_line_of.get(&e.event_id),
                    Some(&line.as_str()),
                    "{why}"
                );
            }
            Dirty::BadVin => {
                let v = res.unwrap();
                assert_eq!(v.issues.len(), 1, "{why}");
                assert_eq!(v.issues[0].field, "vin", "{why}");
            }
            Dirty::BadPhone => {
                let v = res.unwrap();
                assert_eq!(v.issues.len(), 1, "{why}");
                assert_eq!(v.issues[0].field, "phone", "{why}");
            }
            Dirty::MissingField => {
                assert!(
                    matches!(res, Err(InvalidEvent::Missing(_))),
                    "{res:?} {why}"
                );
            }
            Dirty::Malformed => {
                assert_eq!(res.unwrap_err().code(), "malformed", "{why}");
            }
            Dirty::NegativeAmount => {
                let e = res.unwrap_err();
                let InvalidEvent::Invalid { field, problem } = &e else {
                    panic!("{e} {why}")
                };
                assert!(
                    field.ends_with("amount") && problem.contains("negative"),
                    "{e} {why}"
                );
            }
            Dirty::UnknownRoType => {
                let e = res.unwrap_err();
                assert!(
                    matches!(&e, InvalidEvent::Invalid { field, .. } if field == "ro_type"),
                    "{e} {why}"
                );
            }
            Dirty::BadTimestamp => {
                let e = res.unwrap_err();
                assert!(
                    matches!(&e, InvalidEvent::Invalid { field, .. } if field == "event_time"),
                    "{e} {why}"
                );
            }
        }
    }
    assert_eq!(seen.len(), 9, "clean lines and all 8 dirty kinds: {seen:?}");
    let dirty = tags.iter().filter(|t| t.dirty != Dirty::Clean).count() as f64;
    let share = dirty / lines.len() as f64;
    assert!((0.15..0.25).contains(&share), "dirty share {share}");
}

/// Event times of the lines that carry a valid one, with the line's tag.
fn times(lines: &[String], tags: &[LineTag]) -> Vec<(Ts, LineTag)> {
    lines
        .iter()
        .zip(tags)
        .filter_map(|(l, t)| decode_json_line(l).ok().map(|v| (v.input.time(), *t)))
        .collect()
}

#[test]
fn time_order_holds_except_for_the_configured_disorder() {
    // Without disorder, late events or dirt the file is in event-time order.
    let clean = GenConfig {
        dirty_rate: 0.0,
        disorder_rate: 0.0,
        late_rate: 0.0,
        ..small(9)
    };
    let (_, lines, tags) = render(&clean);
    let ts = times(&lines, &tags);
    assert_eq!(ts.len(), lines.len());
    assert!(ts.windows(2).all(|w| w[0].0 <= w[1].0), "not in time order");
    assert!(ts.last().unwrap().1.tick);

    // With them, only late events lag the newest time by more than the bound.
    let cfg = GenConfig {
        dirty_rate: 0.05,
        disorder_rate: 0.1,
        max_disorder_minutes: 45,
        late_rate: 0.01,
        ..small(9)
    };
    let (_, lines, tags) = render(&cfg);
    let bound = i64::from(cfg.max_disorder_minutes) * 60_000;
    let mut newest = Ts(i64::MIN);
    let (mut disordered, mut late) = (0, 0);
    for (t, tag) in times(&lines, &tags) {
        if t < newest {
            if tag.delivery == Delivery::Late {
                late += 1;
            } else {
                assert!(
                    newest.0 - t.0 <= bound,
                    "{t} is {} ms behind {newest}",
                    newest.0 - t.0
                );
                disordered += 1;
            }
        }
        newest = newest.max(t);
    }
    assert!(
        disordered > 0 && late > 0,
        "{disordered} disordered, {late} late"
    );
    let lateness = StreamPolicy::default().allowed_lateness_minutes as i64 * 60_000;
    assert!(bound <= lateness);
}

#[test]
fn ground_truth_has_a_row_per_customer_and_dropouts_stop_visiting() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small(11);
    let s = generate(&cfg, tmp.path(), &mut |_| {}).unwrap();
    assert_eq!(s.customers, cfg.customers);
    assert_eq!(
        s.files,
        vec![
            tmp.path().join(EVENTS_FILE),
            tmp.path().join(GROUND_TRUTH_FILE)
        ]
    );
    let truth = std::fs::read_to_string(tmp.path().join(GROUND_TRUTH_FILE)).unwrap();
    let mut rows = truth.lines();
    assert_eq!(rows.next(), Some(GROUND_TRUTH_HEADER));
    let rows: Vec<Vec<&str>> = rows.map(|r| r.split(',').collect()).collect();
    assert_eq!(rows.len() as u64, cfg.customers);
    let (start_date, end_date) = (cfg.start.to_date_string(), cfg.end().to_date_string());
    let mut dropout = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r.len(), 6, "{r:?}");
        assert_eq!(r[0], format!("C{:08}", i + 1));
        assert!(r[1].starts_with('D') && r[1].len() == 5, "{r:?}");
        assert!(
            r[2].starts_with("private_") || r[2].starts_with("fleet_"),
            "{r:?}"
        );
        let cadence: u32 = r[3].parse().unwrap();
        assert!((14..=420).contains(&cadence), "{r:?}");
        if !r[4].is_empty() {
            assert!(
                r[4] > start_date.as_str() && r[4] < end_date.as_str(),
                "{r:?}"
            );
            dropout.insert(r[0].to_string(), r[4].to_string());
        }
    }
    assert_eq!(dropout.len() as u64, s.dropouts);
    let share = s.dropouts as f64 / s.customers as f64;
    assert!((0.25..0.45).contains(&share), "dropout share {share}");
    let events = std::fs::read_to_string(tmp.path().join(EVENTS_FILE)).unwrap();
    let mut visits_checked = 0;
    for line in events.lines() {
        let Ok(v) = decode_json_line(line) else {
            continue;
        };
        let Input::Event(e) = v.input else { continue };
        if let (true, Some(d)) = (e.is_visit(), dropout.get(&e.customer_id)) {
            assert!(
                e.event_time.to_date_string() < *d,
                "visit after drop-out: {line}"
            );
            visits_checked += 1;
        }
    }
    assert!(visits_checked > 100);
}

#[test]
fn summary_matches_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small(3);
    let s = generate(&cfg, tmp.path(), &mut |_| {}).unwrap();
    let events = std::fs::read_to_string(tmp.path().join(EVENTS_FILE)).unwrap();
    assert_eq!(events.lines().count() as u64, s.lines);
    assert!(s.events < s.lines && s.dirty_lines > 0 && s.dirty_lines < s.lines / 20);
    assert_eq!((s.start, s.end), (cfg.start, cfg.end()));
    let per_customer = s.events as f64 / s.customers as f64 * 5.0 / f64::from(cfg.years);
    assert!(
        (15.0..=25.0).contains(&per_customer),
        "{per_customer} events per customer over 5 years"
    );
}

#[test]
fn histories_are_realistic() {
    let cfg = GenConfig {
        customers: 600,
        years: 5,
        dirty_rate: 0.0,
        ..small(21)
    };
    let (plan, lines, _) = render(&cfg);
    let mut with_events = BTreeSet::new();
    for e in &plan.events {
        with_events.insert(e.cust);
    }
    assert_eq!(
        with_events.len(),
        plan.customers.len(),
        "every customer has events"
    );
    let mut ro_types = BTreeSet::new();
    let mut visit_types = BTreeSet::new();
    let mut contracts = BTreeSet::new();
    let mut odometer: BTreeMap<String, Vec<(Ts, f64)>> = BTreeMap::new();
    let (mut lower_vin, mut spaced_vin, mut in_region, mut visits) = (0, 0, 0, 0);
    let mut phone_forms = BTreeSet::new();
    for line in &lines {
        let Input::Event(e) = decode_json_line(line).unwrap().input else {
            continue;
        };
        assert!(
            e.event_time >= cfg.start && e.event_time < cfg.end(),
            "{line}"
        );
        let raw: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(p) = raw["phone"].as_str() {
            phone_forms.insert(
                p.chars()
                    .filter(|c| !c.is_ascii_digit())
                    .collect::<String>(),
            );
        }
        match &e.body {
            EventBody::RepairOrder(r) => {
                ro_types.insert(r.ro_type);
                let (l, p) = (r.labor_amount.unwrap(), r.parts_amount.unwrap());
                assert!((l + p - r.total_amount).abs() < 0.005, "{line}");
                let range = match r.ro_type {
                    RoType::Maintenance => 400.0 * 0.85..1500.0 * 1.8,
                    RoType::Accident => 2000.0 * 0.85..20000.0 * 1.8,
                    RoType::GeneralRepair => 500.0 * 0.85..15000.0 * 1.8,
                    _ => 80.0 * 0.85..5000.0 * 1.8,
                };
                assert!(range.contains(&r.total_amount), "{line}");
                let vin = raw["vin"].as_str().unwrap_or("");
                lower_vin += usize::from(vin.chars().any(|c| c.is_ascii_lowercase()));
                spaced_vin += usize::from(vin.contains(' '));
                let model = r.vehicle_model.clone().unwrap();
                assert!(MODELS.iter().any(|m| m.name == model), "{line}");
                assert!(r.vehicle_purchase_date.unwrap() < e.event_time, "{line}");
                odometer
                    .entry(e.customer_id.clone())
                    .or_default()
                    .push((e.event_time, r.mileage_km.unwrap()));
            }
            EventBody::Visit(v) => {
                visit_types.insert(v.visit_type.as_str());
                visits += 1;
                in_region += usize::from(v.in_service_region == Some(true));
            }
            EventBody::Contract(k) => {
                contracts.insert((k.contract_type.as_str(), k.action));
                assert!(k.start_date.unwrap() <= k.end_date.unwrap());
            }
        }
    }
    assert_eq!(ro_types.len(), 7, "{ro_types:?}");
    assert_eq!(visit_types.len(), 4, "{visit_types:?}");
    for ty in ContractType::NAMES {
        for action in [
            ContractAction::Signed,
            ContractAction::Renewed,
            ContractAction::Expired,
        ] {
            assert!(contracts.contains(&(ty, action)), "no {ty} {action:?}");
        }
    }
    assert!(contracts
        .iter()
        .any(|(_, a)| *a == ContractAction::Cancelled));
    assert!(lower_vin > 0 && spaced_vin > 0);
    assert!(phone_forms.len() >= 4, "{phone_forms:?}");
    let region_share = in_region as f64 / visits as f64;
    assert!((0.7..0.95).contains(&region_share), "{region_share}");
    for (cust, mut readings) in odometer {
        readings.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        assert!(
            readings.windows(2).all(|w| w[0].1 <= w[1].1),
            "odometer of {cust} goes back"
        );
    }
    for c in &plan.customers {
        assert!(normalize_vin_ok(&c.vin));
    }
}

fn normalize_vin_ok(vin: &[u8; 17]) -> bool {
    let s: String = vin.iter().map(|c| char::from(*c)).collect();
    crate::core::event::normalize_vin(&s).is_ok() && vin[8] == vin_check_digit(vin)
}

#[test]
fn fewer_visits_in_the_spring_festival_week_than_before_it() {
    let cfg = GenConfig {
        customers: 2000,
        years: 3,
        dirty_rate: 0.0,
        ..small(8)
    };
    let mut cb = |_: GenProgress| {};
    let mut prog = Progress::new(&mut cb, cfg.customers * 2);
    let plan = Plan::build(&cfg, &mut prog);
    let (mut holiday, mut before) = (0.0, 0.0);
    for e in &plan.events {
        let day = ((plan.world.base_s + i64::from(e.time)).div_euclid(DAY_S)) as i32;
        let off = day - spring_festival(date_of(day).year());
        if (0..7).contains(&off) {
            holiday += 1.0 / 7.0;
        } else if (-21..-1).contains(&off) {
            before += 1.0 / 20.0;
        }
    }
    assert!(
        holiday * 2.0 < before,
        "per day: {holiday} in the holiday week, {before} before"
    );
}

#[test]
fn io_errors_name_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let e = generate(&small(1), &file, &mut |_| {}).unwrap_err();
    assert!(matches!(e, GenerateError::CreateDir { .. }), "{e}");
    assert!(e.to_string().contains(&file.display().to_string()), "{e}");
    // The events file exists as a directory: it cannot be created.
    let dir = tmp.path().join("out");
    std::fs::create_dir_all(dir.join(EVENTS_FILE)).unwrap();
    let e = generate(&small(1), &dir, &mut |_| {}).unwrap_err();
    assert!(matches!(e, GenerateError::Write { .. }), "{e}");
    assert!(e.to_string().contains(EVENTS_FILE), "{e}");
}

#[test]
fn progress_is_rate_limited_and_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = small(2);
    let mut calls = Vec::new();
    generate(&cfg, tmp.path(), &mut |p| calls.push(p)).unwrap();
    assert!(calls.len() <= 102, "{} calls", calls.len());
    assert!(calls.len() >= 50, "{} calls", calls.len());
    assert!(calls.windows(2).all(|w| w[0].done < w[1].done));
    assert!(calls.iter().all(|p| p.total == cfg.customers * 2));
    assert_eq!(calls.last().unwrap().done, cfg.customers * 2);
    // A single customer still ends with a complete report.
    let mut calls = Vec::new();
    let one = GenConfig {
        customers: 1,
        years: 1,
        ..small(2)
    };
    generate(&one, &tmp.path().join("one"), &mut |p| calls.push(p)).unwrap();
    assert_eq!(calls.last(), Some(&GenProgress { done: 2, total: 2 }));
}

/// Churn rates of one grouping: group → (customer-years in the base, churned).
type ChurnBy = BTreeMap<String, (u64, u64)>;

/// Churn as the backtest measures it, judged from the generated events alone: for every
/// 1 January after the first year of the period, each customer who visited (a repair
/// order or a dealer visit) in the 12 months before it is a customer-year of the base,
/// and churned when no visit came in the 12 months after it. Grouped by vehicle-age band
/// at that date, by dealer and by region (out of region when any of the customer's
/// visits says so).
fn churn_from_events(plan: &Plan) -> (ChurnBy, ChurnBy, ChurnBy) {
    let cfg = &plan.world.cfg;
    let n = plan.customers.len();
    let mut visits: Vec<Vec<i32>> = vec![Vec::new(); n];
    let mut out_of_region = vec![false; n];
    for e in &plan.events {
        let day = ((plan.world.base_s + i64::from(e.time)).div_euclid(DAY_S)) as i32;
        match e.body {
            Body::Ro { .. } => visits[e.cust as usize].push(day),
            Body::Visit { region, .. } => {
                visits[e.cust as usize].push(day);
                out_of_region[e.cust as usize] |= region == 1;
            }
            Body::Contract { .. } => {}
        }
    }
    let (mut by_age, mut by_dealer, mut by_region) =
        (ChurnBy::new(), ChurnBy::new(), ChurnBy::new());
    for k in 1..cfg.years {
        let at = cfg.start.add_months(12 * k).epoch_day();
        let next = cfg.start.add_months(12 * (k + 1)).epoch_day();
        let before = cfg.start.add_months(12 * (k - 1)).epoch_day();
        for (i, c) in plan.customers.iter().enumerate() {
            let v = &visits[i];
            if !v.iter().any(|d| (before..at).contains(d)) {
                continue;
            }
            let churned = u64::from(!v.iter().any(|d| (at..next).contains(d)));
            let age = f64::from(at - c.purchase_day) / 365.25;
            let band = match age {
                a if a < 1.0 => "0-1y",
                a if a < 2.0 => "1-2y",
                a if a < 3.0 => "2-3y",
                a if a < 4.0 => "3-4y",
                a if a < 5.0 => "4-5y",
                a if a < 7.0 => "5-7y",
                _ => "7y+",
            };
            let region = if out_of_region[i] { "out" } else { "in" };
            for (map, key) in [
                (&mut by_age, band.to_string()),
                (&mut by_dealer, format!("D{:04}", c.dealer + 1)),
                (&mut by_region, region.to_string()),
            ] {
                let e = map.entry(key).or_default();
                e.0 += 1;
                e.1 += churned;
            }
        }
    }
    (by_age, by_dealer, by_region)
}

fn churn_rate(by: &ChurnBy, key: &str) -> f64 {
    let (base, churned) = by[key];
    churned as f64 / base as f64
}

#[test]
fn churn_carries_the_seed_patterns_age_warranty_dealer_region() {
    // 4,000 customers of 8 dealers over 5 years: about 12,000 customer-years in the base.
    let cfg = GenConfig {
        customers: 4000,
        dealers: 8,
        years: 5,
        dirty_rate: 0.0,
        ..small(17)
    };
    let mut cb = |_: GenProgress| {};
    let mut prog = Progress::new(&mut cb, cfg.customers * 2);
    let plan = Plan::build(&cfg, &mut prog);
    let (by_age, by_dealer, by_region) = churn_from_events(&plan);
    let show = |by: &ChurnBy| {
        by.iter()
            .map(|(k, (b, c))| format!("{k}: {:.1}% of {b}", 100.0 * *c as f64 / *b as f64))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let why = format!(
        "age: {}\ndealer: {}\nregion: {}",
        show(&by_age),
        show(&by_dealer),
        show(&by_region)
    );
    eprintln!("{why}");
    let age = |k| churn_rate(&by_age, k);
    // Rising with age, a clear step once the 36-month warranty has ended.
    let under = (age("0-1y") + age("1-2y")) / 2.0;
    let after = (age("3-4y") + age("4-5y")) / 2.0;
    assert!(age("0-1y") < age("1-2y") * 1.15, "{why}");
    assert!(after > 1.5 * under, "no step after the warranty end\n{why}");
    assert!(age("3-4y") > 1.3 * age("1-2y"), "{why}");
    assert!(age("5-7y") > 0.95 * age("3-4y"), "{why}");
    assert!(age("7y+") > age("4-5y"), "{why}");
    // Dealers differ clearly: the worst loses at least 1.8 times as many as the best.
    let rates: Vec<f64> = by_dealer
        .values()
        .filter(|(b, _)| *b >= 300)
        .map(|(b, c)| *c as f64 / *b as f64)
        .collect();
    assert!(rates.len() >= 6, "{why}");
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    assert!(hi >= 1.8 * lo, "worst dealer {hi:.3}, best {lo:.3}\n{why}");
    // Customers outside the dealer's service region churn more.
    assert!(
        churn_rate(&by_region, "out") > 1.3 * churn_rate(&by_region, "in"),
        "{why}"
    );
}

#[test]
fn ground_truth_names_the_cause_and_a_price_shock_follows_a_bill_without_a_plan() {
    let cfg = GenConfig {
        customers: 1500,
        years: 5,
        dirty_rate: 0.0,
        ..small(29)
    };
    let (plan, _, _) = render(&cfg);
    let mut causes: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &plan.customers {
        assert_eq!(c.dropout_day.is_some(), c.cause.is_some());
        if let Some(cause) = c.cause {
            *causes.entry(cause.as_str()).or_default() += 1;
        }
    }
    for cause in Cause::ALL {
        assert!(causes.contains_key(cause.as_str()), "{causes:?}");
    }
    let dropouts: u64 = causes.values().sum();
    let share = dropouts as f64 / cfg.customers as f64;
    assert!((0.28..0.45).contains(&share), "dropout share {share}");
    // After a price shock the last visit is a large general repair the day before the
    // drop-out, and the customer never held a maintenance plan or extended warranty.
    let mut last: Vec<Option<(i32, Body)>> = vec![None; plan.customers.len()];
    let mut covered = vec![false; plan.customers.len()];
    for e in &plan.events {
        let day = ((plan.world.base_s + i64::from(e.time)).div_euclid(DAY_S)) as i32;
        match e.body {
            Body::Contract { contract_type, .. } => {
                covered[e.cust as usize] |= matches!(
                    contract_type,
                    ContractType::MaintenancePlan | ContractType::ExtendedWarranty
                );
            }
            b => {
                let l = &mut last[e.cust as usize];
                let big = |b: &Body| {
                    matches!(b, Body::Ro { ro_type: RoType::GeneralRepair, labor_cents, parts_cents, .. }
                        if labor_cents + parts_cents >= 300_000)
                };
                // Of the events of the last day, keep the largest repair.
                if l.is_none_or(|(d, lb)| d < day || (d == day && !big(&lb))) {
                    *l = Some((day, b));
                }
            }
        }
    }
    let mut shocks = 0;
    for (i, c) in plan.customers.iter().enumerate() {
        if c.cause != Some(Cause::PriceShock) {
            continue;
        }
        shocks += 1;
        let (day, body) = last[i].unwrap();
        assert_eq!(Some(day + 1), c.dropout_day, "customer {i}");
        let Body::Ro {
            ro_type: RoType::GeneralRepair,
            labor_cents,
            parts_cents,
            ..
        } = body
        else {
            panic!("customer {i}: last {body:?}")
        };
        assert!(
            labor_cents + parts_cents >= 300_000,
            "customer {i}: {body:?}"
        );
        assert!(!covered[i], "customer {i} held a plan");
    }
    assert!(shocks >= 10, "{causes:?}");
}
