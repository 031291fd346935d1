//! The MBG/CNBD-k visit model (Reutterer, Platzer & Schröder 2021, "Leveraging purchase
//! regularity for predicting customer behavior the easy way", IJRM 38(1); the R package
//! BTYDplus, `mbgcnbd.*`): MBG/NBD with **Erlang-k** instead of exponential times
//! between visits, so that regular visitors (a service every 6 or 12 months) are told
//! apart from random ones.
//!
//! While alive a customer visits with Erlang-k distributed gaps of rate `λ` (a gap is
//! the sum of `k` exponential "stages" of rate `λ`, mean `k / λ`), `λ ~ Gamma(r, alpha)`;
//! after the first visit and after every repeat visit the customer drops out for good
//! with probability `p ~ Beta(a, b)`. With `k = 1` this is MBG/NBD (`bgnbd`). The
//! larger `k`, the more regular the gaps (coefficient of variation `1/√k`), and the more
//! a silence longer than the customer's usual gap says that they are gone.
//!
//! Besides `(x, t_x, T)` the likelihood needs `litt`, the sum of the logarithms of the
//! customer's gaps between visits (in model time units); it only adds the constant
//! `(k - 1) litt` per customer, so it matters for choosing `k` but not for the other
//! parameters, P(alive) or the expectations.
//!
//! - [`log_likelihood`] is BTYDplus' `mbgcnbd.LL` (closed form);
//! - [`p_alive`] is `mbgcnbd.PAlive` (closed form);
//! - [`expected_visits`] is the **exact** conditional expectation of the number of
//!   visits in `(T, T + horizon]` under the model. BTYDplus' `mbgcnbd.
//!   ConditionalExpectedTransactions` only approximates it for `k > 1` (the BG/NBD
//!   expression with a rescaled `alpha`, then a correction factor computed over the
//!   whole calibration cohort), which cannot be scored one customer at a time. The exact
//!   form used here: given alive at `T`, the customer is in stage `j ∈ 0..k` of the
//!   current gap with posterior weight `∝ (R)_j (τ/D)^j / j!` (`R = r + k x`,
//!   `τ = T - t_x`, `D = alpha + T`, the terms of P(alive)'s alive part), and then
//!   `λ ~ Gamma(R + j, D)`, so the number of stages `S` completed in the horizon is
//!   negative binomial `NB(R + j, u = h / (D + h))`; stage count `S` completes
//!   `⌊(S + j) / k⌋` gaps, and the `m`-th future visit happens only if the customer
//!   survived the `m - 1` dropout coins before it, with probability
//!   `ρ_{m-1} = (b')_{m-1} / (a + b')_{m-1}`, `b' = b + x + 1` (the Beta posterior of
//!   `p` after `x + 1` survived coins). So
//!   `E = Σ_j w_j Σ_S NB(S; R + j, u) Σ_{m=1}^{⌊(S+j)/k⌋} ρ_{m-1}`, summed with
//!   positive terms only (no cancellation) until the tail is below 1e-17 relative. For
//!   `k = 1` it equals MBG/NBD's hypergeometric expression.
//! - [`fit`] maximises the likelihood for one `k` and [`fit_best_k`] picks `k` in
//!   `1..=MAX_ERLANG_K` by the likelihood, as BTYDplus' `mbgcnbd.EstimateParameters`
//!   does without `k`.
//!
//! Pure maths over plain data: no I/O. Uses `params`, `special`, `bgnbd` (log-sum-exp),
//! `bgnbd_fit` (the weighted patterns) and `optimise`.

use crate::model::bgnbd::lse2;
use crate::model::bgnbd_fit::{check_pattern, Pattern};
use crate::model::optimise::{best_of_starts, std_errors, Fit, OptimiseError};
use crate::model::params::{BgParams, Rfm, MAX_ERLANG_K};
use crate::model::special::{dln_poch, ln_poch, logistic_neg, EPS};
use serde::Serialize;

/// `ln n!`.
fn ln_factorial(n: u32) -> f64 {
    (2..=n).map(|i| f64::from(i).ln()).sum()
}

