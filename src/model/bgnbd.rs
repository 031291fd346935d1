//! The BG/NBD family of visit models: individual log-likelihood, P(alive), and the
//! conditional and unconditional expected number of visits, for BG/NBD and MBG/NBD
//! ([`VisitModel`]).
//!
//! Both assume that while alive a customer visits as a Poisson process with rate
//! `λ ~ Gamma(r, alpha)` (shape `r`, rate `alpha`), and drops out for good with
//! probability `p ~ Beta(a, b)`, heterogeneous across customers:
//!
//! - **BG/NBD** (Fader, Hardie & Lee 2005, "Counting your customers the easy way"):
//!   the dropout coin is tossed after every *repeat* visit, so a customer with no
//!   repeat visit is certainly alive (`P(alive | x = 0) = 1`).
//! - **MBG/NBD** (Batislam, Denizel & Filiztekin 2007, with the Wagner & Hoppe 2008
//!   erratum): the coin is also tossed right after the first visit, so a one-visit
//!   customer may already be gone. The formulas are the ones of `lifetimes`'
//!   `ModifiedBetaGeoFitter`.
//!
//! [`VisitModel::MbgCnbdK`] is treated here as its `k = 1` case, which is MBG/NBD; the
//! model with `k > 1` lives in `cnbd`.
//!
//! For both, [`log_likelihood`] is the individual log-likelihood as `lifetimes`
//! defines it, [`p_alive`] the posterior probability of being alive at `T`,
//! [`expected_visits`] the conditional expectation of the number of visits in
//! `(T, T + horizon]` and [`unconditional_expected_visits`] the expected number of
//! repeat visits of a new customer in `(0, t]`.
//!
//! # Numerics
//!
//! Everything is computed in log space, two-term likelihoods with log-sum-exp. The
//! conditional expectation needs the Gauss hypergeometric function near `z = 1`: the
//! code never forms `2F1(...) * (1 - z)^(r + x)` (which overflows for large `x`) but
//! applies a Pfaff transformation that folds the power in, removes the removable
//! singularities at `a = 1` and `a + b + x - 1 = 0` algebraically, and picks, of
//! several equivalent forms (two Pfaff forms, the connection formula at infinity for
//! horizons beyond `2 (alpha + T)`, and a negative-binomial mixture sum that cannot
//! cancel), the one whose terms cancel least. Against 40-digit mpmath the conditional
//! expectation agrees to ~1e-12 relative over r, alpha, a, b spanning six decades,
//! `x ≤ 400` and horizons up to 1e5.
//!
//! Pure maths: no I/O. Uses only `params` (the parameter types) and `special` (the
//! special functions); the fit of these models lives in `bgnbd_fit`.

use crate::model::params::{BgParams, Rfm, VisitModel};
use crate::model::special::{
    cancel_factor, f21_unit, gauss_series, ln_poch, logistic_neg, non_positive_integer, EPS,
};

/// Per-`x` constants of the likelihood: `LL = c + lse(-(r+x) ln(alpha+T), k - (r+x) ln(alpha+t_x))`
/// where the second term is present only when `second`.
pub(super) struct GroupConsts {
    /// The constant `c`.
    pub(super) c: f64,
    /// The log-weight `k = ln(a / bx)` of the second term.
    pub(super) k: f64,
    /// Whether the second term is present.
    pub(super) second: bool,
    /// `b + x - 1` (BG, `x ≥ 1`) or `b + x` (MBG): the denominator in `k`.
    pub(super) bx: f64,
}

/// The per-`x` constants of the likelihood for `x` repeat visits.
pub(super) fn group_consts(model: VisitModel, p: &BgParams, x: f64) -> GroupConsts {
    let a1 = ln_poch(p.r, x) + p.r * p.alpha.ln();
    match model {
        VisitModel::BgNbd => {
            let a2 = ln_poch(p.b, x) - ln_poch(p.a + p.b, x);
            let bx = p.b + x.max(1.0) - 1.0;
            GroupConsts {
                c: a1 + a2,
                k: p.a.ln() - bx.ln(),
                second: x > 0.0,
                bx,
            }
        }
        VisitModel::MbgNbd | VisitModel::MbgCnbdK => {
            let a2 = ln_poch(p.b, x + 1.0) - ln_poch(p.a + p.b, x + 1.0);
            let bx = p.b + x;
            GroupConsts {
                c: a1 + a2,
                k: p.a.ln() - bx.ln(),
                second: true,
                bx,
            }
        }
    }
}

