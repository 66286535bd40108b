//! The console's settings form and the brake's resume button: the same checks and records as
//! `PUT /api/pool/settings` and `POST /api/pool/resume`, from a signed-in operator, for one
//! runtime at a time (each shape has its own settings and brake): the fleet page's
//! `?runtime=` picks whose form is shown (the default runtime's without it), the form and the
//! resume button carry it, and every runtime whose creation is stopped or paused has a banner.

use std::collections::HashMap;

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use pool_provisioner::SettingsPatch;
use pool_store::{BrakeState, StoredSettings};

use super::when::When;
use super::{back_to, check_post, session, to_login};
use crate::AppState;

/// Who console changes are recorded as.
const ACTOR: &str = "console";

/// The form as a patch of every field, or the first field that is not a number.
fn patch(form: &HashMap<String, String>) -> Result<SettingsPatch, String> {
    let field = |name: &str| form.get(name).map(|v| v.trim()).unwrap_or("");
    let number = |name: &str| -> Result<Option<u64>, String> {
        match field(name) {
            "" => Ok(None),
            v => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("{name}: {v:?} is not a whole number")),
        }
    };
    let small = |name: &str| -> Result<Option<u32>, String> {
        number(name)?
            .map(|n| u32::try_from(n).map_err(|_| format!("{name}: {n} is too large")))
            .transpose()
    };
    let required = |name: &str| small(name)?.ok_or_else(|| format!("{name}: give a number"));
    let schedule = field("idleSchedule");
    Ok(SettingsPatch {
        min_idle: Some(required("minIdle")?),
        max_total: Some(small("maxTotal")?),
        // An unchecked box is not sent at all.
        paused: Some(form.get("paused").is_some_and(|v| v == "true")),
        idle_schedule: Some((!schedule.is_empty()).then(|| schedule.to_string())),
        max_idle_age_ms: Some(
            number("maxIdleAgeMinutes")?
                .map(|m| {
                    m.checked_mul(60_000)
                        .ok_or_else(|| format!("maxIdleAgeMinutes: {m} is too large"))
                })
                .transpose()?,
        ),
        create_failure_limit: Some(required("createFailureLimit")?),
        // Left out of the form: unchanged.
        parked_min: small("parkedMin")?,
        parked_max: small("parkedMax")?,
        park_after_ms: number("parkAfterMinutes")?
            .map(|m| {
                m.checked_mul(60_000)
                    .ok_or_else(|| format!("parkAfterMinutes: {m} is too large"))
            })
            .transpose()?,
    })
}

pub(super) async fn save(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signed_post!(state, headers, form);
    let runtime = runtime(&form);
    let back = |notice: &str| back_to(&state, runtime, notice);
    let patch = match patch(&form) {
        Ok(p) => p,
        Err(problem) => return back(&format!("Settings not changed: {problem}.")),
    };
    match state.provisioner.update_settings_of(runtime, &patch, ACTOR).await {
        Ok((before, after)) => {
            state.control.tick_soon();
            if before.settings == after.settings {
                back(&format!("Settings of {} unchanged.", after.shape))
            } else {
                back(&format!(
                    "Settings of {} saved: minIdle {} → {}.",
                    after.shape, before.settings.min_idle, after.settings.min_idle
                ))
            }
        }
        Err(e) => back(&format!("Settings not changed: {e}.")),
    }
}

/// The runtime a form names (its hidden `runtime` field; `None`: the default runtime).
fn runtime(form: &HashMap<String, String>) -> Option<&str> {
    form.get("runtime").map(String::as_str).filter(|r| !r.is_empty())
}

pub(super) async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signed_post!(state, headers, form);
    let runtime = runtime(&form);
    let back = |notice: &str| back_to(&state, runtime, notice);
    let name = runtime.unwrap_or(&state.provisioner.config().default_shape().name);
    match state.provisioner.resume_creation_of(runtime, ACTOR).await {
        Ok(true) => {
            state.control.tick_soon();
            back(&format!("Creation of {name} resumed."))
        }
        Ok(false) => back(&format!("Creation of {name} was not stopped.")),
        Err(e) => back(&format!("Could not resume creation: {e}")),
    }
}

/// The fleet page's settings card and banners.
pub struct SettingsView {
    /// The form of the runtime picked (`?runtime=`).
    pub form: SettingsForm,
    /// Every runtime, in the order configured (a choice is shown when there are several).
    pub runtimes: Vec<String>,
    /// A banner for each runtime whose creation brake is engaged.
    pub brakes: Vec<BrakeBanner>,
    /// A banner for each runtime whose creation an operator paused.
    pub paused: Vec<PausedBanner>,
}

