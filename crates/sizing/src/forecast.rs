//! The demand forecast: claims per minute expected over the next few minutes, from the claim
//! history. It blends an exponentially weighted moving average of the last two hours (what is
//! happening now) with the rate in the same hour one week earlier (what usually happens next).

/// How many minutes of recent history the forecast looks at. Eight half-lives: older minutes
/// would weigh less than half a percent.
pub const RECENT_MINUTES: usize = 120;

/// The half-life of the moving average, in minutes.
///
/// A refill takes a few minutes (one creation every 30 s plus about 2.5 min to become ready),
/// so the forecast must follow a morning ramp within a fraction of an hour; but at half a
/// claim a minute, 15 minutes hold only about 7 claims, and a shorter half-life would make the
/// target jump with every Poisson clump. After a burst the average stays high for a while,
/// which keeps a little extra stock in case the burst has a second wave.
pub const EWMA_HALF_LIFE_MINUTES: f64 = 15.0;

/// How much of the gap between last week's rate and the moving average the forecast closes,
/// when last week's rate is the higher one.
///
/// Last week's same hour anticipates a recurring ramp-up (Monday 09:00) that the moving
/// average cannot have seen yet; but one week is a single sample and holidays happen, so it
/// only pulls the forecast half-way. When last week was quieter than now, the moving average
/// alone is used: today is busier, and under-provisioning costs 503s.
pub const LAST_WEEK_WEIGHT: f64 = 0.5;

/// The claim history a forecast is made from, shaped so that one database query can fill it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimHistory {
    /// Claims per minute, oldest first, the last bucket being the minute that ends at `now`.
    /// Normally [`RECENT_MINUTES`] long; shorter (a fresh pool) is fine, longer is ignored.
    pub recent: Vec<u32>,
    /// Claims per minute averaged over the 60 minutes starting at `now − 7 days`, i.e. the
    /// coming hour one week ago; `None` when the history does not reach back that far.
    pub last_week_same_hour: Option<f64>,
}

/// A forecast and the two rates it was made from, so a sizing decision can be explained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemandForecast {
    /// The expected claims per minute: what sizing uses.
    pub claims_per_min: f64,
    /// The moving average of the recent minutes.
    pub recent_rate: f64,
    /// Last week's rate for the coming hour, if known.
    pub last_week_rate: Option<f64>,
}

impl ClaimHistory {
    /// The forecast: the moving average of `recent`, raised half-way towards last week's rate
    /// when that is higher (see [`LAST_WEEK_WEIGHT`]).
    pub fn forecast(&self) -> DemandForecast {
        let recent_rate = moving_average(&self.recent);
        let last_week_rate = self
            .last_week_same_hour
            .filter(|rate| rate.is_finite())
            .map(|rate| rate.max(0.0));
        let lift = last_week_rate.map_or(0.0, |rate| (rate - recent_rate).max(0.0));
        DemandForecast {
            claims_per_min: recent_rate + LAST_WEEK_WEIGHT * lift,
            recent_rate,
            last_week_rate,
        }
    }
}

/// The exponentially weighted average of the last [`RECENT_MINUTES`] buckets, the newest
/// weighing 1. The weights are normalized over the buckets present rather than started from
/// zero, so a pool with only ten minutes of history is not told that demand is low.
fn moving_average(buckets: &[u32]) -> f64 {
    let decay = 0.5_f64.powf(1.0 / EWMA_HALF_LIFE_MINUTES);
    let mut weight = 1.0;
    let (mut weighted, mut total) = (0.0, 0.0);
    for &claims in buckets.iter().rev().take(RECENT_MINUTES) {
        weighted += weight * f64::from(claims);
        total += weight;
        weight *= decay;
    }
    if total > 0.0 { weighted / total } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(recent: Vec<u32>, last_week: Option<f64>) -> ClaimHistory {
        ClaimHistory {
            recent,
            last_week_same_hour: last_week,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn no_history_forecasts_no_demand() {
        assert_eq!(ClaimHistory::default().forecast().claims_per_min, 0.0);
    }

    #[test]
    fn a_steady_rate_is_forecast_as_itself() {
        let f = history(vec![3; RECENT_MINUTES], None).forecast();
        assert!(close(f.claims_per_min, 3.0), "{f:?}");
        let short = history(vec![2; 10], None).forecast();
        assert!(
            close(short.claims_per_min, 2.0),
            "a short history is not diluted: {short:?}"
        );
    }

    #[test]
    fn a_minute_one_half_life_ago_weighs_half_as_much_as_the_newest() {
        let half_life = EWMA_HALF_LIFE_MINUTES as usize;
        let mut old = vec![0; half_life + 1];
        old[0] = 10;
        let mut new = vec![0; half_life + 1];
        new[half_life] = 10;
        let (old, new) = (history(old, None).forecast(), history(new, None).forecast());
        assert!(
            close(old.claims_per_min * 2.0, new.claims_per_min),
            "{old:?} {new:?}"
        );
    }

    #[test]
    fn only_the_last_two_hours_count() {
        let mut buckets = vec![100; 60];
        buckets.extend(vec![1; RECENT_MINUTES]);
        assert!(close(history(buckets, None).forecast().claims_per_min, 1.0));
    }

    #[test]
    fn recent_minutes_weigh_more_so_a_ramp_shows_quickly() {
        let mut buckets = vec![0; 105];
        buckets.extend(vec![2; 15]);
        let f = history(buckets, None).forecast();
        assert!(f.claims_per_min > 0.9 && f.claims_per_min < 2.0, "{f:?}");
    }

    #[test]
    fn a_busier_last_week_pulls_the_forecast_half_way_up() {
        let f = history(vec![1; RECENT_MINUTES], Some(3.0)).forecast();
        assert!(close(f.claims_per_min, 2.0), "{f:?}");
        assert!(close(f.recent_rate, 1.0));
        assert_eq!(f.last_week_rate, Some(3.0));
    }

    #[test]
    fn a_quieter_last_week_does_not_lower_the_forecast() {
        let f = history(vec![2; RECENT_MINUTES], Some(0.5)).forecast();
        assert!(close(f.claims_per_min, 2.0), "{f:?}");
    }

    #[test]
    fn nonsense_last_week_rates_are_ignored() {
        for rate in [f64::NAN, f64::INFINITY, -4.0] {
            let f = history(vec![1; RECENT_MINUTES], Some(rate)).forecast();
            assert!(close(f.claims_per_min, 1.0), "{rate}: {f:?}");
        }
    }
}
