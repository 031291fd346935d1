//! Integration tests of the predictive models in the pipeline: `churnwatch fit` on a
//! generated history, the parameter file, and replay with `--model` (P(alive), expected
//! visits and CLV on every status change; P(alive)-driven warnings on time).

use churnwatch::core::engine::{Engine, NoSource};
use churnwatch::core::event::decode_json_line;
use churnwatch::core::policy::Policy;
use churnwatch::core::status::Level;
use churnwatch::core::time::Ts;
use churnwatch::model::params::{BgParams, GgParams, ModelParams, VisitModel};
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_churnwatch"))
}

fn model() -> ModelParams {
    ModelParams {
        model: VisitModel::MbgNbd,
        time_unit_days: 7.0,
        visit: BgParams {
            r: 0.9,
            alpha: 12.0,
            a: 0.4,
            b: 2.5,
        },
        erlang_k: None,
        spend: Some(GgParams {
            p: 6.0,
            q: 4.0,
            v: 300.0,
        }),
        calibration_end: "2024-01-01T00:00:00Z".into(),
        customers: 1000,
        log_likelihood: -1.0,
    }
}

#[test]
fn fit_then_replay_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = bin()
        .args([
            "generate",
            "--customers",
            "3000",
            "--years",
            "4",
            "--seed",
            "11",
            "--out",
        ])
        .arg(d.join("h"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = d.join("h/events.jsonl");
    let out = bin()
        .args(["fit", "--input"])
        .arg(&events)
        .args([
            "--calibration-end",
            "2023-06-30",
            "--holdout-end",
            "2024-12-31",
            "--out",
        ])
        .arg(d.join("model.toml"))
        .arg("--report-json")
        .arg(d.join("fit.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("holdout check") && stdout.contains("s.e."),
        "{stdout}"
    );
    let params = ModelParams::load(&d.join("model.toml")).unwrap();
    assert_eq!(params.model, VisitModel::MbgNbd);
    assert!(params.spend.is_some());
    // The holdout check: predicted and actual visits agree in total within 35%
    // (the generator is not a BG/NBD process, so this is a sanity bound).
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("fit.json")).unwrap()).unwrap();
    let (mut p, mut a) = (0.0, 0.0);
    for row in report["holdout"].as_array().unwrap() {
        let n = row["customers"].as_f64().unwrap();
        p += n * row["predicted"].as_f64().unwrap();
        a += n * row["actual"].as_f64().unwrap();
    }
    assert!(
        a > 0.0 && (p / a - 1.0).abs() < 0.35,
        "predicted {p:.0} vs actual {a:.0}"
    );

    let out = bin()
        .args(["replay", "--input"])
        .arg(&events)
        .arg("--store")
        .arg(d.join("s"))
        .arg("--out")
        .arg(d.join("changes.jsonl"))
        .arg("--model")
        .arg(d.join("model.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(d.join("changes.jsonl")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let pa = c["p_alive"].as_f64().expect("p_alive present");
        assert!((0.0..=1.0).contains(&pa), "{c}");
        assert!(c["expected_visits_12m"].as_f64().unwrap() >= 0.0);
        assert!(c["clv"].as_f64().unwrap() >= 0.0);
        n += 1;
    }
    assert!(n > 100);
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let out = bin()
        .args(["inspect", "--store"])
        .arg(d.join("s"))
        .args([
            "--customer",
            first["customer_id"].as_str().unwrap(),
            "--model",
        ])
        .arg(d.join("model.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["predictions"]["p_alive"].is_number(), "{v}");
}

#[test]
fn p_alive_threshold_fires_exactly_when_crossed() {
    let mut policy = Policy::default();
    policy.prevent.factory_warranty_months = 0;
    policy.prevent.cadence_factor = 100.0; // keep the cadence rule out of the way
    policy.prediction.p_alive_prevent_below = 0.6;
    policy.model = Some(model());
    let mut e = Engine::new(policy.clone());
    let mut out = Vec::new();
    for (i, day) in ["2023-01-02", "2023-02-01", "2023-03-03", "2023-04-02"]
        .iter()
        .enumerate()
    {
        let line = format!(
            r#"{{"type":"visit","event_id":"v{i}","event_time":"{day}T10:00:00Z","dealer_id":"D","customer_id":"C","visit_type":"service"}}"#
        );
        e.process(decode_json_line(&line).unwrap().input, &NoSource, &mut out)
            .unwrap();
    }
    e.process(
        churnwatch::core::event::Input::Tick(Ts::ymd_hms(2023, 10, 1, 0, 0, 0)),
        &NoSource,
        &mut out,
    )
    .unwrap();
    let c = out
        .iter()
        .find(|c| c.level == Level::Prevent)
        .expect("a P(alive) warning");
    assert!(c.reasons.iter().any(|r| r.code == "p_alive_low"), "{c:?}");
    let at = Ts::parse_rfc3339(&c.event_time).unwrap();
    let s = e.cached("C").unwrap();
    assert!(s.p_alive(at, &policy).unwrap() < 0.6);
    assert!(s.p_alive(Ts(at.0 - 60_000), &policy).unwrap() >= 0.6);
    assert!(c.p_alive.unwrap() < 0.6);
    // Before the quasi-churn boundary: the model warned earlier than the month rule.
    assert!(at < Ts::ymd_hms(2023, 10, 2, 10, 0, 0));
}

#[test]
fn p_alive_drop_warns_once_and_does_not_flap() {
    let mut policy = Policy::default();
    policy.prevent.factory_warranty_months = 0;
    policy.prevent.cadence_factor = 100.0;
    policy.prediction.p_alive_drop_prevent = 0.2;
    policy.model = Some(model());
    let mut e = Engine::new(policy);
    let mut out = Vec::new();
    for (i, day) in ["2023-01-02", "2023-02-01", "2023-03-03", "2023-04-02"]
        .iter()
        .enumerate()
    {
        let line = format!(
            r#"{{"type":"visit","event_id":"v{i}","event_time":"{day}T10:00:00Z","dealer_id":"D","customer_id":"C","visit_type":"service"}}"#
        );
        e.process(decode_json_line(&line).unwrap().input, &NoSource, &mut out)
            .unwrap();
    }
    let tick = |e: &mut Engine, out: &mut Vec<_>, d: u32| {
        e.process(
            churnwatch::core::event::Input::Tick(Ts::ymd_hms(2023, 9, d, 0, 0, 0)),
            &NoSource,
            out,
        )
        .unwrap();
    };
    tick(&mut e, &mut out, 15);
    let levels: Vec<Level> = out.iter().map(|c| c.level).collect();
    assert_eq!(levels, vec![Level::Prevent], "{out:#?}");
    assert!(out[0].reasons.iter().any(|r| r.code == "p_alive_dropped"));
    // A contract event (not a visit) makes the engine look at the customer again: the
    // drop is still there, so the warning must stay.
    let line = r#"{"type":"contract","event_id":"k","event_time":"2023-09-20T10:00:00Z","dealer_id":"D","customer_id":"C","contract_id":"INS-1","contract_type":"insurance","action":"renewed","start_date":"2023-09-20","end_date":"2024-09-20"}"#;
    e.process(decode_json_line(line).unwrap().input, &NoSource, &mut out)
        .unwrap();
    tick(&mut e, &mut out, 30);
    assert_eq!(out.len(), 1, "{out:#?}");
}

#[test]
fn without_a_model_predictions_are_null() {
    let mut e = Engine::new(Policy::default());
    let mut out = Vec::new();
    let line = r#"{"type":"visit","event_id":"v","event_time":"2023-01-02T10:00:00Z","dealer_id":"D","customer_id":"C","visit_type":"service"}"#;
    e.process(decode_json_line(line).unwrap().input, &NoSource, &mut out)
        .unwrap();
    e.process(
        churnwatch::core::event::Input::Tick(Ts::ymd_hms(2024, 1, 1, 0, 0, 0)),
        &NoSource,
        &mut out,
    )
    .unwrap();
    assert!(!out.is_empty());
    assert!(out.iter().all(|c| c.p_alive.is_none() && c.clv.is_none()));
}

#[test]
fn fit_errors_say_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(
        &input,
        r#"{"type":"visit","event_id":"v","event_time":"2023-01-02T10:00:00Z","dealer_id":"D","customer_id":"C","visit_type":"service"}"#,
    )
    .unwrap();
    let opts = |cal: &str, hold: Option<&str>| churnwatch::model::fit::FitOptions {
        inputs: vec![input.clone()],
        calibration_end: Ts::parse_date(cal).unwrap(),
        holdout_end: hold.map(|h| Ts::parse_date(h).unwrap()),
        model: VisitModel::MbgNbd,
        time_unit_days: 7.0,
    };
    let e = churnwatch::model::fit::fit(&opts("2020-01-01", None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pick a later calibration end"), "{e}");
    let e = churnwatch::model::fit::fit(&opts("2024-01-01", Some("2023-01-01")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be after --calibration-end"), "{e}");
    let mut missing = opts("2024-01-01", None);
    missing.inputs = vec![dir.path().join("nope.jsonl")];
    let e = churnwatch::model::fit::fit(&missing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope.jsonl"), "{e}");
}
