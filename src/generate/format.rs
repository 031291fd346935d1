//! Fixed-format writers: a JSON object built field by field, zero-padded integers,
//! amounts with two decimals, dates, RFC 3339 instants and the broken timestamps of
//! source systems. All output is ASCII, so nothing needs JSON escaping.
//!
//! Pure: appends to a string.

use super::calendar::{date_of, DAY_S, LOCAL_OFFSET_S};
use chrono::Datelike;

/// A JSON object being written field by field.
pub(super) struct Obj<'a> {
    pub(super) buf: &'a mut String,
    pub(super) first: bool,
}

impl<'a> Obj<'a> {
    pub(super) fn new(buf: &'a mut String) -> Self {
        Obj { buf, first: true }
    }

    pub(super) fn key(&mut self, k: &str) {
        self.buf.push(if self.first { '{' } else { ',' });
        self.first = false;
        self.buf.push('"');
        self.buf.push_str(k);
        self.buf.push_str("\":");
    }

    pub(super) fn string(&mut self, k: &str, v: &str) {
        self.key(k);
        self.buf.push('"');
        self.buf.push_str(v);
        self.buf.push('"');
    }
}

/// Appends `n` in decimal, zero-padded to at least `width` digits.
pub(super) fn push_uint(buf: &mut String, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in (digits.len() - i)..width {
        buf.push('0');
    }
    for d in &digits[i..] {
        buf.push(char::from(*d));
    }
}

/// Appends an amount in cents as a number with exactly two decimals.
pub(super) fn push_cents(buf: &mut String, cents: i64) {
    if cents < 0 {
        buf.push('-');
    }
    let c = cents.unsigned_abs();
    push_uint(buf, c / 100, 1);
    buf.push('.');
    push_uint(buf, c % 100, 2);
}

pub(super) fn push_date(buf: &mut String, day: i32) {
    let d = date_of(day);
    push_uint(buf, d.year().max(0) as u64, 4);
    buf.push('-');
    push_uint(buf, u64::from(d.month()), 2);
    buf.push('-');
    push_uint(buf, u64::from(d.day()), 2);
}

/// Appends an instant like [`Ts::to_rfc3339`](crate::core::time::Ts::to_rfc3339): UTC
/// `Z`, milliseconds only when needed.
pub(super) fn push_ts(buf: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    push_date(buf, secs.div_euclid(DAY_S) as i32);
    let sod = secs.rem_euclid(DAY_S) as u64;
    buf.push('T');
    push_uint(buf, sod / 3600, 2);
    buf.push(':');
    push_uint(buf, sod / 60 % 60, 2);
    buf.push(':');
    push_uint(buf, sod % 60, 2);
    let frac = ms.rem_euclid(1000) as u64;
    if frac != 0 {
        buf.push('.');
        push_uint(buf, frac, 3);
    }
    buf.push('Z');
}

/// Timestamps as broken source systems send them; none is RFC 3339.
pub(super) fn push_bad_ts(buf: &mut String, secs: i64, var: u8) {
    let day = secs.div_euclid(DAY_S) as i32;
    let sod = secs.rem_euclid(DAY_S) as u64;
    let d = date_of(day);
    let (y, m, dd) = (
        d.year().max(0) as u64,
        u64::from(d.month()),
        u64::from(d.day()),
    );
    let (h, mi, s) = (sod / 3600, sod / 60 % 60, sod % 60);
    match var % 5 {
        0 => {
            // 2023/05/06 10:31:00
            push_uint(buf, y, 4);
            buf.push('/');
            push_uint(buf, m, 2);
            buf.push('/');
            push_uint(buf, dd, 2);
            buf.push(' ');
            push_uint(buf, h, 2);
            buf.push(':');
            push_uint(buf, mi, 2);
            buf.push(':');
            push_uint(buf, s, 2);
        }
        1 => {
            // 06-05-2023 10:31
            push_uint(buf, dd, 2);
            buf.push('-');
            push_uint(buf, m, 2);
            buf.push('-');
            push_uint(buf, y, 4);
            buf.push(' ');
            push_uint(buf, h, 2);
            buf.push(':');
            push_uint(buf, mi, 2);
        }
        2 => {
            // No offset: local time of the dealer system.
            let mut full = String::new();
            push_ts(&mut full, (secs + LOCAL_OFFSET_S) * 1000);
            full.pop();
            buf.push_str(&full);
        }
        3 => push_uint(buf, secs.max(0) as u64, 1),
        _ => {
            // Hour 24+ from a system that counts hours past midnight of the previous day.
            push_date(buf, day);
            buf.push('T');
            push_uint(buf, h + 24, 2);
            buf.push(':');
            push_uint(buf, mi, 2);
            buf.push_str(":00Z");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::Ts;

    #[test]
    fn formatting_helpers() {
        for ms in [0, 1_609_459_200_000, 1_700_000_123_456, 951_782_400_000] {
            let mut s = String::new();
            push_ts(&mut s, ms);
            assert_eq!(s, Ts(ms).to_rfc3339());
        }
        let mut s = String::new();
        push_cents(&mut s, -58_050);
        s.push(' ');
        push_cents(&mut s, 7);
        s.push(' ');
        push_uint(&mut s, 42, 4);
        assert_eq!(s, "-580.50 0.07 0042");
        for var in 0..8 {
            let mut t = String::new();
            push_bad_ts(&mut t, 1_683_369_060, var);
            assert!(Ts::parse_rfc3339(&t).is_err(), "{t}");
        }
    }
}
