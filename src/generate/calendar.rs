//! Calendar helpers over whole days since the Unix epoch (UTC) and Unix seconds: date
//! conversion, month arithmetic, the Spring Festival and the seasonal demand for dealer
//! visits.
//!
//! Pure functions over `chrono` dates; no clock, no random numbers.

use chrono::{Datelike, Months, NaiveDate};

/// Spring Festival (Chinese New Year's Day) dates. Other years fall back to 5 February,
/// which is close enough for the seasonality of synthetic data.
pub(super) const SPRING_FESTIVAL: [(i32, u32, u32); 26] = [
    (2015, 2, 19),
    (2016, 2, 8),
    (2017, 1, 28),
    (2018, 2, 16),
    (2019, 2, 5),
    (2020, 1, 25),
    (2021, 2, 12),
    (2022, 2, 1),
    (2023, 1, 22),
    (2024, 2, 10),
    (2025, 1, 29),
    (2026, 2, 17),
    (2027, 2, 6),
    (2028, 1, 26),
    (2029, 2, 13),
    (2030, 2, 3),
    (2031, 1, 23),
    (2032, 2, 11),
    (2033, 1, 31),
    (2034, 2, 19),
    (2035, 2, 8),
    (2036, 1, 28),
    (2037, 2, 15),
    (2038, 2, 4),
    (2039, 1, 24),
    (2040, 2, 12),
];

// ---------------------------------------------------------------------------------------
// Calendar helpers over whole days since the Unix epoch (UTC) and Unix seconds.

pub(super) const DAY_S: i64 = 86_400;
/// Days from 0001-01-01 (chrono's day 1 of the common era) to 1970-01-01.
pub(super) const UNIX_EPOCH_FROM_CE: i32 = 719_163;
/// China Standard Time is UTC+8; dealers open 08:30–17:30 local time.
pub(super) const LOCAL_OFFSET_S: i64 = 8 * 3600;

pub(super) fn date_of(day: i32) -> NaiveDate {
    NaiveDate::from_num_days_from_ce_opt(day + UNIX_EPOCH_FROM_CE).unwrap_or_default()
}

pub(super) fn day_of(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - UNIX_EPOCH_FROM_CE
}

pub(super) fn add_months(day: i32, months: u32) -> i32 {
    date_of(day)
        .checked_add_months(Months::new(months))
        .map_or(day + months as i32 * 30, day_of)
}

pub(super) fn sub_months(day: i32, months: u32) -> i32 {
    date_of(day)
        .checked_sub_months(Months::new(months))
        .map_or(day - months as i32 * 30, day_of)
}

pub(super) fn spring_festival(year: i32) -> i32 {
    let (m, d) = SPRING_FESTIVAL
        .iter()
        .find(|(y, _, _)| *y == year)
        .map_or((2, 5), |(_, m, d)| (*m, *d));
    NaiveDate::from_ymd_opt(year, m, d).map_or(0, day_of)
}

/// Relative demand for unscheduled dealer visits on a day: a pre-festival rush, almost
/// nothing in the holiday week, a summer peak.
pub(super) fn seasonal_factor(day: i32) -> f64 {
    let d = date_of(day);
    let off = day - spring_festival(d.year());
    if (-1..7).contains(&off) {
        0.15
    } else if (-21..-1).contains(&off) {
        1.4
    } else if matches!(d.month(), 7 | 8) {
        1.3
    } else {
        1.0
    }
}

pub(super) const SEASONAL_MAX: f64 = 1.4;
