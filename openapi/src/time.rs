//! Pterodactyl prints three timestamp formats (reference §8): UTC with an explicit
//! `+00:00` offset, the panel timezone as ATOM (`+00:00` for UTC panels), and
//! Eloquent's `toArray()` form with microseconds and `Z`. These serde helpers print
//! and read each of them.

use chrono::{DateTime, SecondsFormat, Utc};

/// `YYYY-MM-DDTHH:MM:SS+00:00`.
pub fn utc_iso(t: &DateTime<Utc>) -> String {
    fixed_width(t, "+00:00").unwrap_or_else(|| t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string())
}

/// `YYYY-MM-DDTHH:MM:SS.000000Z`. Upstream's MySQL columns keep whole seconds, so
/// the fraction is always zero there; we print it the same way.
pub fn micro_z(t: &DateTime<Utc>) -> String {
    fixed_width(t, ".000000Z").unwrap_or_else(|| t.format("%Y-%m-%dT%H:%M:%S.000000Z").to_string())
}

/// `YYYY-MM-DDTHH:MM:SS` + `suffix` written digit by digit: every list item prints
/// two or more timestamps, and `format` re-parses its pattern each time. `None` for
/// what the fixed width cannot hold (years outside 0–9999, leap seconds), which
/// `format` prints.
fn fixed_width(t: &DateTime<Utc>, suffix: &str) -> Option<String> {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) || t.nanosecond() >= 1_000_000_000 {
        return None;
    }
    let two = |n: u32| [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
    let y = year as u32;
    let (mo, d, h, mi, se) = (
        two(t.month()),
        two(t.day()),
        two(t.hour()),
        two(t.minute()),
        two(t.second()),
    );
    let bytes = [
        b'0' + (y / 1000) as u8,
        b'0' + (y / 100 % 10) as u8,
        b'0' + (y / 10 % 10) as u8,
        b'0' + (y % 10) as u8,
        b'-',
        mo[0],
        mo[1],
        b'-',
        d[0],
        d[1],
        b'T',
        h[0],
        h[1],
        b':',
        mi[0],
        mi[1],
        b':',
        se[0],
        se[1],
    ];
    let mut out = String::with_capacity(bytes.len() + suffix.len());
    // ASCII digits and separators only.
    out.push_str(std::str::from_utf8(&bytes).ok()?);
    out.push_str(suffix);
    Some(out)
}

/// Parses any RFC 3339 timestamp (every format above is one).
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// RFC 3339 with nanoseconds and `Z`, as Wings prints.
pub fn rfc3339_nanos(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

macro_rules! format_module {
    ($name:ident, $fmt:path) => {
        /// serde `with` module for this timestamp format.
        pub mod $name {
            use chrono::{DateTime, Utc};
            use serde::{Deserialize, Deserializer, Serializer};

            pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&$fmt(t))
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
                let s = String::deserialize(d)?;
                crate::time::parse(&s)
                    .ok_or_else(|| serde::de::Error::custom(format!("bad timestamp {s:?}")))
            }

            /// The same format for optional timestamps (`null` when absent).
            pub mod option {
                use chrono::{DateTime, Utc};
                use serde::{Deserialize, Deserializer, Serializer};

                pub fn serialize<S: Serializer>(
                    t: &Option<DateTime<Utc>>,
                    s: S,
                ) -> Result<S::Ok, S::Error> {
                    match t {
                        Some(t) => s.serialize_str(&$fmt(t)),
                        None => s.serialize_none(),
                    }
                }

                pub fn deserialize<'de, D: Deserializer<'de>>(
                    d: D,
                ) -> Result<Option<DateTime<Utc>>, D::Error> {
                    let s = Option::<String>::deserialize(d)?;
                    match s {
                        None => Ok(None),
                        Some(s) => crate::time::parse(&s).map(Some).ok_or_else(|| {
                            serde::de::Error::custom(format!("bad timestamp {s:?}"))
                        }),
                    }
                }
            }
        }
    };
}

format_module!(utc, crate::time::utc_iso);
format_module!(micro, crate::time::micro_z);
format_module!(nanos, crate::time::rfc3339_nanos);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn formats_match_upstream() {
        let t = Utc.with_ymd_and_hms(2024, 3, 17, 20, 58, 30).unwrap();
        assert_eq!(utc_iso(&t), "2024-03-17T20:58:30+00:00");
        assert_eq!(micro_z(&t), "2024-03-17T20:58:30.000000Z");
        assert_eq!(parse("2024-03-17T20:58:30+00:00"), Some(t));
        assert_eq!(parse("2024-03-17T20:58:30.000000Z"), Some(t));
    }

    #[test]
    fn fixed_width_printing_matches_strftime() {
        let mut cases = vec![
            Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-5, 6, 7, 8, 9, 10).unwrap(),
        ];
        // A leap second.
        cases.push(
            Utc.with_ymd_and_hms(2016, 12, 31, 23, 59, 59).unwrap()
                + chrono::Duration::nanoseconds(0),
        );
        if let Some(leap) = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
        {
            cases.push(leap.and_utc());
        }
        let mut t = Utc.with_ymd_and_hms(2023, 1, 1, 0, 0, 0).unwrap();
        for _ in 0..500 {
            cases.push(t);
            t += chrono::Duration::seconds(86_400 * 3 + 3_671);
        }
        for t in cases {
            assert_eq!(utc_iso(&t), t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string());
            assert_eq!(
                micro_z(&t),
                t.format("%Y-%m-%dT%H:%M:%S.000000Z").to_string()
            );
        }
    }
}