/// The alive part `S = Σ_{j<k} (R)_j z^j / j!` of the likelihood (`z = τ / D`), with
/// `dS/dR` and `z dS/dz`.
#[derive(Debug, Clone, Copy)]
struct AliveSum {
    s: f64,
    d_r: f64,
    z_d_z: f64,
}

#[inline]
fn alive_sum(k: u32, rr: f64, z: f64) -> AliveSum {
    let (mut term, mut s, mut inv_acc, mut d_r, mut z_d_z) = (1.0, 1.0, 0.0, 0.0, 0.0);
    for j in 1..k {
        let jf = f64::from(j);
        term *= (rr + jf - 1.0) / jf * z;
        inv_acc += 1.0 / (rr + jf - 1.0);
        s += term;
        d_r += term * inv_acc;
        z_d_z += term * jf;
    }
    AliveSum { s, d_r, z_d_z }
}

/// The two log-terms of an individual likelihood (alive at `T`, dead after `t_x`)
/// without the constant, and the alive sum.
#[inline]
fn terms(k: u32, p: &BgParams, rfm: Rfm) -> (f64, f64, AliveSum, f64) {
    let rr = p.r + f64::from(k) * rfm.x;
    let d = p.alpha + rfm.t;
    let al = alive_sum(k, rr, (rfm.t - rfm.t_x) / d);
    let a3 = -rr * d.ln() + al.s.ln();
    let a4 = p.a.ln() - (p.b + rfm.x).ln() - rr * (p.alpha + rfm.t_x).ln();
    (a3, a4, al, rr)
}

/// The part of the individual log-likelihood that depends on the parameters but not on
/// `t_x` or `T`, plus the `x`-only constant `-x ln (k-1)!` (without `(k-1) litt`).
#[inline]
fn constant(k: u32, p: &BgParams, x: f64) -> f64 {
    -x * ln_factorial(k - 1) + ln_poch(p.b, x + 1.0) - ln_poch(p.a + p.b, x + 1.0)
        + ln_poch(p.r, f64::from(k) * x)
        + p.r * p.alpha.ln()
}

/// Individual log-likelihood of MBG/CNBD-k (BTYDplus' `mbgcnbd.LL`) for a customer with
/// statistics `rfm` and sum of log gaps `litt`. `k ≥ 1`.
pub fn log_likelihood(k: u32, p: &BgParams, rfm: Rfm, litt: f64) -> f64 {
    let (a3, a4, _, _) = terms(k, p, rfm);
    f64::from(k - 1) * litt + constant(k, p, rfm.x) + lse2(a3, a4).0
}

/// Probability that a customer with statistics `rfm` is still alive at `T`:
/// `1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+kx) / S)` with `S` the alive sum
/// (BTYDplus' `mbgcnbd.PAlive`). `k ≥ 1`; for `k = 1` MBG/NBD's.
pub fn p_alive(k: u32, p: &BgParams, rfm: Rfm) -> f64 {
    let rr = p.r + f64::from(k) * rfm.x;
    let d = p.alpha + rfm.t;
    let al = alive_sum(k, rr, (rfm.t - rfm.t_x) / d);
    let gap = ((rfm.t - rfm.t_x) / (p.alpha + rfm.t_x)).ln_1p();
    logistic_neg(p.a.ln() - (p.b + rfm.x).ln() + rr * gap - al.s.ln())
}

/// Expected visits in the horizon of a customer alive in stage `j` of the current gap:
/// `Σ_S NB(S; shape, u) Σ_{m=1}^{⌊(S+j)/k⌋} ρ_{m-1}` (module docs). The weights are
/// kept unnormalised and divided by their sum, so `(1-u)^shape` never underflows.
fn phase_visits(k: u32, j: u32, shape: f64, u: f64, a: f64, bp: f64, max_terms: usize) -> f64 {
    let kf = f64::from(k);
    let (mut w, mut wsum, mut acc) = (1.0f64, 0.0f64, 0.0f64);
    // Visits completed by the stages so far, their cumulated survival, and the
    // survival factor of the next visit.
    let (mut visits, mut cum, mut rho) = (0.0f64, 0.0f64, 1.0f64);
    let mut pos = j;
    for n in 0..max_terms {
        let nf = n as f64;
        wsum += w;
        acc += w * cum;
        let ratio = (shape + nf) / (nf + 1.0) * u;
        let next = w * ratio;
        let q = ratio.max(u);
        if ratio < 1.0 && n > 0 {
            // Later weights fall at least geometrically with q; cum grows by at most 1
            // per k stages.
            let tail = next / (1.0 - q) * (cum + 1.0 + 1.0 / (kf * (1.0 - q)));
            if next <= EPS * wsum && tail <= EPS * acc {
                break;
            }
        }
        w = next;
        pos += 1;
        if pos == k {
            pos = 0;
            cum += rho;
            rho *= (bp + visits) / (a + bp + visits);
            visits += 1.0;
        }
        if wsum > 1.0e250 {
            w *= 1.0e-250;
            wsum *= 1.0e-250;
            acc *= 1.0e-250;
        }
    }
    acc / wsum
}

