//! Identifiers as dealer systems write them: VINs with a valid check digit (and broken
//! ones), mobile phone numbers in their free forms (and ones that cannot be normalised),
//! customer and dealer ids.
//!
//! Pure helpers that draw from the random stream they are given or append to a string.

use super::format::push_uint;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Mobile prefixes of the Chinese carriers.
pub(super) const MOBILE_PREFIXES: [u64; 29] = [
    130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 155, 156, 157, 158, 159, 166, 177,
    180, 181, 182, 183, 185, 186, 187, 188, 189, 199,
];

/// Letters and digits a VIN may contain (no I, O, Q).
pub(super) const VIN_CHARS: &[u8] = b"ABCDEFGHJKLMNPRSTUVWXYZ0123456789";
/// Model-year codes (position 10 of a VIN), a 30-year cycle starting in 1980.
pub(super) const VIN_YEARS: &[u8] = b"ABCDEFGHJKLMNPRSTVWXY123456789";

/// A VIN with the brand's WMI, a model-year code, a valid check digit (position 9).
pub(super) fn make_vin(rng: &mut ChaCha8Rng, wmi: &str, year: i32) -> [u8; 17] {
    let mut v = [b'0'; 17];
    v[..3].copy_from_slice(wmi.as_bytes());
    for c in v.iter_mut().take(8).skip(3) {
        *c = VIN_CHARS[rng.gen_range(0..VIN_CHARS.len())];
    }
    v[9] = VIN_YEARS[(year - 1980).rem_euclid(30) as usize];
    v[10] = VIN_CHARS[rng.gen_range(0..23)];
    for c in v.iter_mut().skip(11) {
        *c = b'0' + rng.gen_range(0..10u8);
    }
    v[8] = vin_check_digit(&v);
    v
}

/// The check digit of a VIN (position 9): transliterated characters weighted, mod 11.
pub(super) fn vin_check_digit(v: &[u8; 17]) -> u8 {
    const WEIGHTS: [u32; 17] = [8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2];
    let value = |c: u8| -> u32 {
        match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'H' => u32::from(c - b'A') + 1,
            b'J'..=b'N' => u32::from(c - b'J') + 1,
            b'P' => 7,
            b'R' => 9,
            b'S'..=b'Z' => u32::from(c - b'S') + 2,
            _ => 0,
        }
    };
    let sum: u32 = v.iter().zip(WEIGHTS).map(|(c, w)| value(*c) * w).sum();
    match sum % 11 {
        10 => b'X',
        d => b'0' + d as u8,
    }
}

pub(super) fn push_customer_id(buf: &mut String, idx: u32) {
    buf.push('C');
    push_uint(buf, u64::from(idx) + 1, 8);
}

pub(super) fn push_dealer_id(buf: &mut String, idx: u32) {
    buf.push('D');
    push_uint(buf, u64::from(idx) + 1, 4);
}

/// Appends an 11-digit mobile in one of the free forms of dealer systems.
pub(super) fn push_phone(buf: &mut String, phone: u64, fmt: u8) {
    let (a, b, c) = (phone / 100_000_000, phone / 10_000 % 10_000, phone % 10_000);
    match fmt {
        1 => push_uint(buf, phone, 11),
        2 => {
            push_uint(buf, a, 3);
            buf.push('-');
            push_uint(buf, b, 4);
            buf.push('-');
            push_uint(buf, c, 4);
        }
        3 => {
            buf.push_str("+86 ");
            push_uint(buf, a, 3);
            buf.push(' ');
            push_uint(buf, b, 4);
            buf.push(' ');
            push_uint(buf, c, 4);
        }
        4 => {
            push_uint(buf, a, 3);
            buf.push(' ');
            push_uint(buf, b, 4);
            buf.push(' ');
            push_uint(buf, c, 4);
        }
        _ => {
            buf.push_str("0086-");
            push_uint(buf, phone, 11);
        }
    }
}

/// Phone numbers that cannot be normalised: a digit short, a letter O typed for a zero,
/// an impossible mobile prefix, a service short code.
pub(super) fn push_bad_phone(buf: &mut String, phone: u64, var: u8) {
    match var % 4 {
        0 => {
            push_uint(buf, phone / 100_000_000, 3);
            buf.push('-');
            push_uint(buf, phone / 10_000 % 10_000, 4);
            buf.push('-');
            push_uint(buf, phone % 10_000 / 10, 3);
        }
        1 => {
            let mut s = String::new();
            push_uint(&mut s, phone, 11);
            buf.push_str(&s[..3]);
            buf.push('O');
            buf.push_str(&s[4..]);
        }
        2 => {
            buf.push_str("+86 2");
            push_uint(buf, phone / 100_000_000 % 100, 2);
            buf.push(' ');
            push_uint(buf, phone / 10_000 % 10_000, 4);
            buf.push(' ');
            push_uint(buf, phone % 10_000, 4);
        }
        _ => buf.push_str("110"),
    }
}

pub(super) fn push_vin(buf: &mut String, vin: &[u8; 17], fmt: u8) {
    for (i, c) in vin.iter().enumerate() {
        if fmt == 2 && (i == 3 || i == 9) {
            buf.push(' ');
        }
        let ch = char::from(*c);
        buf.push(if fmt == 1 {
            ch.to_ascii_lowercase()
        } else {
            ch
        });
    }
}

/// VINs that fail ISO 3779: one character short, one too many, or an I, O or Q typed in.
pub(super) fn push_bad_vin(buf: &mut String, vin: &[u8; 17], var: u8) {
    let s: String = vin.iter().map(|c| char::from(*c)).collect();
    match var % 5 {
        0 => buf.push_str(&s[..16]),
        1 => {
            buf.push_str(&s);
            buf.push('7');
        }
        v => {
            let pos = 3 + usize::from(var / 5) % 14;
            let bad = [b'O', b'I', b'Q'][usize::from(v - 2)];
            for (i, c) in vin.iter().enumerate() {
                buf.push(char::from(if i == pos { bad } else { *c }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{normalize_phone, normalize_vin};

    #[test]
    fn vin_and_phone_helpers() {
        // The textbook example of a VIN check digit.
        let vin: [u8; 17] = *b"1M8GDM9AXKP042788";
        assert_eq!(vin_check_digit(&vin), b'X');
        for fmt in 1..=5 {
            let mut p = String::new();
            push_phone(&mut p, 13_800_138_000, fmt);
            assert_eq!(normalize_phone(&p).unwrap(), "+8613800138000", "{p}");
        }
        for var in 0..8 {
            let mut p = String::new();
            push_bad_phone(&mut p, 13_800_138_000, var);
            assert!(normalize_phone(&p).is_err(), "{p}");
            let mut v = String::new();
            push_bad_vin(&mut v, &vin, var * 7);
            assert!(normalize_vin(&v).is_err(), "{v}");
        }
    }
}
