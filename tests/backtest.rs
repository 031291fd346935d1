//! `churnwatch backtest` end to end, through the real binary: hand-written histories
//! whose numbers are known by hand (a churner, a customer who came back, a censored
//! episode, two policies with their own numbers), a generated history with two
//! policies, a ground truth and a sweep (the report files agree with each other and
//! the page is self-contained), and the errors a user meets.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_churnwatch"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn visit(id: &str, customer: &str, t: &str) -> String {
    format!(
        r#"{{"type":"visit","event_id":"{id}","event_time":"{t}","dealer_id":"D1","customer_id":"{customer}","visit_type":"service","in_service_region":true}}"#
    )
}

/// C1 visits on 2023-01-10 and 2023-04-10, then never again: it churns on 2024-04-10
/// at 10:00. C2 visits on 2023-02-01, comes back on 2024-01-15 (before its churn
/// instant 2024-02-01), then stays away past the end (2024-12-31): its second episode
/// is censored (churn instant 2025-01-15). A tick on the first of every month keeps
/// stream time going, as the service's ticks do (a record more than 90 days after the
/// newest one is rejected as implausible).
fn hand_history(dir: &Path) -> PathBuf {
    let mut lines: Vec<(String, String)> = [
        ("a1", "C1", "2023-01-10T10:00:00Z"),
        ("b1", "C2", "2023-02-01T09:00:00Z"),
        ("a2", "C1", "2023-04-10T10:00:00Z"),
        ("b2", "C2", "2024-01-15T09:00:00Z"),
    ]
    .iter()
    .map(|(id, c, t)| (t.to_string(), visit(id, c, t)))
    .collect();
    let tick = |t: String| {
        (
            t.clone(),
            format!(r#"{{"type":"tick","event_time":"{t}"}}"#),
        )
    };
    for y in [2023, 2024] {
        for m in 1..=12 {
            if (y, m) != (2023, 1) {
                lines.push(tick(format!("{y}-{m:02}-01T00:00:00Z")));
            }
        }
    }
    lines.push(tick("2024-12-31T00:00:00Z".into()));
    lines.sort();
    let text: Vec<String> = lines.into_iter().map(|l| l.1).collect();
    let p = dir.join("events.jsonl");
    std::fs::write(&p, text.join("\n") + "\n").unwrap();
    p
}

fn summary(dir: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

fn level<'a>(s: &'a Value, policy: &str, level: &str) -> &'a Value {
    let p = s["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == policy)
        .unwrap_or_else(|| panic!("no policy {policy}"));
    p["evaluation"]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["level"] == level)
        .unwrap()
}