impl SettingsView {
    /// Every runtime's brake and pause, and the form of the runtime `query` names (the
    /// default runtime's when it names none, or one the pool does not serve).
    pub async fn load(
        state: &AppState,
        query: &HashMap<String, String>,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        let shapes = &state.provisioner.config().shapes;
        let picked = shapes
            .pick(query.get("runtime").map(String::as_str))
            .unwrap_or_else(|_| shapes.default_shape());
        let store = state.provisioner.store();
        let mut view = Self {
            form: SettingsForm::from_stored(
                &store
                    .shape_settings(&picked.name)
                    .await
                    .map_err(|e| e.to_string())?,
                now,
            ),
            runtimes: shapes.names().into_iter().map(String::from).collect(),
            brakes: Vec::new(),
            paused: Vec::new(),
        };
        for shape in shapes.iter() {
            let brake = store.shape_brake(&shape.name).await.map_err(|e| e.to_string())?;
            view.brakes
                .extend(BrakeBanner::from_state(&shape.name, &brake, now));
            let stored = store
                .shape_settings(&shape.name)
                .await
                .map_err(|e| e.to_string())?;
            if stored.settings.paused {
                view.paused.push(PausedBanner {
                    runtime: shape.name.clone(),
                    by: stored.updated_by.clone(),
                    since: When::at(stored.updated_at, now),
                });
            }
        }
        Ok(view)
    }
}

/// The banner shown while a runtime's creation brake is engaged.
pub struct BrakeBanner {
    /// The runtime whose creation stopped.
    pub runtime: String,
    /// Failed creations in a row.
    pub failures: u32,
    /// The last failure, in words.
    pub last_failure: String,
    /// When the brake engaged.
    pub since: When,
    /// When the last probe creation started, if one has.
    pub last_probe: Option<When>,
}

impl BrakeBanner {
    fn from_state(runtime: &str, brake: &BrakeState, now: DateTime<Utc>) -> Option<Self> {
        let engaged_at = brake.engaged_at?;
        Some(Self {
            runtime: runtime.to_string(),
            failures: brake.consecutive_failures,
            last_failure: brake
                .last_failure
                .clone()
                .unwrap_or_else(|| "(not recorded)".into())
                .chars()
                .take(500)
                .collect(),
            since: When::at(engaged_at, now),
            last_probe: brake.last_probe_at.map(|at| When::at(at, now)),
        })
    }
}

/// The banner shown while an operator has paused a runtime's creation.
pub struct PausedBanner {
    /// The runtime paused.
    pub runtime: String,
    /// Who paused it.
    pub by: String,
    /// When the settings last changed.
    pub since: When,
}

/// The settings form of one runtime, filled with the stored values.
pub struct SettingsForm {
    /// The runtime they are for.
    pub runtime: String,
    /// `minIdle`.
    pub min_idle: u32,
    /// `maxTotal`, empty for none.
    pub max_total: String,
    /// `paused`.
    pub paused: bool,
    /// `idleSchedule`, empty for none.
    pub idle_schedule: String,
    /// `maxIdleAgeMs` in minutes, empty for never.
    pub max_idle_age_minutes: String,
    /// `createFailureLimit`.
    pub create_failure_limit: u32,
    /// `parkedMin`.
    pub parked_min: u32,
    /// `parkedMax`.
    pub parked_max: u32,
    /// `parkAfterMs` in minutes.
    pub park_after_minutes: u64,
    /// Who changed them last.
    pub updated_by: String,
    /// When.
    pub updated: When,
}

impl SettingsForm {
    fn from_stored(stored: &StoredSettings, now: DateTime<Utc>) -> Self {
        let s = &stored.settings;
        Self {
            runtime: stored.shape.clone(),
            min_idle: s.min_idle,
            max_total: s.max_total.map(|m| m.to_string()).unwrap_or_default(),
            paused: s.paused,
            idle_schedule: s.idle_schedule.clone().unwrap_or_default(),
            max_idle_age_minutes: s
                .max_idle_age
                .map(|a| (a.as_secs() / 60).to_string())
                .unwrap_or_default(),
            create_failure_limit: s.create_failure_limit,
            parked_min: s.parked_min,
            parked_max: s.parked_max,
            park_after_minutes: s.park_after.as_secs() / 60,
            updated_by: stored.updated_by.clone(),
            updated: When::at(stored.updated_at, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_is_a_patch_of_every_field() {
        let p = patch(&form(&[
            ("minIdle", "4"),
            ("maxTotal", ""),
            ("idleSchedule", " *=2 "),
            ("maxIdleAgeMinutes", "90"),
            ("createFailureLimit", "5"),
            ("parkedMin", "50"),
            ("parkedMax", "200"),
            ("parkAfterMinutes", "15"),
        ]))
        .unwrap();
        assert_eq!(p.min_idle, Some(4));
        assert_eq!(p.max_total, Some(None));
        assert_eq!(p.paused, Some(false));
        assert_eq!(p.idle_schedule, Some(Some("*=2".into())));
        assert_eq!(p.max_idle_age_ms, Some(Some(90 * 60_000)));
        assert_eq!(p.create_failure_limit, Some(5));
        assert_eq!((p.parked_min, p.parked_max), (Some(50), Some(200)));
        assert_eq!(p.park_after_ms, Some(15 * 60_000));
    }

    #[test]
    fn a_field_that_is_not_a_number_is_named() {
        let e = patch(&form(&[("minIdle", "many"), ("createFailureLimit", "5")])).unwrap_err();
        assert!(e.starts_with("minIdle"), "{e}");
        let e = patch(&form(&[("minIdle", "1")])).unwrap_err();
        assert!(e.starts_with("createFailureLimit"), "{e}");
        let e = patch(&form(&[
            ("minIdle", "1"),
            ("createFailureLimit", "1"),
            ("maxIdleAgeMinutes", "99999999999999999"),
        ]))
        .unwrap_err();
        assert!(e.starts_with("maxIdleAgeMinutes"), "{e}");
    }
}
