//! The sizing settings the environment seeds on the first start (`POOL_MIN_IDLE`,
//! `POOL_MAX_TOTAL`, `POOL_IDLE_SCHEDULE`, …); afterwards they live in the database and change
//! through the API.

use std::time::Duration;

use pool_store::PoolSettings;

use super::reader::Reader;

pub(super) fn read(r: &mut Reader<'_>) -> PoolSettings {
    let settings = PoolSettings {
        min_idle: r.parse("POOL_MIN_IDLE", 1, "a whole number"),
        max_total: r.parse_optional("POOL_MAX_TOTAL", "a whole number"),
        paused: false,
        idle_schedule: r.optional("POOL_IDLE_SCHEDULE"),
        max_idle_age: r
            .parse_optional::<u64>("POOL_MAX_IDLE_AGE_MS", "a whole number of milliseconds")
            .map(Duration::from_millis),
        create_failure_limit: r.parse("POOL_CREATE_FAILURE_LIMIT", 5, "a whole number"),
        parked_min: 0,
        parked_max: r.parse(
            "POOL_PARKED_MAX",
            pool_provisioner::DEFAULT_PARKED_MAX,
            "a whole number",
        ),
        park_after: Duration::from_millis(r.parse(
            "POOL_PARK_AFTER_MS",
            pool_provisioner::DEFAULT_PARK_AFTER.as_millis() as u64,
            "a whole number of milliseconds",
        )),
    };
    // parkedMin's default never exceeds parkedMax, so POOL_PARKED_MAX=0 alone turns the tier off.
    let settings = PoolSettings {
        parked_min: r.parse(
            "POOL_PARKED_MIN",
            pool_provisioner::DEFAULT_PARKED_MIN.min(settings.parked_max),
            "a whole number",
        ),
        ..settings
    };
    if let Err(e) = pool_provisioner::validate_settings(&settings) {
        r.problems.push(settings_problem(&e));
    }
    settings
}

/// A settings problem in the words of the environment: the variable that seeds the field.
fn settings_problem(e: &pool_provisioner::ProvisionError) -> String {
    match e {
        pool_provisioner::ProvisionError::InvalidRequest { field, message } => {
            let variable = match *field {
                "minIdle" => "POOL_MIN_IDLE",
                "maxTotal" => "POOL_MAX_TOTAL",
                "idleSchedule" => "POOL_IDLE_SCHEDULE",
                "maxIdleAgeMs" => "POOL_MAX_IDLE_AGE_MS",
                "createFailureLimit" => "POOL_CREATE_FAILURE_LIMIT",
                "parkedMin" => "POOL_PARKED_MIN",
                "parkedMax" => "POOL_PARKED_MAX",
                "parkAfterMs" => "POOL_PARK_AFTER_MS",
                other => other,
            };
            format!("{variable}: {message}")
        }
        other => other.to_string(),
    }
}
