//! `churnwatch fit`: estimates the visit model (BG/NBD, MBG/NBD or MBG/CNBD-k, the last
//! with its Erlang order `k` chosen by the likelihood) and the spend model
//! (Gamma-Gamma) from recorded history, checks them on a holdout period and writes the
//! parameter file that `replay` (and later `run`) load.
//!
//! Reading is the expensive part on millions of customers: records are parsed into a
//! borrowed, minimal shape (only type, time, customer, event id and amounts), the file
//! is split at line boundaries and read on every core, and identical (x, t_x, T)
//! patterns are collapsed with weights before the likelihood is maximised.
//!
//! **Windows (the literature's day-granular convention, as Fader, Hardie & Lee 2005
//! and `lifetimes`' `calibration_and_holdout_data`).** Time is counted in whole UTC
//! days: a visit or repair order counts on its UTC calendar date, and several on one
//! date are one transaction (their repair-order amounts summed). With calibration end
//! `C` and holdout end `H` (dates, both included):
//! - calibration: the dates up to and including `C`; a customer's `x` is the number of
//!   distinct dates after the first, `t_x` = last − first, `T` = `C` − first, in days
//!   divided by the time unit (a customer whose first visit is on `C` has `T = 0`);
//! - MBG/CNBD-k's `litt`: the sum of `ln` of the gaps between consecutive calibration
//!   dates, in model units (gaps are whole days, so never zero);
//! - holdout: the dates `C + 1 ..= H`; the prediction is for `H − C` days after `T`,
//!   and "actual" counts the distinct dates in that window;
//! - spend (Gamma-Gamma): the repair-order totals of the repeat transactions (dates
//!   after the first, up to `C`), averaged per customer over the repeat dates that
//!   have repair orders; the first transaction is not used.
//!
//! Records after the last window day are not read; the holdout never changes the
//! calibration data.
//!
//! The one module of the model layer that reads input files: JSON lines in the format
//! of the event contract, parsed here into that minimal shape. It may use the event
//! contract (`crate::core::event`) and instants (`crate::core::time`), and the model
//! modules; never `core::state`, `core::policy` or the engine, which depend on the
//! model layer. The parameter file is written by [`ModelParams::save`].

use crate::core::time::{Ts, DAY_MS};
use crate::model::bgnbd_fit::{collapse, fit_visit_model};
use crate::model::cnbd::{fit_best_k, KTrial};
use crate::model::gamma_gamma::fit_gamma_gamma;
use crate::model::hash::fnv1a;
use crate::model::optimise::{Fit, OptimiseError};
use crate::model::params::{BgParams, GgParams, ModelParams, Rfm, VisitModel};
use crate::model::visit::VisitScorer;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Why `churnwatch fit` could not produce parameters: bad options, an unreadable
/// input, calibration data that cannot be used, or an estimation that failed.
#[derive(Debug, Error)]
pub enum FitError {
    /// No input file was given.
    #[error(
        "no input files given; pass --input FILE (JSON lines of visit and repair_order records)"
    )]
    NoInputs,
    /// The time unit is not a positive number of days.
    #[error("the time unit must be a positive number of days (1 for days, 7 for weeks), not {0}")]
    TimeUnit(f64),
    /// A window end is not a date (midnight UTC).
    #[error(
        "{option} {value} has a time of day, but the fit's windows are whole UTC days; pass \
         the last day of the window as a date (YYYY-MM-DD): the window includes all of it"
    )]
    NotADate {
        /// The option (`--calibration-end` or `--holdout-end`).
        option: &'static str,
        /// The value given.
        value: String,
    },
    /// The holdout period does not end after the calibration period.
    #[error(
        "--holdout-end {holdout} must be after --calibration-end {calibration}; pick a later \
         holdout end, or leave --holdout-end out"
    )]
    HoldoutNotAfterCalibration {
        /// The holdout end (date).
        holdout: String,
        /// The calibration end (date).
        calibration: String,
    },
    /// An input file could not be read.
    #[error(
        "cannot read input {path}: {source}; check the --input path and that the file is readable"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No customer visited on or before the calibration-end date.
    #[error(
        "no visit on or before --calibration-end {calibration} in the input; pick a later \
         calibration end"
    )]
    NoCalibrationVisits {
        /// The calibration end (date).
        calibration: String,
    },
    /// One customer's calibration data cannot be used by a model.
    #[error(
        "cannot fit the {what}: for customer {customer}, {reason}; correct that customer's \
         records in the input (repair-order amounts for the spend model), or remove them"
    )]
    InvalidCustomer {
        /// Which model.
        what: &'static str,
        /// The customer id.
        customer: String,
        /// What is wrong with the customer's data.
        reason: &'static str,
    },
    /// The estimation failed.
    #[error(
        "fitting the {what} on the visits up to --calibration-end {calibration} failed: {source}"
    )]
    Estimate {
        /// Which model.
        what: &'static str,
        /// The calibration end (date).
        calibration: String,
        /// The cause.
        source: OptimiseError,
    },
}