#[test]
fn hand_made_history_two_policies_each_with_their_own_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let input = hand_history(dir.path());
    let a = dir.path().join("six.toml");
    std::fs::write(&a, "").unwrap();
    let b = dir.path().join("three.toml");
    std::fs::write(&b, "[lifecycle]\nquasi_churned_months = 3\n").unwrap();
    let report = dir.path().join("report");
    let out = ok(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--policy",
        a.to_str().unwrap(),
        "--policy",
        b.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.contains("six") && out.contains("three"), "{out}");
    let s = summary(&report);
    assert_eq!(s["customers"], 2);

    // Default thresholds: `retain` 6 months after the last visit.
    // C1: 2023-10-10 10:00 → churn 2024-04-10 10:00: confirmed, lead 183 days.
    // C2: 2023-08-01 → came back 2024-01-15; 2024-07-15 → censored.
    let r = level(&s, "six", "retain");
    assert_eq!(r["warnings"], 3);
    assert_eq!(r["confirmed"], 1);
    assert_eq!(r["came_back"], 1, "a warning followed by a visit came back");
    assert_eq!(
        r["censored"], 1,
        "too close to the end: censored, not guessed"
    );
    assert_eq!(r["precision"], 0.5);
    assert_eq!(r["came_back_share"], 0.5);
    assert_eq!(r["lead_days_median"], 183.0);
    assert_eq!(r["churns"], 1);
    assert_eq!(r["recall"], 1.0);
    // `win_back` comes exactly at the churn instant.
    let w = level(&s, "six", "win_back");
    assert_eq!(
        (w["warnings"].as_u64(), w["confirmed"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(w["lead_days_median"], 0.0);
    // Nothing warns at `prevent` here (one interval is too few for a cadence).
    assert_eq!(level(&s, "six", "prevent")["warnings"], 0);
    assert_eq!(level(&s, "six", "prevent")["recall"], 0.0);

    // Three months: C1 at 2023-07-10 10:00, 275 days before its churn instant.
    let r3 = level(&s, "three", "retain");
    assert_eq!(r3["lead_days_median"], 275.0);
    assert_eq!(
        (
            r3["confirmed"].as_u64(),
            r3["came_back"].as_u64(),
            r3["censored"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );

    // Workload: months 2023-01 .. 2024-12 (24), 2 customers from 2023-02 on.
    let months = s["policies"][0]["evaluation"]["monthly"]
        .as_array()
        .unwrap();
    assert_eq!(months.len(), 24);
    let customer_months: u64 = months
        .iter()
        .map(|m| m["customers"].as_u64().unwrap())
        .sum();
    assert_eq!(customer_months, 47);
    let per = r["per_1000_per_month"].as_f64().unwrap();
    assert!((per - 3000.0 / 47.0).abs() < 1e-9, "{per}");

    // The CSV says the same.
    let csv = std::fs::read_to_string(report.join("policies.csv")).unwrap();
    let row = csv
        .lines()
        .find(|l| l.starts_with("three,retain,"))
        .unwrap();
    assert!(
        row.starts_with("three,retain,3,1,1,1,0.5,0.5,1,1,1,"),
        "{row}"
    );
}

#[test]
fn the_window_and_the_end_of_the_history_are_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let input = hand_history(dir.path());
    let report = dir.path().join("r");
    // Ending on 2024-03-01: C1's churn (2024-04-10) is not known yet.
    ok(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--to",
        "2024-03-01",
        "--report",
        report.to_str().unwrap(),
    ]);
    let s = summary(&report);
    let r = level(&s, "default", "retain");
    assert_eq!(
        (
            r["warnings"].as_u64(),
            r["confirmed"].as_u64(),
            r["came_back"].as_u64(),
            r["censored"].as_u64()
        ),
        (Some(2), Some(0), Some(1), Some(1))
    );
    assert_eq!(r["churns"], 0);
    assert_eq!(r["precision"], 0.0);
    assert_eq!(
        s["totals"]["after_to"], 10,
        "the ticks after --to are ignored"
    );
    assert_eq!(s["totals"]["implausible"], 0);
    // Counting from 2023-09-01: C2's first warning (2023-08-01) is left out.
    ok(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--from",
        "2023-09-01",
        "--report",
        report.to_str().unwrap(),
    ]);
    let r = level(&summary(&report), "default", "retain").clone();
    assert_eq!(
        (
            r["warnings"].as_u64(),
            r["confirmed"].as_u64(),
            r["came_back"].as_u64()
        ),
        (Some(2), Some(1), Some(0))
    );
}

#[test]
fn errors_say_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let input = hand_history(dir.path());
    let report = dir.path().join("r");
    let report = report.to_str().unwrap();
    let err = |args: &[&str]| {
        let o = run(args);
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let missing = dir.path().join("nope.jsonl");
    let e = err(&[
        "backtest",
        "--input",
        missing.to_str().unwrap(),
        "--report",
        report,
    ]);
    assert!(e.contains("nope.jsonl"), "{e}");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[prevent]\ncadence_facter = 2.0\n").unwrap();
    let e = err(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--policy",
        bad.to_str().unwrap(),
        "--report",
        report,
    ]);
    assert!(e.contains("cadence_facter"), "{e}");
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "\n{not json}\n").unwrap();
    let e = err(&[
        "backtest",
        "--input",
        empty.to_str().unwrap(),
        "--report",
        report,
    ]);
    assert!(e.contains("no valid customer event"), "{e}");
    let e = err(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--from",
        "2024-06-01",
        "--to",
        "2024-01-01",
        "--report",
        report,
    ]);
    assert!(e.contains("window is empty"), "{e}");
    let e = err(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--sweep",
        "prevent.no_such_key=1,2",
        "--report",
        report,
    ]);
    assert!(e.contains("prevent.no_such_key"), "{e}");
    assert!(!Path::new(report).join("summary.json").exists());
}

