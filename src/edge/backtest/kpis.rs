//! The seeds' KPIs over a history, month by month, per dealer and overall: effective
//! customers, the monthly and annual effective-customer churn rates, and churn by
//! dealer, vehicle model and vehicle-age band. None of these depend on the policy
//! (they are defined on visits alone); the policy-dependent ones (segment matrix,
//! lifecycle flows) are in [`super::segments`].
//!
//! The monthly rate reuses [`KpiAccumulator`] (the same code as the service's
//! `churnwatch_effective_churn_rate` gauge): for each complete month N it is fed every
//! customer's state as of the first instant of month N+1, rebuilt from the visits
//! before that instant (the region flag is the latest known, as in `core::kpi`).
//!
//! The annual rate for year Y: `1 − (effective customers at the end of Y−1 who visited
//! during Y) / (effective customers at the end of Y−1)`, for every complete year whose
//! previous year lies in the history. Churn by group pools those yearly bases: a
//! customer effective at the end of Y−1 churned in Y when no visit came in Y; the
//! vehicle (model, age at the end of Y−1) is the latest one the history names.
//! Pure: no I/O.

use super::history::History;
use crate::core::kpi::{month_of, KpiAccumulator, Month};
use crate::core::state::CustomerState;
use crate::core::time::Ts;
use serde::Serialize;
use std::collections::BTreeMap;

/// The name of the all-dealers row.
pub const ALL_DEALERS: &str = "all";

/// One month's KPIs of one dealer (or of all).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthKpi {
    /// The month N (`YYYY-MM`).
    pub month: String,
    /// Dealer id, or [`ALL_DEALERS`].
    pub dealer: String,
    /// Effective customers at the end of the month.
    pub effective_customers: u64,
    /// Effective customers who visited in month N−12.
    pub cohort: u64,
    /// Of those, who visited again in months N−11..N.
    pub retained: u64,
    /// `1 − retained / cohort`.
    pub churn_rate: Option<f64>,
}

/// One year's annual effective-customer churn rate of one dealer (or of all).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct YearKpi {
    /// The year Y.
    pub year: i32,
    /// Dealer id, or [`ALL_DEALERS`].
    pub dealer: String,
    /// Effective customers at the end of Y−1.
    pub base: u64,
    /// Of those, who visited during Y.
    pub visited: u64,
    /// `1 − visited / base`.
    pub churn_rate: Option<f64>,
}

/// Churn of a group of customers, pooled over the complete years.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupChurn {
    /// `dealer`, `vehicle_model` or `vehicle_age`.
    pub dimension: String,
    /// The group (a dealer id, a model, an age band such as `3-4y`).
    pub group: String,
    /// Customer-years in the base (effective at the end of the year before).
    pub base: u64,
    /// Of those, without a visit in the year.
    pub churned: u64,
    /// churned / base.
    pub churn_rate: Option<f64>,
}

/// All KPIs of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Kpis {
    /// Month by month, every dealer and [`ALL_DEALERS`].
    pub monthly: Vec<MonthKpi>,
    /// Year by year, every dealer and [`ALL_DEALERS`].
    pub annual: Vec<YearKpi>,
    /// Churn by dealer, vehicle model and vehicle-age band.
    pub churn_by: Vec<GroupChurn>,
}

/// The vehicle-age bands (upper bounds in years; the last is open).
pub const AGE_BANDS: [(f64, &str); 8] = [
    (1.0, "0-1y"),
    (2.0, "1-2y"),
    (3.0, "2-3y"),
    (4.0, "3-4y"),
    (5.0, "4-5y"),
    (7.0, "5-7y"),
    (10.0, "7-10y"),
    (f64::INFINITY, "10y+"),
];

/// The band of a vehicle `years` old.
pub fn age_band(years: f64) -> &'static str {
    AGE_BANDS
        .iter()
        .find(|(upper, _)| years < *upper)
        .map_or("10y+", |b| b.1)
}

