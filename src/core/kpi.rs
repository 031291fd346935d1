//! The users' KPIs per dealer, computed from customer states at an instant: the number
//! of effective customers (有效客户) and the monthly effective-customer churn rate.
//!
//! This module owns the calendar-month arithmetic of the KPIs ([`Month`],
//! [`month_of`], [`report_month`]) and the per-dealer aggregation
//! ([`KpiAccumulator`]). It is pure: no I/O and no clock; the instant `at` is an
//! argument.
//!
//! # The monthly churn rate
//!
//! The rate is reported for month N = the latest *complete* calendar month (UTC) before
//! `at`, i.e. the month before the one containing `at` ([`report_month`]). At
//! `2025-03-15` that is February 2025; at exactly `2025-03-01T00:00:00Z` February is
//! complete, so it is February too. Following the domain definition,
//!
//! `rate = 1 − retained / cohort`
//!
//! - the *cohort* is the customers who were effective at the end of month N−12 and have
//!   a visit day inside month N−12;
//! - *retained* are those of them with a visit day in months N−11..N (a visit in the
//!   running month, after N, does not count).
//!
//! Effectiveness at the end of month N−12 is reconstructed from the visit days, because
//! [`CustomerState::is_effective`] only answers for instants at or after the last visit
//! (a retained customer has visited since). It applies the same rule: a cohort member
//! visited within the 12 months by construction, so a customer inside the service region
//! (or with the region unknown) is effective, and one outside it must have visited on
//! more than one day in months N−23..N−12. The region flag is the latest one known: the
//! state keeps no history of it.
//!
//! The number of effective customers is [`CustomerState::is_effective`] at `at`.
//! Customers belong to the dealer of their latest event ([`CustomerState::dealer_id`]).

use crate::core::state::CustomerState;
use crate::core::time::Ts;
use chrono::NaiveDate;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

/// A calendar month (UTC), counted as months since January of year 0
/// (`year * 12 + month - 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month(pub i32);

impl Month {
    /// The month `month` (1..=12) of `year`; None for a month outside 1..=12.
    pub fn new(year: i32, month: u32) -> Option<Month> {
        (1..=12)
            .contains(&month)
            .then(|| Month(year.saturating_mul(12).saturating_add(month as i32 - 1)))
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    /// The month of the year, 1..=12.
    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    /// The month `months` later (earlier when negative).
    pub fn offset(self, months: i32) -> Month {
        Month(self.0.saturating_add(months))
    }

    fn first_date(self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year(), self.month(), 1)
    }

    /// Midnight UTC on the first day of the month (saturating outside the calendar's
    /// range).
    pub fn start(self) -> Ts {
        match self.first_date() {
            Some(d) => Ts::from_date(d),
            None if self.0 < 0 => Ts(i64::MIN),
            None => Ts(i64::MAX),
        }
    }

    /// The first day of the month in days since the Unix epoch (the unit of
    /// [`CustomerState::visit_days`]; saturating outside the calendar's range).
    pub fn first_day(self) -> i32 {
        match self.first_date() {
            Some(d) => {
                let days = d
                    .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
                    .num_days();
                days.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
            }
            None if self.0 < 0 => i32::MIN,
            None => i32::MAX,
        }
    }

    /// The epoch days of this month through `last` (inclusive), as a half-open range.
    fn days_through(self, last: Month) -> Range<i32> {
        self.first_day()..last.offset(1).first_day()
    }
}

impl fmt::Display for Month {
    /// `YYYY-MM`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

/// The calendar month (UTC) containing `at`.
pub fn month_of(at: Ts) -> Month {
    let (y, m) = at.year_month();
    Month::new(y, m).expect("chrono months are 1..=12")
}

/// The month the monthly churn rate is reported for at `at`: the latest complete
/// calendar month before `at` (the month before [`month_of`]`(at)`).
pub fn report_month(at: Ts) -> Month {
    month_of(at).offset(-1)
}

/// One dealer's KPIs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DealerKpi {
    /// Customers effective at the instant the KPIs were computed for.
    pub effective_customers: u64,
    /// Effective customers at the end of month N−12 who visited in month N−12.
    pub cohort: u64,
    /// Those of the cohort who visited again in months N−11..N.
    pub retained: u64,
}

