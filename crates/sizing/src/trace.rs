//! Claim traces: the instants at which claims arrived, as the replay consumes them, and their
//! CSV form (one RFC 3339 timestamp a line, under an optional `claimed_at` header).

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::TraceError;

/// The header line a trace file may start with.
pub const TRACE_HEADER: &str = "claimed_at";

/// How much of a bad line an error quotes: enough to recognize it, not a whole binary blob.
const QUOTED_CHARS: usize = 40;

/// Claim instants in ascending order. Built by parsing or from a list, which it sorts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimTrace {
    claims: Vec<DateTime<Utc>>,
}

impl ClaimTrace {
    /// Parses a trace: one RFC 3339 timestamp a line (any offset; stored as UTC), an optional
    /// `claimed_at` header as the first non-blank line, blank lines ignored. Lines need not be
    /// in order. The error names the first bad line, counting from 1.
    pub fn parse(csv: &str) -> Result<ClaimTrace, TraceError> {
        let mut claims = Vec::new();
        let mut seen_content = false;
        for (index, line) in csv.lines().enumerate() {
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let header = !seen_content && text == TRACE_HEADER;
            seen_content = true;
            if header {
                continue;
            }
            let claim = DateTime::parse_from_rfc3339(text).map_err(|_| TraceError {
                line: index + 1,
                text: quote(text),
            })?;
            claims.push(claim.to_utc());
        }
        Ok(ClaimTrace::from_claims(claims))
    }

    /// A trace of these claims, sorted.
    pub fn from_claims(mut claims: Vec<DateTime<Utc>>) -> ClaimTrace {
        claims.sort_unstable();
        ClaimTrace { claims }
    }

    /// The claims, oldest first.
    pub fn claims(&self) -> &[DateTime<Utc>] {
        &self.claims
    }

    /// The number of claims.
    pub fn len(&self) -> usize {
        self.claims.len()
    }

    /// Whether there are no claims.
    pub fn is_empty(&self) -> bool {
        self.claims.is_empty()
    }

    /// The CSV form: the header, then one UTC timestamp to the second a line (`…Z`).
    pub fn to_csv(&self) -> String {
        let mut csv = String::with_capacity(21 * (self.claims.len() + 1));
        csv.push_str(TRACE_HEADER);
        csv.push('\n');
        for claim in &self.claims {
            csv.push_str(&claim.to_rfc3339_opts(SecondsFormat::Secs, true));
            csv.push('\n');
        }
        csv
    }
}

fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn a_trace_with_header_and_blank_lines_parses() {
        let trace =
            ClaimTrace::parse("claimed_at\n\n2026-06-01T08:00:00Z\n  \n2026-06-01T08:00:05Z\n").unwrap();
        assert_eq!(
            trace.claims(),
            &[at("2026-06-01T08:00:00Z"), at("2026-06-01T08:00:05Z")]
        );
    }

    #[test]
    fn the_header_is_optional_and_offsets_become_utc() {
        let trace = ClaimTrace::parse("2026-06-01T10:00:00+02:00\r\n2026-06-01T08:30:00.250Z\r\n").unwrap();
        assert_eq!(trace.claims()[0], at("2026-06-01T08:00:00Z"));
        assert_eq!(trace.len(), 2);
    }

    #[test]
    fn unsorted_input_is_sorted() {
        let trace =
            ClaimTrace::parse("2026-06-01T09:00:00Z\n2026-06-01T08:00:00Z\n2026-06-01T08:30:00Z").unwrap();
        assert!(trace.claims().windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn an_empty_file_is_an_empty_trace() {
        assert!(ClaimTrace::parse("").unwrap().is_empty());
        assert!(ClaimTrace::parse("claimed_at\n").unwrap().is_empty());
    }

    #[test]
    fn a_bad_line_is_named_by_number_and_text() {
        let mut csv = String::from("claimed_at\n");
        csv.push_str(&"2026-06-01T08:00:00Z\n".repeat(15));
        csv.push_str("2026-13-01T08:00:00Z\n");
        let error = ClaimTrace::parse(&csv).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"trace line 17: "2026-13-01T08:00:00Z" is not an RFC 3339 timestamp"#
        );
    }

    #[test]
    fn a_header_after_the_first_line_is_an_error() {
        let error = ClaimTrace::parse("2026-06-01T08:00:00Z\nclaimed_at\n").unwrap_err();
        assert_eq!(error.line, 2);
    }

    #[test]
    fn dates_without_time_or_zone_are_errors() {
        for bad in ["2026-06-01", "2026-06-01T08:00:00", "yesterday"] {
            assert_eq!(ClaimTrace::parse(bad).unwrap_err().text, bad);
        }
    }

    #[test]
    fn long_bad_lines_are_quoted_short() {
        let error = ClaimTrace::parse(&"x".repeat(500)).unwrap_err();
        assert_eq!(error.text, format!("{}…", "x".repeat(40)));
    }

    #[test]
    fn csv_round_trips() {
        let trace = ClaimTrace::from_claims(vec![at("2026-06-01T08:00:07Z"), at("2026-06-01T07:59:00Z")]);
        let csv = trace.to_csv();
        assert_eq!(csv, "claimed_at\n2026-06-01T07:59:00Z\n2026-06-01T08:00:07Z\n");
        assert_eq!(ClaimTrace::parse(&csv).unwrap(), trace);
    }
}