/// Log-sum-exp of two terms and the weight of the second.
#[inline]
pub(super) fn lse2(a3: f64, a4: f64) -> (f64, f64) {
    if a3 >= a4 {
        let e = (a4 - a3).exp();
        (a3 + e.ln_1p(), e / (1.0 + e))
    } else {
        let e = (a3 - a4).exp();
        (a4 + e.ln_1p(), 1.0 / (1.0 + e))
    }
}

/// Individual log-likelihood of one customer's statistics, as `lifetimes` defines it
/// (`BetaGeoFitter` / `ModifiedBetaGeoFitter._negative_log_likelihood` for one customer,
/// negated). Computed in log space with log-sum-exp.
pub fn log_likelihood(model: VisitModel, p: &BgParams, rfm: Rfm) -> f64 {
    let g = group_consts(model, p, rfm.x);
    let rx = p.r + rfm.x;
    let a3 = -rx * (p.alpha + rfm.t).ln();
    if g.second {
        let a4 = g.k - rx * (p.alpha + rfm.t_x).ln();
        g.c + lse2(a3, a4).0
    } else {
        g.c + a3
    }
}

/// Log-odds of being dead versus alive: `ln(a / b_x) + (r + x) ln((alpha + T)/(alpha + t_x))`.
fn log_odds_dead(model: VisitModel, p: &BgParams, rfm: Rfm) -> Option<f64> {
    let bx = match model {
        VisitModel::BgNbd => {
            if rfm.x <= 0.0 {
                return None;
            }
            p.b + rfm.x.max(1.0) - 1.0
        }
        VisitModel::MbgNbd | VisitModel::MbgCnbdK => p.b + rfm.x,
    };
    let gap = ((rfm.t - rfm.t_x) / (p.alpha + rfm.t_x)).ln_1p();
    Some(p.a.ln() - bx.ln() + (p.r + rfm.x) * gap)
}

/// Probability that a customer with statistics `rfm` is still alive at `T`, in `[0, 1]`.
///
/// BG/NBD: `1` for `x = 0`, else `1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x))`;
/// MBG/NBD: `1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))` for every `x`.
pub fn p_alive(model: VisitModel, p: &BgParams, rfm: Rfm) -> f64 {
    match log_odds_dead(model, p, rfm) {
        None => 1.0,
        Some(l) => logistic_neg(l),
    }
}