/// Tags opened and closed in order (void and self-closed ones aside).
fn assert_balanced(html: &str) {
    const VOID: [&str; 6] = ["meta", "br", "hr", "img", "input", "link"];
    let mut stack: Vec<String> = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("every tag ends");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().unwrap_or_default();
            assert_eq!(open, name.trim(), "closing </{name}> after <{open}>");
            continue;
        }
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if tag.ends_with('/') || VOID.contains(&name.as_str()) {
            continue;
        }
        stack.push(name);
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

#[test]
fn generated_history_two_policies_ground_truth_and_a_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&[
        "generate",
        "--customers",
        "300",
        "--years",
        "3",
        "--seed",
        "11",
        "--out",
        data.to_str().unwrap(),
    ]);
    let events = data.join("events.jsonl");
    let truth = data.join("ground_truth.csv");
    let strict = dir.path().join("strict.toml");
    std::fs::write(&strict, "[prevent]\ncadence_factor = 1.2\n").unwrap();
    let loose = dir.path().join("loose.toml");
    std::fs::write(&loose, "[prevent]\ncadence_factor = 2.5\n").unwrap();
    let report = dir.path().join("report");
    let out = ok(&[
        "backtest",
        "--input",
        events.to_str().unwrap(),
        "--policy",
        strict.to_str().unwrap(),
        "--policy",
        loose.to_str().unwrap(),
        "--ground-truth",
        truth.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.contains("strict") && out.contains("loose"), "{out}");
    for f in [
        "summary.json",
        "report.html",
        "policies.csv",
        "workload_monthly.csv",
        "workload_by_dealer.csv",
        "kpi_monthly.csv",
        "kpi_annual.csv",
        "churn_by_group.csv",
        "segment_matrix.csv",
        "segment_matrix_monthly.csv",
        "lifecycle_flows.csv",
        "detection.csv",
    ] {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    let s = summary(&report);
    assert_eq!(s["customers"], 300);

    // summary.json and policies.csv hold the same numbers; shares are shares.
    let rows = csv_rows(&report.join("policies.csv"));
    assert_eq!(rows.len(), 8);
    for row in &rows {
        let l = level(&s, &row[0], &row[1]);
        for (col, key) in [
            (2, "warnings"),
            (3, "confirmed"),
            (4, "came_back"),
            (5, "censored"),
            (8, "churns"),
            (9, "churns_warned"),
        ] {
            assert_eq!(row[col], l[key].to_string(), "{key} of {row:?}");
        }
        for (col, key) in [(6, "precision"), (10, "recall")] {
            let v = l[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} {v}");
            assert!((row[col].parse::<f64>().unwrap() - v).abs() < 1e-12);
        }
        let w = l["warnings"].as_u64().unwrap();
        let parts = ["confirmed", "came_back", "censored"].map(|k| l[k].as_u64().unwrap());
        assert_eq!(parts.iter().sum::<u64>(), w, "every warning has one fate");
    }
    // A stricter cadence warns more at `prevent`.
    let strict_prevent = level(&s, "strict", "prevent")["warnings"].as_u64().unwrap();
    let loose_prevent = level(&s, "loose", "prevent")["warnings"].as_u64().unwrap();
    assert!(
        strict_prevent > loose_prevent,
        "{strict_prevent} vs {loose_prevent}"
    );
    // Lifecycle thresholds are the same, so `retain` warnings are nearly the same; the
    // churns are the history's, identical for both.
    assert_eq!(
        level(&s, "strict", "any")["churns"],
        level(&s, "loose", "any")["churns"]
    );

    // The same engine as replay: the same status changes, counted alike.
    let replay_summary = dir.path().join("replay.json");
    ok(&[
        "replay",
        "--input",
        events.to_str().unwrap(),
        "--policy",
        strict.to_str().unwrap(),
        "--store",
        dir.path().join("store").to_str().unwrap(),
        "--out",
        dir.path().join("changes.jsonl").to_str().unwrap(),
        "--summary-json",
        replay_summary.to_str().unwrap(),
    ]);
    let rs: Value = serde_json::from_slice(&std::fs::read(&replay_summary).unwrap()).unwrap();
    let strict_result = s["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "strict")
        .unwrap();
    assert_eq!(strict_result["status_changes"], rs["status_changes"]);
    assert_eq!(s["totals"]["events"], rs["events"]);

    // The dealers' workloads add up to the policy's.
    let dealer_rows = csv_rows(&report.join("workload_by_dealer.csv"));
    for (policy, lvl) in [("strict", "any"), ("loose", "prevent")] {
        let sum: u64 = dealer_rows
            .iter()
            .filter(|r| r[0] == policy && r[3] == lvl)
            .map(|r| r[4].parse::<u64>().unwrap())
            .sum();
        assert_eq!(Some(sum), level(&s, policy, lvl)["warnings"].as_u64());
    }

    // KPIs: the all-dealers row sums the dealers' rows, month by month.
    let monthly = csv_rows(&report.join("kpi_monthly.csv"));
    let mut sums: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for r in &monthly {
        let e = sums.entry(r[0].clone()).or_default();
        let n: u64 = r[2].parse().unwrap();
        if r[1] == "all" {
            e.1 = n;
        } else {
            e.0 += n;
        }
    }
    assert!(!sums.is_empty());
    for (m, (dealers, all)) in sums {
        assert_eq!(dealers, all, "effective customers in {m}");
    }
    // The segment matrix has nine cells per policy and holds every customer with a
    // status.
    let cells = csv_rows(&report.join("segment_matrix.csv"));
    assert_eq!(cells.len(), 18);
    let in_cells: u64 = cells
        .iter()
        .filter(|c| c[0] == "strict")
        .map(|c| c[2].parse::<u64>().unwrap())
        .sum();
    assert!(in_cells > 0 && in_cells <= 300);
    // Month by month: every month of the history after the first, the dealers adding up
    // to all, the customers with a status never decreasing (none is forgotten).
    let monthly = &strict_result["segment_matrix_monthly"];
    let all: Vec<u64> = monthly
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["dealer"] == "all")
        .map(|m| {
            m["customers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .sum()
        })
        .collect();
    assert_eq!(all.len(), 36, "2021-02 .. 2024-01");
    assert!(all.windows(2).all(|w| w[0] <= w[1]), "{all:?}");
    assert!(*all.last().unwrap() >= in_cells - in_cells / 10);
    // Ground truth: detection shares are shares.
    let gt = s["policies"][0]["ground_truth"].as_array().unwrap();
    assert_eq!(gt.len(), 4);
    assert!(gt[0]["dropouts"].as_u64().unwrap() > 0);
    let share = gt[0]["detected_share"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&share));

    // The page: self-contained, balanced, comparison table first.
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert!(!html.contains(" src=") && !html.contains("<link"));
    assert_balanced(&html);
    let comparison = html.find("Policy comparison").unwrap();
    assert!(comparison < html.find("<svg").unwrap());
    assert!(html.matches("<svg").count() >= 10);
    assert!(html.contains("Segment matrix") && html.contains("vehicle age"));

    // A sweep: one run per value, named by it, with the sweep charts.
    let sweep = dir.path().join("sweep");
    let out = ok(&[
        "backtest",
        "--input",
        events.to_str().unwrap(),
        "--sweep",
        "prevent.cadence_factor=1.2,2.5",
        "--report",
        sweep.to_str().unwrap(),
    ]);
    assert!(out.contains("cadence_factor=1.2"), "{out}");
    let sw = summary(&sweep);
    assert_eq!(sw["sweep_keys"][0], "prevent.cadence_factor");
    // The same policies as the files above give the same numbers.
    assert_eq!(
        level(&sw, "cadence_factor=1.2", "prevent"),
        level(&s, "strict", "prevent")
    );
    let html = std::fs::read_to_string(sweep.join("report.html")).unwrap();
    assert!(html.contains("Precision against recall"));
    assert_balanced(&html);
}

#[test]
fn avro_input_gives_the_same_backtest_as_json_lines() {
    use churnwatch::codec::avro::{InputKind, InputWriter};
    use churnwatch::edge::backtest::{self, BacktestOptions};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    ok(&[
        "generate",
        "--customers",
        "150",
        "--years",
        "3",
        "--seed",
        "6",
        "--out",
        data.to_str().unwrap(),
    ]);
    // Repair orders only (one record type per container), in file order.
    let ros: Vec<Value> = std::fs::read_to_string(data.join("events.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "repair_order" && churnwatch::core::event::validate(v).is_ok())
        .collect();
    assert!(ros.len() > 500);
    let json_path = dir.path().join("ro.jsonl");
    std::fs::write(
        &json_path,
        ros.iter().map(|v| v.to_string() + "\n").collect::<String>(),
    )
    .unwrap();
    let avro_path = dir.path().join("ro.avro");
    let mut w = InputWriter::new(
        std::fs::File::create(&avro_path).unwrap(),
        InputKind::RepairOrder,
    )
    .unwrap();
    for chunk in ros.chunks(100) {
        w.write_block(chunk).unwrap();
    }
    drop(w.into_inner());
    let run = |p: &Path| {
        let opts = BacktestOptions::new(vec![p.to_path_buf()], Vec::new());
        backtest::run(&opts, &mut |_| {}).unwrap()
    };
    let (a, b) = (run(&json_path), run(&avro_path));
    assert_eq!(a.totals.events, ros.len() as u64);
    assert_eq!(a.totals, b.totals);
    assert_eq!(a.policies[0].name, "default");
    let evals = |x: &backtest::Backtest| serde_json::to_value(&x.policies[0].evaluation).unwrap();
    assert_eq!(evals(&a), evals(&b));
    assert!(a.policies[0].evaluation.levels[0].warnings > 0);
    assert_eq!(a.kpis, b.kpis);
}

#[test]
fn a_policy_with_stricter_time_bounds_says_what_its_engine_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = hand_history(dir.path());
    let strict = dir.path().join("strict.toml");
    // Monthly ticks are up to 31 days apart: a 30-day bound rejects some.
    std::fs::write(&strict, "[stream]\nmax_event_jump_days = 30\n").unwrap();
    let default = dir.path().join("default.toml");
    std::fs::write(&default, "").unwrap();
    let report = dir.path().join("r");
    let o = run(&[
        "backtest",
        "--input",
        input.to_str().unwrap(),
        "--policy",
        default.to_str().unwrap(),
        "--policy",
        strict.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let s = summary(&report);
    assert_eq!(s["policies"][0]["rejected"], 0);
    assert!(s["policies"][1]["rejected"].as_u64().unwrap() > 0);
    assert!(String::from_utf8_lossy(&o.stderr).contains("policy strict rejected"));
}
