//! When a voucher or campaign may be used: start and expiration dates, recurring
//! timeframes, days of the week and daily hours, evaluated in the project's time zone.

use crate::error::InvalidInput;
use jiff::{tz::TimeZone, Span, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidityTimeframe {
    /// ISO 8601 duration between the starts of two windows, e.g. `P1W`.
    pub interval: String,
    /// ISO 8601 duration of each window, e.g. `PT2H`.
    pub duration: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DailyHours {
    /// `HH:MM` in the project's time zone.
    pub start_time: String,
    /// `HH:MM`; a window ending at or before its start runs past midnight.
    pub expiration_time: String,
    /// 0 = Sunday ... 6 = Saturday; empty or absent means every day.
    #[serde(default)]
    pub days_of_week: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ValidityHours {
    #[serde(default)]
    pub daily: Vec<DailyHours>,
}

/// Why something is not usable right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotValid {
    NotActiveYet,
    Expired,
    OutsideTimeframe,
}

#[derive(Debug, Clone, Default)]
pub struct Validity {
    pub start_date: Option<Timestamp>,
    pub expiration_date: Option<Timestamp>,
    pub timeframe: Option<(Span, Span)>,
    pub days_of_week: Vec<u8>,
    pub hours: Vec<(u16, u16, Vec<u8>)>,
}

fn parse_hhmm(field: &str, s: &str) -> Result<u16, InvalidInput> {
    let bad = || InvalidInput::payload(format!("'{field}' must be a time HH:MM, got '{s}'"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn check_days(field: &str, days: &[u8]) -> Result<(), InvalidInput> {
    if days.len() > 7 || days.iter().any(|d| *d > 6) {
        return Err(InvalidInput::payload(format!("'{field}' holds days 0 (Sunday) to 6 (Saturday)")));
    }
    Ok(())
}

fn parse_span(field: &str, s: &str) -> Result<Span, InvalidInput> {
    let span: Span = s
        .parse()
        .map_err(|_| InvalidInput::payload(format!("'{field}' must be an ISO 8601 duration such as P1D or PT2H, got '{s}'")))?;
    if span.is_negative() || span.is_zero() {
        return Err(InvalidInput::payload(format!("'{field}' must be a positive duration")));
    }
    Ok(span)
}

impl Validity {
    pub fn parse(
        start_date: Option<&str>,
        expiration_date: Option<&str>,
        timeframe: Option<&ValidityTimeframe>,
        days_of_week: Option<&[u8]>,
        hours: Option<&ValidityHours>,
    ) -> Result<Self, InvalidInput> {
        let ts = |field: &str, v: Option<&str>| -> Result<Option<Timestamp>, InvalidInput> {
            v.map(|s| {
                crate::time::parse_lenient(s).ok_or_else(|| InvalidInput::payload(format!("'{field}' must be a date-time (RFC 3339)")))
            })
            .transpose()
        };
        let start_date = ts("start_date", start_date)?;
        let expiration_date = ts("expiration_date", expiration_date)?;
        if let (Some(s), Some(e)) = (start_date, expiration_date) {
            if e <= s {
                return Err(InvalidInput::payload("'expiration_date' must be later than 'start_date'"));
            }
        }
        let timeframe = match timeframe {
            Some(t) => {
                if start_date.is_none() {
                    return Err(InvalidInput::payload(
                        "'validity_timeframe' needs a 'start_date' to count windows from",
                    ));
                }
                Some((
                    parse_span("validity_timeframe.interval", &t.interval)?,
                    parse_span("validity_timeframe.duration", &t.duration)?,
                ))
            }
            None => None,
        };
        let days_of_week = days_of_week.map(<[u8]>::to_vec).unwrap_or_default();
        check_days("validity_day_of_week", &days_of_week)?;
        let mut parsed_hours = Vec::new();
        if let Some(h) = hours {
            if h.daily.len() > 24 {
                return Err(InvalidInput::payload("'validity_hours.daily' may hold at most 24 windows"));
            }
            for (i, d) in h.daily.iter().enumerate() {
                check_days(&format!("validity_hours.daily[{i}].days_of_week"), &d.days_of_week)?;
                parsed_hours.push((
                    parse_hhmm(&format!("validity_hours.daily[{i}].start_time"), &d.start_time)?,
                    parse_hhmm(&format!("validity_hours.daily[{i}].expiration_time"), &d.expiration_time)?,
                    d.days_of_week.clone(),
                ));
            }
        }
        Ok(Validity {
            start_date,
            expiration_date,
            timeframe,
            days_of_week,
            hours: parsed_hours,
        })
    }

    /// Whether `now` falls inside every constraint, with local times in `tz`.
    pub fn check(&self, now: Timestamp, tz: &TimeZone) -> Result<(), NotValid> {
        if let Some(s) = self.start_date {
            if now < s {
                return Err(NotValid::NotActiveYet);
            }
        }
        if let Some(e) = self.expiration_date {
            if now >= e {
                return Err(NotValid::Expired);
            }
        }
        if let (Some((interval, duration)), Some(start)) = (self.timeframe, self.start_date) {
            if !in_timeframe(now, start, interval, duration, tz) {
                return Err(NotValid::OutsideTimeframe);
            }
        }
        let local = now.to_zoned(tz.clone());
        // jiff: Monday = 1 ... Sunday = 7; Voucherify: Sunday = 0.
        let weekday = (local.weekday().to_monday_one_offset() % 7) as u8;
        if !self.days_of_week.is_empty() && !self.days_of_week.contains(&weekday) {
            return Err(NotValid::OutsideTimeframe);
        }
        if !self.hours.is_empty() {
            let minute = local.hour() as u16 * 60 + local.minute() as u16;
            let yesterday = (weekday + 6) % 7;
            let open = self.hours.iter().any(|(start, end, days)| {
                let day_ok = |d: u8| days.is_empty() || days.contains(&d);
                if start < end {
                    day_ok(weekday) && minute >= *start && minute < *end
                } else {
                    // Past midnight: the evening part belongs to today, the morning part
                    // to the window that began yesterday.
                    (day_ok(weekday) && minute >= *start) || (day_ok(yesterday) && minute < *end)
                }
            });
            if !open {
                return Err(NotValid::OutsideTimeframe);
            }
        }
        Ok(())
    }
}

/// Windows start at `start`, `start + interval`, ... and each lasts `duration`. Bounded:
/// the window index is computed arithmetically for fixed-length spans, and by a walk of at
/// most 10,000 steps for calendar spans (months, years).
fn in_timeframe(now: Timestamp, start: Timestamp, interval: Span, duration: Span, tz: &TimeZone) -> bool {
    let zstart = start.to_zoned(tz.clone());
    let fixed = |s: Span| s.get_years() == 0 && s.get_months() == 0;
    if fixed(interval) && fixed(duration) {
        let (Ok(iv), Ok(dv)) = (
            interval.total((jiff::Unit::Second, &zstart)),
            duration.total((jiff::Unit::Second, &zstart)),
        ) else {
            return false;
        };
        if iv <= 0.0 {
            return false;
        }
        let elapsed = (now.as_millisecond() - start.as_millisecond()) as f64 / 1000.0;
        let into = elapsed % iv;
        return into < dv;
    }
    let mut window_start = zstart;
    for _ in 0..10_000 {
        let Ok(end) = window_start.checked_add(duration) else {
            return false;
        };
        if now < window_start.timestamp() {
            return false;
        }
        if now < end.timestamp() {
            return true;
        }
        match window_start.checked_add(interval) {
            Ok(next) => window_start = next,
            Err(_) => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn dates() {
        let v = Validity::parse(Some("2024-01-01T00:00:00Z"), Some("2024-02-01T00:00:00Z"), None, None, None).expect("valid");
        assert_eq!(v.check(ts("2023-12-31T23:59:59Z"), &TimeZone::UTC), Err(NotValid::NotActiveYet));
        assert_eq!(v.check(ts("2024-01-15T00:00:00Z"), &TimeZone::UTC), Ok(()));
        assert_eq!(v.check(ts("2024-02-01T00:00:00Z"), &TimeZone::UTC), Err(NotValid::Expired));
        assert!(Validity::parse(Some("2024-02-01T00:00:00Z"), Some("2024-01-01T00:00:00Z"), None, None, None).is_err());
    }

    #[test]
    fn days_and_hours_in_the_project_zone() {
        let hours = ValidityHours {
            daily: vec![DailyHours {
                start_time: "22:00".into(),
                expiration_time: "02:00".into(),
                days_of_week: vec![5],
            }],
        };
        let v = Validity::parse(None, None, None, None, Some(&hours)).expect("valid");
        let tz = TimeZone::get("Europe/Warsaw").expect("zone");
        // Friday 2024-03-01 22:30 in Warsaw is 21:30 UTC.
        assert_eq!(v.check(ts("2024-03-01T21:30:00Z"), &tz), Ok(()));
        // Saturday 01:00 Warsaw belongs to Friday's window.
        assert_eq!(v.check(ts("2024-03-02T00:00:00Z"), &tz), Ok(()));
        // Saturday 22:30 Warsaw does not.
        assert_eq!(v.check(ts("2024-03-02T21:30:00Z"), &tz), Err(NotValid::OutsideTimeframe));
        let weekend = Validity::parse(None, None, None, Some(&[0, 6]), None).expect("valid");
        assert_eq!(weekend.check(ts("2024-03-02T12:00:00Z"), &TimeZone::UTC), Ok(()));
        assert_eq!(
            weekend.check(ts("2024-03-04T12:00:00Z"), &TimeZone::UTC),
            Err(NotValid::OutsideTimeframe)
        );
    }

    #[test]
    fn recurring_timeframes() {
        let tf = ValidityTimeframe {
            interval: "P1D".into(),
            duration: "PT1H".into(),
        };
        let v = Validity::parse(Some("2024-01-01T10:00:00Z"), None, Some(&tf), None, None).expect("valid");
        assert_eq!(v.check(ts("2024-01-05T10:30:00Z"), &TimeZone::UTC), Ok(()));
        assert_eq!(v.check(ts("2024-01-05T11:30:00Z"), &TimeZone::UTC), Err(NotValid::OutsideTimeframe));
        let monthly = ValidityTimeframe {
            interval: "P1M".into(),
            duration: "P1D".into(),
        };
        let v = Validity::parse(Some("2024-01-01T00:00:00Z"), None, Some(&monthly), None, None).expect("valid");
        assert_eq!(v.check(ts("2024-05-01T12:00:00Z"), &TimeZone::UTC), Ok(()));
        assert_eq!(v.check(ts("2024-05-02T12:00:00Z"), &TimeZone::UTC), Err(NotValid::OutsideTimeframe));
        assert!(Validity::parse(None, None, Some(&tf), None, None).is_err());
        assert!(Validity::parse(
            Some("2024-01-01T00:00:00Z"),
            None,
            Some(&ValidityTimeframe {
                interval: "soon".into(),
                duration: "PT1H".into()
            }),
            None,
            None
        )
        .is_err());
    }
}
