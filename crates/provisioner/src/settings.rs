//! Runtime settings: what an operator may change while the pool runs, checked field by field.
//!
//! A change is all or nothing: every field of a patch is checked first, and a bad value is
//! refused naming its field, with nothing changed. The store records who changed what.
//!
//! Every shape (runtime) has its own settings, seeded from the same environment variables.
//! The calls without a runtime act on the default shape's (the settings API's body as it was
//! before shapes); the `_of` calls take the runtime a request named (`?runtime=`), an unknown
//! one refused naming `runtime`.

use std::time::Duration;

use pool_sizing::IdleSchedule;
use pool_store::{BrakeState, PoolSettings, StoredSettings};
use serde::Deserialize;

use crate::Provisioner;
use crate::error::{ProvisionError, Result};

/// Largest `minIdle` accepted.
pub const MAX_MIN_IDLE: u32 = 10_000;
/// Largest `maxTotal` accepted.
pub const MAX_MAX_TOTAL: u32 = 100_000;
/// Shortest `maxIdleAgeMs` accepted: recycling faster than Railway can replace only churns.
pub const MIN_MAX_IDLE_AGE: Duration = Duration::from_secs(600);
/// Longest `maxIdleAgeMs` accepted.
pub const MAX_MAX_IDLE_AGE: Duration = Duration::from_secs(90 * 24 * 3600);
/// Largest `createFailureLimit` accepted.
pub const MAX_FAILURE_LIMIT: u32 = 1_000;
/// Largest `parkedMax` accepted.
pub const MAX_PARKED_MAX: u32 = 10_000;
/// Longest `parkAfterMs` accepted (as long as the longest maximum idle age).
pub const MAX_PARK_AFTER: Duration = MAX_MAX_IDLE_AGE;

/// A change of some settings. A field left out keeps its value; `null` clears an optional one.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsPatch {
    /// The floor of warm agents.
    #[serde(default)]
    pub min_idle: Option<u32>,
    /// The cap on live agents (`null`: none).
    #[serde(default, with = "double_option")]
    pub max_total: Option<Option<u32>>,
    /// Create nothing; hand out what exists.
    #[serde(default)]
    pub paused: Option<bool>,
    /// `POOL_IDLE_SCHEDULE` syntax (`null`: none).
    #[serde(default, with = "double_option")]
    pub idle_schedule: Option<Option<String>>,
    /// Recycle idle agents older than this many milliseconds (`null`: never).
    #[serde(default, with = "double_option")]
    pub max_idle_age_ms: Option<Option<u64>>,
    /// Consecutive failed creations that engage the brake.
    #[serde(default)]
    pub create_failure_limit: Option<u32>,
    /// Agents kept parked at all times.
    #[serde(default)]
    pub parked_min: Option<u32>,
    /// Never more parked agents than this (0: no parked tier).
    #[serde(default)]
    pub parked_max: Option<u32>,
    /// Idle milliseconds after which an agent above the warm target is parked.
    #[serde(default)]
    pub park_after_ms: Option<u64>,
}

/// `Option<Option<T>>` from JSON: absent → `None`, `null` → `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    /// A present field as `Some`, whether it holds a value or `null`.
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ProvisionError {
    ProvisionError::InvalidRequest {
        field,
        message: message.into(),
    }
}