/// [`expected_visits`] divided by P(alive): the expected visits in `(T, T + horizon]`
/// of a customer known to be alive at `T`. `horizon > 0`.
pub fn expected_visits_if_alive(k: u32, p: &BgParams, rfm: Rfm, horizon: f64) -> f64 {
    let kf = f64::from(k);
    let rr = p.r + kf * rfm.x;
    let d = p.alpha + rfm.t;
    let z = (rfm.t - rfm.t_x) / d;
    let u = horizon / (d + horizon);
    let bp = p.b + rfm.x + 1.0;
    let mean = (rr + kf) * horizon / d;
    let budget =
        (mean + 40.0 * (mean * (1.0 + horizon / d)).sqrt() + 200.0 + 2.0 * kf).min(1.0e8) as usize;
    let (mut term, mut wsum, mut total) = (1.0f64, 0.0f64, 0.0f64);
    for j in 0..k {
        let jf = f64::from(j);
        if j > 0 {
            term *= (rr + jf - 1.0) / jf * z;
        }
        if term == 0.0 {
            break;
        }
        wsum += term;
        total += term * phase_visits(k, j, rr + jf, u, p.a, bp, budget);
    }
    total / wsum
}

/// Conditional expected number of visits in `(T, T + horizon]` given `rfm` (exact; see
/// the module docs). Returns 0 for `horizon ≤ 0`.
pub fn expected_visits(k: u32, p: &BgParams, rfm: Rfm, horizon: f64) -> f64 {
    if horizon.is_nan() {
        return f64::NAN;
    }
    if horizon <= 0.0 {
        return 0.0;
    }
    let alive = p_alive(k, p, rfm);
    if alive == 0.0 {
        return 0.0;
    }
    alive * expected_visits_if_alive(k, p, rfm, horizon)
}

/// Total weighted log-likelihood (without the `(k-1) Σ litt` term) and its gradient in
/// `(r, alpha, a, b)`.
fn ll_grad(k: u32, data: &[Pattern], p: &BgParams) -> (f64, [f64; 4]) {
    let kf = f64::from(k);
    let (mut ll, mut g) = (0.0, [0.0; 4]);
    let ln_alpha = p.alpha.ln();
    let mut last_x = f64::NAN;
    let mut cst = (0.0, 0.0, 0.0, 0.0, 0.0);
    for pat in data {
        let (w, rfm) = (pat.weight, pat.rfm);
        if rfm.x != last_x {
            last_x = rfm.x;
            let x = rfm.x;
            let ab = dln_poch(p.a + p.b, x + 1.0);
            cst = (
                constant(k, p, x),
                dln_poch(p.r, kf * x) + ln_alpha,
                p.r / p.alpha,
                -ab,
                dln_poch(p.b, x + 1.0) - ab,
            );
        }
        let (a3, a4, al, rr) = terms(k, p, rfm);
        let (lse, p4) = lse2(a3, a4);
        let p3 = 1.0 - p4;
        let d = p.alpha + rfm.t;
        let ar = p.alpha + rfm.t_x;
        ll += w * (cst.0 + lse);
        // d ln S / d alpha = (dS/dz)(dz/dalpha) / S with z = τ / D: -z dS/dz / (D S).
        let d3_r = -d.ln() + al.d_r / al.s;
        let d3_alpha = -rr / d - al.z_d_z / (d * al.s);
        g[0] += w * (cst.1 + p3 * d3_r - p4 * ar.ln());
        g[1] += w * (cst.2 + p3 * d3_alpha - p4 * rr / ar);
        g[2] += w * (cst.3 + p4 / p.a);
        g[3] += w * (cst.4 - p4 / (p.b + rfm.x));
    }
    (ll, g)
}