/// One customer's visit days and repair-order values, as read for a fit.
#[derive(Debug, Default, Clone)]
struct History {
    /// Distinct UTC dates (days since 1970-01-01) with a visit or repair order, sorted.
    days: Vec<i32>,
    /// (date, amount) of every repair order, in reading order.
    values: Vec<(i32, f64)>,
    /// Hashes of the event ids seen, sorted (duplicates are ignored).
    ids: Vec<u64>,
}

#[derive(Deserialize)]
struct Lite<'a> {
    #[serde(rename = "type", borrow)]
    ty: Cow<'a, str>,
    #[serde(borrow)]
    event_time: Cow<'a, str>,
    #[serde(borrow, default)]
    customer_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(default)]
    total_amount: Option<f64>,
    #[serde(default)]
    labor_amount: Option<f64>,
    #[serde(default)]
    parts_amount: Option<f64>,
}

/// Counts from reading the input.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ReadStats {
    /// Lines read.
    pub lines: u64,
    /// Visit and repair-order records used.
    pub visits: u64,
    /// Records skipped as unreadable or invalid.
    pub skipped: u64,
    /// Duplicate records (same event id) ignored.
    pub duplicates: u64,
    /// The latest UTC date (days since the epoch) of a visit or repair order in the
    /// input, also past the windows: a calibration end after it means the model sees
    /// every customer silent for longer than the data shows.
    pub last_day: Option<i32>,
}

type Histories = HashMap<String, History>;

/// Reads the lines that start in `[start, end)` of a file, keeping records dated up to
/// and including the UTC date `last_day`.
fn read_range(
    path: &Path,
    start: u64,
    end: u64,
    last_day: i32,
) -> std::io::Result<(Histories, ReadStats)> {
    let mut f = std::fs::File::open(path)?;
    let from = start.saturating_sub(1);
    f.seek(SeekFrom::Start(from))?;
    let mut r = std::io::BufReader::with_capacity(1 << 20, f);
    let mut pos = from;
    let mut line = Vec::with_capacity(1024);
    if start > 0 {
        // Lines are read by the range they start in: skip the rest of the line in
        // progress at `start - 1` (just its newline when `start` begins a line).
        pos += r.read_until(b'\n', &mut line)? as u64;
    }
    let mut map: Histories = HashMap::new();
    let mut stats = ReadStats::default();
    while pos < end {
        line.clear();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        read_line(&line, last_day, &mut map, &mut stats);
    }
    Ok((map, stats))
}

fn read_line(line: &[u8], last_day: i32, map: &mut Histories, stats: &mut ReadStats) {
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    stats.lines += 1;
    let Ok(r) = serde_json::from_slice::<Lite<'_>>(line) else {
        stats.skipped += 1;
        return;
    };
    let is_ro = r.ty == "repair_order";
    if !(is_ro || r.ty == "visit") {
        return;
    }
    let (Some(customer), Ok(t)) = (r.customer_id, Ts::parse_rfc3339(&r.event_time)) else {
        stats.skipped += 1;
        return;
    };
    let day = t.epoch_day();
    stats.last_day = stats.last_day.max(Some(day));
    if day > last_day {
        return;
    }
    let value = if is_ro {
        match r
            .total_amount
            .or_else(|| Some(r.labor_amount? + r.parts_amount?))
        {
            Some(v) if v >= 0.0 && v.is_finite() => Some(v),
            _ => {
                stats.skipped += 1;
                return;
            }
        }
    } else {
        None
    };
    let h = match map.get_mut(customer.as_ref()) {
        Some(h) => h,
        None => map.entry(customer.into_owned()).or_default(),
    };
    if let Some(id) = r.event_id {
        let hash = fnv1a(&id);
        match h.ids.binary_search(&hash) {
            Ok(_) => {
                stats.duplicates += 1;
                return;
            }
            Err(i) => h.ids.insert(i, hash),
        }
    }
    stats.visits += 1;
    if let Err(i) = h.days.binary_search(&day) {
        h.days.insert(i, day);
    }
    if let Some(v) = value {
        h.values.push((day, v));
    }
}

