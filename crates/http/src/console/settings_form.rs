//! The console's settings form and the brake's resume button: the same checks and records as
//! `PUT /api/pool/settings` and `POST /api/pool/resume`, from a signed-in operator.

use std::collections::HashMap;

use axum::extract::{Form, State};
use axum::http::HeaderMap;
use axum::response::Response;
use pool_provisioner::SettingsPatch;

use super::{back, check_post, session, to_login};
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
    let patch = match patch(&form) {
        Ok(p) => p,
        Err(problem) => return back(&state, &format!("Settings not changed: {problem}.")),
    };
    match state.provisioner.update_settings(&patch, ACTOR).await {
        Ok((before, after)) => {
            state.control.tick_soon();
            if before.settings == after.settings {
                back(&state, "Settings unchanged.")
            } else {
                back(
                    &state,
                    &format!(
                        "Settings saved: minIdle {} → {}.",
                        before.settings.min_idle, after.settings.min_idle
                    ),
                )
            }
        }
        Err(e) => back(&state, &format!("Settings not changed: {e}.")),
    }
}

pub(super) async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    signed_post!(state, headers, form);
    match state.provisioner.store().release_brake(ACTOR).await {
        Ok(true) => {
            state.control.tick_soon();
            back(&state, "Creation resumed.")
        }
        Ok(false) => back(&state, "Creation was not stopped."),
        Err(e) => back(&state, &format!("Could not resume creation: {e}")),
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
