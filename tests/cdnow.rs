//! End to end on the CDNOW sample: the raw transactions of Fader, Hardie & Lee (2005)
//! become repair-order events, the real `churnwatch fit` binary fits them, and the
//! published estimates come back.
//!
//! `tests/fixtures/cdnow/CDNOW_sample.txt` is the 1/10th sample of the CDNOW customers
//! (2,357 customers who first bought in the first quarter of 1997, their purchases up
//! to 1998-06-30), one purchase a line: master id, sample id, date, number of CDs,
//! dollar value (source and licence in `tests/fixtures/cdnow/README.md`). Each line
//! becomes one `repair_order` of customer `<sample id>` on that date, at a time of day
//! that varies from line to line (the windows are whole UTC days, so it must not
//! matter), with the dollar value as `total_amount`.
//!
//! What is checked, against the paper and against `lifetimes` 0.11.3 run on the same
//! raw transactions (`tests/fixtures/cdnow/lifetimes_reference.json`, written by
//! `make_lifetimes_reference.py` beside it):
//! - BG/NBD, calibration 1997-01-01..1997-09-30 in weeks: r = 0.243, α = 4.414,
//!   a = 0.793, b = 2.426 (3 significant digits) and LL = −9582.4 (the paper's Table);
//!   the parameters within 1e-5 of `lifetimes`;
//! - Gamma-Gamma on the repeat purchases of the 946 repeat customers: p = 6.25,
//!   q = 3.74, v = 15.4 (3 significant digits; `lifetimes`' documentation prints
//!   15.45, fitted on its summary file whose mean values are rounded to cents; on the
//!   raw transactions `lifetimes` gives 15.4435), within 1e-4 of `lifetimes`;
//! - the holdout check 1997-10-01..1998-06-30 (39 weeks): actual repeat transactions
//!   per calibration-frequency group equal to those counted from the raw file (and
//!   `lifetimes`'), predicted within 1e-6 of `lifetimes`' conditional expectation;
//! - leaving out `--holdout-end` changes nothing in the fit;
//! - MBG/CNBD-k (`--model mbg-cnbd-k`): the likelihood of every Erlang order `k` tried
//!   and the parameters of the chosen one equal those of the independent Python
//!   implementation (`tests/fixtures/cnbd_fixture.json`, written by
//!   `make_cnbd_fixture.py`); CDNOW's purchases are not regular, `k = 1` wins, and the
//!   fit is MBG/NBD's (r = 0.525, α = 6.183, a = 0.891, b = 1.614, as `lifetimes`'
//!   `ModifiedBetaGeoFitter` documents for this sample).

use churnwatch::core::event::decode_json_line;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

const RAW: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/cdnow/CDNOW_sample.txt"
);
const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/cdnow/lifetimes_reference.json"
);

/// One purchase of the raw file.
struct Purchase {
    customer: String,
    /// `YYYY-MM-DD`.
    date: String,
    value: f64,
}

fn purchases() -> Vec<Purchase> {
    let text = std::fs::read_to_string(RAW).expect("the CDNOW sample is committed");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 5, "five fields per line: {l:?}");
            let d = f[2];
            assert_eq!(d.len(), 8, "date as YYYYMMDD: {l:?}");
            Purchase {
                customer: f[1].to_string(),
                date: format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]),
                value: f[4].parse().expect("dollar value"),
            }
        })
        .collect()
}

