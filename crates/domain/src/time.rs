//! Timestamps as Voucherify writes them: RFC 3339, UTC, milliseconds, `Z`.

use jiff::Timestamp;

pub fn now() -> Timestamp {
    Timestamp::now()
}

/// `2022-08-30T06:32:07.380Z`. Fixed width, so stored strings sort chronologically.
pub fn format(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%3fZ").to_string()
}

pub fn now_string() -> String {
    format(now())
}

/// Parses a date-time from a query string or body. Accepts RFC 3339 and the forms the
/// official clients send: offsets without a colon (`+0000`), up to nanoseconds, and
/// naive date-times or plain dates, which are taken as UTC.
pub fn parse_lenient(input: &str) -> Option<Timestamp> {
    let s = input.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Some(ts);
    }
    // `+0000` style offsets: insert the colon jiff expects.
    let bytes = s.as_bytes();
    if s.len() > 5 {
        let tail = &s[s.len() - 5..];
        let tb = tail.as_bytes();
        if (tb[0] == b'+' || tb[0] == b'-') && tb[1..].iter().all(u8::is_ascii_digit) {
            let fixed = format!("{}{}:{}", &s[..s.len() - 5], &tail[..3], &tail[3..]);
            if let Ok(ts) = fixed.parse::<Timestamp>() {
                return Some(ts);
            }
        }
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp());
    }
    if bytes.len() == 10 {
        if let Ok(d) = s.parse::<jiff::civil::Date>() {
            return d.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp());
        }
    }
    None
}

/// Validates a calendar date `YYYY-MM-DD` (birthdates).
pub fn is_valid_date(s: &str) -> bool {
    s.len() == 10 && s.parse::<jiff::civil::Date>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_millis_and_z() {
        let ts: Timestamp = "2022-08-30T06:32:07.38Z".parse().expect("valid");
        assert_eq!(format(ts), "2022-08-30T06:32:07.380Z");
    }

    #[test]
    fn parses_client_forms() {
        let want: Timestamp = "2024-05-01T12:00:00Z".parse().expect("valid");
        for s in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T12:00:00.000Z",
            "2024-05-01T12:00:00.000000+0000",
            "2024-05-01T14:00:00.000000+0200",
            "2024-05-01T12:00:00+00:00",
            "2024-05-01T12:00:00.000000",
        ] {
            assert_eq!(parse_lenient(s), Some(want), "{s}");
        }
        assert!(parse_lenient("2024-05-01").is_some());
        assert_eq!(parse_lenient("yesterday"), None);
        assert_eq!(parse_lenient(""), None);
    }

    #[test]
    fn dates() {
        assert!(is_valid_date("1990-01-02"));
        assert!(!is_valid_date("1990-02-30"));
        assert!(!is_valid_date("1990-1-2"));
    }
}
