//! The Gamma-Gamma spend model and customer lifetime value.
//!
//! The **Gamma-Gamma** model (Fader, Hardie & Lee 2005, "RFM and CLV"; Hardie's note
//! 025): each visit's value is `Gamma(p, ν)` with `ν ~ Gamma(q, v)` across customers,
//! independent of the visit process. [`gg_expected_spend`] shrinks a customer's
//! observed mean value towards the population mean, [`clv`] combines it with the
//! expected visits of the BG/NBD family month by month with discounting, exactly as
//! `lifetimes`' `GammaGammaFitter.customer_lifetime_value` does, and
//! [`fit_gamma_gamma`] estimates the parameters by maximum likelihood.
//!
//! Pure maths over plain data: no I/O. Uses `params`, `special`, `visit` (P(alive) and
//! expected visits of any visit model, for the CLV) and `optimise`.

use crate::model::optimise::{best_of_starts, std_errors, Fit, OptimiseError};
use crate::model::params::{BgParams, GgParams, Rfm, VisitModel};
use crate::model::special::{digamma, ln_gamma};
use crate::model::visit::VisitScorer;

/// Conditional expected average value per visit of a customer with `frequency` repeat
/// visits of mean value `mean_value`: `p (v + x m) / (p x + q - 1)`, the credibility
/// blend of the observed mean and the population mean `v p / (q - 1)`
/// (`lifetimes`' `conditional_expected_average_profit`). Meaningful for `q > 1`.
pub fn gg_expected_spend(p: &GgParams, frequency: f64, mean_value: f64) -> f64 {
    p.p * (p.v + frequency * mean_value) / (p.p * frequency + p.q - 1.0)
}

/// Discounted customer lifetime value over `horizon_months` months, as `lifetimes`'
/// `GammaGammaFitter.customer_lifetime_value`: the sum over months `i = 1..=H` of
/// `spend · (E[visits up to 30 i days] - E[visits up to 30 (i-1) days]) / (1 + d)^i`,
/// with `spend` from [`gg_expected_spend`] and the expectations from
/// [`expected_visits`](crate::model::bgnbd::expected_visits). `days_per_unit` converts the model's time unit to days (1 for
/// days, 7 for weeks; `30 / 4.345` reproduces `lifetimes`' `freq="W"`). The spend
/// model's frequency is `rfm.x`, as in `lifetimes`; [`clv_scored`] takes it apart.
#[allow(clippy::too_many_arguments)]
pub fn clv(
    model: VisitModel,
    bg: &BgParams,
    gg: &GgParams,
    rfm: Rfm,
    mean_value: f64,
    horizon_months: u32,
    monthly_discount: f64,
    days_per_unit: f64,
) -> f64 {
    clv_scored(
        &VisitScorer::bg(model, *bg),
        gg,
        rfm,
        (rfm.x, mean_value),
        horizon_months,
        monthly_discount,
        days_per_unit,
    )
}

/// [`clv`] for any visit model, with the spend model's input given apart from the visit
/// statistics: `spend = (frequency, mean value)`, the number of repeat transactions the
/// mean value averages and that mean (the engine's `CustomerState::repeat_spend`).
pub fn clv_scored(
    visits: &VisitScorer,
    gg: &GgParams,
    rfm: Rfm,
    spend: (f64, f64),
    horizon_months: u32,
    monthly_discount: f64,
    days_per_unit: f64,
) -> f64 {
    let spend = gg_expected_spend(gg, spend.0, spend.1);
    let step = 30.0 / days_per_unit;
    // P(alive) is the same for every horizon: compute it once.
    let alive = visits.p_alive(rfm);
    if alive == 0.0 || step.is_nan() {
        return if step.is_nan() { f64::NAN } else { 0.0 };
    }
    let mut prev = 0.0;
    let mut total = 0.0;
    let mut discount = 1.0;
    for i in 1..=horizon_months {
        let h = step * f64::from(i);
        let e = if h > 0.0 {
            visits.expected_visits_if_alive(rfm, h) * alive
        } else {
            0.0
        };
        discount /= 1.0 + monthly_discount;
        total += spend * (e - prev) * discount;
        prev = e;
    }
    total
}