fn merge(into: &mut Histories, from: Histories) {
    for (k, v) in from {
        match into.get_mut(&k) {
            None => {
                into.insert(k, v);
            }
            Some(h) => {
                for id in v.ids {
                    if let Err(i) = h.ids.binary_search(&id) {
                        h.ids.insert(i, id);
                    }
                }
                for d in v.days {
                    if let Err(i) = h.days.binary_search(&d) {
                        h.days.insert(i, d);
                    }
                }
                h.values.extend(v.values);
            }
        }
    }
}

/// Reads visit histories dated up to and including the UTC date `last_day` from
/// JSON-lines files, on every core.
fn read_histories(inputs: &[PathBuf], last_day: i32) -> Result<(Histories, ReadStats), FitError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let mut all: Histories = HashMap::new();
    let mut stats = ReadStats::default();
    for path in inputs {
        let io = |source| FitError::Read {
            path: path.clone(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        let parts: Vec<std::io::Result<(Histories, ReadStats)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|k| {
                    let (start, end) = (len * k / threads as u64, len * (k + 1) / threads as u64);
                    s.spawn(move || read_range(path, start, end, last_day))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("reader thread"))
                .collect()
        });
        let parts = parts
            .into_iter()
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(io)?;
        for (m, st) in parts {
            stats.lines += st.lines;
            stats.visits += st.visits;
            stats.skipped += st.skipped;
            stats.duplicates += st.duplicates;
            stats.last_day = stats.last_day.max(st.last_day);
            if all.is_empty() {
                all = m;
            } else {
                merge(&mut all, m);
            }
        }
    }
    Ok((all, stats))
}

/// What to fit.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// JSON-lines input files.
    pub inputs: Vec<PathBuf>,
    /// The last day of the calibration period, as midnight UTC of that date
    /// ([`Ts::parse_date`]): visits dated up to and including it fit the models, and
    /// `T` runs from a customer's first visit date to it (see the module docs).
    pub calibration_end: Ts,
    /// The last day of an optional holdout period, as midnight UTC of that date: visits
    /// dated after the calibration end up to and including it are compared with the
    /// model's predictions for those days.
    pub holdout_end: Option<Ts>,
    /// Visit model.
    pub model: VisitModel,
    /// Time unit in days (1 or 7).
    pub time_unit_days: f64,
}

/// One row of the calibration/holdout check.
#[derive(Debug, Clone, Serialize)]
pub struct HoldoutRow {
    /// Repeat visits in the calibration period (the last row collects this many and more).
    pub calibration_repeat_visits: String,
    /// Customers in the group.
    pub customers: u64,
    /// Mean predicted visit days in the holdout.
    pub predicted: f64,
    /// Mean actual visit days in the holdout (distinct dates with a visit or repair
    /// order, the holdout-end date included).
    pub actual: f64,
}

/// The result of a fit.
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    /// Input counts.
    pub read: ReadStats,
    /// Customers with at least one visit in the calibration period.
    pub customers: u64,
    /// Distinct (x, t_x, T) patterns.
    pub patterns: u64,
    /// The visit model fit.
    pub visit: Fit<BgParams>,
    /// MBG/CNBD-k only: the log-likelihood reached for each Erlang order `k` tried (the
    /// one with the highest is kept); empty for the other models.
    pub erlang_k_trials: Vec<KTrial>,
    /// The spend model fit, when there were repeat customers with values.
    pub spend: Option<Fit<GgParams>>,
    /// Calibration/holdout comparison.
    pub holdout: Vec<HoldoutRow>,
    /// What the user should know about the inputs or the windows (e.g. a calibration
    /// end after the data), one sentence each; the fit is made anyway.
    pub notes: Vec<String>,
    /// Seconds spent reading.
    pub read_secs: f64,
    /// Seconds spent fitting.
    pub fit_secs: f64,
    /// The parameters to save.
    pub params: ModelParams,
}

