//! The optimiser behind every maximum-likelihood fit: BFGS with an Armijo line search
//! in log-parameter space, boxed to `±25` around each parameter's scale, run from
//! several deterministic starts (`best_of_starts`); standard errors from a Hessian of
//! the negative log-likelihood obtained by central differences of the analytic
//! gradient, in natural parameter space (`std_errors`). Also owns the result type
//! [`Fit`] and the estimation error [`OptimiseError`] that the estimators
//! (`bgnbd_fit`, `gamma_gamma`) return.
//!
//! Pure numerics over `f64` slices: no I/O, no other crate module.

use serde::Serialize;

/// Result of a maximum-likelihood fit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fit<P> {
    /// The maximum-likelihood estimate.
    pub params: P,
    /// Total weighted log-likelihood at `params` (a sum over customers, not a mean).
    pub log_likelihood: f64,
    /// Asymptotic standard errors in natural parameter space, in field order
    /// (`r, alpha, a, b` or `p, q, v`). `f64::INFINITY` when the Hessian is not
    /// positive definite (then `converged` is false).
    pub std_errors: Vec<f64>,
    /// BFGS iterations of the winning start.
    pub iterations: u32,
    /// True when the optimiser met its stationarity tolerance, no parameter sits at the
    /// search bound (`e^±25` times its starting scale) and the Hessian is positive definite.
    pub converged: bool,
}

/// Why a maximum-likelihood fit (`bgnbd_fit::fit_visit_model`,
/// `gamma_gamma::fit_gamma_gamma`) could not be produced: data that cannot identify
/// the model, a malformed entry, or an optimiser that found no optimum.
#[derive(Debug, thiserror::Error)]
pub enum OptimiseError {
    /// Nothing to fit: no entry with a positive weight.
    #[error(
        "no data to fit: the input is empty or every entry has weight 0; pass at least one \
         customer with a positive weight"
    )]
    NoData,
    /// Every customer with a positive weight has `x = 0`: visit rates, dropout and spend
    /// are not identified.
    #[error(
        "no repeat customers: every customer with a positive weight has x = 0 (a single \
         visit), so the model is not identified; fit on a longer history, in which some \
         customers have come back"
    )]
    NoRepeatCustomers,
    /// Every customer with a positive weight has age `T = 0`: there is no observation
    /// time from which to estimate visit rates.
    #[error(
        "no observation time: every customer with a positive weight has age T = 0, so \
         visit rates are not identified; compute the statistics at an instant after the \
         customers' first visits"
    )]
    NoObservationTime,
    /// An entry is malformed.
    #[error("invalid input entry {index}: {reason}; correct or drop that entry")]
    InvalidInput {
        /// Position in the input slice.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No start reached a stationary point.
    #[error(
        "the optimiser reached no stationary point from any of its starting points (the \
         best stopped after {iterations} iterations): the data barely identify the model; \
         fit on more customers or a longer history"
    )]
    DidNotConverge {
        /// Iterations used by the best start.
        iterations: u32,
    },
    /// The likelihood or its gradient is not finite at every starting point, or at the
    /// optimum.
    #[error(
        "the log-likelihood or its gradient is not finite (at every starting point, or at \
         the optimum): check the data for extreme values; ages and recencies must be in \
         the model's time unit (days or weeks, not milliseconds)"
    )]
    NonFinite,
}

/// Bound on each log-parameter (relative to its scale).
const THETA_BOUND: f64 = 25.0;

/// Where BFGS stopped.
pub(super) struct BfgsOut {
    /// The log-parameters reached.
    pub(super) theta: Vec<f64>,
    /// The objective there.
    pub(super) f: f64,
    /// Iterations used.
    pub(super) iterations: u32,
    /// True when the projected gradient met the stationarity tolerance.
    pub(super) stationary: bool,
    /// True when some log-parameter sits at `±THETA_BOUND`.
    pub(super) at_bound: bool,
}

/// Projected gradient: zero where a coordinate sits at a bound and the gradient pushes out.
fn projected(theta: &[f64], g: &[f64]) -> Vec<f64> {
    theta
        .iter()
        .zip(g)
        .map(|(&t, &gi)| {
            if (t >= THETA_BOUND && gi < 0.0) || (t <= -THETA_BOUND && gi > 0.0) {
                0.0
            } else {
                gi
            }
        })
        .collect()
}

