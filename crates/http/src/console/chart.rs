//! The pool over the last 24 hours, drawn on the server as SVG: idle, claimed and the sizing
//! target as lines, claims served and refused per hour as bars. No script, no framework; the
//! SVG scales to the page's width. Only numbers reach it, so nothing needs escaping.

use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use pool_store::PoolSample;

/// The chart's span.
pub const SPAN_HOURS: i64 = 24;

const WIDTH: f64 = 480.0;
const LEFT: f64 = 30.0;
const RIGHT: f64 = 6.0;
/// The line panel's top and bottom.
const LINES: (f64, f64) = (14.0, 130.0);
/// The bar panel's top and bottom.
const BARS: (f64, f64) = (152.0, 196.0);
const HEIGHT: f64 = 214.0;

/// The series and bars, as the page's legend names them (CSS class, words).
pub const LEGEND: [(&str, &str); 5] = [
    ("idle", "idle"),
    ("claimed", "claimed"),
    ("target", "target"),
    ("served", "claims served per hour"),
    ("refused", "claims refused per hour"),
];

/// One hour of claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourOfClaims {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// Claims served.
    pub served: i64,
    /// Claims refused.
    pub refused: i64,
}

/// The chart's SVG for the 24 hours before `now`.
pub fn render(samples: &[(DateTime<Utc>, PoolSample)], hours: &[HourOfClaims], now: DateTime<Utc>) -> String {
    let start = now - Duration::hours(SPAN_HOURS);
    let x = |at: DateTime<Utc>| {
        let share = (at - start).num_seconds() as f64 / (SPAN_HOURS * 3600) as f64;
        LEFT + share.clamp(0.0, 1.0) * (WIDTH - LEFT - RIGHT)
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg"><title id="chart-title">Idle, claimed and target agents, and claims per hour, over the last 24 hours</title>"#
    );

    // The line panel: idle, claimed, target.
    let line_max = samples
        .iter()
        .map(|(_, s)| s.idle.max(s.claimed).max(s.target))
        .max()
        .unwrap_or(0)
        .max(1);
    let y_line = |v: i32| LINES.1 - (v.max(0) as f64 / nice(line_max) as f64) * (LINES.1 - LINES.0);
    axis(&mut svg, LINES, nice(line_max) as i64, "agents");
    // The target last, dashed on top: it usually runs on the idle line.
    for (class, value) in [
        ("claimed", (|s: &PoolSample| s.claimed) as fn(&PoolSample) -> i32),
        ("idle", |s| s.idle),
        ("target", |s| s.target),
    ] {
        if samples.is_empty() {
            continue;
        }
        let mut points = String::new();
        for (at, s) in samples.iter().filter(|(at, _)| *at >= start) {
            let _ = write!(points, "{:.1},{:.1} ", x(*at), y_line(value(s)));
        }
        let _ = write!(
            svg,
            r#"<polyline class="series {class}" fill="none" points="{}"/>"#,
            points.trim_end()
        );
    }
    if samples.is_empty() {
        let _ = write!(
            svg,
            r#"<text class="empty" x="{:.0}" y="{:.0}" text-anchor="middle">no samples yet: the leader records one a minute</text>"#,
            (LEFT + WIDTH - RIGHT) / 2.0,
            (LINES.0 + LINES.1) / 2.0
        );
    }

    // The bar panel: claims served and refused per hour, stacked.
    let bar_max = hours
        .iter()
        .map(|h| h.served + h.refused)
        .max()
        .unwrap_or(0)
        .max(1);
    let y_bar = |v: i64| (v as f64 / nice(bar_max as i32) as f64) * (BARS.1 - BARS.0);
    axis(&mut svg, BARS, nice(bar_max as i32) as i64, "claims/h");
    let hour_width = (WIDTH - LEFT - RIGHT) / SPAN_HOURS as f64;
    for h in hours.iter().filter(|h| h.hour + Duration::hours(1) > start) {
        let left = x(h.hour.max(start)) + 1.0;
        let width = (x((h.hour + Duration::hours(1)).min(now)) - left - 1.0).clamp(1.0, hour_width);
        let served = y_bar(h.served);
        let refused = y_bar(h.refused);
        let _ = write!(
            svg,
            r#"<g><title>{}: {} served, {} refused</title><rect class="served" x="{left:.1}" y="{:.1}" width="{width:.1}" height="{served:.1}"/><rect class="refused" x="{left:.1}" y="{:.1}" width="{width:.1}" height="{refused:.1}"/></g>"#,
            h.hour.format("%H:00 UTC"),
            h.served,
            h.refused,
            BARS.1 - served,
            BARS.1 - served - refused,
        );
    }

    // The time axis: every six hours, labelled in hours before now.
    for back in (0..=SPAN_HOURS).step_by(6) {
        let at = now - Duration::hours(back);
        let label = if back == 0 {
            "now".to_string()
        } else {
            format!("−{back} h")
        };
        // The end labels stay inside the drawing.
        let anchor = match back {
            0 => "end",
            SPAN_HOURS => "start",
            _ => "middle",
        };
        let _ = write!(
            svg,
            r#"<line class="grid" x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}"/><text class="tick" x="{0:.1}" y="{3}" text-anchor="{anchor}">{label}</text>"#,
            x(at),
            LINES.0,
            BARS.1,
            HEIGHT - 8.0
        );
    }

    svg.push_str("</svg>");
    svg
}