/// What one customer contributes to a fit (the windows of the module docs).
#[derive(Debug, Clone, PartialEq)]
struct Summary {
    /// Calibration statistics in model units.
    rfm: Rfm,
    /// Sum of the logarithms of the gaps between consecutive calibration visit dates,
    /// in model units (MBG/CNBD-k's `litt`; 0 without repeat visits).
    litt: f64,
    /// Distinct dates after the calibration end that were read (the holdout window).
    holdout_days: usize,
    /// Repeat-purchase spend for the Gamma-Gamma model: (number of repeat dates with
    /// repair orders, mean of their per-date totals), when there is any.
    spend: Option<(f64, f64)>,
}

/// Summarises a history read up to the holdout end (or the calibration end), or None
/// when the customer has no visit on or before the calibration-end date `cal_day`.
fn summarise(h: &History, cal_day: i32, unit: f64) -> Option<Summary> {
    let n_cal = h.days.partition_point(|d| *d <= cal_day);
    let (&first, &last) = (h.days.first()?, h.days[..n_cal].last()?);
    // The first transaction is not a repeat purchase: its spend is left out, and
    // several repair orders on one date are one transaction.
    let mut per_day: BTreeMap<i32, f64> = BTreeMap::new();
    for &(d, v) in &h.values {
        if d > first && d <= cal_day {
            *per_day.entry(d).or_default() += v;
        }
    }
    let n = per_day.len();
    Some(Summary {
        rfm: Rfm {
            x: (n_cal - 1) as f64,
            t_x: f64::from(last - first) / unit,
            t: f64::from(cal_day - first) / unit,
        },
        litt: h.days[..n_cal]
            .windows(2)
            .map(|w| (f64::from(w[1] - w[0]) / unit).ln())
            .sum(),
        holdout_days: h.days.len() - n_cal,
        spend: (n > 0).then(|| (n as f64, per_day.values().sum::<f64>() / n as f64)),
    })
}

