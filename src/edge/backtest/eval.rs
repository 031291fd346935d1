//! Judging warnings on history, with the domain's definitions and no ground truth
//! (see `docs/domain.md`, "Evaluating warnings on history"). Pure: it reads a
//! [`History`] and one policy's level changes and computes numbers.
//!
//! - **Churn instant**: a visit + 12 months, when no visit came in between (the
//!   churned-customer definition; fixed at 12 months whatever the policy's lifecycle
//!   thresholds, so that policies are judged alike). A visit at exactly that instant
//!   keeps the customer (the engine applies events before timers of the same instant).
//! - **Warning episode**: from a change out of `normal` into any warning level until
//!   the customer is `normal` again. Each episode gives one *warning* at level `any`
//!   (its start) and one at each level it enters (first entry only), at the instant of
//!   that change.
//! - A warning's **fate**, from the last visit at or before it: *confirmed* when the
//!   churn instant of that visit comes before the next visit (lead time = churn
//!   instant − warning instant, negative when the warning came after the churn);
//!   *came back* when the customer visits first; *censored* when the history ends
//!   before either is known (or the customer has no visit yet).
//! - **Recall** at a level: the churns (churn instant inside the window) for which the
//!   customer was at that level at some instant between the last visit and the churn
//!   instant (a warning issued then, or one still open at that visit).
//! - **Workload**: warnings per 1,000 customers per month, the customers being those
//!   with at least one event by the end of each month.

use super::history::{CustomerHistory, History};
use crate::core::kpi::{month_of, Month};
use crate::core::status::{Level, Lifecycle};
use crate::core::time::Ts;
use serde::Serialize;

/// Months without a visit after which a customer has churned.
pub const CHURN_MONTHS: u32 = 12;

/// The churn instant of a visit: when 12 months have passed without another.
pub fn churn_instant(last_visit: Ts) -> Ts {
    last_visit.add_months(CHURN_MONTHS)
}

/// The levels warnings are judged at: `any` (the start of an episode) and each
/// warning level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarnLevel {
    /// The start of an episode, whatever its level.
    Any,
    /// `prevent`.
    Prevent,
    /// `retain`.
    Retain,
    /// `win_back`.
    WinBack,
}

impl WarnLevel {
    /// Every level, `any` first.
    pub const ALL: [WarnLevel; 4] = [
        WarnLevel::Any,
        WarnLevel::Prevent,
        WarnLevel::Retain,
        WarnLevel::WinBack,
    ];

    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            WarnLevel::Any => "any",
            WarnLevel::Prevent => "prevent",
            WarnLevel::Retain => "retain",
            WarnLevel::WinBack => "win_back",
        }
    }

    /// The warning level of an engine level (none for `normal`).
    pub fn of(level: Level) -> Option<WarnLevel> {
        match level {
            Level::Normal => None,
            Level::Prevent => Some(WarnLevel::Prevent),
            Level::Retain => Some(WarnLevel::Retain),
            Level::WinBack => Some(WarnLevel::WinBack),
        }
    }

    /// Index in [`WarnLevel::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One status change of a customer, as the evaluation needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// When it happened.
    pub at: Ts,
    /// Level before.
    pub from: Level,
    /// Level after.
    pub to: Level,
    /// Lifecycle before.
    pub from_lifecycle: Lifecycle,
    /// Lifecycle after.
    pub to_lifecycle: Lifecycle,
}

/// What became of a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The customer reached the churn instant without visiting.
    Confirmed {
        /// The churn instant.
        churn: Ts,
    },
    /// The customer visited again first.
    CameBack {
        /// The visit.
        visit: Ts,
    },
    /// The history ends before the outcome is known.
    Censored,
}

/// The fate of a warning at `at` for customer `c`, given a history that ends at `end`.
pub fn fate(c: &CustomerHistory, at: Ts, end: Ts) -> Fate {
    let Some(last) = c.last_visit_at(at) else {
        return Fate::Censored;
    };
    let churn = churn_instant(last);
    match c.next_visit_after(at) {
        Some(n) if n <= churn => Fate::CameBack { visit: n },
        _ if churn <= end => Fate::Confirmed { churn },
        _ => Fate::Censored,
    }
}