fn inf_norm(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// Minimises `f` (returns value, writes gradient) by BFGS with an Armijo backtracking
/// line search, in a box `[-THETA_BOUND, THETA_BOUND]^n`.
fn bfgs<F: FnMut(&[f64], &mut [f64]) -> f64>(
    mut f: F,
    theta0: &[f64],
    max_iter: u32,
) -> Option<BfgsOut> {
    const GTOL: f64 = 1.0e-9;
    let n = theta0.len();
    let mut x: Vec<f64> = theta0
        .iter()
        .map(|t| t.clamp(-THETA_BOUND, THETA_BOUND))
        .collect();
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut h = identity(n);
    let mut first = true;
    let mut iterations = 0;
    let mut stationary = false;
    let mut gn = vec![0.0; n];
    let mut stall = 0;
    while iterations < max_iter {
        let pg = projected(&x, &g);
        if inf_norm(&pg) < GTOL {
            stationary = true;
            break;
        }
        iterations += 1;
        let mut dir: Vec<f64> = (0..n)
            .map(|i| -(0..n).map(|j| h[i * n + j] * pg[j]).sum::<f64>())
            .collect();
        let slope: f64 = dir.iter().zip(&pg).map(|(d, g)| d * g).sum();
        if slope.is_nan() || slope >= 0.0 {
            h = identity(n);
            dir = pg.iter().map(|v| -v).collect();
        }
        // Keep the first step modest in log space.
        let dmax = inf_norm(&dir);
        let mut step = if first && dmax > 1.0 { 1.0 / dmax } else { 1.0 };
        if dmax * step > 5.0 {
            step = 5.0 / dmax;
        }
        let mut accepted = None;
        for _ in 0..60 {
            let xn: Vec<f64> = x
                .iter()
                .zip(&dir)
                .map(|(xi, di)| (xi + step * di).clamp(-THETA_BOUND, THETA_BOUND))
                .collect();
            let fxn = f(&xn, &mut gn);
            let moved: f64 = xn
                .iter()
                .zip(&x)
                .zip(&pg)
                .map(|((a, b), g)| (a - b) * g)
                .sum();
            if fxn.is_finite()
                && gn.iter().all(|v| v.is_finite())
                && fxn <= fx + 1.0e-4 * moved.min(0.0)
            {
                accepted = Some((xn, fxn));
                break;
            }
            step *= 0.5;
        }
        let Some((xn, fxn)) = accepted else {
            // No progress possible along the quasi-Newton direction.
            if first {
                break;
            }
            h = identity(n);
            first = true;
            stall += 1;
            if stall > 2 {
                break;
            }
            continue;
        };
        let s: Vec<f64> = xn.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        let yy: f64 = y.iter().map(|v| v * v).sum();
        let ss: f64 = s.iter().map(|v| v * v).sum();
        if sy > 1.0e-12 * (ss * yy).sqrt() && sy > 0.0 {
            if first {
                let scale = sy / yy;
                h = identity(n);
                h.iter_mut().for_each(|v| *v *= scale);
            }
            bfgs_update(&mut h, &s, &y, sy);
            first = false;
        }
        let df = fx - fxn;
        x = xn;
        fx = fxn;
        g.copy_from_slice(&gn);
        if df.abs() <= 1.0e-15 * fx.abs().max(1.0) && inf_norm(&projected(&x, &g)) < 1.0e-6 {
            stall += 1;
            if stall >= 3 {
                stationary = true;
                break;
            }
        } else {
            stall = 0;
        }
    }
    let at_bound = x.iter().any(|t| t.abs() >= THETA_BOUND);
    Some(BfgsOut {
        theta: x,
        f: fx,
        iterations,
        stationary,
        at_bound,
    })
}

fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 1.0;
    }
    m
}

/// Inverse-Hessian BFGS update `H ← (I - ρ s yᵀ) H (I - ρ y sᵀ) + ρ s sᵀ`.
fn bfgs_update(h: &mut [f64], s: &[f64], y: &[f64], sy: f64) {
    let n = s.len();
    let rho = 1.0 / sy;
    let hy: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| h[i * n + j] * y[j]).sum())
        .collect();
    let yhy: f64 = y.iter().zip(&hy).map(|(a, b)| a * b).sum();
    for i in 0..n {
        for j in 0..n {
            h[i * n + j] +=
                -rho * (hy[i] * s[j] + s[i] * hy[j]) + (rho * rho * yhy + rho) * s[i] * s[j];
        }
    }
}

