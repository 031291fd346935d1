//! Judging warnings against the generator's ground truth (`ground_truth.csv` of
//! `churnwatch generate`: each customer's latent drop-out date, if any).
//!
//! - **Detection delay** at a level: for each customer who dropped out inside the
//!   window, the first instant at or after the drop-out at which they were at that
//!   level (0 when they already were), minus the drop-out; customers never at that
//!   level before the end of the history are *undetected*.
//! - **False alarms**: warnings (as in [`super::eval::warnings`]) inside the window
//!   while the customer was still active (before their drop-out, or never dropping
//!   out), per 1,000 active customer-years (from the customer's first event, or the
//!   window start, to the drop-out or the end of the history).
//!
//! Parsing is the only I/O-shaped part and takes the text; the file is read by the
//! caller.

use super::eval::{levels_held, quantile, warnings, Change, WarnLevel, Window};
use super::history::History;
use crate::core::time::Ts;
use serde::Serialize;
use std::collections::HashMap;

/// Each customer's latent drop-out instant (midnight UTC of the date), if any.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    dropouts: HashMap<String, Option<Ts>>,
}

impl Truth {
    /// Parses the CSV text (a header naming `customer_id` and `dropout_date`; other
    /// columns are ignored). The error is the 1-based line and what is wrong.
    pub fn parse(text: &str) -> Result<Truth, (usize, String)> {
        let mut lines = text.lines().enumerate();
        let header = lines.next().ok_or((1, "the file is empty".to_string()))?.1;
        let cols: Vec<&str> = header.split(',').map(str::trim).collect();
        let col = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .ok_or((1, format!("the header has no `{name}` column")))
        };
        let (id, date) = (col("customer_id")?, col("dropout_date")?);
        let mut dropouts = HashMap::new();
        for (i, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let (Some(c), Some(d)) = (f.get(id), f.get(date)) else {
                return Err((i + 1, format!("expected {} columns", cols.len())));
            };
            let t = if d.is_empty() {
                None
            } else {
                Some(Ts::parse_date(d).map_err(|e| (i + 1, format!("dropout_date: {e}")))?)
            };
            dropouts.insert(c.to_string(), t);
        }
        Ok(Truth { dropouts })
    }

    /// Customers in the file.
    pub fn len(&self) -> usize {
        self.dropouts.len()
    }

    /// Whether the file named no customer.
    pub fn is_empty(&self) -> bool {
        self.dropouts.is_empty()
    }

    /// A customer's drop-out, if they have one.
    pub fn dropout(&self, customer_id: &str) -> Option<Ts> {
        self.dropouts.get(customer_id).copied().flatten()
    }
}

/// One level's numbers against the ground truth.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TruthStats {
    /// The level.
    pub level: WarnLevel,
    /// Customers who dropped out inside the window.
    pub dropouts: u64,
    /// Of those, at this level at some instant after the drop-out.
    pub detected: u64,
    /// detected / dropouts.
    pub detected_share: Option<f64>,
    /// Detection delay in days: 10th percentile.
    pub delay_days_p10: Option<f64>,
    /// Median detection delay in days.
    pub delay_days_median: Option<f64>,
    /// 90th percentile of the detection delay in days.
    pub delay_days_p90: Option<f64>,
    /// Warnings while the customer was still active.
    pub false_alarms: u64,
    /// Customer-years of activity inside the window.
    pub active_customer_years: f64,
    /// False alarms per 1,000 active customer-years.
    pub false_alarms_per_1000_customer_years: Option<f64>,
}