/// Checks a full set of settings; the first bad field is named.
pub fn validate(settings: &PoolSettings) -> Result<()> {
    if settings.min_idle > MAX_MIN_IDLE {
        return Err(invalid("minIdle", format!("must be 0 to {MAX_MIN_IDLE}")));
    }
    if let Some(max) = settings.max_total {
        if max == 0 || max > MAX_MAX_TOTAL {
            return Err(invalid(
                "maxTotal",
                format!("must be 1 to {MAX_MAX_TOTAL}, or null"),
            ));
        }
        if max < settings.min_idle {
            return Err(invalid(
                "maxTotal",
                format!("must not be below minIdle ({})", settings.min_idle),
            ));
        }
    }
    if let Some(schedule) = &settings.idle_schedule {
        IdleSchedule::parse(schedule).map_err(|e| invalid("idleSchedule", e.to_string()))?;
    }
    if let Some(age) = settings.max_idle_age
        && !(MIN_MAX_IDLE_AGE..=MAX_MAX_IDLE_AGE).contains(&age)
    {
        return Err(invalid(
            "maxIdleAgeMs",
            format!(
                "must be {} to {} milliseconds, or null",
                MIN_MAX_IDLE_AGE.as_millis(),
                MAX_MAX_IDLE_AGE.as_millis()
            ),
        ));
    }
    if settings.create_failure_limit == 0 || settings.create_failure_limit > MAX_FAILURE_LIMIT {
        return Err(invalid(
            "createFailureLimit",
            format!("must be 1 to {MAX_FAILURE_LIMIT}"),
        ));
    }
    if settings.parked_max > MAX_PARKED_MAX {
        return Err(invalid(
            "parkedMax",
            format!("must be 0 (no parked tier) to {MAX_PARKED_MAX}"),
        ));
    }
    if settings.parked_min > settings.parked_max {
        return Err(invalid(
            "parkedMin",
            format!(
                "must not be above parkedMax ({}); set both to 0 to turn the parked tier off",
                settings.parked_max
            ),
        ));
    }
    if settings.park_after > MAX_PARK_AFTER {
        return Err(invalid(
            "parkAfterMs",
            format!("must be 0 to {} milliseconds", MAX_PARK_AFTER.as_millis()),
        ));
    }
    Ok(())
}

impl SettingsPatch {
    /// The settings after this patch.
    pub fn apply(&self, current: &PoolSettings) -> PoolSettings {
        PoolSettings {
            min_idle: self.min_idle.unwrap_or(current.min_idle),
            max_total: self.max_total.unwrap_or(current.max_total),
            paused: self.paused.unwrap_or(current.paused),
            idle_schedule: self
                .idle_schedule
                .clone()
                .unwrap_or_else(|| current.idle_schedule.clone())
                .filter(|s| !s.trim().is_empty()),
            max_idle_age: self
                .max_idle_age_ms
                .map(|ms| ms.map(Duration::from_millis))
                .unwrap_or(current.max_idle_age),
            create_failure_limit: self.create_failure_limit.unwrap_or(current.create_failure_limit),
            parked_min: self.parked_min.unwrap_or(current.parked_min),
            parked_max: self.parked_max.unwrap_or(current.parked_max),
            park_after: self
                .park_after_ms
                .map_or(current.park_after, Duration::from_millis),
        }
    }
}

impl Provisioner {
    /// The default shape's runtime settings.
    pub async fn settings(&self) -> Result<StoredSettings> {
        self.settings_of(None).await
    }

    /// The runtime settings of the shape `runtime` names (`None`: the default shape's); an
    /// unknown runtime is refused naming `runtime`.
    pub async fn settings_of(&self, runtime: Option<&str>) -> Result<StoredSettings> {
        let shape = crate::claim_input::pick_shape(&self.inner.config.shapes, runtime)?;
        Ok(self.inner.store.shape_settings(&shape.name).await?)
    }

    /// Every shape's runtime settings, in the order the shapes are configured.
    pub async fn all_settings(&self) -> Result<Vec<StoredSettings>> {
        let mut out = Vec::new();
        for shape in self.inner.config.shapes.iter() {
            out.push(self.inner.store.shape_settings(&shape.name).await?);
        }
        Ok(out)
    }

    /// Changes the default shape's settings; see [`Self::update_settings_of`].
    pub async fn update_settings(
        &self,
        patch: &SettingsPatch,
        actor: &str,
    ) -> Result<(StoredSettings, StoredSettings)> {
        self.update_settings_of(None, patch, actor).await
    }

    /// Changes the settings of the shape `runtime` names (`None`: the default shape's): all
    /// checked first, then written with who did it. Returns (before, after). A bad value (or
    /// an unknown runtime) is refused naming its field, and nothing changes.
    pub async fn update_settings_of(
        &self,
        runtime: Option<&str>,
        patch: &SettingsPatch,
        actor: &str,
    ) -> Result<(StoredSettings, StoredSettings)> {
        let shape = &crate::claim_input::pick_shape(&self.inner.config.shapes, runtime)?.name;
        let store = &self.inner.store;
        let current = store.shape_settings(shape).await?;
        let next = patch.apply(&current.settings);
        validate(&next)?;
        let changed = store.update_shape_settings(shape, &next, actor).await?;
        tracing::info!(actor, %shape, before = ?changed.0.settings, after = ?changed.1.settings, "settings changed");
        Ok(changed)
    }