/// Reads the inputs, fits both models and checks them on the holdout.
pub fn fit(opts: &FitOptions) -> Result<FitReport, FitError> {
    if opts.inputs.is_empty() {
        return Err(FitError::NoInputs);
    }
    if opts.time_unit_days.is_nan() || opts.time_unit_days <= 0.0 {
        return Err(FitError::TimeUnit(opts.time_unit_days));
    }
    let date = |option, t: Ts| {
        if t.0.rem_euclid(DAY_MS) == 0 {
            Ok(t.epoch_day())
        } else {
            Err(FitError::NotADate {
                option,
                value: t.to_rfc3339(),
            })
        }
    };
    let cal_day = date("--calibration-end", opts.calibration_end)?;
    let hold_day = opts
        .holdout_end
        .map(|h| date("--holdout-end", h))
        .transpose()?;
    if let Some(h) = opts.holdout_end {
        if h <= opts.calibration_end {
            return Err(FitError::HoldoutNotAfterCalibration {
                holdout: h.to_date_string(),
                calibration: opts.calibration_end.to_date_string(),
            });
        }
    }
    let started = std::time::Instant::now();
    let (hist, read) = read_histories(&opts.inputs, hold_day.unwrap_or(cal_day))?;
    let read_secs = started.elapsed().as_secs_f64();
    let unit = opts.time_unit_days;
    let mut rfms = Vec::with_capacity(hist.len());
    let mut holdout_pairs = Vec::new();
    let mut spend = Vec::new();
    let mut spend_customers = Vec::new();
    let mut litt_total = 0.0;
    let mut ids: Vec<&String> = hist.keys().collect();
    ids.sort_unstable();
    for id in ids {
        let Some(c) = summarise(&hist[id], cal_day, unit) else {
            continue;
        };
        rfms.push(c.rfm);
        litt_total += c.litt;
        holdout_pairs.push((c.rfm, c.holdout_days));
        if let Some((n, mean)) = c.spend {
            spend.push((n, mean, 1.0));
            spend_customers.push(id);
        }
    }
    let calibration = opts.calibration_end.to_date_string();
    if rfms.is_empty() {
        return Err(FitError::NoCalibrationVisits { calibration });
    }
    let customers = rfms.len() as u64;
    let patterns = collapse(rfms);
    let fit_started = std::time::Instant::now();
    let estimate_error = |source| FitError::Estimate {
        what: "visit model",
        calibration: calibration.clone(),
        source,
    };
    let (visit, erlang_k, erlang_k_trials) = match opts.model {
        VisitModel::MbgCnbdK => {
            let (k, f, trials) = fit_best_k(&patterns, litt_total).map_err(estimate_error)?;
            (f, Some(k), trials)
        }
        m => (
            fit_visit_model(m, &patterns).map_err(estimate_error)?,
            None,
            Vec::new(),
        ),
    };
    let scorer = VisitScorer {
        model: opts.model,
        params: visit.params,
        k: erlang_k.unwrap_or(1),
    };
    let spend_fit = if spend.len() >= 10 {
        const WHAT: &str = "spend model (Gamma-Gamma)";
        Some(fit_gamma_gamma(&spend).map_err(|source| match source {
            // Entries are customers: name the one whose data the model cannot use.
            OptimiseError::InvalidInput { index, reason } => FitError::InvalidCustomer {
                what: WHAT,
                customer: spend_customers[index].clone(),
                reason,
            },
            source => FitError::Estimate {
                what: WHAT,
                calibration: calibration.clone(),
                source,
            },
        })?)
    } else {
        None
    };
    let fit_secs = fit_started.elapsed().as_secs_f64();
    let holdout = match hold_day {
        None => Vec::new(),
        Some(h) => {
            let horizon = f64::from(h - cal_day) / unit;
            let mut groups: BTreeMap<usize, (u64, f64, f64)> = BTreeMap::new();
            for (rfm, actual) in &holdout_pairs {
                let g = groups.entry((rfm.x as usize).min(7)).or_default();
                g.0 += 1;
                g.1 += scorer.expected_visits(*rfm, horizon);
                g.2 += *actual as f64;
            }
            groups
                .into_iter()
                .map(|(x, (n, p, a))| HoldoutRow {
                    calibration_repeat_visits: if x == 7 { "7+".into() } else { x.to_string() },
                    customers: n,
                    predicted: p / n as f64,
                    actual: a / n as f64,
                })
                .collect()
        }
    };
    let params = ModelParams {
        model: opts.model,
        time_unit_days: unit,
        visit: visit.params,
        erlang_k,
        spend: spend_fit.as_ref().map(|f| f.params),
        calibration_end: opts.calibration_end.to_date_string(),
        customers,
        log_likelihood: visit.log_likelihood,
    };
    let notes = window_notes(read.last_day, cal_day, hold_day);
    Ok(FitReport {
        read,
        customers,
        patterns: patterns.len() as u64,
        visit,
        erlang_k_trials,
        spend: spend_fit,
        holdout,
        notes,
        read_secs,
        fit_secs,
        params,
    })
}