fn check(data: &[Pattern]) -> Result<(), OptimiseError> {
    for (i, p) in data.iter().enumerate() {
        check_pattern(i, p)?;
    }
    if data.iter().all(|p| p.weight == 0.0) {
        return Err(OptimiseError::NoData);
    }
    if data.iter().all(|p| p.weight == 0.0 || p.rfm.x == 0.0) {
        return Err(OptimiseError::NoRepeatCustomers);
    }
    Ok(())
}

/// Maximum-likelihood fit of MBG/CNBD-k for a given `k` to weighted patterns (sorted
/// by `x` as `bgnbd_fit::collapse` returns them, for speed; any order is correct).
/// `litt_total` is the weighted sum of the customers' `litt`; it only adds
/// `(k - 1) litt_total` to the log-likelihood reported.
///
/// Optimises `(ln r, ln alpha, ln a, ln b)` by BFGS from three deterministic starts, as
/// `bgnbd_fit::fit_visit_model` does, with `alpha` scaled by `k` (a stage is `1/k` of
/// a gap).
pub fn fit(k: u32, data: &[Pattern], litt_total: f64) -> Result<Fit<BgParams>, OptimiseError> {
    assert!(k >= 1, "the Erlang order k is at least 1");
    check(data)?;
    let (mut sx, mut st, mut sw) = (0.0, 0.0, 0.0);
    for p in data {
        sx += p.weight * p.rfm.x;
        st += p.weight * p.rfm.t;
        sw += p.weight;
    }
    if st <= 0.0 {
        return Err(OptimiseError::NoObservationTime);
    }
    let scale = st / sx / f64::from(k);
    let to_params = |th: &[f64]| BgParams {
        r: th[0].exp(),
        alpha: scale * th[1].exp(),
        a: th[2].exp(),
        b: th[3].exp(),
    };
    let objective = |th: &[f64], g: &mut [f64]| -> f64 {
        let p = to_params(th);
        let (ll, gr) = ll_grad(k, data, &p);
        let nat = [p.r, p.alpha, p.a, p.b];
        for i in 0..4 {
            g[i] = -gr[i] * nat[i] / sw;
        }
        -ll / sw
    };
    let starts: [[f64; 4]; 3] = [
        [1.0, 1.0, 1.0, 3.0],
        [0.3, 0.3, 0.7, 2.5],
        [3.0, 3.0, 2.0, 10.0],
    ];
    let best = best_of_starts(objective, &starts)?;
    let params = to_params(&best.theta);
    let (ll, _) = ll_grad(k, data, &params);
    if !ll.is_finite() {
        return Err(OptimiseError::NonFinite);
    }
    let se = std_errors(&[params.r, params.alpha, params.a, params.b], |v| {
        let p = BgParams {
            r: v[0],
            alpha: v[1],
            a: v[2],
            b: v[3],
        };
        ll_grad(k, data, &p).1.to_vec()
    });
    Ok(Fit {
        params,
        log_likelihood: ll + f64::from(k - 1) * litt_total,
        std_errors: se.clone().unwrap_or_else(|| vec![f64::INFINITY; 4]),
        iterations: best.iterations,
        converged: se.is_some() && !best.at_bound,
    })
}

/// The log-likelihood reached for one `k` in [`fit_best_k`]'s search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KTrial {
    /// The Erlang order.
    pub k: u32,
    /// Total log-likelihood at the optimum for this `k`.
    pub log_likelihood: f64,
}

