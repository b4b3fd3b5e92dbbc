//! JavaScript's Date strings, computed in UTC: `toISOString()` (what `JSON.stringify` writes) and
//! `toString()` (the form of `handshake.time` in fetchSockets answers).

/// Milliseconds bounding a valid JavaScript Date (ECMA-262 TimeClip).
pub(super) const MAX_DATE_MS: i64 = 8_640_000_000_000_000;

/// `ms` when it is a valid JavaScript Date, `None` for what JavaScript calls an Invalid Date.
pub(super) fn time_clip(ms: i128) -> Option<i64> {
    i64::try_from(ms)
        .ok()
        .filter(|ms| (-MAX_DATE_MS..=MAX_DATE_MS).contains(ms))
}

/// A valid Date split into its UTC fields.
struct Civil {
    year: i64,
    /// 1 to 12.
    month: i64,
    /// 1 to 31.
    day: i64,
    /// 0 (Sunday) to 6.
    weekday: usize,
    /// Milliseconds since midnight.
    ms_of_day: i64,
}

impl Civil {
    fn of(ms: i64) -> Option<Self> {
        let ms = time_clip(i128::from(ms))?;
        let days = ms.div_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        Some(Civil {
            year,
            month,
            day,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as usize,
            ms_of_day: ms.rem_euclid(86_400_000),
        })
    }

    /// `hh:mm:ss`.
    fn time(&self) -> String {
        let secs = self.ms_of_day / 1000;
        format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    }
}

/// `Date.prototype.toISOString()`: `2000-06-13T00:00:00.000Z`, six-digit signed years outside
/// 0..=9999; `None` for an Invalid Date, which `JSON.stringify` writes as null.
pub(super) fn iso_date(ms: i64) -> Option<String> {
    let date = Civil::of(ms)?;
    let year = if (0..=9999).contains(&date.year) {
        format!("{:04}", date.year)
    } else {
        format!("{:+07}", date.year)
    };
    Some(format!(
        "{year}-{:02}-{:02}T{}.{:03}Z",
        date.month,
        date.day,
        date.time(),
        date.ms_of_day % 1000
    ))
}

/// `Date.prototype.toString()` of a Node process running in UTC, the form of `handshake.time` in
/// fetchSockets answers (`docs/PROTOCOL.md` §2.4): `Wed Nov 25 2026 11:27:04 GMT+0000
/// (Coordinated Universal Time)`. `None` for an Invalid Date.
pub fn js_date_string(ms: i64) -> Option<String> {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let date = Civil::of(ms)?;
    let year = if date.year < 0 {
        format!("-{:06}", -date.year)
    } else {
        format!("{:04}", date.year)
    };
    Some(format!(
        "{} {} {:02} {year} {} GMT+0000 (Coordinated Universal Time)",
        DAYS[date.weekday],
        MONTHS[(date.month - 1) as usize],
        date.day,
        date.time()
    ))
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::adapter::testdata::DATE_CASES;

    #[test]
    fn iso_dates_match_to_iso_string() {
        for (ms, iso) in DATE_CASES {
            assert_eq!(iso_date(*ms).as_deref(), Some(*iso));
        }
        assert_eq!(iso_date(MAX_DATE_MS + 1), None);
        assert_eq!(iso_date(-MAX_DATE_MS - 1), None);
    }

    #[test]
    fn js_date_strings_match_node_in_utc() {
        // The capture's handshake.time for issued 1795606024820.
        assert_eq!(
            js_date_string(1_795_606_024_820).as_deref(),
            Some("Wed Nov 25 2026 11:27:04 GMT+0000 (Coordinated Universal Time)")
        );
        assert_eq!(
            js_date_string(0).as_deref(),
            Some("Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)")
        );
        assert_eq!(js_date_string(MAX_DATE_MS + 1), None);
    }

    #[test]
    fn time_clip_bounds_dates_like_javascript() {
        assert_eq!(time_clip(i128::from(MAX_DATE_MS)), Some(MAX_DATE_MS));
        assert_eq!(time_clip(-i128::from(MAX_DATE_MS)), Some(-MAX_DATE_MS));
        assert_eq!(time_clip(i128::from(MAX_DATE_MS) + 1), None);
        assert_eq!(time_clip(i128::from(i64::MAX) + 1), None);
    }
}