/// Repeat customers' spend data, sorted and grouped by frequency `x`.
struct GgData {
    groups: Vec<(f64, usize, usize)>,
    m: Vec<f64>,
    ln_m: Vec<f64>,
    w: Vec<f64>,
    total_w: f64,
}

/// Total weighted log-likelihood and its gradient in `(p, q, v)`.
fn gg_ll_grad(d: &GgData, p: &GgParams) -> (f64, [f64; 3]) {
    let mut ll = 0.0;
    let mut grad = [0.0; 3];
    let ln_v = p.v.ln();
    let lg_q = ln_gamma(p.q);
    let psi_q = digamma(p.q);
    for &(x, start, end) in &d.groups {
        let px = p.p * x;
        let lx = x.ln();
        let g_x = ln_gamma(px + p.q) - ln_gamma(px) - lg_q;
        let psi_pxq = digamma(px + p.q);
        let psi_px = digamma(px);
        let (mut sw, mut s_lm, mut s_lxmv, mut s_inv) = (0.0, 0.0, 0.0, 0.0);
        for i in start..end {
            let w = d.w[i];
            let xmv = x * d.m[i] + p.v;
            sw += w;
            s_lm += w * d.ln_m[i];
            s_lxmv += w * xmv.ln();
            s_inv += w / xmv;
        }
        ll += sw * (g_x + p.q * ln_v + px * lx) + (px - 1.0) * s_lm - (px + p.q) * s_lxmv;
        grad[0] += x * (sw * (psi_pxq - psi_px + lx) + s_lm - s_lxmv);
        grad[1] += sw * (psi_pxq - psi_q + ln_v) - s_lxmv;
        grad[2] += sw * p.q / p.v - (px + p.q) * s_inv;
    }
    (ll, grad)
}