/// Fits MBG/CNBD-k for `k = 1, 2, …, MAX_ERLANG_K` and keeps the `k` with the highest
/// likelihood, stopping early, as BTYDplus does, once the likelihood has fallen twice
/// in a row after `k = 4`, or at the first `k` that cannot be fitted (an error for
/// `k = 1` is returned). Returns the best `k`, its fit and every `k` tried.
pub fn fit_best_k(
    data: &[Pattern],
    litt_total: f64,
) -> Result<(u32, Fit<BgParams>, Vec<KTrial>), OptimiseError> {
    let mut best: Option<(u32, Fit<BgParams>)> = None;
    let mut trials: Vec<KTrial> = Vec::new();
    for k in 1..=MAX_ERLANG_K {
        let f = match fit(k, data, litt_total) {
            Ok(f) => f,
            Err(e) if k == 1 => return Err(e),
            Err(_) => break,
        };
        trials.push(KTrial {
            k,
            log_likelihood: f.log_likelihood,
        });
        if best
            .as_ref()
            .is_none_or(|(_, b)| f.log_likelihood > b.log_likelihood)
        {
            best = Some((k, f));
        }
        let n = trials.len();
        if k > 4
            && trials[n - 1].log_likelihood < trials[n - 2].log_likelihood
            && trials[n - 2].log_likelihood < trials[n - 3].log_likelihood
        {
            break;
        }
    }
    let (k, f) = best.expect("k = 1 was fitted");
    Ok((k, f, trials))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::bgnbd;
    use crate::model::bgnbd_fit::{collapse, fit_visit_model};
    use crate::model::params::VisitModel;
    use crate::model::test_support::close;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const P: BgParams = BgParams {
        r: 0.85,
        alpha: 1.45,
        a: 0.79,
        b: 2.42,
    };

    fn rfms() -> Vec<Rfm> {
        let r = |x, t_x, t| Rfm { x, t_x, t };
        vec![
            r(0.0, 0.0, 0.0),
            r(0.0, 0.0, 30.0),
            r(1.0, 5.0, 30.0),
            r(3.0, 12.0, 32.0),
            r(3.0, 31.0, 32.0),
            r(12.0, 40.0, 80.0),
            r(60.0, 78.0, 80.0),
        ]
    }

    #[test]
    fn k1_is_mbg_nbd() {
        let p = BgParams {
            r: 0.3,
            alpha: 6.0,
            a: 0.7,
            b: 2.5,
        };
        for rfm in rfms() {
            let m = VisitModel::MbgNbd;
            let (ll, ref_ll) = (
                log_likelihood(1, &p, rfm, 7.5),
                bgnbd::log_likelihood(m, &p, rfm),
            );
            assert!(close(ll, ref_ll, 1e-13), "{rfm:?}: {ll} vs {ref_ll}");
            let (pa, ref_pa) = (p_alive(1, &p, rfm), bgnbd::p_alive(m, &p, rfm));
            assert!(close(pa, ref_pa, 1e-14), "{rfm:?}: {pa} vs {ref_pa}");
            for h in [0.5, 10.0, 52.0, 500.0] {
                let (e, ref_e) = (
                    expected_visits(1, &p, rfm, h),
                    bgnbd::expected_visits(m, &p, rfm, h),
                );
                assert!(close(e, ref_e, 1e-11), "{rfm:?} h {h}: {e} vs {ref_e}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let data: Vec<Pattern> = rfms()
            .into_iter()
            .enumerate()
            .map(|(i, rfm)| Pattern {
                rfm,
                weight: 1.0 + i as f64,
            })
            .collect();
        for k in [1, 2, 3, 7] {
            let (ll, g) = ll_grad(k, &data, &P);
            let direct: f64 = data
                .iter()
                .map(|q| q.weight * log_likelihood(k, &P, q.rfm, 0.0))
                .sum();
            assert!(close(ll, direct, 1e-13), "k {k}: {ll} vs {direct}");
            let nat = [P.r, P.alpha, P.a, P.b];
            for i in 0..4 {
                let h = 1e-6 * nat[i];
                let at = |d: f64| {
                    let mut v = nat;
                    v[i] += d;
                    let q = BgParams {
                        r: v[0],
                        alpha: v[1],
                        a: v[2],
                        b: v[3],
                    };
                    ll_grad(k, &data, &q).0
                };
                let numeric = (at(h) - at(-h)) / (2.0 * h);
                assert!(
                    close(g[i], numeric, 1e-6),
                    "k {k} grad {i}: {} vs {numeric}",
                    g[i]
                );
            }
        }
    }

    #[test]
    fn p_alive_falls_faster_for_regular_visitors() {
        // Same history, a silence of twice the usual gap: the more regular (larger k),
        // the less alive; just after a visit, the reverse (a regular visitor is not due).
        let overdue = Rfm {
            x: 6.0,
            t_x: 30.0,
            t: 40.0,
        };
        let fresh = Rfm {
            x: 6.0,
            t_x: 30.0,
            t: 31.0,
        };
        let p = |k, rfm| p_alive(k, &P, rfm);
        assert!(p(1, overdue) > p(3, overdue) && p(3, overdue) > p(8, overdue));
        assert!(p(8, fresh) >= p(1, fresh));
        for k in 1..=MAX_ERLANG_K {
            for rfm in rfms() {
                let v = p(k, rfm);
                assert!((0.0..=1.0).contains(&v), "k {k} {rfm:?}: {v}");
            }
        }
    }

    #[test]
    fn expected_visits_limits_and_monotonicity() {
        for k in [1, 2, 4, 12] {
            for rfm in rfms() {
                assert_eq!(expected_visits(k, &P, rfm, 0.0), 0.0);
                let mut prev = 0.0;
                for i in 1..40 {
                    let e = expected_visits(k, &P, rfm, 0.05 * 1.4f64.powi(i));
                    assert!(
                        e.is_finite() && e >= prev,
                        "k {k} {rfm:?} step {i}: {e} < {prev}"
                    );
                    prev = e;
                }
            }
        }
        // A new customer: at most b/(a+b) alive, and the mean number of visits of a
        // customer alive forever is the Erlang renewal count, (r/alpha) h / k for long h
        // when nobody drops out (a tiny).
        let never = BgParams { a: 1e-9, ..P };
        let new = Rfm {
            x: 0.0,
            t_x: 0.0,
            t: 0.0,
        };
        let h = 5.0e3;
        let e = expected_visits(3, &never, new, h);
        let renewal = P.r / P.alpha * h / 3.0;
        assert!(close(e, renewal, 2e-3), "{e} vs {renewal}");
    }

    /// Simulates MBG/CNBD-k customers observed for `t_obs` after their first visit.
    fn simulate(k: u32, p: &BgParams, n: usize, t_obs: f64, seed: u64) -> (Vec<Rfm>, f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n);
        let mut litt = 0.0;
        for _ in 0..n {
            let lambda = crate::model::test_support::gamma_sample(&mut rng, p.r, p.alpha);
            let ga = crate::model::test_support::gamma_sample(&mut rng, p.a, 1.0);
            let gb = crate::model::test_support::gamma_sample(&mut rng, p.b, 1.0);
            let drop = ga / (ga + gb);
            let (mut t, mut x, mut t_x) = (0.0, 0.0, 0.0);
            // Dropout right after the first visit, then after each repeat visit.
            while rng.gen::<f64>() >= drop {
                let gap: f64 = (0..k)
                    .map(|_| -(1.0 - rng.gen::<f64>()).ln() / lambda)
                    .sum();
                t += gap;
                if t > t_obs {
                    break;
                }
                x += 1.0;
                t_x = t;
                litt += gap.ln();
            }
            out.push(Rfm { x, t_x, t: t_obs });
        }
        (out, litt)
    }

    #[test]
    fn fit_recovers_k_and_parameters() {
        let truth = BgParams {
            r: 1.5,
            alpha: 4.0,
            a: 0.6,
            b: 2.5,
        };
        let (data, litt) = simulate(3, &truth, 6000, 60.0, 11);
        let (k, f, trials) = fit_best_k(&collapse(data.clone()), litt).unwrap();
        assert_eq!(k, 3, "{trials:?}");
        assert!(f.converged, "{f:?}");
        let p = f.params;
        for (name, est, tru) in [
            ("r", p.r, truth.r),
            ("alpha", p.alpha, truth.alpha),
            ("a", p.a, truth.a),
            ("b", p.b, truth.b),
        ] {
            assert!((est / tru - 1.0).abs() < 0.25, "{name}: {est} vs {tru}");
        }
        // k = 1 of the search is the MBG/NBD fit, up to the litt-free constant.
        let mbg = fit_visit_model(VisitModel::MbgNbd, &collapse(data)).unwrap();
        let t1 = trials[0];
        assert!(
            close(t1.log_likelihood, mbg.log_likelihood, 1e-7),
            "{t1:?} vs {mbg:?}"
        );
    }
}
