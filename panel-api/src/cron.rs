//! Cron expressions for schedules, evaluated as upstream's library does: five fields
//! (minute hour day-of-month month day-of-week), lists, ranges, steps, month and
//! weekday names, `7` as Sunday, `?` as `*`, `L` for the month's last day, and
//! day-of-month OR day-of-week when both are restricted.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

#[derive(Clone, Debug)]
pub struct Cron {
    minute: Vec<bool>,
    hour: Vec<bool>,
    dom: Vec<bool>,
    dom_last: bool,
    dom_star: bool,
    month: Vec<bool>,
    dow: Vec<bool>,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(s: &str, names: &[&str], offset: u32) -> Option<u32> {
    if let Ok(n) = s.parse::<u32>() {
        return Some(n);
    }
    let up = s.to_ascii_uppercase();
    names
        .iter()
        .position(|n| *n == up)
        .map(|i| i as u32 + offset)
}

/// Parses one field into a bitmap over `min..=max`; `names` map to `offset + index`.
fn field(expr: &str, min: u32, max: u32, names: &[&str], offset: u32) -> Option<Vec<bool>> {
    let mut bits = vec![false; (max + 1) as usize];
    if expr.is_empty() {
        return None;
    }
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s.parse::<u32>().ok().filter(|n| *n > 0)?)),
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || range == "?" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, offset)?, value(b, names, offset)?)
        } else {
            let v = value(range, names, offset)?;
            // `5/10` means from 5 to the end in steps of 10.
            (v, if step.is_some() { max } else { v })
        };
        if lo < min || hi > max || lo > hi {
            return None;
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            bits[v as usize] = true;
            v += step;
        }
    }
    Some(bits)
}

impl Cron {
    /// The first field (`minute`, `hour`, `day_of_month`, `month`, `day_of_week`)
    /// that does not parse, if any.
    pub fn invalid_field(
        minute: &str,
        hour: &str,
        dom: &str,
        month: &str,
        dow: &str,
    ) -> Option<&'static str> {
        if field(minute, 0, 59, &[], 0).is_none() {
            Some("minute")
        } else if field(hour, 0, 23, &[], 0).is_none() {
            Some("hour")
        } else if !dom.eq_ignore_ascii_case("L") && field(dom, 1, 31, &[], 0).is_none() {
            Some("day_of_month")
        } else if field(month, 1, 12, &MONTHS, 1).is_none() {
            Some("month")
        } else if field(dow, 0, 7, &DAYS, 0).is_none() {
            Some("day_of_week")
        } else {
            None
        }
    }

    /// `None` when upstream would refuse the expression.
    pub fn parse(minute: &str, hour: &str, dom: &str, month: &str, dow: &str) -> Option<Cron> {
        let dom_last = dom.eq_ignore_ascii_case("L");
        let dom_bits = if dom_last {
            vec![false; 32]
        } else {
            field(dom, 1, 31, &[], 0)?
        };
        let mut dow_bits = field(dow, 0, 7, &DAYS, 0)?;
        if dow_bits[7] {
            dow_bits[0] = true;
        }
        Some(Cron {
            minute: field(minute, 0, 59, &[], 0)?,
            hour: field(hour, 0, 23, &[], 0)?,
            dom: dom_bits,
            dom_last,
            dom_star: dom == "*" || dom == "?",
            month: field(month, 1, 12, &MONTHS, 1)?,
            dow: dow_bits,
            dow_star: dow == "*" || dow == "?",
        })
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let last = d
            .checked_add_signed(Duration::days(1))
            .is_some_and(|n| n.month() != d.month());
        let dom = if self.dom_last {
            last
        } else {
            self.dom[d.day() as usize]
        };
        let dow = self.dow[d.weekday().num_days_from_sunday() as usize];
        match (self.dom_star, self.dow_star) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = after.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = after + Duration::days(366 * 5);
        while t < limit {
            if !self.month[t.month() as usize] {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single()?;
                continue;
            }
            if !self.day_matches(t.date_naive()) {
                t = Utc
                    .from_utc_datetime(&t.date_naive().and_hms_opt(0, 0, 0)?)
                    .checked_add_signed(Duration::days(1))?;
                continue;
            }
            if !self.hour[t.hour() as usize] {
                t = t.with_minute(0)? + Duration::hours(1);
                continue;
            }
            if !self.minute[t.minute() as usize] {
                t += Duration::minutes(1);
                continue;
            }
            return Some(t);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_runs() {
        let c = Cron::parse("*/15", "*", "*", "*", "*").unwrap();
        assert_eq!(
            c.next_after(at("2026-01-01T10:07:30Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        let c = Cron::parse("0", "4", "*", "*", "MON").unwrap();
        // 2026-01-01 is a Thursday; next Monday is the 5th.
        assert_eq!(
            c.next_after(at("2026-01-01T10:00:00Z")),
            Some(at("2026-01-05T04:00:00Z"))
        );
        let c = Cron::parse("30", "2", "L", "FEB", "*").unwrap();
        assert_eq!(
            c.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-02-28T02:30:00Z"))
        );
        // Both restricted: either matches.
        let c = Cron::parse("0", "0", "10", "*", "7").unwrap();
        assert_eq!(
            c.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-04T00:00:00Z"))
        );
    }

    #[test]
    fn rejects_what_upstream_rejects() {
        assert!(Cron::parse("60", "*", "*", "*", "*").is_none());
        assert!(Cron::parse("*", "24", "*", "*", "*").is_none());
        assert!(Cron::parse("*", "*", "0", "*", "*").is_none());
        assert!(Cron::parse("*", "*", "*", "13", "*").is_none());
        assert!(Cron::parse("*/0", "*", "*", "*", "*").is_none());
        assert!(Cron::parse("abc", "*", "*", "*", "*").is_none());
        assert!(Cron::parse("", "*", "*", "*", "*").is_none());
        assert!(Cron::parse("5-1", "*", "*", "*", "*").is_none());
    }
}
