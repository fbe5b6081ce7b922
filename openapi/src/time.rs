//! Pterodactyl prints three timestamp formats (reference §8): UTC with an explicit
//! `+00:00` offset, the panel timezone as ATOM (`+00:00` for UTC panels), and
//! Eloquent's `toArray()` form with microseconds and `Z`. These serde helpers print
//! and read each of them.

use chrono::{DateTime, SecondsFormat, Utc};

/// `YYYY-MM-DDTHH:MM:SS+00:00`.
pub fn utc_iso(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
}

/// `YYYY-MM-DDTHH:MM:SS.000000Z`. Upstream's MySQL columns keep whole seconds, so
/// the fraction is always zero there; we print it the same way.
pub fn micro_z(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.000000Z").to_string()
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
}