/// Writes the purchases as repair-order events (JSON lines of the event contract).
fn write_events(purchases: &[Purchase], path: &Path) {
    let mut out = String::new();
    for (i, p) in purchases.iter().enumerate() {
        // 00:00 to 23:59: purchases early and late on the calibration-end and
        // holdout-end days are all in their day.
        let minute = (i * 397) % 1440;
        let line = format!(
            r#"{{"type":"repair_order","event_id":"cdnow-{i}","event_time":"{}T{:02}:{:02}:00Z","dealer_id":"CDNOW","customer_id":"{}","ro_number":"{i}","ro_type":"accessories","total_amount":{}}}"#,
            p.date,
            minute / 60,
            minute % 60,
            p.customer,
            p.value
        );
        let decoded = decode_json_line(&line);
        assert!(decoded.is_ok(), "not a valid event: {line}");
        out.push_str(&line);
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

fn fit(events: &Path, dir: &Path, name: &str, holdout: bool) -> Value {
    fit_model(events, dir, name, holdout, "bg-nbd")
}

fn fit_model(events: &Path, dir: &Path, name: &str, holdout: bool, model: &str) -> Value {
    let report = dir.join(format!("{name}.json"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_churnwatch"));
    cmd.args(["fit", "--input"])
        .arg(events)
        .args(["--calibration-end", "1997-09-30"]);
    if holdout {
        cmd.args(["--holdout-end", "1998-06-30"]);
    }
    let out = cmd
        .args(["--time-unit", "weeks", "--model", model, "--out"])
        .arg(dir.join(format!("{name}.toml")))
        .arg("--report-json")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
    serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap()
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number, not {v}"))
}

/// `x` rounded to 3 significant digits.
fn sig3(x: f64) -> f64 {
    let scale = 10f64.powi(2 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn assert_sig3(what: &str, ours: f64, published: f64) {
    assert!(
        (sig3(ours) - sig3(published)).abs() <= 1e-9 * published.abs(),
        "{what}: ours {ours} is {} to 3 significant digits, published {published}",
        sig3(ours)
    );
}

fn assert_rel(what: &str, ours: f64, reference: f64, tol: f64) {
    let e = ((ours - reference) / reference).abs();
    assert!(
        e <= tol,
        "{what}: ours {ours}, reference {reference}, rel err {e:e} > {tol:e}"
    );
}

#[test]
fn fit_reproduces_the_published_cdnow_estimates_from_raw_transactions() {
    let purchases = purchases();
    let customers: BTreeSet<&str> = purchases.iter().map(|p| p.customer.as_str()).collect();
    assert_eq!((purchases.len(), customers.len()), (6919, 2357));
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("cdnow.jsonl");
    write_events(&purchases, &events);

    let r = fit(&events, dir.path(), "holdout", true);
    let visit = &r["params"]["visit"];
    let (rr, alpha, a, b) = (
        num(&visit["r"]),
        num(&visit["alpha"]),
        num(&visit["a"]),
        num(&visit["b"]),
    );
    let ll = num(&r["params"]["log_likelihood"]);
    let spend = &r["params"]["spend"];
    let (p, q, v) = (num(&spend["p"]), num(&spend["q"]), num(&spend["v"]));
    eprintln!(
        "CDNOW: r {rr:.6} alpha {alpha:.6} a {a:.6} b {b:.6} LL {ll:.4}; \
         Gamma-Gamma p {p:.6} q {q:.6} v {v:.6}"
    );
    assert_eq!(num(&r["customers"]), 2357.0);

    // Fader, Hardie & Lee (2005), BG/NBD on the CDNOW calibration period.
    assert_sig3("r", rr, 0.243);
    assert_sig3("alpha", alpha, 4.414);
    assert_sig3("a", a, 0.793);
    assert_sig3("b", b, 2.426);
    assert!(
        (ll - -9582.4).abs() < 0.05,
        "log-likelihood {ll}, published -9582.4"
    );
    // Gamma-Gamma on the repeat purchases (lifetimes' documentation: 6.25, 3.74, 15.45).
    assert_sig3("p", p, 6.25);
    assert_sig3("q", q, 3.74);
    assert_sig3("v", v, 15.4);

    // The same estimates as `lifetimes` on the same raw transactions.
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(REFERENCE).unwrap()).unwrap();
    for k in ["r", "alpha", "a", "b"] {
        assert_rel(k, num(&visit[k]), num(&reference["bg_nbd"][k]), 1e-5);
    }
    assert_rel(
        "log-likelihood at the maximum",
        ll,
        num(&reference["bg_nbd"]["log_likelihood"]),
        1e-8,
    );
    for k in ["p", "q", "v"] {
        assert_rel(k, num(&spend[k]), num(&reference["gamma_gamma"][k]), 1e-4);
    }

    // The holdout: actual repeat transactions (purchase days) per group, counted here
    // from the raw file: a purchase day in 1997-10-01..=1998-06-30, grouped by the
    // customer's calibration purchase days after the first (7 and more together).
    let mut days: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for p in &purchases {
        days.entry(&p.customer).or_default().insert(&p.date);
    }
    let mut expected: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    for d in days.values() {
        let cal = d.iter().filter(|d| **d <= "1997-09-30").count();
        let hold = d
            .iter()
            .filter(|d| **d > "1997-09-30" && **d <= "1998-06-30")
            .count();
        assert!(cal > 0, "every sample customer first bought in 1997 Q1");
        let g = expected.entry((cal - 1).min(7)).or_default();
        g.0 += 1;
        g.1 += hold as u64;
    }
    let rows = r["holdout"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    let ref_rows = reference["holdout"].as_array().unwrap();
    let mut total_actual = 0.0;
    for ((row, (x, (n, hold))), ref_row) in rows.iter().zip(&expected).zip(ref_rows) {
        let label = if *x == 7 { "7+".into() } else { x.to_string() };
        assert_eq!(row["calibration_repeat_visits"], label.as_str(), "{row}");
        assert_eq!(num(&row["customers"]), *n as f64, "{row}");
        let actual = num(&row["actual"]);
        assert_rel(
            &format!("actual, group {label}"),
            actual,
            *hold as f64 / *n as f64,
            1e-12,
        );
        assert_eq!(ref_row["group"], label.as_str());
        assert_rel(
            &format!("actual vs lifetimes, group {label}"),
            actual,
            num(&ref_row["actual"]),
            1e-12,
        );
        // lifetimes predicts with its own parameters: 1e-5 of parameter difference
        // moves the group means by about as much.
        assert_rel(
            &format!("predicted vs lifetimes, group {label}"),
            num(&row["predicted"]),
            num(&ref_row["predicted"]),
            1e-5,
        );
        total_actual += actual * *n as f64;
    }
    assert_eq!(
        total_actual.round(),
        num(&reference["holdout_repeat_transactions"])
    );

    // Without a holdout the calibration data, and so the fit, are the same.
    let alone = fit(&events, dir.path(), "alone", false);
    assert_eq!(alone["params"], r["params"]);
    assert!(alone["holdout"].as_array().unwrap().is_empty());
}

const CNBD_REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/cnbd_fixture.json"
);

#[test]
fn mbg_cnbd_k_on_cdnow_matches_the_independent_python_fit() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("cdnow.jsonl");
    write_events(&purchases(), &events);
    let r = fit_model(&events, dir.path(), "cnbd", true, "mbg-cnbd-k");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(CNBD_REFERENCE).unwrap()).unwrap();
    let cd = &reference["cdnow"];
    let fits = cd["fits"].as_array().unwrap();
    // Every k tried: the same maximum likelihood.
    let trials = r["erlang_k_trials"].as_array().unwrap();
    assert!(trials.len() >= 5, "{trials:?}");
    for t in trials {
        let k = num(&t["k"]) as usize;
        let py = &fits[k - 1];
        assert_eq!(num(&py["k"]) as usize, k);
        eprintln!(
            "k {k}: LL ours {:.6} python {:.6}",
            num(&t["log_likelihood"]),
            num(&py["log_likelihood"])
        );
        assert_rel(
            &format!("log-likelihood, k = {k}"),
            num(&t["log_likelihood"]),
            num(&py["log_likelihood"]),
            1e-9,
        );
    }
    // The chosen k and its parameters.
    let k = num(&r["params"]["erlang_k"]) as usize;
    assert_eq!(k, num(&cd["best_k"]) as usize);
    assert_eq!(r["params"]["model"], "mbg_cnbd_k");
    let visit = &r["params"]["visit"];
    for name in ["r", "alpha", "a", "b"] {
        assert_rel(name, num(&visit[name]), num(&fits[k - 1][name]), 1e-5);
    }
    // CDNOW is not regular: k = 1, which is MBG/NBD (lifetimes' documented fit).
    assert_eq!(k, 1);
    assert_sig3("r", num(&visit["r"]), 0.525);
    assert_sig3("alpha", num(&visit["alpha"]), 6.18);
    assert_sig3("a", num(&visit["a"]), 0.891);
    assert_sig3("b", num(&visit["b"]), 1.61);
    let mbg = fit_model(&events, dir.path(), "mbg", true, "mbg-nbd");
    assert_rel(
        "MBG/NBD log-likelihood",
        num(&mbg["params"]["log_likelihood"]),
        num(&r["params"]["log_likelihood"]),
        1e-9,
    );
}