/// A horizontal baseline and top line for a panel, labelled with its maximum.
fn axis(svg: &mut String, (top, bottom): (f64, f64), max: i64, unit: &str) {
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" x2="{0}" y1="{bottom}" y2="{bottom}"/><line class="grid" x1="{LEFT}" x2="{0}" y1="{top}" y2="{top}"/><text class="tick" x="{1}" y="{2}" text-anchor="end">{max}</text><text class="tick" x="{1}" y="{3}" text-anchor="end">0</text><text class="unit" x="{LEFT}" y="{4}">{unit}</text>"#,
        WIDTH - RIGHT,
        LEFT - 4.0,
        top + 4.0,
        bottom,
        top - 3.0,
    );
}

/// A round axis maximum at or above `n`: 1, 2, 5, 10, 20, 50, …
fn nice(n: i32) -> i32 {
    let mut step = 1;
    loop {
        for m in [1, 2, 5] {
            if step * m >= n {
                return step * m;
            }
        }
        step *= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(idle: i32, claimed: i32, target: i32) -> PoolSample {
        PoolSample {
            idle,
            claimed,
            warm: idle,
            target,
            reason: String::new(),
        }
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(
            [0, 1, 2, 3, 6, 11, 49, 51, 101].map(nice),
            [1, 1, 2, 5, 10, 20, 50, 100, 200]
        );
    }

    #[test]
    fn draws_one_line_per_series_and_one_bar_pair_per_hour() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
            .unwrap()
            .to_utc();
        let samples: Vec<_> = (0..30)
            .map(|m| (now - Duration::minutes(30 - m), sample(m as i32 % 4, 2, 3)))
            .collect();
        let hours = [
            HourOfClaims {
                hour: now - Duration::hours(2),
                served: 5,
                refused: 1,
            },
            HourOfClaims {
                hour: now - Duration::hours(1),
                served: 8,
                refused: 0,
            },
        ];
        let svg = render(&samples, &hours, now);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        for class in ["idle", "claimed", "target"] {
            assert_eq!(svg.matches(&format!("series {class}")).count(), 1, "{class}");
        }
        assert_eq!(svg.matches(r#"class="served""#).count(), 2);
        assert_eq!(svg.matches(r#"class="refused""#).count(), 2);
        assert!(svg.contains("10:00 UTC: 5 served, 1 refused"), "{svg}");
        // 30 points per line, every one inside the drawing.
        let idle = svg.split("series idle\" fill=\"none\" points=\"").nth(1).unwrap();
        let points: Vec<&str> = idle.split('"').next().unwrap().split(' ').collect();
        assert_eq!(points.len(), 30);
        for p in points {
            let (x, y) = p.split_once(',').unwrap();
            let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
            assert!(
                (LEFT..=WIDTH).contains(&x) && (LINES.0..=LINES.1).contains(&y),
                "{p}"
            );
        }
    }

    #[test]
    fn an_empty_history_says_so() {
        let svg = render(&[], &[], Utc::now());
        assert!(svg.contains("no samples yet"));
        assert!(!svg.contains("polyline"));
    }
}
