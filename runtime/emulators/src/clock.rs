//! Wall-clock helpers: APISIX stamps resources with Unix seconds, Cloudflare with RFC 3339.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (what APISIX writes into `create_time` / `update_time`).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Now as RFC 3339 with microseconds, the shape of Cloudflare's `created_on` / `modified_on`.
pub(crate) fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(
        i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        now.subsec_micros(),
    )
}

/// Formats Unix seconds + microseconds as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC).
pub(crate) fn rfc3339(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day); Howard Hinnant's algorithm,
/// used instead of a date crate because this is the only calendar arithmetic the crate needs.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        // 2024-02-29T12:34:56Z, a leap day.
        assert_eq!(rfc3339(1_709_210_096, 7), "2024-02-29T12:34:56.000007Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn now_is_after_2024() {
        assert!(unix_now() > 1_700_000_000);
        assert!(rfc3339_now().starts_with("20"));
    }
}
