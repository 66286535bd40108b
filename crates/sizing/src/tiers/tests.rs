use std::time::Duration;

use chrono::{DateTime, Utc};

use super::*;
use crate::policy::{DEFAULT_CREATE_RATE_PER_MIN, DEFAULT_HEADROOM};
use crate::schedule::IdleSchedule;

/// Wednesday 12:00 in Berlin.
const OFFICE_HOURS: &str = "2026-06-03T10:00:00Z";
/// Wednesday 23:00 in Berlin.
const NIGHT: &str = "2026-06-03T21:00:00Z";

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn sizing<'a>(schedule: Option<&'a IdleSchedule>, now: &str) -> SizingInputs<'a> {
    SizingInputs {
        now: at(now),
        min_idle: 2,
        schedule,
        max_total: None,
        live_non_warm: 0,
        claims_per_min: 0.0,
        p90_time_to_ready: Duration::from_secs(150),
        creation_queue: 0,
        create_rate_per_min: DEFAULT_CREATE_RATE_PER_MIN,
        headroom: DEFAULT_HEADROOM,
    }
}

fn inputs(sizing: SizingInputs<'_>, counts: TierCounts) -> TierInputs<'_> {
    TierInputs {
        sizing,
        p90_wake: Duration::from_secs(96),
        claims_last_minute: 0,
        parked_min: 10,
        parked_max: 100,
        counts,
    }
}

#[test]
fn with_the_tier_off_the_plan_is_todays_create_and_drain() {
    let mut input = inputs(
        sizing(None, OFFICE_HOURS),
        TierCounts {
            idle: 5,
            idle_parkable: 0,
            ..TierCounts::default()
        },
    );
    input.parked_max = 0;
    let plan = plan_tiers(&input);
    assert_eq!(plan.parked.reason, ParkedReason::Off);
    // Idle above the floor of 2 is drained at once, parkAfterMs or not; nothing is parked.
    assert_eq!((plan.park, plan.drain, plan.create, plan.wake), (0, 3, 0, 0));
    input.counts.idle = 0;
    let plan = plan_tiers(&input);
    assert_eq!((plan.create, plan.wake), (2, 0), "{plan}");
}

#[test]
fn the_warm_horizon_is_the_wake_while_parked_agents_exist_and_the_creation_without() {
    let mut input = inputs(
        sizing(None, OFFICE_HOURS),
        TierCounts {
            parked: 10,
            ..TierCounts::default()
        },
    );
    input.sizing.claims_per_min = 4.0;
    // 4/min × 1.6 min (p90 wake 96 s) × 1.5 = 9.6 → 10, all woken, nothing created.
    let plan = plan_tiers(&input);
    assert_eq!(plan.warm.idle, 10, "{plan}");
    assert_eq!(plan.wake, 10, "{plan}");
    // The parked tier refills by creating: 4/min × 2.5 min × 1.5 = 15.
    assert_eq!(plan.create, 15, "{plan}");
    // No parked agent: a creation refills, 4/min × 2.5 min × 1.5 = 15.
    input.counts.parked = 0;
    let plan = plan_tiers(&input);
    assert_eq!(plan.warm.idle, 15, "{plan}");
    assert_eq!(plan.wake, 0);
}

#[test]
fn a_burst_beyond_the_warm_stock_wakes_parked_agents_at_once_and_creates_nothing_for_it() {
    let mut input = inputs(
        sizing(None, OFFICE_HOURS),
        TierCounts {
            idle: 0,
            parked: 50,
            waiting: 6,
            ..TierCounts::default()
        },
    );
    input.sizing.claims_per_min = 0.5;
    input.claims_last_minute = 12;
    let plan = plan_tiers(&input);
    // The burst's rate: 12/min × 1.6 min × 1.5 = 28.8 → 29 warm, plus the 6 waiting.
    assert!(plan.burst, "{plan}");
    assert_eq!(plan.desired_warm, 35, "{plan}");
    assert_eq!(plan.wake, 35);
    // Parked stock left: 15, above parkedMin 10 but below the creation-horizon demand of
    // 0.5 × 2.5 × 1.5 = 1.875 → 2; so nothing is created.
    assert_eq!(plan.create, 0, "{plan}");
    // Waking ones count as warm: the next tick wakes no more.
    input.counts.parked = 15;
    input.counts.waking = 35;
    let plan = plan_tiers(&input);
    assert_eq!((plan.wake, plan.create, plan.park), (0, 0, 0), "{plan}");
    // Without claims waiting the last minute's rate does not count.
    input.counts.waiting = 0;
    let plan = plan_tiers(&input);
    assert!(!plan.burst);
}

#[test]
fn a_waiting_claim_on_an_empty_warm_tier_wakes_one_for_itself() {
    let mut input = inputs(
        sizing(None, NIGHT),
        TierCounts {
            idle: 0,
            in_flight: 2,
            parked: 10,
            waiting: 1,
            ..TierCounts::default()
        },
    );
    input.claims_last_minute = 1;
    let plan = plan_tiers(&input);
    // Floor 2 (both in flight) + 1 waiting; the last minute's 1 claim × 1.6 × 1.5 → 3.
    assert_eq!(plan.desired_warm, 4, "{plan}");
    // Two woken; the two the parked tier then lacks under parkedMin are created only once no
    // claim waits.
    assert_eq!((plan.wake, plan.create), (2, 0), "{plan}");
    assert!(plan.served_by_waking, "{plan}");
    input.counts.waiting = 0;
    input.counts.parked = 8;
    input.counts.in_flight = 2;
    let plan = plan_tiers(&input);
    assert_eq!((plan.wake, plan.create), (0, 2), "{plan}");
}

/// The must-show's pool (2 warm, 10 parked, `parkedMin` = `parkedMax` = 10, no `maxTotal`)
/// through a burst of 10 waiting claims, tick by tick: every shortfall is woken, nothing is
/// created until no claim waits, and then the parked tier is refilled.
#[test]
fn a_burst_the_stock_covers_creates_nothing_until_no_claim_waits_then_refills_the_parked_tier() {
    let mut input = inputs(
        sizing(None, OFFICE_HOURS),
        TierCounts {
            idle: 0,
            parked: 10,
            waiting: 8,
            ..TierCounts::default()
        },
    );
    input.parked_max = 10;
    // A young pool's forecast after the burst's minute, and the burst's own rate.
    input.sizing.claims_per_min = 3.5;
    input.claims_last_minute = 10;
    // Tick 1: the two warm agents are claimed, eight claims wait. The burst's rate asks for
    // 10 × 1.6 × 1.5 = 24 warm + 8 waiting; all ten parked agents are woken, none created.
    let plan = plan_tiers(&input);
    assert!(plan.burst && plan.served_by_waking, "{plan}");
    assert_eq!(plan.desired_warm, 32, "{plan}");
    assert_eq!((plan.wake, plan.create), (10, 0), "{plan}");
    // Tick 2: the ten are starting, no parked agent is left; the warm target is now over the
    // creation's horizon and far above the stock, but the eight waiting claims are covered.
    input.counts.parked = 0;
    input.counts.in_flight = 10;
    let plan = plan_tiers(&input);
    assert_eq!((plan.wake, plan.create), (0, 0), "{plan}");
    assert!(plan.to_string().contains("served by waking"), "{plan}");
    // Tick 3: woken agents served seven claims, one still waits: still nothing created.
    input.counts.in_flight = 3;
    input.counts.waiting = 1;
    let plan = plan_tiers(&input);
    assert_eq!(plan.create, 0, "{plan}");
    // The burst is over (no claim waits, two woken agents left idle): the forecast's warm
    // shortfall and the parked tier's ten are created.
    input.counts.in_flight = 0;
    input.counts.idle = 2;
    input.counts.waiting = 0;
    let plan = plan_tiers(&input);
    assert!(!plan.served_by_waking, "{plan}");
    // 3.5/min × 2.5 min × 1.5 = 13.1 → 14 warm, 12 short; and the parked tier's 10.
    assert_eq!(plan.desired_warm, 14, "{plan}");
    assert_eq!((plan.wake, plan.create), (0, 22), "{plan}");
}

#[test]
fn a_burst_larger_than_the_whole_stock_creates_at_once() {
    let mut input = inputs(
        sizing(None, OFFICE_HOURS),
        TierCounts {
            idle: 0,
            in_flight: 2,
            parked: 10,
            waiting: 15,
            ..TierCounts::default()
        },
    );
    input.claims_last_minute = 20;
    let plan = plan_tiers(&input);
    // 15 waiting against 2 on their way and 10 parked: the stock cannot serve them all.
    assert!(!plan.served_by_waking, "{plan}");
    // 20 × 1.6 × 1.5 = 48 warm + 15 waiting = 63; 2 in flight, 10 woken, 51 created, and the
    // parked tier's 10.
    assert_eq!(plan.desired_warm, 63, "{plan}");
    assert_eq!((plan.wake, plan.create), (10, 61), "{plan}");
}

#[test]
fn the_parked_target_is_parked_min_raised_by_the_schedule_and_the_forecast_capped_by_parked_max() {
    let schedule = IdleSchedule::parse("mon-fri 08:00-19:00 Europe/Berlin=48; *=2").unwrap();
    let night = inputs(sizing(Some(&schedule), NIGHT), TierCounts::default());
    let plan = plan_tiers(&night);
    // At night the ramp to the day's 48 is parked: 48 − 2 = 46 > parkedMin 10.
    assert_eq!(plan.parked.count, 46, "{}", plan.parked);
    assert_eq!(
        plan.parked.to_string(),
        "parked target 46 = schedule's peak floor 48 − floor now 2 (parkedMin 10)"
    );
    let day = inputs(sizing(Some(&schedule), OFFICE_HOURS), TierCounts::default());
    assert_eq!(
        plan_tiers(&day).parked.to_string(),
        "parked target 10 = parkedMin 10"
    );
    let mut busy = inputs(sizing(None, OFFICE_HOURS), TierCounts::default());
    busy.sizing.claims_per_min = 6.0;
    busy.sizing.creation_queue = 4;
    // 6/min × (2.5 + 4/2) min × 1.5 = 40.5 → 41.
    assert_eq!(
        plan_tiers(&busy).parked.to_string(),
        "parked target 41 = 6 claims/min × 4.5 min creation horizon (parkedMin 10)"
    );
    busy.parked_max = 30;
    assert_eq!(
        plan_tiers(&busy).parked.to_string(),
        "parked target 30 = capped by parkedMax 30 (wanted 41)"
    );
    // parkedMin is kept even when the forecast is zero.
    let quiet = inputs(sizing(None, NIGHT), TierCounts::default());
    assert_eq!(plan_tiers(&quiet).parked.count, 10);
}

#[test]
fn max_total_leaves_the_warm_tier_first_and_the_parked_tier_what_is_left() {
    let mut input = inputs(sizing(None, NIGHT), TierCounts::default());
    input.sizing.max_total = Some(20);
    input.sizing.live_non_warm = 12;
    let plan = plan_tiers(&input);
    assert_eq!(plan.warm.idle, 2);
    assert_eq!(
        plan.parked.to_string(),
        "parked target 6 = capped by POOL_MAX_TOTAL 20 (wanted 10)"
    );
}

#[test]
fn idle_above_the_warm_target_is_parked_after_park_after_and_drained_only_when_the_tier_is_full() {
    let mut input = inputs(
        sizing(None, NIGHT),
        TierCounts {
            idle: 8,
            idle_parkable: 3,
            parked: 5,
            ..TierCounts::default()
        },
    );
    // Warm target 2: six idle above it, three idle long enough; the tier has room for five.
    let plan = plan_tiers(&input);
    assert_eq!(
        (plan.park, plan.drain, plan.create, plan.delete_parked),
        (3, 0, 0, 0),
        "{plan}"
    );
    // A full parked tier: the parkable surplus is drained instead.
    input.counts.parked = 10;
    let plan = plan_tiers(&input);
    assert_eq!((plan.park, plan.drain, plan.delete_parked), (0, 3, 0), "{plan}");
    // Creations in flight are not cancelled, and only ready agents above the warm target
    // leave: of six warm (two idle, four coming) the two idle are the warm stock until the
    // four are ready; then the four above the target go.
    input.counts = TierCounts {
        idle: 2,
        idle_parkable: 2,
        in_flight: 4,
        parked: 10,
        ..TierCounts::default()
    };
    let plan = plan_tiers(&input);
    assert_eq!((plan.park, plan.drain), (0, 0), "{plan}");
    input.counts.idle = 6;
    input.counts.idle_parkable = 6;
    input.counts.in_flight = 0;
    let plan = plan_tiers(&input);
    assert_eq!((plan.park, plan.drain), (0, 4), "{plan}");
}

#[test]
fn parked_agents_are_deleted_only_above_the_target_or_past_their_age() {
    let mut input = inputs(
        sizing(None, NIGHT),
        TierCounts {
            idle: 2,
            parked: 14,
            ..TierCounts::default()
        },
    );
    let plan = plan_tiers(&input);
    assert_eq!((plan.delete_parked, plan.create), (4, 0), "{plan}");
    input.counts.parked = 10;
    assert_eq!(plan_tiers(&input).delete_parked, 0);
    // Two past their age go, and are replaced by creations once they are gone.
    input.counts.parked_over_age = 2;
    assert_eq!(plan_tiers(&input).delete_parked, 2);
    input.counts.parked = 8;
    input.counts.parked_over_age = 0;
    assert_eq!(plan_tiers(&input).create, 2);
}

#[test]
fn the_plan_says_why() {
    let input = inputs(
        sizing(None, NIGHT),
        TierCounts {
            parked: 10,
            waiting: 1,
            ..TierCounts::default()
        },
    );
    assert_eq!(
        plan_tiers(&input).to_string(),
        "warm target 2 = floor 2 from minIdle (demand 0) + 1 claim(s) waiting (served by waking: no creation while claims wait); parked target 10 = parkedMin 10"
    );
}

#[test]
fn a_filling_pool_parks_only_ready_agents_above_the_warm_target() {
    // Warm target 3 (the floor) and parkedMin 2: five created; one is ready, four starting.
    let mut input = inputs(
        sizing(None, NIGHT),
        TierCounts {
            idle: 1,
            idle_parkable: 1,
            in_flight: 4,
            ..TierCounts::default()
        },
    );
    input.sizing.min_idle = 3;
    input.parked_min = 2;
    let plan = plan_tiers(&input);
    // The ready one stays warm: the two surplus park when they are idle, not before.
    assert_eq!((plan.park, plan.drain, plan.create), (0, 0, 0), "{plan}");
    input.counts.idle = 4;
    input.counts.idle_parkable = 4;
    input.counts.in_flight = 1;
    let plan = plan_tiers(&input);
    assert_eq!((plan.park, plan.drain, plan.create), (1, 0, 0), "{plan}");
}
