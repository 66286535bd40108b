//! `GET` and `PUT /api/pool/settings`, and `POST /api/pool/resume`: the runtime settings and
//! the creation brake, mapped onto the provisioner.

use axum::Json;
use axum::extract::State;
use pool_provisioner::SettingsPatch;
use pool_store::{BrakeState, StoredSettings};
use serde::Serialize;
use serde_json::json;

use crate::AppState;
use crate::body::JsonBody;
use crate::error::ApiError;

/// The settings, when and by whom they last changed, and the creation brake.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsReply {
    /// The settings.
    #[serde(flatten)]
    pub settings: StoredSettings,
    /// The creation brake.
    pub brake: BrakeState,
}

/// The caller, as settings changes record it. One admin key for now.
const ADMIN: &str = "admin key";

pub(crate) async fn get_settings(State(state): State<AppState>) -> Result<Json<SettingsReply>, ApiError> {
    let settings = state.provisioner.settings().await?;
    let brake = state.provisioner.store().brake().await?;
    Ok(Json(SettingsReply { settings, brake }))
}

pub(crate) async fn put_settings(
    State(state): State<AppState>,
    JsonBody(patch): JsonBody<SettingsPatch>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (before, after) = state.provisioner.update_settings(&patch, ADMIN).await?;
    // A bigger floor or a lifted pause wants creations now.
    state.control.tick_soon();
    Ok(Json(json!({ "before": before, "after": after })))
}

pub(crate) async fn resume(State(state): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let released = state.provisioner.store().release_brake(ADMIN).await?;
    state.control.tick_soon();
    Ok(Json(json!({ "resumed": released })))
}
