//! Timestamps in API bodies: RFC 3339 UTC with an explicit offset and microseconds,
//! `2026-11-27T13:21:33.123456+00:00`, as the earlier platform wrote them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serializer;

pub fn format(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// `#[serde(serialize_with = "http_kit::time::rfc3339")]`
pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(at))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn timestamps_have_an_offset_and_microseconds() {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 11, 27, 13, 21, 33)
            .single()
            .expect("valid");
        assert_eq!(super::format(&at), "2026-11-27T13:21:33.000000+00:00");
    }
}
