//! Event-time instants and calendar arithmetic.
//!
//! The engine never reads a clock: every instant it sees comes from an event, a tick
//! record or a timer deadline. Instants are kept as UTC milliseconds since the Unix
//! epoch ([`Ts`]) so state stays small and comparisons are cheap. Formatting and
//! month arithmetic of years 1–9999 use integer civil-calendar conversions (a status
//! change formats several instants and a timer adds months on every evaluation);
//! anything else, and parsing, goes through `chrono`, which a property test holds the
//! fast path to.

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
        if let Some((y, m, d)) = self.civil() {
            let ms = self.0.rem_euclid(DAY_MS);
            let (h, mi, sec, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
            let mut s = String::with_capacity(24);
            push_date(&mut s, y, m, d);
            s.push('T');
            push2(&mut s, h as u32);
            s.push(':');
            push2(&mut s, mi as u32);
            s.push(':');
            push2(&mut s, sec as u32);
            if milli != 0 {
                s.push('.');
                s.push(char::from(b'0' + (milli / 100) as u8));
                push2(&mut s, (milli % 100) as u32);
            }
            s.push('Z');
            return s;
        }
        let dt = self.to_datetime();
        if self.0 % 1000 == 0 {
            dt.to_rfc3339_opts(SecondsFormat::Secs, true)
        } else {
            dt.to_rfc3339_opts(SecondsFormat::Millis, true)
        }
    }

    /// The calendar date `YYYY-MM-DD` (UTC).
    pub fn to_date_string(self) -> String {
        match self.civil() {
            Some((y, m, d)) => {
                let mut s = String::with_capacity(10);
                push_date(&mut s, y, m, d);
                s
            }
            None => self.to_datetime().format("%Y-%m-%d").to_string(),
        }
    }

    /// The UTC calendar date of a year from 1 to 9999, else None.
    fn civil(self) -> Option<(i64, u32, u32)> {
        let (y, m, d) = civil_from_days(self.0.div_euclid(DAY_MS));
        (1..=9999).contains(&y).then_some((y, m, d))
    }

    /// Adds calendar months; the day is clamped to the end of shorter months
    /// (2024-01-31 + 1 month = 2024-02-29).
    pub fn add_months(self, months: u32) -> Ts {
        if let Some((y, m, d)) = self.civil() {
            let index = y * 12 + i64::from(m - 1) + i64::from(months);
            let (ny, nm) = (index.div_euclid(12), index.rem_euclid(12) as u32 + 1);
            if ny <= 9999 {
                let day = d.min(days_in_month(ny, nm));
                return Ts(days_from_civil(ny, nm, day) * DAY_MS + self.0.rem_euclid(DAY_MS));
            }
        }
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

/// Year, month and day of a day count since 1970-01-01 (proleptic Gregorian; the
/// era-based conversion of Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a calendar date (the inverse of [`civil_from_days`]).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y % 4 == 0 && (y % 100 != 0 || y % 400 == 0) => 29,
        2 => 28,
        _ => 31,
    }
}

fn push2(s: &mut String, v: u32) {
    s.push(char::from(b'0' + (v / 10) as u8));
    s.push(char::from(b'0' + (v % 10) as u8));
}

/// `YYYY-MM-DD` of a year from 1 to 9999.
fn push_date(s: &mut String, y: i64, m: u32, d: u32) {
    push2(s, (y / 100) as u32);
    push2(s, (y % 100) as u32);
    s.push('-');
    push2(s, m);
    s.push('-');
    push2(s, d);
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

    /// chrono's answers, which the fast paths must give.
    fn chrono_rfc3339(t: Ts) -> String {
        let dt = t.to_datetime();
        let f = if t.0 % 1000 == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Millis
        };
        dt.to_rfc3339_opts(f, true)
    }

    fn chrono_add_months(t: Ts, months: u32) -> Ts {
        t.to_datetime()
            .checked_add_months(Months::new(months))
            .map(|d| Ts(d.timestamp_millis()))
            .unwrap_or(Ts(i64::MAX))
    }

    #[test]
    fn fast_calendar_agrees_with_chrono_at_the_edges() {
        for t in [
            Ts(0),
            Ts(-1),
            Ts::ymd_hms(2000, 2, 29, 23, 59, 59),
            Ts::ymd_hms(1900, 2, 28, 0, 0, 0),
            Ts::ymd_hms(1, 1, 1, 0, 0, 0),
            Ts::ymd_hms(9999, 12, 31, 23, 59, 59),
            Ts(Ts::ymd_hms(2024, 12, 31, 0, 0, 0).0 + 7),
        ] {
            assert_eq!(t.to_rfc3339(), chrono_rfc3339(t), "{t:?}");
            assert_eq!(
                t.to_date_string(),
                t.to_datetime().format("%Y-%m-%d").to_string()
            );
            for m in [0, 1, 11, 12, 13, 1200, 120_000] {
                assert_eq!(t.add_months(m), chrono_add_months(t, m), "{t:?} + {m}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_calendar_agrees_with_chrono(
            ms in -62_135_596_800_000i64..253_402_300_800_000i64,
            months in 0u32..3000,
        ) {
            let t = Ts(ms);
            proptest::prop_assert_eq!(t.to_rfc3339(), chrono_rfc3339(t));
            proptest::prop_assert_eq!(
                t.to_date_string(),
                t.to_datetime().format("%Y-%m-%d").to_string()
            );
            proptest::prop_assert_eq!(t.add_months(months), chrono_add_months(t, months));
        }
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
