//! Durations (`30s`, `5m`, `1h30m`, `250ms`, bare integer = seconds) and sizes (`4MiB`, `1048576`).
//!
//! All functions are linear in the input length and never panic.

use std::time::Duration;

/// Longest duration or size text accepted; anything longer is a mistake, not a value.
const MAX_LEN: usize = 64;

const UNITS: &str = "ns, us, ms, s, m, h, d";

/// Parses a duration: one or more `<number><unit>` parts (`1h30m`, `1.5s`, `250ms`), units
/// `ns us µs ms s m h d`, or a bare non-negative integer meaning seconds. Spaces between parts
/// are allowed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t.len() > MAX_LEN {
        return Err(format!("duration `{}…` is too long", truncate(t)));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("duration `{t}` is too large"));
    }
    let mut total: u128 = 0; // nanoseconds
    let mut rest = t;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() {
            return Err(format!(
                "invalid duration `{t}`: expected a number before `{}`",
                rest.chars().next().unwrap_or(' ')
            ));
        }
        // `5 minutes`: the unit after a space is still this number's (it was "`5` needs a
        // unit", though a bare number alone means seconds).
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let nanos_per: u128 = match unit {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            "" => {
                return Err(format!(
                    "invalid duration `{t}`: `{num}` needs a unit ({UNITS})"
                ));
            }
            other => {
                return Err(format!(
                    "invalid duration `{t}`: unknown unit `{other}` (use {UNITS})"
                ));
            }
        };
        total = total
            .checked_add(
                scaled(num, nanos_per)
                    .ok_or_else(|| format!("invalid duration `{t}`: bad number `{num}`"))?,
            )
            .ok_or_else(|| format!("duration `{t}` is too large"))?;
    }
    let secs =
        u64::try_from(total / 1_000_000_000).map_err(|_| format!("duration `{t}` is too large"))?;
    // Remainder is < 1e9 so it fits u32.
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// `num` (digits with at most one `.`) times `unit`, exactly for integers, to the nearest unit
/// below for fractions; `None` when malformed or too large.
fn scaled(num: &str, unit: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let int: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut value = int.checked_mul(unit)?;
    // Fractional digits beyond 18 cannot matter for any unit here (at most 1e14 ns per unit).
    let frac = &frac[..frac.len().min(18)];
    if !frac.is_empty() {
        let digits: u128 = frac.parse().ok()?;
        let scale = 10u128.pow(frac.len() as u32);
        value = value.checked_add(digits.checked_mul(unit)? / scale)?;
    }
    Some(value)
}

/// Formats a duration so that [`parse_duration`] reads it back exactly: `1h30m`, `250ms`, `0s`,
/// `1m5s250ms`, `1s500us` (the protocol's one formatter, which every crate prints with).
pub use meridian_protocol::duration::format_duration;

/// Parses a size in bytes: a bare integer, or a number with a unit: `B`, decimal `KB MB GB TB`
/// (powers of 1000), binary `KiB MiB GiB TiB` (powers of 1024). Units are case-insensitive;
/// fractions are rounded down to whole bytes (`1.5KiB` = 1536).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty size".into());
    }
    if t.len() > MAX_LEN {
        return Err(format!("size `{}…` is too long", truncate(t)));
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() {
        return Err(format!("invalid size `{t}`: expected a number"));
    }
    let mult: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size `{t}`: unknown unit `{unit}` (use B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    let v = scaled(num, mult).ok_or_else(|| format!("invalid size `{t}`: bad number `{num}`"))?;
    u64::try_from(v).map_err(|_| format!("size `{t}` is too large"))
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(20);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("30s"), Duration::from_secs(30));
        assert_eq!(ok("30"), Duration::from_secs(30));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("1h 30m"), Duration::from_secs(5400));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1.5s"), Duration::from_millis(1500));
        assert_eq!(ok("2d"), Duration::from_secs(172_800));
        assert_eq!(ok("10us"), Duration::from_micros(10));
        assert_eq!(ok("10µs"), Duration::from_micros(10));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn bad_durations_say_why() {
        let err = |s: &str| parse_duration(s).unwrap_err();
        assert!(err("5x").contains("unknown unit `x`"));
        assert!(err("1h30").contains("needs a unit"));
        assert!(
            err("5 minutes").contains("unknown unit `minutes`"),
            "{}",
            err("5 minutes")
        );
        assert_eq!(parse_duration("5 m"), Ok(Duration::from_secs(300)));
        assert!(err("").contains("empty"));
        assert!(err("s").contains("expected a number"));
        assert!(err("1.2.3s").contains("bad number"));
        assert!(err("-5s").contains("expected a number"));
        assert!(
            err("99999999999999999999999h").contains("bad number")
                || err("99999999999999999999999h").contains("too large")
        );
        assert!(err(&"1s".repeat(100)).contains("too long"));
    }

    #[test]
    fn format_reads_back() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_millis(65_250)), "1m5s250ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("16 mib"), Ok(16 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("0"), Ok(0));
        assert!(
            parse_size("4 potatoes")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("MiB").unwrap_err().contains("expected a number"));
        assert!(parse_size("99999999TiB").unwrap_err().contains("too large"));
    }

    proptest! {
        #[test]
        fn duration_round_trips(secs in 0u64..10_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn duration_and_size_never_panic(s in "\\PC{0,40}") {
            let _ = parse_duration(&s);
            let _ = parse_size(&s);
        }
    }
}