/// Notes on windows that reach past the data (`last_day`, the newest visit or repair
/// order date): the model then counts every customer silent until the window's end.
fn window_notes(last_day: Option<i32>, cal_day: i32, hold_day: Option<i32>) -> Vec<String> {
    let Some(last) = last_day else {
        return Vec::new();
    };
    let date = |d: i32| Ts(i64::from(d) * 86_400_000).to_date_string();
    let mut notes = Vec::new();
    if cal_day > last {
        notes.push(format!(
            "--calibration-end {} is {} days after the newest visit in the input ({}): the \
             model counts every customer as silent until then, which lowers P(alive); set \
             --calibration-end to the end of the data",
            date(cal_day),
            cal_day - last,
            date(last)
        ));
    }
    if let Some(h) = hold_day.filter(|h| *h > last && cal_day <= last) {
        notes.push(format!(
            "--holdout-end {} is {} days after the newest visit in the input ({}): the \
             holdout's actual visits stop at {} while its predictions run to the end, so \
             the check reads as over-prediction",
            date(h),
            h - last,
            date(last),
            date(last)
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_the_spend_model_cannot_use_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut text = String::new();
        for c in 0..40 {
            for k in 0..(c % 5 + 1) {
                let day = 1 + (k * (7 + c)) % 300;
                let amount = if c == 7 {
                    0.0
                } else {
                    100.0 + f64::from(c * 3 + k)
                };
                let date = Ts::ymd_hms(2023, 1, 1, 10, 0, 0).add_days(f64::from(day));
                text.push_str(&format!(
                    r#"{{"type":"repair_order","event_id":"r{c}-{k}","event_time":"{}","dealer_id":"D","customer_id":"C{c}","total_amount":{amount}}}"#,
                    date.to_rfc3339()
                ));
                text.push('\n');
            }
        }
        std::fs::write(&path, text).unwrap();
        let e = fit(&FitOptions {
            inputs: vec![path],
            calibration_end: Ts::ymd_hms(2024, 1, 1, 0, 0, 0),
            holdout_end: None,
            model: VisitModel::MbgNbd,
            time_unit_days: 7.0,
        })
        .unwrap_err();
        assert!(
            matches!(&e, FitError::InvalidCustomer { customer, .. } if customer == "C7"),
            "{e}"
        );
        assert!(e.to_string().contains("must be positive"), "{e}");
    }

    #[test]
    fn windows_past_the_data_are_noted() {
        let day = |y, m, d| Ts::ymd_hms(y, m, d, 0, 0, 0).epoch_day();
        let last = Some(day(2024, 3, 31));
        assert!(window_notes(last, day(2024, 3, 31), Some(day(2024, 3, 31))).is_empty());
        assert!(window_notes(None, day(2030, 1, 1), None).is_empty());
        let n = window_notes(last, day(2024, 4, 30), None);
        assert_eq!(n.len(), 1);
        assert!(
            n[0].starts_with("--calibration-end 2024-04-30 is 30 days after the newest visit in the input (2024-03-31)"),
            "{}",
            n[0]
        );
        let n = window_notes(last, day(2024, 1, 31), Some(day(2024, 6, 30)));
        assert_eq!(n.len(), 1);
        assert!(
            n[0].starts_with("--holdout-end 2024-06-30 is 91 days after"),
            "{}",
            n[0]
        );
    }

    fn ro(id: &str, customer: &str, time: &str, amount: f64) -> String {
        format!(
            r#"{{"type":"repair_order","event_id":"{id}","event_time":"{time}","dealer_id":"D","customer_id":"{customer}","ro_number":"{id}","ro_type":"maintenance","total_amount":{amount}}}"#
        )
    }

    fn visit(id: &str, customer: &str, time: &str) -> String {
        format!(
            r#"{{"type":"visit","event_id":"{id}","event_time":"{time}","dealer_id":"D","customer_id":"{customer}","visit_type":"service"}}"#
        )
    }

    fn read(lines: &[String], last: &str) -> Histories {
        let last_day = Ts::parse_date(last).unwrap().epoch_day();
        let (mut map, mut stats) = (Histories::new(), ReadStats::default());
        for l in lines {
            read_line(l.as_bytes(), last_day, &mut map, &mut stats);
        }
        map
    }

    #[test]
    fn windows_are_whole_utc_days_for_counts_t_and_the_holdout() {
        let lines = [
            ro("1", "C", "2024-01-10T08:00:00Z", 50.0),
            visit("2", "C", "2024-01-20T09:00:00Z"),
            ro("3", "C", "2024-01-20T15:00:00Z", 30.0),
            ro("4", "C", "2024-01-20T16:00:00+01:00", 20.0),
            // Late on the calibration-end date: a calibration transaction.
            ro("5", "C", "2024-03-31T23:30:00Z", 70.0),
            visit("6", "C", "2024-04-01T00:00:00Z"),
            visit("7", "C", "2024-04-01T12:00:00Z"),
            // Late on the holdout-end date: in the holdout; the next day is not.
            ro("8", "C", "2024-06-30T23:59:59Z", 10.0),
            ro("9", "C", "2024-07-01T00:00:00Z", 10.0),
            // A customer whose first visit is on the calibration-end date.
            visit("1", "D", "2024-03-31T22:00:00Z"),
            // One who comes first in the holdout: not in the calibration data.
            visit("1", "E", "2024-04-02T10:00:00Z"),
        ];
        let cal_day = Ts::parse_date("2024-03-31").unwrap().epoch_day();
        let with_holdout = read(&lines, "2024-06-30");
        let c = summarise(&with_holdout["C"], cal_day, 1.0).unwrap();
        // 2024-01-10, 01-20 and 03-31: two repeat dates, the last 81 days after the
        // first, and T to the calibration-end date (not to the end of that day).
        assert_eq!(
            c,
            Summary {
                rfm: Rfm {
                    x: 2.0,
                    t_x: 81.0,
                    t: 81.0
                },
                // Gaps of 10 and 71 days.
                litt: 10f64.ln() + 71f64.ln(),
                // 04-01 (twice) and 06-30.
                holdout_days: 2,
                // Repeat dates only, one transaction a day: (30 + 20 + 70) / 2.
                spend: Some((2.0, 60.0)),
            }
        );
        let d = summarise(&with_holdout["D"], cal_day, 7.0).unwrap();
        assert_eq!(
            (d.rfm, d.holdout_days, d.spend),
            (
                Rfm {
                    x: 0.0,
                    t_x: 0.0,
                    t: 0.0
                },
                0,
                None
            )
        );
        assert_eq!(summarise(&with_holdout["E"], cal_day, 7.0), None);

        // Without a holdout the calibration data are the same.
        let alone = read(&lines, "2024-03-31");
        let c2 = summarise(&alone["C"], cal_day, 1.0).unwrap();
        assert_eq!((c2.rfm, c2.spend, c2.holdout_days), (c.rfm, c.spend, 0));
        assert!(!alone.contains_key("E"));
    }

    #[test]
    fn window_ends_with_a_time_of_day_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        std::fs::write(&path, visit("1", "C", "2024-01-02T10:00:00Z")).unwrap();
        let opts = |cal: Ts, hold: Option<Ts>| FitOptions {
            inputs: vec![path.clone()],
            calibration_end: cal,
            holdout_end: hold,
            model: VisitModel::BgNbd,
            time_unit_days: 7.0,
        };
        let noon = Ts::ymd_hms(2024, 6, 30, 12, 0, 0);
        let midnight = Ts::ymd_hms(2024, 6, 30, 0, 0, 0);
        for (o, option) in [
            (opts(noon, None), "--calibration-end"),
            (opts(midnight, Some(noon.add_days(30.0))), "--holdout-end"),
        ] {
            let e = fit(&o).unwrap_err();
            assert!(
                matches!(&e, FitError::NotADate { option: got, .. } if *got == option),
                "{e}"
            );
            assert!(e.to_string().contains("as a date (YYYY-MM-DD)"), "{e}");
        }
    }

    #[test]
    fn ranges_split_lines_exactly_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.jsonl");
        let mut text = String::new();
        for i in 0..200 {
            text.push_str(&format!(
                r#"{{"type":"visit","event_id":"v{i}","event_time":"2024-01-{:02}T10:00:00Z","dealer_id":"D","customer_id":"C{}","visit_type":"service"}}"#,
                1 + i % 28,
                i % 7
            ));
            text.push('\n');
        }
        std::fs::write(&path, &text).unwrap();
        let len = text.len() as u64;
        let until = Ts::ymd_hms(2030, 1, 1, 0, 0, 0).epoch_day();
        for parts in [1u64, 2, 3, 7, 13] {
            let mut lines = 0;
            let mut visits = 0;
            for k in 0..parts {
                let (_, st) =
                    read_range(&path, len * k / parts, len * (k + 1) / parts, until).unwrap();
                lines += st.lines;
                visits += st.visits;
            }
            assert_eq!((lines, visits), (200, 200), "{parts} parts");
        }
        // Cuts just before, at and just after every line start.
        let starts = text.match_indices('\n').map(|(i, _)| i as u64 + 1);
        for cut in starts
            .flat_map(|s| [s - 1, s, s + 1])
            .filter(|c| *c > 0 && *c < len)
        {
            let (_, a) = read_range(&path, 0, cut, until).unwrap();
            let (_, b) = read_range(&path, cut, len, until).unwrap();
            assert_eq!(a.lines + b.lines, 200, "cut at {cut}");
        }
    }
}
