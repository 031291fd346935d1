//! MBG/CNBD-k (`churnwatch::model::cnbd`) against an independent implementation in
//! Python (`tests/fixtures/make_cnbd_fixture.py`, numpy/scipy/mpmath at 40 digits),
//! whose numbers are committed in `tests/fixtures/cnbd_fixture.json`; this test never
//! runs Python.
//!
//! At 8 customer histories `(x, t_x, T, litt)` for 6 parameter sets (the CDNOW fit, a
//! `k = 1` set, and `k = 2, 3, 5, 12`), it compares the individual log-likelihood,
//! P(alive) and the conditional expected visits over 5 horizons (1 to 200 time
//! units). The Python expectation sums over future visits with incomplete-beta tail
//! probabilities; the Rust one sums over negative-binomial stage counts: two routes to
//! the same quantity.

use churnwatch::model::cnbd::{expected_visits, log_likelihood, p_alive};
use churnwatch::model::params::{BgParams, Rfm, VisitModel};
use churnwatch::model::visit::VisitScorer;
use serde_json::Value;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/cnbd_fixture.json"
);

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number, not {v}"))
}

fn rel(ours: f64, reference: f64) -> f64 {
    if ours == reference {
        0.0
    } else {
        ((ours - reference) / reference).abs()
    }
}

#[test]
fn mbg_cnbd_k_matches_the_python_reference() {
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap();
    let rows = fixture["evaluations"].as_array().unwrap();
    assert!(rows.len() >= 40, "{} rows", rows.len());
    let (mut worst_ll, mut worst_pa, mut worst_e) = (0.0f64, 0.0f64, 0.0f64);
    for row in rows {
        let ps = &row["params"];
        let k = num(&ps["k"]) as u32;
        let p = BgParams {
            r: num(&ps["r"]),
            alpha: num(&ps["alpha"]),
            a: num(&ps["a"]),
            b: num(&ps["b"]),
        };
        let rfm = Rfm {
            x: num(&row["x"]),
            t_x: num(&row["t_x"]),
            t: num(&row["T"]),
        };
        let what = format!("k {k} {p:?} {rfm:?}");
        let ll = log_likelihood(k, &p, rfm, num(&row["litt"]));
        // Relative, or absolute near 0 (a new customer's LL is 0).
        let want = num(&row["log_likelihood"]);
        let e_ll = (ll - want).abs() / want.abs().max(1.0);
        assert!(
            e_ll < 1e-12,
            "{what}: LL {ll} vs {} ({e_ll:e})",
            row["log_likelihood"]
        );
        worst_ll = worst_ll.max(e_ll);
        let pa = p_alive(k, &p, rfm);
        let e_pa = rel(pa, num(&row["p_alive"]));
        assert!(
            e_pa < 1e-12,
            "{what}: P(alive) {pa} vs {} ({e_pa:e})",
            row["p_alive"]
        );
        worst_pa = worst_pa.max(e_pa);
        let scorer = VisitScorer {
            model: VisitModel::MbgCnbdK,
            params: p,
            k,
        };
        assert_eq!(scorer.p_alive(rfm), pa);
        for e in row["expected"].as_array().unwrap() {
            let h = num(&e["horizon"]);
            let ours = expected_visits(k, &p, rfm, h);
            let err = rel(ours, num(&e["value"]));
            assert!(
                err < 1e-11,
                "{what} h {h}: E {ours} vs {} ({err:e})",
                e["value"]
            );
            assert_eq!(scorer.expected_visits(rfm, h), ours);
            worst_e = worst_e.max(err);
        }
    }
    eprintln!(
        "worst relative differences: LL {worst_ll:e}, P(alive) {worst_pa:e}, expected visits {worst_e:e}"
    );
}