/// The warnings in one customer's changes (in time order): the start of each episode
/// at `any`, and the first entry into each level within an episode.
pub fn warnings(changes: &[Change]) -> Vec<(WarnLevel, Ts)> {
    let mut out = Vec::new();
    let mut level = Level::Normal;
    let mut entered = [false; 4];
    for ch in changes {
        if ch.to == level {
            continue;
        }
        if level == Level::Normal {
            out.push((WarnLevel::Any, ch.at));
            entered = [false; 4];
        }
        if let Some(w) = WarnLevel::of(ch.to) {
            if !entered[w.index()] {
                entered[w.index()] = true;
                out.push((w, ch.at));
            }
        }
        level = ch.to;
    }
    out
}

/// The levels a customer held at some instant in `[from, to]`: the level after the
/// changes up to `from`, and every level changed into up to `to`. Indexed like
/// [`WarnLevel::ALL`]; `any` when any warning level was held.
pub fn levels_held(changes: &[Change], from: Ts, to: Ts) -> [bool; 4] {
    let mut held = [false; 4];
    let i = changes.partition_point(|c| c.at <= from);
    let at_start = i.checked_sub(1).map_or(Level::Normal, |i| changes[i].to);
    let mut mark = |l: Level| {
        if let Some(w) = WarnLevel::of(l) {
            held[w.index()] = true;
            held[WarnLevel::Any.index()] = true;
        }
    };
    mark(at_start);
    for c in changes[i..].iter().take_while(|c| c.at <= to) {
        mark(c.to);
    }
    held
}

/// The instants the evaluation counts: warnings and churn instants from `from` (the
/// whole history when none) to `end`, the end of the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First instant counted.
    pub from: Option<Ts>,
    /// The end of the history: what happens later is unknown.
    pub end: Ts,
}

impl Window {
    /// Whether `t` is counted.
    pub fn contains(&self, t: Ts) -> bool {
        self.from.is_none_or(|f| t >= f) && t <= self.end
    }
}

/// The `q` quantile (0..=1) of ascending `sorted` values, interpolated linearly
/// between the closest ranks; None when empty.
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64))
}

/// A ratio, None when the denominator is 0.
pub fn ratio(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// The numbers of one warning level under one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LevelStats {
    /// The level.
    pub level: WarnLevel,
    /// Warnings at this level inside the window.
    pub warnings: u64,
    /// Of those, followed by churn before the next visit.
    pub confirmed: u64,
    /// Of those, ended by the customer coming back on their own.
    pub came_back: u64,
    /// Of those, too close to the end of the history to know.
    pub censored: u64,
    /// confirmed / (confirmed + came back).
    pub precision: Option<f64>,
    /// came back / (confirmed + came back).
    pub came_back_share: Option<f64>,
    /// Churns (churn instant inside the window).
    pub churns: u64,
    /// Of those, churns while the customer was at this level after the last visit.
    pub churns_warned: u64,
    /// churns warned / churns.
    pub recall: Option<f64>,
    /// Lead time (churn instant − warning instant) of confirmed warnings, in days: 10th
    /// percentile.
    pub lead_days_p10: Option<f64>,
    /// Median lead time in days.
    pub lead_days_median: Option<f64>,
    /// 90th percentile of the lead time in days.
    pub lead_days_p90: Option<f64>,
    /// Warnings per 1,000 customers per month.
    pub per_1000_per_month: Option<f64>,
}

/// Warnings of one month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthWorkload {
    /// The month (`YYYY-MM`).
    pub month: String,
    /// Customers with at least one event by the end of the month.
    pub customers: u64,
    /// Warnings in the month, indexed like [`WarnLevel::ALL`].
    pub warnings: [u64; 4],
}

/// One dealer's campaign workload over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DealerWorkload {
    /// Dealer id (the dealer of each customer's latest event).
    pub dealer: String,
    /// The dealer's customers (with at least one event by the end).
    pub customers: u64,
    /// Warnings inside the window, indexed like [`WarnLevel::ALL`].
    pub warnings: [u64; 4],
    /// Warnings per month (the customers the dealer would have had to contact each
    /// month), indexed like [`WarnLevel::ALL`].
    pub per_month: [f64; 4],
    /// Warnings per 1,000 of the dealer's customers per month, like
    /// [`LevelStats::per_1000_per_month`].
    pub per_1000_per_month: [Option<f64>; 4],
}

/// One policy's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// Per level, like [`WarnLevel::ALL`].
    pub levels: Vec<LevelStats>,
    /// The workload month by month.
    pub monthly: Vec<MonthWorkload>,
    /// The workload per dealer, by dealer id.
    pub by_dealer: Vec<DealerWorkload>,
}