/// Cholesky factor of a symmetric matrix, or `None` when not positive definite.
fn cholesky(m: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = m[i * n + j];
            for k in 0..j {
                s -= l[i * n + k] * l[j * n + k];
            }
            if i == j {
                if s.is_nan() || s <= 0.0 || s.is_infinite() {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Diagonal of the inverse of `L Lᵀ`.
fn inverse_diag(l: &[f64], n: usize) -> Vec<f64> {
    // Solve L Lᵀ X = I column by column; keep the diagonal.
    (0..n)
        .map(|col| {
            let mut y = vec![0.0; n];
            for i in 0..n {
                let mut s = if i == col { 1.0 } else { 0.0 };
                for k in 0..i {
                    s -= l[i * n + k] * y[k];
                }
                y[i] = s / l[i * n + i];
            }
            let mut x = vec![0.0; n];
            for i in (0..n).rev() {
                let mut s = y[i];
                for k in i + 1..n {
                    s -= l[k * n + i] * x[k];
                }
                x[i] = s / l[i * n + i];
            }
            x[col]
        })
        .collect()
}

/// Standard errors from the Hessian of the negative log-likelihood, obtained by central
/// differences of the analytic gradient of the log-likelihood in natural space.
pub(super) fn std_errors<G: FnMut(&[f64]) -> Vec<f64>>(
    params: &[f64],
    mut grad_ll: G,
) -> Option<Vec<f64>> {
    let n = params.len();
    let mut hess = vec![0.0; n * n];
    for j in 0..n {
        let h = 1.0e-4 * params[j].abs().max(1.0e-300);
        let mut up = params.to_vec();
        let mut dn = params.to_vec();
        up[j] += h;
        dn[j] -= h;
        let gu = grad_ll(&up);
        let gd = grad_ll(&dn);
        for i in 0..n {
            hess[i * n + j] = -(gu[i] - gd[i]) / (2.0 * h);
        }
    }
    for i in 0..n {
        for j in 0..i {
            let avg = 0.5 * (hess[i * n + j] + hess[j * n + i]);
            hess[i * n + j] = avg;
            hess[j * n + i] = avg;
        }
    }
    if hess.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let l = cholesky(&hess, n)?;
    let se: Vec<f64> = inverse_diag(&l, n).into_iter().map(f64::sqrt).collect();
    se.iter().all(|v| v.is_finite() && *v > 0.0).then_some(se)
}

/// BFGS iterations allowed per start.
const MAX_ITER: u32 = 1000;

/// Runs BFGS (in log-parameter space) from each start, given in natural parameters, and
/// keeps the best optimum, preferring stationary points.
pub(super) fn best_of_starts<F, S>(objective: F, starts: &[S]) -> Result<BfgsOut, OptimiseError>
where
    F: FnMut(&[f64], &mut [f64]) -> f64 + Copy,
    S: AsRef<[f64]>,
{
    let mut best: Option<BfgsOut> = None;
    for s in starts {
        let th0: Vec<f64> = s.as_ref().iter().map(|v| v.ln()).collect();
        if let Some(out) = bfgs(objective, &th0, MAX_ITER) {
            let better = match &best {
                None => true,
                Some(b) => {
                    (out.stationary && !b.stationary)
                        || (out.stationary == b.stationary && out.f < b.f)
                }
            };
            if better {
                best = Some(out);
            }
        }
    }
    let best = best.ok_or(OptimiseError::NonFinite)?;
    if !best.stationary {
        return Err(OptimiseError::DidNotConverge {
            iterations: best.iterations,
        });
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_of_starts_finds_a_quadratic_minimum() {
        // f(θ) = (θ0 - 1)² + 3 (θ1 + 2)², started at θ = ln(start).
        let objective = |th: &[f64], g: &mut [f64]| -> f64 {
            g[0] = 2.0 * (th[0] - 1.0);
            g[1] = 6.0 * (th[1] + 2.0);
            (th[0] - 1.0).powi(2) + 3.0 * (th[1] + 2.0).powi(2)
        };
        let out = best_of_starts(objective, &[[1.0, 1.0], [5.0, 0.1]]).unwrap();
        assert!(out.stationary && !out.at_bound);
        assert!((out.theta[0] - 1.0).abs() < 1e-8 && (out.theta[1] + 2.0).abs() < 1e-8);
    }

    #[test]
    fn best_of_starts_reports_a_non_finite_objective() {
        let objective = |_: &[f64], g: &mut [f64]| -> f64 {
            g.fill(0.0);
            f64::NAN
        };
        let e = best_of_starts(objective, &[[1.0]]).err().unwrap();
        assert!(matches!(e, OptimiseError::NonFinite), "{e}");
    }

    #[test]
    fn std_errors_invert_the_hessian() {
        // ln L = -Σ x_i² / (2 σ_i²): the standard errors are the σ_i.
        let sigma = [0.5, 2.0, 7.0];
        let se = std_errors(&[1.0, 2.0, 3.0], |v| {
            v.iter().zip(&sigma).map(|(x, s)| -x / (s * s)).collect()
        })
        .unwrap();
        for (e, s) in se.iter().zip(&sigma) {
            assert!((e - s).abs() < 1e-9 * s, "{e} vs {s}");
        }
        // Not a maximum: no standard errors.
        assert!(std_errors(&[1.0], |v| vec![v[0]]).is_none());
    }
}