/// Maximum-likelihood fit of the Gamma-Gamma spend model.
///
/// `data` holds `(frequency x, mean value per visit, weight)`; entries with `x = 0` or
/// zero weight carry no spend information and are skipped (the model is fitted on repeat
/// customers only). Mean values must be positive. Optimises `(ln p, ln q, ln v)` by
/// BFGS from three deterministic starts.
pub fn fit_gamma_gamma(data: &[(f64, f64, f64)]) -> Result<Fit<GgParams>, OptimiseError> {
    let mut idx = Vec::with_capacity(data.len());
    for (i, &(x, m, w)) in data.iter().enumerate() {
        let bad = |reason| Err(OptimiseError::InvalidInput { index: i, reason });
        if !(x.is_finite() && m.is_finite() && w.is_finite()) {
            return bad("the frequency, mean value or weight is not finite");
        }
        if x < 0.0 || w < 0.0 {
            return bad("the frequency or the weight is negative");
        }
        if x > 0.0 && w > 0.0 {
            if m <= 0.0 {
                return bad(
                    "the mean value per visit must be positive for a repeat customer (x > 0)",
                );
            }
            idx.push(i);
        }
    }
    if idx.is_empty() {
        return Err(if data.iter().any(|e| e.2 > 0.0) {
            OptimiseError::NoRepeatCustomers
        } else {
            OptimiseError::NoData
        });
    }
    idx.sort_by(|&i, &j| {
        data[i]
            .0
            .total_cmp(&data[j].0)
            .then(data[i].1.total_cmp(&data[j].1))
            .then(i.cmp(&j))
    });
    let mut d = GgData {
        groups: Vec::new(),
        m: Vec::with_capacity(idx.len()),
        ln_m: Vec::with_capacity(idx.len()),
        w: Vec::with_capacity(idx.len()),
        total_w: 0.0,
    };
    let mut sm = 0.0;
    for (k, &i) in idx.iter().enumerate() {
        let (x, m, w) = data[i];
        match d.groups.last_mut() {
            Some(g) if g.0 == x => g.2 = k + 1,
            _ => d.groups.push((x, k, k + 1)),
        }
        d.m.push(m);
        d.ln_m.push(m.ln());
        d.w.push(w);
        d.total_w += w;
        sm += w * m;
    }
    let scale = sm / d.total_w;
    let to_params = |th: &[f64]| GgParams {
        p: th[0].exp(),
        q: th[1].exp(),
        v: scale * th[2].exp(),
    };
    let objective = |th: &[f64], g: &mut [f64]| -> f64 {
        let p = to_params(th);
        let (ll, gr) = gg_ll_grad(&d, &p);
        let nat = [p.p, p.q, p.v];
        for i in 0..3 {
            g[i] = -gr[i] * nat[i] / d.total_w;
        }
        -ll / d.total_w
    };
    // Starts with population mean p v / (q - 1) equal to the observed mean.
    let starts: [[f64; 3]; 3] = [[2.0, 3.0, 1.0], [6.0, 4.0, 0.5], [1.0, 2.0, 1.0]];
    let best = best_of_starts(objective, &starts)?;
    let params = to_params(&best.theta);
    let (ll, _) = gg_ll_grad(&d, &params);
    if !ll.is_finite() {
        return Err(OptimiseError::NonFinite);
    }
    let se = std_errors(&[params.p, params.q, params.v], |v| {
        let p = GgParams {
            p: v[0],
            q: v[1],
            v: v[2],
        };
        gg_ll_grad(&d, &p).1.to_vec()
    });
    let converged = se.is_some() && !best.at_bound;
    Ok(Fit {
        params,
        log_likelihood: ll,
        std_errors: se.unwrap_or_else(|| vec![f64::INFINITY; 3]),
        iterations: best.iterations,
        converged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_support::{assert_recovered, close, gamma_sample};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn gg_gradients_match_finite_differences() {
        let d = GgData {
            groups: vec![(1.0, 0, 2), (4.0, 2, 3)],
            m: vec![10.0, 30.0, 22.0],
            ln_m: vec![10f64.ln(), 30f64.ln(), 22f64.ln()],
            w: vec![1.0, 2.0, 3.0],
            total_w: 6.0,
        };
        let p = GgParams {
            p: 3.0,
            q: 2.5,
            v: 12.0,
        };
        let (_, g) = gg_ll_grad(&d, &p);
        let nat = [p.p, p.q, p.v];
        for i in 0..3 {
            let h = 1e-6 * nat[i];
            let mut up = nat;
            let mut dn = nat;
            up[i] += h;
            dn[i] -= h;
            let mk = |v: [f64; 3]| GgParams {
                p: v[0],
                q: v[1],
                v: v[2],
            };
            let numeric = (gg_ll_grad(&d, &mk(up)).0 - gg_ll_grad(&d, &mk(dn)).0) / (2.0 * h);
            assert!(
                close(g[i], numeric, 1e-6),
                "gg grad {i}: {} vs {numeric}",
                g[i]
            );
        }
    }

    #[test]
    fn gg_fit_errors() {
        assert!(matches!(fit_gamma_gamma(&[]), Err(OptimiseError::NoData)));
        assert!(matches!(
            fit_gamma_gamma(&[(0.0, 0.0, 4.0)]),
            Err(OptimiseError::NoRepeatCustomers)
        ));
        assert!(matches!(
            fit_gamma_gamma(&[(2.0, -1.0, 1.0)]),
            Err(OptimiseError::InvalidInput { index: 0, .. })
        ));
    }

    #[test]
    fn gamma_gamma_recovers_simulated_parameters() {
        let truth = GgParams {
            p: 6.0,
            q: 4.0,
            v: 15.0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let data: Vec<(f64, f64, f64)> = (0..50_000)
            .map(|_| {
                let x = rng.gen_range(1..=12) as f64;
                let nu = gamma_sample(&mut rng, truth.q, truth.v);
                let total: f64 = (0..x as usize)
                    .map(|_| gamma_sample(&mut rng, truth.p, nu))
                    .sum();
                (x, total / x, 1.0)
            })
            .collect();
        let fit = fit_gamma_gamma(&data).unwrap();
        assert!(fit.converged, "{fit:?}");
        let p = fit.params;
        assert_recovered(
            "gamma-gamma",
            &[p.p, p.q, p.v],
            &[truth.p, truth.q, truth.v],
            &fit.std_errors,
        );
    }
}
