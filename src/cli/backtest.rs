//! `churnwatch backtest`: maps the flags to [`BacktestOptions`] (policies from files,
//! the default, or a sweep), runs the backtest with progress on stderr, writes the
//! report directory and prints the comparison table.
//!
//! May touch stdout, stderr (progress) and, through the library, the inputs and the
//! report directory.

use super::progress::Progress;
use super::{load_policy_and_model, parse_instant, BacktestArgs};
use anyhow::{bail, Context, Result};
use churnwatch::edge::backtest::{
    self, report, sweep::Sweep, BacktestOptions, BacktestProgress, NamedPolicy,
};
use std::collections::HashMap;
use std::path::Path;

/// The name of a policy file in the report: its file stem, made unique.
fn name_of(path: &Path, taken: &mut HashMap<String, usize>) -> String {
    let stem = path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let n = taken.entry(stem.clone()).or_default();
    *n += 1;
    if *n == 1 {
        stem
    } else {
        format!("{stem}-{n}")
    }
}

/// Runs `churnwatch backtest`.
pub fn run(a: BacktestArgs) -> Result<()> {
    let mut policies = Vec::new();
    let mut taken = HashMap::new();
    for p in &a.policies {
        let policy = load_policy_and_model(Some(p), a.model.as_deref())?;
        policies.push(NamedPolicy {
            name: name_of(p, &mut taken),
            policy,
        });
    }
    let mut sweep_keys = Vec::new();
    if !a.sweeps.is_empty() {
        if a.sweeps.len() > 2 {
            bail!("--sweep takes one or two keys, not {}", a.sweeps.len());
        }
        if policies.len() > 1 {
            bail!("--sweep varies one base policy: give at most one --policy");
        }
        let base = match policies.pop() {
            Some(p) => p.policy,
            None => load_policy_and_model(None, a.model.as_deref())?,
        };
        let sweeps = a
            .sweeps
            .iter()
            .map(|s| Sweep::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(backtest::BacktestError::Sweep)?;
        sweep_keys = sweeps.iter().map(|s| s.key.clone()).collect();
        for (name, policy) in
            backtest::sweep::policies(&base, &sweeps).map_err(backtest::BacktestError::Sweep)?
        {
            policies.push(NamedPolicy { name, policy });
        }
    } else if policies.is_empty() {
        policies.push(NamedPolicy {
            name: "default".into(),
            policy: load_policy_and_model(None, a.model.as_deref())?,
        });
    }
    let mut opts = BacktestOptions::new(a.inputs, policies);
    opts.from = a
        .from
        .as_deref()
        .map(|s| parse_instant(s, "--from"))
        .transpose()?;
    opts.to =
        a.to.as_deref()
            .map(|s| parse_instant(s, "--to"))
            .transpose()?;
    opts.as_of = a
        .as_of
        .as_deref()
        .map(|s| parse_instant(s, "--as-of"))
        .transpose()?;
    opts.ground_truth = a.ground_truth;
    opts.sweep_keys = sweep_keys;
    let started = std::time::Instant::now();
    let mut bar = Progress::new("backtest", 1);
    let bt = backtest::run(&opts, &mut |p: BacktestProgress| {
        bar.set(
            p.bytes_done,
            p.bytes_total,
            &format!("{} records", p.records),
        );
    });
    bar.finish();
    let bt = bt?;
    report::write(&bt, &a.report)
        .with_context(|| format!("cannot write the report to {}", a.report.display()))?;
    if bt.totals.implausible > 0 {
        eprintln!(
            "note: {} records were rejected as implausible_time (before stream.earliest_event_date, more than stream.max_event_jump_days after the newest record, or more than a day after --as-of); the history goes without them",
            bt.totals.implausible
        );
    }
    for p in bt.policies.iter().filter(|p| p.rejected > 0) {
        eprintln!(
            "note: the engine of policy {} rejected {} records the first policy's [stream] bounds let through (its own bounds are stricter); its numbers go without them",
            p.name, p.rejected
        );
    }
    print!("{}", report::comparison_table(&bt));
    println!(
        "{} policies over {} records in {:.1} s; report: {}",
        bt.policies.len(),
        bt.totals.records,
        started.elapsed().as_secs_f64(),
        a.report.join("report.html").display()
    );
    Ok(())
}
