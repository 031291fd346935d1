//! Event-time instants and calendar arithmetic.
//!
//! The engine never reads a clock: every instant it sees comes from an event, a tick
//! record or a timer deadline. Instants are kept as UTC milliseconds since the Unix
//! epoch ([`Ts`]) so state stays small and comparisons are cheap; calendar maths
//! (months, days) goes through `chrono`.

use chrono::{DateTime, Datelike, Months, NaiveDate, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;

/// An instant in event time: UTC milliseconds since the Unix epoch.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Ts(pub i64);

impl Ts {
    /// Parses an RFC 3339 timestamp (any offset; normalised to UTC).
    pub fn parse_rfc3339(s: &str) -> Result<Ts, String> {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|d| Ts(d.timestamp_millis()))
            .map_err(|e| {
                format!(
                    "`{s}` is not an RFC 3339 timestamp ({e}); expected e.g. 2024-01-10T09:30:00Z"
                )
            })
    }

    /// Parses a calendar date `YYYY-MM-DD` (midnight UTC), or a full RFC 3339 timestamp.
    pub fn parse_date(s: &str) -> Result<Ts, String> {
        let t = s.trim();
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            return Ok(Ts::from_date(d));
        }
        Ts::parse_rfc3339(t).map_err(|_| format!("`{s}` is not a date; expected YYYY-MM-DD"))
    }

    /// Midnight UTC of a calendar date.
    pub fn from_date(d: NaiveDate) -> Ts {
        Ts(d.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis())
    }

    /// Builds an instant from calendar parts (UTC). Panics on an impossible date; for tests
    /// and generators.
    pub fn ymd_hms(y: i32, m: u32, d: u32, h: u32, mi: u32, s: u32) -> Ts {
        Ts(Utc
            .with_ymd_and_hms(y, m, d, h, mi, s)
            .single()
            .expect("valid calendar instant")
            .timestamp_millis())
    }

    /// The instant as a `chrono` UTC date-time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(self.0).unwrap_or_default()
    }

    /// RFC 3339 with millisecond precision only when needed, always `Z`.
    pub fn to_rfc3339(self) -> String {
        let dt = self.to_datetime();
        if self.0 % 1000 == 0 {
            dt.to_rfc3339_opts(SecondsFormat::Secs, true)
        } else {
            dt.to_rfc3339_opts(SecondsFormat::Millis, true)
        }
    }

    /// The calendar date `YYYY-MM-DD` (UTC).
    pub fn to_date_string(self) -> String {
        self.to_datetime().format("%Y-%m-%d").to_string()
    }

    /// Adds calendar months; the day is clamped to the end of shorter months
    /// (2024-01-31 + 1 month = 2024-02-29).
    pub fn add_months(self, months: u32) -> Ts {
        let dt = self.to_datetime();
        dt.checked_add_months(Months::new(months))
            .map(|d| Ts(d.timestamp_millis()))
            .unwrap_or(Ts(i64::MAX))
    }

    /// Adds (possibly fractional) days.
    pub fn add_days(self, days: f64) -> Ts {
        Ts(self.0.saturating_add((days * DAY_MS as f64).round() as i64))
    }

    /// Subtracts (possibly fractional) days.
    pub fn sub_days(self, days: f64) -> Ts {
        self.add_days(-days)
    }

    /// Days (fractional) from `earlier` to `self`.
    pub fn days_since(self, earlier: Ts) -> f64 {
        (self.0 - earlier.0) as f64 / DAY_MS as f64
    }

    /// Whole days since the epoch (the UTC calendar day this instant falls on).
    pub fn epoch_day(self) -> i32 {
        self.0.div_euclid(DAY_MS) as i32
    }

    /// Year and month (UTC).
    pub fn year_month(self) -> (i32, u32) {
        let d = self.to_datetime();
        (d.year(), d.month())
    }
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets_to_utc() {
        let a = Ts::parse_rfc3339("2024-01-10T17:30:00+08:00").unwrap();
        assert_eq!(a, Ts::ymd_hms(2024, 1, 10, 9, 30, 0));
        assert_eq!(a.to_rfc3339(), "2024-01-10T09:30:00Z");
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let e = Ts::parse_rfc3339("10/01/2024").unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn calendar_months_clamp() {
        let t = Ts::ymd_hms(2024, 1, 31, 0, 0, 0);
        assert_eq!(t.add_months(1), Ts::ymd_hms(2024, 2, 29, 0, 0, 0));
        let t = Ts::ymd_hms(2024, 1, 10, 8, 0, 0);
        assert_eq!(t.add_months(6), Ts::ymd_hms(2024, 7, 10, 8, 0, 0));
        assert_eq!(t.add_months(24), Ts::ymd_hms(2026, 1, 10, 8, 0, 0));
    }

    #[test]
    fn dates_parse() {
        assert_eq!(
            Ts::parse_date("2021-03-04").unwrap(),
            Ts::ymd_hms(2021, 3, 4, 0, 0, 0)
        );
        assert!(Ts::parse_date("2021-13-04").is_err());
        assert_eq!(Ts::ymd_hms(1970, 1, 2, 0, 0, 0).epoch_day(), 1);
    }
}
