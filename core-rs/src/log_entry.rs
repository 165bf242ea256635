//! Reading the Redis log's entries (the fields `server/edgesel_server/store/redis.py` `_event_fields`
//! writes): every replica reads every Feedback of the fleet, so this is per-event work on every replica
//! (docs/redis.md, "What a replica costs per Feedback"). Only edgesel's own canonical form is read here —
//! an id `0-<seq>`, the seven fields in their order, numbers as `repr(float)` writes them; anything else
//! makes the caller fall back to the Python decoder, so an unusual entry reads exactly as it always did.

/// The field names of an entry, in the order `_event_fields` writes them.
pub const FIELD_NAMES: [&[u8]; 7] = [b"k", b"e", b"m", b"x", b"r", b"p", b"c"];

/// The seq of a stream id `0-<digits>` (what Python's `int()` reads from the digits), if it has that form
/// and fits in 18 digits; `None` otherwise.
pub fn parse_seq(id: &[u8]) -> Option<u64> {
    let digits = id.strip_prefix(b"0-")?;
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        digits
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// A decimal number `[+-]? digits [. digits] [(e|E) [+-]? digits]` (at least one digit before or after
/// the point), correctly rounded — as Python's `float()` reads it, bit for bit (both round correctly).
/// `None` for anything else (`inf`, `nan`, spaces, underscores, …), which the caller reads with `float()`.
pub fn parse_decimal(s: &[u8]) -> Option<f64> {
    let mut i = 0;
    let n = s.len();
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < n && s[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < n && (s[i] == b'+' || s[i] == b'-') {
        i += 1;
    }
    let mut mantissa = digits(&mut i);
    if i < n && s[i] == b'.' {
        i += 1;
        mantissa += digits(&mut i);
    }
    if mantissa == 0 {
        return None;
    }
    if i < n && (s[i] == b'e' || s[i] == b'E') {
        i += 1;
        if i < n && (s[i] == b'+' || s[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return None;
        }
    }
    if i != n {
        return None;
    }
    // ASCII only (checked above), so the conversion cannot fail.
    std::str::from_utf8(s).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs() {
        assert_eq!(parse_seq(b"0-1"), Some(1));
        assert_eq!(parse_seq(b"0-000123"), Some(123));
        assert_eq!(
            parse_seq(b"0-999999999999999999"),
            Some(999_999_999_999_999_999)
        );
        for bad in [
            &b"0-"[..],
            b"1-5",
            b"0-1a",
            b"0- 1",
            b"0-+1",
            b"0-1_0",
            b"0-1234567890123456789",
            b"",
            b"0",
        ] {
            assert_eq!(parse_seq(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn decimals() {
        for (s, v) in [
            (&b"0.734"[..], 0.734),
            (b"-0.0", -0.0),
            (b"1e-05", 1e-05),
            (b"1.5e+16", 1.5e16),
            (b"1796195836.5275588", 1796195836.5275588),
            (b"5.", 5.0),
            (b".5", 0.5),
            (b"+2E3", 2000.0),
            (b"2.2250738585072014e-308", 2.2250738585072014e-308),
            (b"5e-324", 5e-324),
            (b"1e999", f64::INFINITY),
        ] {
            assert_eq!(
                parse_decimal(s).map(f64::to_bits),
                Some(v.to_bits()),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
        for bad in [
            &b""[..],
            b".",
            b"-",
            b"e5",
            b"1e",
            b"1e+",
            b"inf",
            b"nan",
            b"-inf",
            b" 1",
            b"1 ",
            b"1_0",
            b"0x10",
            b"1.2.3",
        ] {
            assert_eq!(
                parse_decimal(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
