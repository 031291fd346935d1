//! `churnwatch fit`: maps the flags to the library's fit options, fits the visit and
//! spend models, prints the report and writes the parameter file (and the report as JSON
//! on request).
//!
//! May touch stdout, stderr (a log line), the files the user names and, through the
//! library, the inputs.

use super::{parse_instant, FitArgs, ModelArg, UnitArg, LOG_TARGET};
use anyhow::{Context, Result};

/// Runs `churnwatch fit`.
pub fn run(a: FitArgs) -> Result<()> {
    let FitArgs {
        inputs,
        calibration_end,
        holdout_end,
        model,
        time_unit,
        out,
        report_json,
    } = a;
    let opts = churnwatch::model::fit::FitOptions {
        inputs,
        calibration_end: parse_instant(&calibration_end, "--calibration-end")?,
        holdout_end: holdout_end
            .as_deref()
            .map(|h| parse_instant(h, "--holdout-end"))
            .transpose()?,
        model: match model {
            ModelArg::BgNbd => churnwatch::model::params::VisitModel::BgNbd,
            ModelArg::MbgNbd => churnwatch::model::params::VisitModel::MbgNbd,
            ModelArg::MbgCnbdK => churnwatch::model::params::VisitModel::MbgCnbdK,
        },
        time_unit_days: match time_unit {
            UnitArg::Days => 1.0,
            UnitArg::Weeks => 7.0,
        },
    };
    tracing::info!(
        target: LOG_TARGET,
        "reading and fitting; this takes a while on large histories"
    );
    let r = churnwatch::model::fit::fit(&opts)?;
    print_fit(&r);
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    r.params.save(&out)?;
    println!("parameters written to {}", out.display());
    if let Some(path) = report_json {
        std::fs::write(&path, serde_json::to_vec_pretty(&r)?)
            .with_context(|| format!("cannot write report to {}", path.display()))?;
    }
    Ok(())
}

/// Prints a fit report on stdout.
fn print_fit(r: &churnwatch::model::fit::FitReport) {
    println!(
        "read {} lines ({} visits, {} skipped, {} duplicates) in {:.2} s",
        r.read.lines, r.read.visits, r.read.skipped, r.read.duplicates, r.read_secs
    );
    println!(
        "customers {}  distinct (x, t_x, T) patterns {}",
        r.customers, r.patterns
    );
    let v = &r.visit;
    if let Some(k) = r.params.erlang_k {
        let tried: Vec<String> = r
            .erlang_k_trials
            .iter()
            .map(|t| format!("k={} {:.2}", t.k, t.log_likelihood))
            .collect();
        println!(
            "Erlang order k = {k} (highest log-likelihood of: {})",
            tried.join(", ")
        );
    }
    let se = |i: usize| v.std_errors.get(i).copied().unwrap_or(f64::NAN);
    println!(
        "visit model {} (time unit {} days): log-likelihood {:.4}, {} iterations, converged {}",
        match r.params.model {
            churnwatch::model::params::VisitModel::BgNbd => "BG/NBD",
            churnwatch::model::params::VisitModel::MbgNbd => "MBG/NBD",
            churnwatch::model::params::VisitModel::MbgCnbdK => "MBG/CNBD-k",
        },
        r.params.time_unit_days,
        v.log_likelihood,
        v.iterations,
        v.converged
    );
    for (i, (name, value)) in [
        ("r", v.params.r),
        ("alpha", v.params.alpha),
        ("a", v.params.a),
        ("b", v.params.b),
    ]
    .into_iter()
    .enumerate()
    {
        println!("  {name:<6} {value:>12.6}  (s.e. {:.6})", se(i));
    }
    match &r.spend {
        Some(g) => {
            println!(
                "spend model Gamma-Gamma: log-likelihood {:.4}, converged {}",
                g.log_likelihood, g.converged
            );
            for (i, (name, value)) in [("p", g.params.p), ("q", g.params.q), ("v", g.params.v)]
                .into_iter()
                .enumerate()
            {
                println!(
                    "  {name:<6} {value:>12.6}  (s.e. {:.6})",
                    g.std_errors.get(i).copied().unwrap_or(f64::NAN)
                );
            }
        }
        None => println!("spend model: not fitted (fewer than 10 repeat customers with amounts)"),
    }
    if !r.holdout.is_empty() {
        println!("holdout check: mean visits per customer in the holdout period");
        println!(
            "  {:>16} {:>10} {:>10} {:>10}",
            "calib. repeats", "customers", "predicted", "actual"
        );
        for h in &r.holdout {
            println!(
                "  {:>16} {:>10} {:>10.3} {:>10.3}",
                h.calibration_repeat_visits, h.customers, h.predicted, h.actual
            );
        }
    }
    println!("fit took {:.2} s", r.fit_secs);
}