/// The months from the one holding `from` to the one holding `end` (without that one
/// when `end` is its first instant: nothing of it is in the history).
pub fn months(from: Ts, end: Ts) -> Vec<Month> {
    let (a, mut b) = (month_of(from), month_of(end));
    if b.start() == end && b > a {
        b = b.offset(-1);
    }
    (a.0..=b.0).map(Month).collect()
}

/// Evaluates one policy: `changes[i]` are the level changes of `history.customers[i]`,
/// in time order.
pub fn evaluate(history: &History, changes: &[Vec<Change>], window: Window) -> Evaluation {
    let n = WarnLevel::ALL.len();
    let mut counts = vec![[0u64; 4]; n]; // warnings, confirmed, came back, censored
    let mut leads: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut churns = 0u64;
    let mut warned = [0u64; 4];
    let start = window.from.or(history.first).unwrap_or(window.end);
    let months = months(start, window.end);
    let mut per_month = vec![[0u64; 4]; months.len()];
    let none = Vec::new();
    // Per dealer: customers, customer-months, warnings.
    let mut dealers: std::collections::BTreeMap<&str, (u64, u64, [u64; 4])> =
        std::collections::BTreeMap::new();
    let month_ends: Vec<Ts> = months.iter().map(|m| m.offset(1).start()).collect();
    for (i, c) in history.customers.iter().enumerate() {
        let ch = changes.get(i).unwrap_or(&none);
        let d = dealers.entry(c.dealer_id.as_str()).or_default();
        d.0 += 1;
        d.1 += month_ends.iter().filter(|e| c.first_seen < **e).count() as u64;
        for (level, at) in warnings(ch) {
            if !window.contains(at) {
                continue;
            }
            let k = level.index();
            counts[k][0] += 1;
            d.2[k] += 1;
            if let Some(m) = months.first() {
                let idx = (month_of(at).0 - m.0) as usize;
                if let Some(row) = per_month.get_mut(idx) {
                    row[k] += 1;
                }
            }
            match fate(c, at, window.end) {
                Fate::Confirmed { churn } => {
                    counts[k][1] += 1;
                    leads[k].push(churn.days_since(at));
                }
                Fate::CameBack { .. } => counts[k][2] += 1,
                Fate::Censored => counts[k][3] += 1,
            }
        }
        for (j, v) in c.visits.iter().enumerate() {
            let churn = churn_instant(*v);
            let kept = c.visits.get(j + 1).is_some_and(|n| *n <= churn);
            if kept || !window.contains(churn) {
                continue;
            }
            churns += 1;
            let held = levels_held(ch, *v, churn);

            for (w, h) in warned.iter_mut().zip(held) {
                *w += u64::from(h);
            }
        }
    }
    let mut first_seen: Vec<Ts> = history.customers.iter().map(|c| c.first_seen).collect();
    first_seen.sort_unstable();
    let monthly: Vec<MonthWorkload> = months
        .iter()
        .zip(&per_month)
        .map(|(m, w)| MonthWorkload {
            month: m.to_string(),
            customers: first_seen.partition_point(|t| *t < m.offset(1).start()) as u64,
            warnings: *w,
        })
        .collect();
    let customer_months: u64 = monthly.iter().map(|m| m.customers).sum();
    let levels = WarnLevel::ALL
        .iter()
        .map(|&level| {
            let k = level.index();
            let [w, conf, back, cens] = counts[k];
            let lead = &mut leads[k];
            lead.sort_by(f64::total_cmp);
            LevelStats {
                level,
                warnings: w,
                confirmed: conf,
                came_back: back,
                censored: cens,
                precision: ratio(conf, conf + back),
                came_back_share: ratio(back, conf + back),
                churns,
                churns_warned: warned[k],
                recall: ratio(warned[k], churns),
                lead_days_p10: quantile(lead, 0.1),
                lead_days_median: quantile(lead, 0.5),
                lead_days_p90: quantile(lead, 0.9),
                per_1000_per_month: ratio(w * 1000, customer_months),
            }
        })
        .collect();
    let n_months = months.len().max(1) as f64;
    let by_dealer = dealers
        .into_iter()
        .map(|(dealer, (customers, cm, w))| DealerWorkload {
            dealer: dealer.to_string(),
            customers,
            warnings: w,
            per_month: w.map(|x| x as f64 / n_months),
            per_1000_per_month: w.map(|x| ratio(x * 1000, cm)),
        })
        .collect();
    Evaluation {
        levels,
        monthly,
        by_dealer,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{decode_json_line, Input};

    fn ts(s: &str) -> Ts {
        Ts::parse_rfc3339(s).unwrap()
    }

    /// A history of one customer per entry, visiting at the given instants.
    fn history(customers: &[&[&str]]) -> History {
        let mut h = History::new();
        for (i, visits) in customers.iter().enumerate() {
            for (j, t) in visits.iter().enumerate() {
                let line = format!(
                    r#"{{"type":"visit","event_id":"v{j}","event_time":"{t}","dealer_id":"D","customer_id":"C{i}","visit_type":"service"}}"#
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

    fn change(at: &str, from: Level, to: Level) -> Change {
        Change {
            at: ts(at),
            from,
            to,
            from_lifecycle: Lifecycle::Active,
            to_lifecycle: Lifecycle::Active,
        }
    }

    fn stats(e: &Evaluation, l: WarnLevel) -> &LevelStats {
        &e.levels[l.index()]
    }

    /// A churner warned 100 days before the churn instant, a false alarm, a
    /// censored episode: every number by hand.
    #[test]
    fn a_churner_a_false_alarm_and_a_censored_episode() {
        use Level::*;
        let h = history(&[
            // C0: last visit 2024-01-10 10:00; churn instant 2025-01-10 10:00.
            &["2023-06-01T10:00:00Z", "2024-01-10T10:00:00Z"],
            // C1: warned, then came back on 2024-06-01.
            &["2024-01-10T10:00:00Z", "2024-06-01T09:00:00Z"],
            // C2: last visit 2025-03-01; the history ends before its churn instant.
            &["2025-03-01T10:00:00Z"],
        ]);
        let end = ts("2025-06-30T00:00:00Z");
        // 2025-01-10 10:00 − 100 days = 2024-10-02 10:00.
        let changes = vec![
            vec![
                change("2024-10-02T10:00:00Z", Normal, Prevent),
                change("2025-01-10T10:00:00Z", Prevent, WinBack),
            ],
            vec![
                change("2024-05-01T00:00:00Z", Normal, Prevent),
                change("2024-06-01T09:00:00Z", Prevent, Normal),
            ],
            vec![change("2025-05-01T00:00:00Z", Normal, Prevent)],
        ];
        let e = evaluate(&h, &changes, Window { from: None, end });
        let p = stats(&e, WarnLevel::Prevent);
        assert_eq!(
            (p.warnings, p.confirmed, p.came_back, p.censored),
            (3, 1, 1, 1)
        );
        assert_eq!(p.precision, Some(0.5));
        assert_eq!(p.came_back_share, Some(0.5));
        assert_eq!(p.lead_days_median, Some(100.0));
        // Churns: C0's 2023-06-01 visit was followed within 12 months (kept); its last
        // visit churns on 2025-01-10. C1's last visit churns on 2025-06-01 (inside the
        // window, never warned after that visit). C2's is after the end.
        assert_eq!((p.churns, p.churns_warned), (2, 1));
        assert_eq!(p.recall, Some(0.5));
        let w = stats(&e, WarnLevel::WinBack);
        assert_eq!(
            (w.warnings, w.confirmed, w.lead_days_median),
            (1, 1, Some(0.0))
        );
        let any = stats(&e, WarnLevel::Any);
        assert_eq!((any.warnings, any.confirmed, any.censored), (3, 1, 1));
        // Workload: 4 warnings (3 prevent + 1 win back) in 2024-05, 2024-10, 2025-01,
        // 2025-05; months from 2023-06 to 2025-06.
        assert_eq!(e.monthly.len(), 25);
        assert_eq!(e.monthly[0].customers, 1);
        assert_eq!(e.monthly.last().unwrap().customers, 3);
        let total: u64 = e.monthly.iter().map(|m| m.warnings[1]).sum();
        assert_eq!(total, 3);
        // One dealer: its workload is the whole workload.
        assert_eq!(e.by_dealer.len(), 1);
        let d = &e.by_dealer[0];
        assert_eq!((d.customers, d.warnings), (3, [3, 3, 0, 1]));
        assert_eq!(d.per_month[1], 3.0 / 25.0);
        assert_eq!(d.per_1000_per_month[1], p.per_1000_per_month);
    }

    #[test]
    fn an_episode_warns_once_per_level_and_lifecycle_only_changes_are_no_warnings() {
        use Level::*;
        let ch = vec![
            change("2024-01-01T00:00:00Z", Normal, Prevent),
            change("2024-02-01T00:00:00Z", Prevent, Retain),
            change("2024-03-01T00:00:00Z", Retain, Prevent),
            change("2024-04-01T00:00:00Z", Prevent, Retain),
            change("2024-04-15T00:00:00Z", Retain, Retain),
            change("2024-05-01T00:00:00Z", Retain, Normal),
            change("2024-06-01T00:00:00Z", Normal, Retain),
        ];
        let w = warnings(&ch);
        let got: Vec<(&str, String)> = w
            .iter()
            .map(|(l, t)| (l.as_str(), t.to_date_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("any", "2024-01-01".into()),
                ("prevent", "2024-01-01".into()),
                ("retain", "2024-02-01".into()),
                ("any", "2024-06-01".into()),
                ("retain", "2024-06-01".into()),
            ]
        );
    }

    #[test]
    fn fates_at_the_boundaries() {
        let h = history(&[&["2024-01-10T10:00:00Z", "2025-01-10T10:00:00Z"]]);
        let c = &h.customers[0];
        let end = ts("2026-06-01T00:00:00Z");
        // A visit exactly 12 months later keeps the customer.
        assert_eq!(
            fate(c, ts("2024-08-01T00:00:00Z"), end),
            Fate::CameBack {
                visit: ts("2025-01-10T10:00:00Z")
            }
        );
        // After the last visit: churns 2026-01-10, before the end.
        assert_eq!(
            fate(c, ts("2025-08-01T00:00:00Z"), end),
            Fate::Confirmed {
                churn: ts("2026-01-10T10:00:00Z")
            }
        );
        // The same with a history ending a millisecond before the churn instant.
        assert_eq!(
            fate(
                c,
                ts("2025-08-01T00:00:00Z"),
                ts("2026-01-10T09:59:59.999Z")
            ),
            Fate::Censored
        );
        // Before any visit: unknown.
        assert_eq!(fate(c, ts("2023-01-01T00:00:00Z"), end), Fate::Censored);
    }

    #[test]
    fn an_episode_open_across_the_last_visit_counts_for_recall() {
        use Level::*;
        let h = history(&[&["2024-01-10T10:00:00Z", "2024-03-01T10:00:00Z"]]);
        let ch = vec![change("2024-02-01T00:00:00Z", Normal, Prevent)];
        let e = evaluate(
            &h,
            &[ch],
            Window {
                from: None,
                end: ts("2025-12-31T00:00:00Z"),
            },
        );
        let p = stats(&e, WarnLevel::Prevent);
        // The warning itself came back (visit on 2024-03-01); the churn after that
        // visit happened while still at prevent.
        assert_eq!((p.confirmed, p.came_back), (0, 1));
        assert_eq!((p.churns, p.churns_warned), (1, 1));
        assert_eq!(stats(&e, WarnLevel::Retain).churns_warned, 0);
    }

    #[test]
    fn the_window_start_drops_earlier_warnings_and_churns() {
        use Level::*;
        let h = history(&[&["2022-01-10T10:00:00Z"], &["2024-01-10T10:00:00Z"]]);
        let changes = vec![
            vec![change("2022-07-10T10:00:00Z", Normal, Retain)],
            vec![change("2024-07-10T10:00:00Z", Normal, Retain)],
        ];
        let e = evaluate(
            &h,
            &changes,
            Window {
                from: Some(ts("2024-01-01T00:00:00Z")),
                end: ts("2025-12-31T00:00:00Z"),
            },
        );
        let r = stats(&e, WarnLevel::Retain);
        assert_eq!(
            (r.warnings, r.confirmed, r.churns, r.churns_warned),
            (1, 1, 1, 1)
        );
        assert_eq!(e.monthly.first().unwrap().month, "2024-01");
    }

    #[test]
    fn quantiles() {
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7.0], 0.1), Some(7.0));
        let v = [0.0, 10.0, 20.0, 30.0, 40.0];
        assert_eq!(quantile(&v, 0.5), Some(20.0));
        assert_eq!(quantile(&v, 0.1), Some(4.0));
        assert_eq!(quantile(&v, 0.9), Some(36.0));
    }
}
