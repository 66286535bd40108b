//! Times as people read them: "3 min ago", with the exact UTC time kept for a hover title.

use chrono::{DateTime, Utc};

/// A moment, shown relative to now with its exact time for the `title` attribute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct When {
    /// "just now", "3 min ago", "2 h ago", "4 days ago", or "in 5 min" for the future.
    pub ago: String,
    /// `2026-12-01 10:31:07 UTC`.
    pub exact: String,
}

impl When {
    /// `at`, as seen at `now`.
    pub fn at(at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        let seconds = (now - at).num_seconds();
        let magnitude = seconds.unsigned_abs();
        let span = match magnitude {
            0..=9 => None,
            10..=59 => Some(format!("{magnitude} s")),
            60..=3_599 => Some(format!("{} min", magnitude / 60)),
            3_600..=172_799 => Some(format!("{} h", magnitude / 3_600)),
            _ => Some(format!("{} days", magnitude / 86_400)),
        };
        Self {
            ago: match span {
                None => "just now".into(),
                Some(span) if seconds >= 0 => format!("{span} ago"),
                Some(span) => format!("in {span}"),
            },
            exact: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn reads_like_a_person_would_say_it() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:31:07Z")
            .unwrap()
            .to_utc();
        let cases = [
            (0, "just now"),
            (42, "42 s ago"),
            (3 * 60 + 20, "3 min ago"),
            (2 * 3600 + 5, "2 h ago"),
            (50 * 3600, "2 days ago"),
            (-300, "in 5 min"),
        ];
        for (seconds_ago, expected) in cases {
            assert_eq!(When::at(now - Duration::seconds(seconds_ago), now).ago, expected);
        }
        assert_eq!(When::at(now, now).exact, "2026-12-01 10:31:07 UTC");
    }
}