/// `(F(aa, bb; c; w) - 1) / bb` for `w = -t/d` as a negative-binomial mixture:
/// `F = Σ_n NB(n; aa, u) · ρ_n`, `ρ_n = (c-bb)_n / (c)_n`, `u = t/(d+t)` (the Pfaff form
/// `(1-w)^(-aa) F(aa, c-bb; c; u)` with its prefactor folded into the weights), so
/// `(F - 1)/bb = Σ_n NB(n) v_n` with `v_n = (ρ_n - 1)/bb` from the exact recurrence
/// `v_{n+1} = v_n (1 - bb/(c+n)) - 1/(c+n)`, `v_0 = 0`, which never divides by `bb`.
/// For `c > 0` every `v_n` has the same sign, so nothing cancels, for any `aa` and for
/// `bb → 0`. The cost grows with the mixture's mean `aa · t/d`, so it is only used when
/// the other forms cancel. Returns the value and its cancellation factor, or `None` when
/// the budget of terms is exceeded.
fn mixture_visits(
    aa: f64,
    bb: f64,
    c: f64,
    t: f64,
    d: f64,
    max_terms: usize,
) -> Option<(f64, f64)> {
    let u = t / (d + t);
    let (mut w, mut wsum, mut acc, mut acc_abs) = (1.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut v = 0.0f64;
    for n in 0..max_terms {
        let nf = n as f64;
        wsum += w;
        acc += w * v;
        acc_abs += (w * v).abs();
        let ratio = (aa + nf) / (nf + 1.0) * u;
        let next = w * ratio;
        let v_next = v * (1.0 - bb / (c + nf)) - 1.0 / (c + nf);
        // Past the mode later ratios stay below max(ratio, u) < 1, and |v_n| grows at
        // most like a power of n.
        let bound = ratio.max(u);
        if ratio < 1.0
            && n > 0
            && next <= EPS * wsum
            && next / (1.0 - bound) * v_next.abs().max(1.0) * (nf + 2.0) <= EPS * acc_abs.max(wsum)
        {
            return Some((acc / wsum, cancel_factor(acc_abs, acc)));
        }
        w = next;
        v = v_next;
        if wsum > 1.0e250 {
            w *= 1.0e-250;
            wsum *= 1.0e-250;
            acc *= 1.0e-250;
            acc_abs *= 1.0e-250;
        }
        if !w.is_finite() || !v.is_finite() {
            return None;
        }
    }
    None
}

/// `F(aa, bb; c; w)` for `w = -t/d ≤ -2` by the connection formula at infinity,
/// `F = Γ(c)Γ(aa-bb)/(Γ(aa)Γ(c-bb)) (-w)^(-bb) F(bb, bb-c+1; bb-aa+1; 1/w) + (aa ↔ bb)`,
/// whose series converge fast for `|1/w| ≤ 1/2`. Returns `F` and a cancellation factor
/// covering both the series and the sum of the two terms, or `None`
/// when `aa - bb` is within 1e-4 of an integer (the two terms then have poles).
fn connection_at_infinity(aa: f64, bb: f64, c: f64, t: f64, d: f64) -> Option<(f64, f64)> {
    let diff = aa - bb;
    if (diff - diff.round()).abs() < 1.0e-4 {
        return None;
    }
    let ln_mw = (t / d).ln();
    let inv_w = -d / t;
    let term = |p: f64, q: f64| -> (f64, f64) {
        // Γ(c)Γ(q-p)/(Γ(q)Γ(c-p)) (-w)^(-p) F(p, p-c+1; p-q+1; 1/w)
        let (l1, s1) = libm::lgamma_r(c);
        let (l2, s2) = libm::lgamma_r(q - p);
        let (l3, s3) = libm::lgamma_r(q);
        let (l4, s4) = libm::lgamma_r(c - p);
        let series = gauss_series(p, p - c + 1.0, p - q + 1.0, inv_w, false, 100_000);
        if !series.converged {
            return (f64::NAN, f64::INFINITY);
        }
        let sign = f64::from(s1 * s2 * s3 * s4);
        (
            sign * (l1 + l2 - l3 - l4 - p * ln_mw).exp() * series.value,
            series.cancellation,
        )
    };
    let (t1, k1) = term(bb, aa);
    let (t2, k2) = if bb == 0.0 || non_positive_integer(c - aa) {
        (0.0, 1.0)
    } else {
        term(aa, bb)
    };
    let f = t1 + t2;
    let kappa = cancel_factor((t1.abs() + t2.abs()).max(1.0), f - 1.0)
        .max(k1)
        .max(k2);
    f.is_finite().then_some((f, kappa))
}

/// `-c (F(aa, bb; c; w) - 1) / bb` with `w = -t/d`: the conditional expectation of visits
/// in `(T, T+t]` of a customer known to be alive, where `aa = r + x`, `bb = a - 1`,
/// `c = a + b + x - 1` (BG) or `a + b + x` (MBG) and `d = alpha + T`.
///
/// With `u = t/(d+t)` and `L = ln(1 + t/d)`, two Pfaff forms are exact:
/// - `(F - 1)/bb = expm1(-bb L)/bb · F2 + (F2 - 1)/bb`, `F2 = F(bb, c-aa; c; u)`;
/// - `(F - 1)/bb = (expm1(-aa L) F3 + (F3 - 1)) / bb`, `F3 = F(aa, c-bb; c; u)`.
///
/// Both `(F2 - 1)/bb` and `(F3 - 1)/aa` are evaluated as reduced series without the
/// vanishing factor, so `bb = 0` (`a = 1`) and `aa → 0` are harmless; the form whose two
/// addends cancel less is returned, or, when both cancel badly, [`mixture_visits`].
fn alive_visits(aa: f64, bb: f64, c: f64, t: f64, d: f64) -> f64 {
    let u = t / (d + t);
    let l = (t / d).ln_1p();
    let finite_or_inf = |k: f64, y: f64| if y.is_finite() { k } else { f64::INFINITY };
    // Form B (overflows only when bb is much larger than aa).
    let (yb, cancel_b) = f21_unit(bb, c - aa, c, u, true);
    let f2 = 1.0 + bb * yb;
    let bl = bb * l;
    let e1 = if bl.abs() < 1.0e-8 {
        -l * (1.0 - 0.5 * bl)
    } else {
        (-bl).exp_m1() / bb
    };
    let y_b = e1 * f2 + yb;
    let kappa_b = finite_or_inf(
        cancel_factor((e1 * f2).abs().max(yb.abs()), y_b).max(cancel_b),
        y_b,
    );
    let mut best = (kappa_b, y_b);
    // Form A (overflows only when aa is much larger than bb).
    if bb != 0.0 && best.0 > 4.0 {
        let (ya, cancel_a) = f21_unit(aa, c - bb, c, u, true);
        let f3 = 1.0 + aa * ya;
        let ea = (-aa * l).exp_m1();
        let fm1 = ea * f3 + aa * ya;
        let y_a = fm1 / bb;
        let kappa_a = finite_or_inf(
            cancel_factor((ea * f3).abs().max((aa * ya).abs()), fm1).max(cancel_a),
            y_a,
        );
        if kappa_a < best.0 || !best.1.is_finite() {
            best = (kappa_a, y_a);
        }
    }
    // Long horizons (t > 2d): the connection formula at infinity. Near bb = 0 the
    // quotient (F - 1)/bb is taken as the mean of bb ± 1e-6 (error O(1e-12)).
    if best.0 > 1.0e3 && t > 2.0 * d {
        let at = |b2: f64| {
            connection_at_infinity(aa, b2, c, t, d).map(|(f, kappa)| ((f - 1.0) / b2, kappa))
        };
        let conn = if bb.abs() < 1.0e-6 {
            match (at(1.0e-6), at(-1.0e-6)) {
                (Some((y1, k1)), Some((y2, k2))) => Some((0.5 * (y1 + y2), k1.max(k2))),
                _ => None,
            }
        } else {
            at(bb)
        };
        if let Some((y, kappa_c)) = conn {
            if y.is_finite() && (kappa_c < best.0 || !best.1.is_finite()) {
                best = (kappa_c, y);
            }
        }
    }
    // Everything else cancels (large aa with bb near 0 and small c): the mixture form.
    if best.0 > 1.0e3 {
        let mean = aa * t / d;
        if mean < 1.0e6 {
            let budget = (mean + 40.0 * (mean * (1.0 + t / d)).sqrt() + 200.0) as usize;
            if let Some((y, kappa_m)) = mixture_visits(aa, bb, c, t, d, budget) {
                if kappa_m < best.0 || !best.1.is_finite() {
                    best = (kappa_m, y);
                }
            }
        }
    }
    -c * best.1
}

/// The third parameter `c` of the hypergeometric function in the conditional expectation.
fn visit_c(model: VisitModel, p: &BgParams, x: f64) -> f64 {
    match model {
        VisitModel::BgNbd => p.a + p.b + x - 1.0,
        VisitModel::MbgNbd | VisitModel::MbgCnbdK => p.a + p.b + x,
    }
}

/// Conditional expected number of visits in `(T, T + horizon]` given `rfm`
/// (`lifetimes`' `conditional_expected_number_of_purchases_up_to_time`).
///
/// Finite for every positive parameter set, including `a = 1` (a removable
/// singularity of the textbook formula), `x` in the hundreds and horizons far beyond
/// `T`. Returns 0 for `horizon ≤ 0`.
pub fn expected_visits(model: VisitModel, p: &BgParams, rfm: Rfm, horizon: f64) -> f64 {
    if horizon.is_nan() {
        return f64::NAN;
    }
    if horizon <= 0.0 {
        return 0.0;
    }
    let alive = p_alive(model, p, rfm);
    if alive == 0.0 {
        return 0.0;
    }
    expected_visits_if_alive(model, p, rfm, horizon) * alive
}

/// [`expected_visits`] divided by P(alive) (for callers that evaluate many horizons
/// for one customer and compute P(alive) once). `horizon > 0`.
pub(crate) fn expected_visits_if_alive(
    model: VisitModel,
    p: &BgParams,
    rfm: Rfm,
    horizon: f64,
) -> f64 {
    let aa = p.r + rfm.x;
    let bb = p.a - 1.0;
    let d = p.alpha + rfm.t;
    let c = visit_c(model, p, rfm.x);
    if c.abs() < 1.0e-9 {
        // a + b + x - 1 = 0: removable singularity; average two neighbours.
        let delta = 1.0e-6 * p.b.min(1.0);
        let c1 = c + delta;
        let c2 = c - delta;
        0.5 * (alive_visits(aa, bb, c1, horizon, d) + alive_visits(aa, bb, c2, horizon, d))
    } else {
        alive_visits(aa, bb, c, horizon, d)
    }
}

/// Expected number of repeat visits in `(0, t]` of a newly acquired customer
/// (`lifetimes`' `expected_number_of_purchases_up_to_time`).
pub fn unconditional_expected_visits(model: VisitModel, p: &BgParams, t: f64) -> f64 {
    expected_visits(
        model,
        p,
        Rfm {
            x: 0.0,
            t_x: 0.0,
            t: 0.0,
        },
        t,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::{close, MODELS};
    use proptest::prelude::*;

    #[test]
    fn expected_visits_removable_singularities_and_limits() {
        let rfms = [
            Rfm {
                x: 0.0,
                t_x: 0.0,
                t: 30.0,
            },
            Rfm {
                x: 3.0,
                t_x: 20.0,
                t: 30.0,
            },
            Rfm {
                x: 250.0,
                t_x: 29.0,
                t: 30.0,
            },
        ];
        for m in MODELS {
            for rfm in rfms {
                for &h in &[0.01, 5.0, 500.0, 1.0e5] {
                    // a = 1: the textbook formula is 0/0.
                    let at = |a: f64| {
                        expected_visits(
                            m,
                            &BgParams {
                                r: 0.8,
                                alpha: 6.0,
                                a,
                                b: 2.0,
                            },
                            rfm,
                            h,
                        )
                    };
                    let (mid, lo, hi) = (at(1.0), at(1.0 - 1e-7), at(1.0 + 1e-7));
                    assert!(
                        mid.is_finite() && close(mid, 0.5 * (lo + hi), 1e-6),
                        "{m:?} {rfm:?} {h}: {mid} vs {lo} {hi}"
                    );
                }
                // Small horizon: rate (r+x)/(alpha+T) times P(alive).
                let p = BgParams {
                    r: 0.8,
                    alpha: 6.0,
                    a: 0.7,
                    b: 2.0,
                };
                let h = 1e-6;
                let slope = (p.r + rfm.x) / (p.alpha + rfm.t) * p_alive(m, &p, rfm);
                assert!(close(expected_visits(m, &p, rfm, h) / h, slope, 1e-5));
                // Monotone in the horizon.
                let mut prev = 0.0;
                for k in 1..60 {
                    let e = expected_visits(m, &p, rfm, 1.5f64.powi(k) * 0.01);
                    assert!(e >= prev, "{m:?} {rfm:?}: not monotone at step {k}");
                    prev = e;
                }
            }
        }
        // a + b + x - 1 = 0 for a BG/NBD newcomer.
        let p = BgParams {
            r: 0.5,
            alpha: 3.0,
            a: 0.3,
            b: 0.7,
        };
        let near = BgParams { b: 0.7 + 1e-6, ..p };
        let rfm = Rfm {
            x: 0.0,
            t_x: 0.0,
            t: 10.0,
        };
        let (e0, e1) = (
            expected_visits(VisitModel::BgNbd, &p, rfm, 20.0),
            expected_visits(VisitModel::BgNbd, &near, rfm, 20.0),
        );
        assert!(e0.is_finite() && close(e0, e1, 1e-5), "{e0} vs {e1}");
        // Unconditional = conditional for a brand-new customer, and zero horizon is zero.
        for m in MODELS {
            let p = BgParams {
                r: 0.3,
                alpha: 4.0,
                a: 0.8,
                b: 2.5,
            };
            assert_eq!(expected_visits(m, &p, rfm, 0.0), 0.0);
            let new = Rfm {
                x: 0.0,
                t_x: 0.0,
                t: 0.0,
            };
            assert_eq!(
                unconditional_expected_visits(m, &p, 12.0),
                expected_visits(m, &p, new, 12.0)
            );
        }
    }

    #[test]
    fn p_alive_edges() {
        let p = BgParams {
            r: 0.3,
            alpha: 4.0,
            a: 0.8,
            b: 2.5,
        };
        assert_eq!(
            p_alive(
                VisitModel::BgNbd,
                &p,
                Rfm {
                    x: 0.0,
                    t_x: 0.0,
                    t: 100.0
                }
            ),
            1.0
        );
        let mbg_new = p_alive(
            VisitModel::MbgNbd,
            &p,
            Rfm {
                x: 0.0,
                t_x: 0.0,
                t: 0.0,
            },
        );
        assert!(close(mbg_new, p.b / (p.a + p.b), 1e-15));
        // Visited just now: the most alive a repeat customer can be.
        let fresh = p_alive(
            VisitModel::BgNbd,
            &p,
            Rfm {
                x: 5.0,
                t_x: 50.0,
                t: 50.0,
            },
        );
        assert!(close(fresh, 1.0 / (1.0 + p.a / (p.b + 4.0)), 1e-15));
        // Long silence after many visits: dead, without underflow trouble.
        let gone = p_alive(
            VisitModel::MbgNbd,
            &p,
            Rfm {
                x: 300.0,
                t_x: 10.0,
                t: 50_000.0,
            },
        );
        assert!((0.0..1e-300).contains(&gone));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn prop_p_alive_in_unit_interval_and_monotone_in_recency(
            r in 1e-3f64..1e3, alpha in 1e-3f64..1e5, a in 1e-3f64..1e3, b in 1e-3f64..1e3,
            x in 0u32..500, t in 0.0f64..5e4, f1 in 0.0f64..1.0, f2 in 0.0f64..1.0,
        ) {
            let p = BgParams { r, alpha, a, b };
            let x = f64::from(x);
            let (lo, hi) = if f1 <= f2 { (f1, f2) } else { (f2, f1) };
            for m in MODELS {
                let (tl, th) = if x == 0.0 { (0.0, 0.0) } else { (lo * t, hi * t) };
                let pl = p_alive(m, &p, Rfm { x, t_x: tl, t });
                let ph = p_alive(m, &p, Rfm { x, t_x: th, t });
                prop_assert!((0.0..=1.0).contains(&pl) && (0.0..=1.0).contains(&ph));
                prop_assert!(ph >= pl, "{:?}: p_alive({}) = {} > p_alive({}) = {}", m, tl, pl, th, ph);
            }
        }

        #[test]
        fn prop_formulas_finite(
            lr in -3.0f64..3.0, lalpha in -3.0f64..5.0, la in -3.0f64..3.0, lb in -3.0f64..3.0,
            x in 0u32..400, t in 0.0f64..3e4, f in 0.0f64..1.0, lh in -2.0f64..5.0,
        ) {
            let p = BgParams { r: 10f64.powf(lr), alpha: 10f64.powf(lalpha), a: 10f64.powf(la), b: 10f64.powf(lb) };
            let x = f64::from(x);
            let rfm = Rfm { x, t_x: if x == 0.0 { 0.0 } else { f * t }, t };
            let horizon = 10f64.powf(lh);
            for m in MODELS {
                let ll = log_likelihood(m, &p, rfm);
                prop_assert!(ll.is_finite(), "{:?} LL {}", m, ll);
                let e = expected_visits(m, &p, rfm, horizon);
                prop_assert!(e.is_finite() && e >= 0.0, "{:?} {:?} {:?} h {}: E = {}", m, p, rfm, horizon, e);
                let u = unconditional_expected_visits(m, &p, horizon);
                prop_assert!(u.is_finite() && u >= 0.0, "{:?} {:?} h {}: unconditional {}", m, p, horizon, u);
            }
        }
    }
}