fn rate(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Computes the KPIs for the complete months from the one holding `from` (the start of
/// the history when none) up to `end`.
pub fn compute(history: &History, from: Option<Ts>, end: Ts) -> Kpis {
    let Some(first) = history.first else {
        return Kpis::default();
    };
    let first_month = month_of(first);
    let report_from = month_of(from.unwrap_or(first)).max(first_month);
    // States rebuilt incrementally: visits before the instant are taken in.
    let mut states: Vec<CustomerState> = history
        .customers
        .iter()
        .map(|c| {
            let mut s = CustomerState::new(&c.id, &c.dealer_id);
            s.in_service_region = c.in_service_region;
            s
        })
        .collect();
    let mut taken = vec![0usize; states.len()];
    let mut out = Kpis::default();
    let mut groups: BTreeMap<(&'static str, String), (u64, u64)> = BTreeMap::new();
    let mut m = first_month;
    loop {
        let at = m.offset(1).start();
        if at > end {
            break;
        }
        for ((s, c), k) in states.iter_mut().zip(&history.customers).zip(&mut taken) {
            while let Some(v) = c.visits.get(*k).filter(|v| **v < at) {
                let day = v.epoch_day();
                if s.visit_days.last() != Some(&day) {
                    s.visit_days.push(day);
                }
                s.last_visit = Some(*v);
                s.first_visit.get_or_insert(*v);
                *k += 1;
            }
        }
        if m >= report_from {
            let mut acc = KpiAccumulator::new(at);
            for s in &states {
                acc.add(s);
            }
            let month = acc.month();
            debug_assert_eq!(month, m);
            let by_dealer = acc.finish();
            let mut all = crate::core::kpi::DealerKpi::default();
            for (dealer, k) in &by_dealer {
                all.absorb(k);
                out.monthly.push(MonthKpi {
                    month: m.to_string(),
                    dealer: dealer.clone(),
                    effective_customers: k.effective_customers,
                    cohort: k.cohort,
                    retained: k.retained,
                    churn_rate: k.churn_rate(),
                });
            }
            out.monthly.push(MonthKpi {
                month: m.to_string(),
                dealer: ALL_DEALERS.into(),
                effective_customers: all.effective_customers,
                cohort: all.cohort,
                retained: all.retained,
                churn_rate: all.churn_rate(),
            });
        }
        // The end of December: the base of next year's annual rate, when next year is
        // complete and this one lies wholly in the history.
        let next_year_end = m.offset(13).start();
        if m.month() == 12 && next_year_end <= end && m.offset(-11) >= first_month {
            let y = m.year() + 1;
            if Month::new(y, 1).is_some_and(|jan| jan >= report_from) {
                annual(
                    history,
                    &states,
                    at,
                    next_year_end,
                    y,
                    &mut out,
                    &mut groups,
                );
            }
        }
        m = m.offset(1);
    }
    for ((dim, group), (base, churned)) in groups {
        out.churn_by.push(GroupChurn {
            dimension: dim.into(),
            group,
            base,
            churned,
            churn_rate: rate(churned, base),
        });
    }
    out
}

/// The annual rate of year `y` (from `start`, the first instant of Y, to `end`, the
/// first instant of Y+1), given every customer's state before `start`.
fn annual(
    history: &History,
    states: &[CustomerState],
    start: Ts,
    end: Ts,
    y: i32,
    out: &mut Kpis,
    groups: &mut BTreeMap<(&'static str, String), (u64, u64)>,
) {
    let end_of_last_year = Ts(start.0 - 1);
    let mut per_dealer: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (s, c) in states.iter().zip(&history.customers) {
        if !s.is_effective(end_of_last_year) {
            continue;
        }
        let i = c.visits.partition_point(|v| *v < start);
        let visited = c.visits.get(i).is_some_and(|v| *v < end);
        let e = per_dealer.entry(c.dealer_id.as_str()).or_default();
        e.0 += 1;
        e.1 += u64::from(visited);
        let churned = u64::from(!visited);
        let mut add = |dim: &'static str, group: String| {
            let g = groups.entry((dim, group)).or_default();
            g.0 += 1;
            g.1 += churned;
        };
        add("dealer", c.dealer_id.clone());
        add(
            "vehicle_model",
            c.vehicle_model.clone().unwrap_or_else(|| "unknown".into()),
        );
        let band = match c.vehicle_purchase {
            Some(p) if p <= end_of_last_year => age_band(end_of_last_year.days_since(p) / 365.25),
            Some(_) => "0-1y",
            None => "unknown",
        };
        add("vehicle_age", band.into());
    }
    let mut all = (0, 0);
    for (dealer, (base, visited)) in per_dealer {
        all.0 += base;
        all.1 += visited;
        out.annual.push(YearKpi {
            year: y,
            dealer: dealer.into(),
            base,
            visited,
            churn_rate: rate(base - visited, base),
        });
    }
    out.annual.push(YearKpi {
        year: y,
        dealer: ALL_DEALERS.into(),
        base: all.0,
        visited: all.1,
        churn_rate: rate(all.0 - all.1, all.0),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{decode_json_line, Input};

    fn history(customers: &[(&str, &[&str], &str)]) -> History {
        let mut h = History::new();
        for (i, (dealer, visits, purchase)) in customers.iter().enumerate() {
            for (j, t) in visits.iter().enumerate() {
                let line = format!(
                    r#"{{"type":"repair_order","event_id":"r{j}","event_time":"{t}","dealer_id":"{dealer}","customer_id":"C{i}","vehicle_model":"M1","vehicle_purchase_date":"{purchase}","ro_number":"R{j}","ro_type":"maintenance","total_amount":100.0}}"#
                );
                match decode_json_line(&line).unwrap().input {
                    Input::Event(e) => {
                        h.add(&e);
                    }
                    Input::Tick(_) => unreachable!(),
                }
            }
        }
        h.finish();
        h
    }

    #[test]
    fn annual_rate_and_groups_by_hand() {
        let h = history(&[
            // Effective at the end of 2023, visited in 2024: kept. Car bought 2022-06:
            // 1.6 years old at the end of 2023.
            (
                "D1",
                &["2023-03-01T10:00:00Z", "2024-05-01T10:00:00Z"],
                "2022-06-01",
            ),
            // Effective at the end of 2023, no visit in 2024: churned. Car 4.5 years old.
            ("D1", &["2023-06-01T10:00:00Z"], "2019-07-01"),
            // Not effective at the end of 2023 (last visit in 2022).
            (
                "D2",
                &["2022-01-01T10:00:00Z", "2024-02-01T10:00:00Z"],
                "2021-01-01",
            ),
        ]);
        let k = compute(&h, None, Ts::ymd_hms(2025, 1, 1, 0, 0, 0));
        let y2024: Vec<_> = k.annual.iter().filter(|y| y.year == 2024).collect();
        assert_eq!(y2024.len(), 2, "D1 and all (D2 has no base)");
        assert_eq!((y2024[0].base, y2024[0].visited), (2, 1));
        assert_eq!(y2024[0].churn_rate, Some(0.5));
        assert!(k.annual.iter().all(|y| y.year == 2024 || y.year == 2023));
        let band = |b: &str| {
            k.churn_by
                .iter()
                .find(|g| g.dimension == "vehicle_age" && g.group == b)
                .map(|g| (g.base, g.churned))
        };
        // 1-2 years: C0 in 2024 (kept) and C2 in 2023 (effective at the end of 2022,
        // car 1.998 years old, no visit in 2023: churned).
        assert_eq!(band("1-2y"), Some((2, 1)));
        assert_eq!(band("4-5y"), Some((1, 1)));
        // Monthly: at the end of 2024-06 the customer of D2 is effective (visit in
        // February), C0 too (May); C1 is not (last visit 2023-06-01, 12 months passed).
        let june = k
            .monthly
            .iter()
            .find(|m| m.month == "2024-06" && m.dealer == ALL_DEALERS)
            .unwrap();
        assert_eq!(june.effective_customers, 2);
        // Month N = 2024-06: cohort visited in 2023-06 (C1), not retained.
        assert_eq!(
            (june.cohort, june.retained, june.churn_rate),
            (1, 0, Some(1.0))
        );
    }

    #[test]
    fn bands() {
        assert_eq!(age_band(0.2), "0-1y");
        assert_eq!(age_band(3.0), "3-4y");
        assert_eq!(age_band(12.0), "10y+");
    }
}