/// Judges one policy's changes (`changes[i]` of `history.customers[i]`).
pub fn judge(
    truth: &Truth,
    history: &History,
    changes: &[Vec<Change>],
    window: Window,
) -> Vec<TruthStats> {
    let mut delays: Vec<Vec<f64>> = vec![Vec::new(); 4];
    let mut dropouts = 0u64;
    let mut false_alarms = [0u64; 4];
    let mut active_days = 0.0;
    let none = Vec::new();
    for (i, c) in history.customers.iter().enumerate() {
        let ch = changes.get(i).unwrap_or(&none);
        let dropout = truth.dropout(&c.id);
        let active_from = window.from.map_or(c.first_seen, |f| f.max(c.first_seen));
        let active_to = dropout.map_or(window.end, |d| d.min(window.end));
        if active_to > active_from {
            active_days += active_to.days_since(active_from);
        }
        for (level, at) in warnings(ch) {
            if window.contains(at) && dropout.is_none_or(|d| at < d) {
                false_alarms[level.index()] += 1;
            }
        }
        let Some(d) = dropout.filter(|d| window.contains(*d)) else {
            continue;
        };
        dropouts += 1;
        let held_at = levels_held(ch, d, d);
        for level in WarnLevel::ALL {
            let k = level.index();
            if held_at[k] {
                delays[k].push(0.0);
                continue;
            }
            let first = ch.iter().find(|x| {
                x.at > d
                    && x.at <= window.end
                    && match level {
                        WarnLevel::Any => x.to != crate::core::status::Level::Normal,
                        l => WarnLevel::of(x.to) == Some(l),
                    }
            });
            if let Some(x) = first {
                delays[k].push(x.at.days_since(d));
            }
        }
    }
    let years = active_days / 365.25;
    WarnLevel::ALL
        .iter()
        .map(|&level| {
            let k = level.index();
            let dl = &mut delays[k];
            dl.sort_by(f64::total_cmp);
            TruthStats {
                level,
                dropouts,
                detected: dl.len() as u64,
                detected_share: (dropouts > 0).then(|| dl.len() as f64 / dropouts as f64),
                delay_days_p10: quantile(dl, 0.1),
                delay_days_median: quantile(dl, 0.5),
                delay_days_p90: quantile(dl, 0.9),
                false_alarms: false_alarms[k],
                active_customer_years: years,
                false_alarms_per_1000_customer_years: (years > 0.0)
                    .then(|| false_alarms[k] as f64 * 1000.0 / years),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{decode_json_line, Input};
    use crate::core::status::{Level, Lifecycle};

    #[test]
    fn parse_and_judge_by_hand() {
        let t = Truth::parse(
            "customer_id,dealer_id,segment,cadence_days,dropout_date\nC0,D,p,90,2024-03-01\nC1,D,p,90,\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        // The generator's header with the cause column: extra columns are ignored.
        let with_cause = Truth::parse(
            "customer_id,dealer_id,segment,cadence_days,dropout_date,cause\n\
             C0,D,p,90,2024-03-01,warranty_end\nC1,D,p,90,,\n",
        )
        .unwrap();
        assert_eq!(with_cause.dropout("C0"), t.dropout("C0"));
        assert_eq!(with_cause.dropout("C1"), None);
        assert!(Truth::parse("a,b\n").is_err());
        assert_eq!(
            Truth::parse("customer_id,dropout_date\nC0,2024-13-01\n")
                .unwrap_err()
                .0,
            2
        );
        let mut h = History::new();
        for (c, v) in [
            ("C0", "2024-01-01T00:00:00Z"),
            ("C1", "2024-01-01T00:00:00Z"),
        ] {
            let line = format!(
                r#"{{"type":"visit","event_id":"v","event_time":"{v}","dealer_id":"D","customer_id":"{c}","visit_type":"service"}}"#
            );
            if let Input::Event(e) = decode_json_line(&line).unwrap().input {
                h.add(&e);
            }
        }
        h.finish();
        let ch = |at: Ts, to| Change {
            at,
            from: Level::Normal,
            to,
            from_lifecycle: Lifecycle::Active,
            to_lifecycle: Lifecycle::Active,
        };
        let changes = vec![
            // Dropped out 2024-03-01, warned 30 days later.
            vec![ch(Ts::ymd_hms(2024, 3, 31, 0, 0, 0), Level::Prevent)],
            // Never drops out: a false alarm.
            vec![ch(Ts::ymd_hms(2024, 6, 1, 0, 0, 0), Level::Prevent)],
        ];
        let w = Window {
            from: None,
            end: Ts::ymd_hms(2025, 1, 1, 0, 0, 0),
        };
        let s = judge(&t, &h, &changes, w);
        let p = &s[WarnLevel::Prevent.index()];
        assert_eq!((p.dropouts, p.detected), (1, 1));
        assert_eq!(p.delay_days_median, Some(30.0));
        assert_eq!(p.false_alarms, 1);
        // Active: C0 2024-01-01..2024-03-01 (60 days), C1 2024-01-01..2025-01-01 (366).
        let years = (60.0 + 366.0) / 365.25;
        assert!((p.active_customer_years - years).abs() < 1e-9);
        assert_eq!(s[WarnLevel::Retain.index()].detected, 0);
    }
}