impl DealerKpi {
    /// The monthly effective-customer churn rate, `1 − retained / cohort` (0..=1); None
    /// when the cohort is empty.
    pub fn churn_rate(&self) -> Option<f64> {
        (self.cohort > 0).then(|| 1.0 - self.retained as f64 / self.cohort as f64)
    }

    /// Adds another dealer's counts to these (to report several dealers as one).
    pub fn absorb(&mut self, other: &DealerKpi) {
        self.effective_customers = self
            .effective_customers
            .saturating_add(other.effective_customers);
        self.cohort = self.cohort.saturating_add(other.cohort);
        self.retained = self.retained.saturating_add(other.retained);
    }
}

/// Aggregates customer states into per-dealer KPIs at one instant. Feed it every
/// customer (in any order, split over several accumulators if convenient, then
/// [`merge`](KpiAccumulator::merge) them) and [`finish`](KpiAccumulator::finish).
#[derive(Debug, Clone)]
pub struct KpiAccumulator {
    at: Ts,
    month: Month,
    /// Epoch days of month N−12.
    cohort_days: Range<i32>,
    /// Epoch days of months N−11..N.
    retained_days: Range<i32>,
    /// Epoch days of months N−23..N−12: the 12 months ending at the end of month N−12.
    year_to_cohort_end: Range<i32>,
    dealers: BTreeMap<String, DealerKpi>,
}

/// Number of `days` (ascending) inside `r`.
fn count_in(days: &[i32], r: &Range<i32>) -> usize {
    let from = days.partition_point(|d| *d < r.start);
    let to = days.partition_point(|d| *d < r.end);
    to.saturating_sub(from)
}

impl KpiAccumulator {
    /// An empty accumulator for the KPIs at `at`.
    pub fn new(at: Ts) -> Self {
        let n = report_month(at);
        KpiAccumulator {
            at,
            month: n,
            cohort_days: n.offset(-12).days_through(n.offset(-12)),
            retained_days: n.offset(-11).days_through(n),
            year_to_cohort_end: n.offset(-23).days_through(n.offset(-12)),
            dealers: BTreeMap::new(),
        }
    }

    /// The instant the KPIs are computed for.
    pub fn at(&self) -> Ts {
        self.at
    }

    /// The month N the churn rate is reported for ([`report_month`] of `at`).
    pub fn month(&self) -> Month {
        self.month
    }

    /// Whether the customer is in the cohort of month N−12, and whether retained.
    fn cohort_membership(&self, state: &CustomerState) -> (bool, bool) {
        let days = &state.visit_days;
        if count_in(days, &self.cohort_days) == 0 {
            return (false, false);
        }
        let effective_at_cohort_end = match state.in_service_region {
            Some((_, false)) => count_in(days, &self.year_to_cohort_end) > 1,
            _ => true,
        };
        if !effective_at_cohort_end {
            return (false, false);
        }
        (true, count_in(days, &self.retained_days) > 0)
    }

    /// Counts one customer. Dealers only appear once one of their customers is
    /// effective or in the cohort.
    pub fn add(&mut self, state: &CustomerState) {
        let effective = state.is_effective(self.at);
        let (cohort, retained) = self.cohort_membership(state);
        if !effective && !cohort {
            return;
        }
        let k = match self.dealers.get_mut(&state.dealer_id) {
            Some(k) => k,
            None => self.dealers.entry(state.dealer_id.clone()).or_default(),
        };
        k.absorb(&DealerKpi {
            effective_customers: u64::from(effective),
            cohort: u64::from(cohort),
            retained: u64::from(retained),
        });
    }

    /// Adds the counts of another accumulator (e.g. of another partition).
    ///
    /// # Panics
    ///
    /// When `other` was created for a different instant: its counts would mean other
    /// months.
    pub fn merge(&mut self, other: KpiAccumulator) {
        assert_eq!(
            self.at, other.at,
            "KPI accumulators for different instants cannot be merged"
        );
        for (dealer, k) in other.dealers {
            self.dealers.entry(dealer).or_default().absorb(&k);
        }
    }

