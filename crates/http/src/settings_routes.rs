//! `GET` and `PUT /api/pool/settings`, and `POST /api/pool/resume`: the runtime settings and
//! the creation brake of one shape, mapped onto the provisioner.
//!
//! Every shape (runtime) has its own settings and brake; `?runtime=<name>` picks one, and
//! without it the default runtime's are meant (the API as it was before shapes). An unknown
//! runtime is a 400 naming `runtime`, and nothing changes.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use pool_provisioner::{SettingsPatch, pick_shape};
use pool_store::{BrakeState, StoredSettings};
use serde::Serialize;
use serde_json::json;

use crate::AppState;
use crate::body::JsonBody;
use crate::error::ApiError;

/// One shape's settings (its name as `runtime`), when and by whom they last changed, its
/// creation brake, and the runtimes the pool serves.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsReply {
    /// The settings.
    #[serde(flatten)]
    pub settings: StoredSettings,
    /// The creation brake.
    pub brake: BrakeState,
    /// Every runtime the pool serves, in the order configured; each has its own settings
    /// (`?runtime=`).
    pub runtimes: Vec<String>,
    /// The runtime a request without `?runtime=` acts on.
    pub default_runtime: String,
}

/// The caller, as settings changes record it. One admin key for now.
const ADMIN: &str = "admin key";

/// The `runtime` a request names in its query, if any (empty: the default runtime's).
fn runtime(query: &HashMap<String, String>) -> Option<&str> {
    query.get("runtime").map(String::as_str)
}

pub(crate) async fn get_settings(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<SettingsReply>, ApiError> {
    let runtime = runtime(&query);
    let settings = state.provisioner.settings_of(runtime).await?;
    let brake = state.provisioner.brake_of(runtime).await?;
    let shapes = &state.provisioner.config().shapes;
    Ok(Json(SettingsReply {
        settings,
        brake,
        runtimes: shapes.names().into_iter().map(String::from).collect(),
        default_runtime: shapes.default_shape().name.clone(),
    }))
}

pub(crate) async fn put_settings(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (before, after) = state
        .provisioner
        .update_settings_of(runtime(&query), &patch, ADMIN)
        .await?;
    // A bigger floor or a lifted pause wants creations now.
    state.control.tick_soon();
    Ok(Json(
        json!({ "runtime": after.shape, "before": before, "after": after }),
    ))
}

pub(crate) async fn resume(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let shape = pick_shape(&state.provisioner.config().shapes, runtime(&query))?;
    let released = state
        .provisioner
        .resume_creation_of(Some(&shape.name), ADMIN)
        .await?;
    state.control.tick_soon();
    Ok(Json(json!({ "runtime": shape.name, "resumed": released })))
}