    /// The creation brake of the shape `runtime` names (`None`: the default shape's); an
    /// unknown runtime is refused naming `runtime`.
    pub async fn brake_of(&self, runtime: Option<&str>) -> Result<BrakeState> {
        let shape = crate::claim_input::pick_shape(&self.inner.config.shapes, runtime)?;
        Ok(self.inner.store.shape_brake(&shape.name).await?)
    }

    /// An operator resumes the creation of the shape `runtime` names (`None`: the default
    /// shape's), recorded as `actor`. Returns whether its brake was engaged; an unknown
    /// runtime is refused naming `runtime`, and nothing changes.
    pub async fn resume_creation_of(&self, runtime: Option<&str>, actor: &str) -> Result<bool> {
        let shape = crate::claim_input::pick_shape(&self.inner.config.shapes, runtime)?;
        Ok(self.inner.store.release_shape_brake(&shape.name, actor).await?)
    }

    /// Seeds every shape's settings from `seed` where none are stored yet (start-up): a shape
    /// added to `POOL_RUNTIMES` starts from the environment's values.
    pub async fn seed_shape_settings(&self, seed: &PoolSettings) -> Result<()> {
        for shape in self.inner.config.shapes.iter() {
            self.inner.store.seed_shape_settings(&shape.name, seed).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PoolSettings {
        PoolSettings {
            min_idle: 2,
            max_total: None,
            paused: false,
            idle_schedule: None,
            max_idle_age: None,
            create_failure_limit: 5,
            parked_min: 300,
            parked_max: 500,
            park_after: Duration::from_secs(600),
        }
    }

    fn field(r: Result<()>) -> Option<&'static str> {
        match r {
            Err(ProvisionError::InvalidRequest { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn every_bad_value_is_refused_by_its_field() {
        assert!(validate(&base()).is_ok());
        let with = |f: fn(&mut PoolSettings)| {
            let mut s = base();
            f(&mut s);
            field(validate(&s))
        };
        assert_eq!(with(|s| s.min_idle = MAX_MIN_IDLE + 1), Some("minIdle"));
        assert_eq!(with(|s| s.max_total = Some(0)), Some("maxTotal"));
        assert_eq!(with(|s| s.max_total = Some(1)), Some("maxTotal"), "below minIdle");
        assert_eq!(
            with(|s| s.idle_schedule = Some("mon-fry 08:00-20:00=3".into())),
            Some("idleSchedule")
        );
        assert_eq!(
            with(|s| s.max_idle_age = Some(Duration::from_secs(1))),
            Some("maxIdleAgeMs")
        );
        assert_eq!(with(|s| s.create_failure_limit = 0), Some("createFailureLimit"));
        assert_eq!(with(|s| s.parked_min = 501), Some("parkedMin"), "above parkedMax");
        assert_eq!(
            with(|s| s.parked_max = 0),
            Some("parkedMin"),
            "parkedMax 0 needs parkedMin 0"
        );
        assert_eq!(
            with(|s| {
                s.parked_min = 0;
                s.parked_max = 0;
            }),
            None,
            "the tier off"
        );
        assert_eq!(with(|s| s.parked_max = MAX_PARKED_MAX + 1), Some("parkedMax"));
        assert_eq!(
            with(|s| s.park_after = MAX_PARK_AFTER + Duration::from_millis(1)),
            Some("parkAfterMs")
        );
        assert_eq!(
            with(|s| s.idle_schedule = Some("mon-fri 08:00-20:00 Europe/Berlin=20; *=2".into())),
            None
        );
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_null_clears() {
        let mut current = base();
        current.max_total = Some(10);
        let patch: SettingsPatch = serde_json::from_str(r#"{"minIdle": 4, "maxTotal": null}"#).unwrap();
        let next = patch.apply(&current);
        assert_eq!(next.min_idle, 4);
        assert_eq!(next.max_total, None);
        assert_eq!(next.create_failure_limit, 5);
        assert!(
            serde_json::from_str::<SettingsPatch>(r#"{"minIdel": 4}"#).is_err(),
            "unknown fields are refused"
        );
    }
}