    /// The KPIs by dealer id.
    pub fn finish(self) -> BTreeMap<String, DealerKpi> {
        self.dealers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{decode_json_line, Event, Input};
    use crate::core::policy::Policy;

    fn visit(n: usize, dealer: &str, t: &str, region: Option<bool>) -> Event {
        let region = match region {
            Some(r) => format!(r#","in_service_region":{r}"#),
            None => String::new(),
        };
        let line = format!(
            r#"{{"type":"visit","event_id":"v{n}","event_time":"{t}","dealer_id":"{dealer}","customer_id":"C","visit_type":"service"{region}}}"#
        );
        match decode_json_line(&line).unwrap().input {
            Input::Event(e) => e,
            _ => panic!("not an event"),
        }
    }

    /// A customer of `dealer` who visited at `times` (RFC 3339), with the region flag.
    fn customer(dealer: &str, times: &[&str], region: Option<bool>) -> CustomerState {
        let p = Policy::default();
        let mut s = CustomerState::new("C", dealer);
        for (i, t) in times.iter().enumerate() {
            assert!(s.apply(&visit(i, dealer, t, region), &p));
        }
        s
    }

    fn kpis(at: Ts, customers: &[CustomerState]) -> BTreeMap<String, DealerKpi> {
        let mut acc = KpiAccumulator::new(at);
        for c in customers {
            acc.add(c);
        }
        acc.finish()
    }

    fn kpi(effective_customers: u64, cohort: u64, retained: u64) -> DealerKpi {
        DealerKpi {
            effective_customers,
            cohort,
            retained,
        }
    }

    #[test]
    fn months() {
        let m = month_of(Ts::ymd_hms(2025, 3, 15, 12, 0, 0));
        assert_eq!((m.year(), m.month()), (2025, 3));
        assert_eq!(m.to_string(), "2025-03");
        assert_eq!(m.offset(-3).to_string(), "2024-12");
        assert_eq!(m.offset(-15).to_string(), "2023-12");
        assert_eq!(m.offset(10).to_string(), "2026-01");
        assert_eq!(m.start(), Ts::ymd_hms(2025, 3, 1, 0, 0, 0));
        assert_eq!(m.first_day(), Ts::ymd_hms(2025, 3, 1, 0, 0, 0).epoch_day());
        assert_eq!(Month::new(1970, 1).unwrap().first_day(), 0);
        assert_eq!(Month::new(1969, 12).unwrap().first_day(), -31);
        assert_eq!(Month::new(2024, 13), None);
        assert_eq!(Month::new(2024, 0), None);
        // The report month is the last complete one: at the first instant of March,
        // February is complete; one millisecond earlier it is not.
        let march = Ts::ymd_hms(2025, 3, 1, 0, 0, 0);
        assert_eq!(report_month(march).to_string(), "2025-02");
        assert_eq!(report_month(Ts(march.0 - 1)).to_string(), "2025-01");
        assert_eq!(
            report_month(Ts::ymd_hms(2025, 1, 10, 0, 0, 0)).to_string(),
            "2024-12"
        );
        // Month N−12 of a leap February ends on the 29th.
        let feb = Month::new(2024, 2).unwrap();
        assert_eq!(
            feb.days_through(feb),
            Ts::ymd_hms(2024, 2, 1, 0, 0, 0).epoch_day()
                ..Ts::ymd_hms(2024, 3, 1, 0, 0, 0).epoch_day()
        );
        assert_eq!(feb.days_through(feb).len(), 29);
    }

    #[test]
    fn churn_rate_of_a_dealer() {
        assert_eq!(kpi(5, 0, 0).churn_rate(), None);
        assert_eq!(kpi(5, 4, 4).churn_rate(), Some(0.0));
        assert_eq!(kpi(5, 4, 0).churn_rate(), Some(1.0));
        assert_eq!(kpi(5, 4, 3).churn_rate(), Some(0.25));
        let mut a = kpi(1, 2, 1);
        a.absorb(&kpi(3, 2, 2));
        assert_eq!(a, kpi(4, 4, 3));
    }

    /// At 2025-03-15 the month N is February 2025: the cohort visited in February 2024,
    /// retention counts March 2024..February 2025, and an out-of-region customer needs
    /// two visit days in March 2023..February 2024 to be in the cohort.
    #[test]
    fn worked_example() {
        let at = Ts::ymd_hms(2025, 3, 15, 12, 0, 0);
        let customers = [
            // Inside the region, came back in September: cohort, retained, and still
            // effective (last visit less than 12 months ago).
            customer(
                "D1",
                &["2024-02-10T09:00:00Z", "2024-09-01T09:00:00Z"],
                Some(true),
            ),
            // Inside the region, never came back: cohort, churned, no longer effective.
            customer("D1", &["2024-02-20T09:00:00Z"], Some(true)),
            // Region unknown counts as inside: cohort, churned.
            customer("D1", &["2024-02-21T09:00:00Z"], None),
            // Outside the region with a single visit day up to February 2024: not
            // effective then, so not in the cohort, though it came back in June.
            customer(
                "D1",
                &["2024-02-05T09:00:00Z", "2024-06-01T09:00:00Z"],
                Some(false),
            ),
            // Outside the region, visited in December 2023 and February 2024: cohort.
            // Its next visit is in March 2025, after month N: churned in the KPI. With one
            // visit day in the last 12 months it is not effective now.
            customer(
                "D1",
                &[
                    "2023-12-01T09:00:00Z",
                    "2024-02-28T09:00:00Z",
                    "2025-03-02T09:00:00Z",
                ],
                Some(false),
            ),
            // Outside the region, two visits in the last 12 months: effective, no cohort.
            customer(
                "D2",
                &["2024-10-01T09:00:00Z", "2025-01-05T09:00:00Z"],
                Some(false),
            ),
            // Inside the region, one recent visit: effective, no cohort.
            customer("D2", &["2025-03-10T09:00:00Z"], Some(true)),
            // Gone for more than a year and not in the cohort: the dealer does not appear.
            customer("D3", &["2023-05-01T09:00:00Z"], Some(true)),
        ];
        let got = kpis(at, &customers);
        let want = BTreeMap::from([
            ("D1".to_string(), kpi(1, 4, 1)),
            ("D2".to_string(), kpi(2, 0, 0)),
        ]);
        assert_eq!(got, want);
        assert_eq!(got["D1"].churn_rate(), Some(0.75));
        assert_eq!(got["D2"].churn_rate(), None);
    }

    #[test]
    fn month_boundaries() {
        let at = Ts::ymd_hms(2025, 3, 15, 0, 0, 0);
        let one = |times: &[&str]| kpis(at, &[customer("D", times, Some(true))]);
        // The last day of January 2024 is before month N−12.
        assert!(one(&["2024-01-31T23:59:59Z"]).is_empty());
        // The leap day, at the last second of February 2024, is inside; so is the first
        // instant of February.
        assert_eq!(one(&["2024-02-29T23:59:59Z"])["D"], kpi(0, 1, 0));
        assert_eq!(one(&["2024-02-01T00:00:00Z"])["D"], kpi(0, 1, 0));
        // The first instant of March 2024 is month N−11: retention, not the cohort.
        assert_eq!(
            one(&["2024-02-10T10:00:00Z", "2024-03-01T00:00:00Z"])["D"],
            kpi(0, 1, 1)
        );
        // The last second of February 2025 (month N) retains; the first instant of March
        // 2025 (the running month) does not, though it makes the customer effective.
        assert_eq!(
            one(&["2024-02-10T10:00:00Z", "2025-02-28T23:59:59Z"])["D"],
            kpi(1, 1, 1)
        );
        assert_eq!(
            one(&["2024-02-10T10:00:00Z", "2025-03-01T00:00:00Z"])["D"],
            kpi(1, 1, 0)
        );
        // Outside the region: the earlier visit day must be within the 12 months ending at
        // the end of February 2024, i.e. from March 2023.
        let out = |times: &[&str]| kpis(at, &[customer("D", times, Some(false))]);
        assert_eq!(
            out(&["2023-03-01T00:00:00Z", "2024-02-10T10:00:00Z"])["D"].cohort,
            1
        );
        assert!(out(&["2023-02-28T23:59:59Z", "2024-02-10T10:00:00Z"]).is_empty());
        // Two visits on the same day are one visit day.
        assert!(out(&["2024-02-10T08:00:00Z", "2024-02-10T10:00:00Z"]).is_empty());
    }

    /// For a customer whose last visit is in month N−12, the reconstruction agrees with
    /// `is_effective` at the end of that month.
    #[test]
    fn cohort_effectiveness_matches_is_effective() {
        let at = Ts::ymd_hms(2025, 3, 15, 0, 0, 0);
        let end_of_n_minus_12 = Ts(Ts::ymd_hms(2024, 3, 1, 0, 0, 0).0 - 1);
        let acc = KpiAccumulator::new(at);
        let cases: [(&[&str], Option<bool>); 8] = [
            (&["2024-02-10T09:00:00Z"], Some(true)),
            (&["2024-02-10T09:00:00Z"], None),
            (&["2024-02-10T09:00:00Z"], Some(false)),
            (
                &["2023-02-28T12:00:00Z", "2024-02-10T09:00:00Z"],
                Some(false),
            ),
            (
                &["2023-03-01T12:00:00Z", "2024-02-10T09:00:00Z"],
                Some(false),
            ),
            (
                &["2024-02-01T00:00:00Z", "2024-02-29T23:59:59Z"],
                Some(false),
            ),
            (
                &["2022-06-01T00:00:00Z", "2024-02-29T23:59:59Z"],
                Some(false),
            ),
            (
                &["2022-06-01T00:00:00Z", "2024-02-29T23:59:59Z"],
                Some(true),
            ),
        ];
        for (times, region) in cases {
            let s = customer("D", times, region);
            assert_eq!(
                acc.cohort_membership(&s).0,
                s.is_effective(end_of_n_minus_12),
                "{times:?} {region:?}"
            );
        }
    }

    #[test]
    fn merged_accumulators_equal_one() {
        let at = Ts::ymd_hms(2025, 3, 15, 0, 0, 0);
        let customers = [
            customer(
                "D1",
                &["2024-02-10T09:00:00Z", "2024-09-01T09:00:00Z"],
                Some(true),
            ),
            customer("D1", &["2024-02-20T09:00:00Z"], Some(true)),
            customer("D2", &["2025-03-10T09:00:00Z"], Some(true)),
            customer("D3", &["2024-02-11T09:00:00Z"], Some(true)),
        ];
        let mut a = KpiAccumulator::new(at);
        let mut b = KpiAccumulator::new(at);
        for (i, c) in customers.iter().enumerate() {
            let acc = if i % 2 == 0 { &mut a } else { &mut b };
            acc.add(c);
        }
        assert_eq!(a.month().to_string(), "2025-02");
        a.merge(b);
        let merged = a.finish();
        assert_eq!(merged, kpis(at, &customers));
        assert_eq!(merged["D1"], kpi(1, 2, 1));
        assert_eq!(merged["D2"], kpi(1, 0, 0));
        assert_eq!(merged["D3"], kpi(0, 1, 0));
        assert_eq!(merged.len(), 3);
    }

    #[test]
    #[should_panic(expected = "different instants")]
    fn merging_different_instants_panics() {
        let mut a = KpiAccumulator::new(Ts::ymd_hms(2025, 3, 15, 0, 0, 0));
        a.merge(KpiAccumulator::new(Ts::ymd_hms(2025, 4, 15, 0, 0, 0)));
    }

    #[test]
    fn no_customers_no_dealers() {
        let acc = KpiAccumulator::new(Ts::ymd_hms(2025, 3, 15, 0, 0, 0));
        assert_eq!(acc.at(), Ts::ymd_hms(2025, 3, 15, 0, 0, 0));
        assert!(acc.finish().is_empty());
        // A customer never seen visiting counts nowhere.
        let s = CustomerState::new("C", "D");
        assert!(kpis(Ts::ymd_hms(2025, 3, 15, 0, 0, 0), &[s]).is_empty());
    }
}
