//! The image registry (GHCR's side of the OCI distribution API), as the pool reads it to
//! resolve a tag to a digest once per rollout (under `/ghcr`): an anonymous pull token from
//! `GET /token`, then
//! `HEAD /v2/<repository>/manifests/<tag>` whose `Docker-Content-Digest` header names the
//! bytes. The same two calls as the Node pool's `resolveImageDigest`
//! (`pool/src/services/providers/ghcr.ts:15-49` of the runtime repository). Images live in the
//! world's registry (`World::images`): `ghcr.io/<repository>:<tag>`, and a pushed tag moves.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::Sim;

/// The token every pull is granted: the registry checks only that one is presented, as GHCR
/// does for a public image.
const PULL_TOKEN: &str = "sim-registry-pull-token";

/// Its routes.
pub(super) fn routes() -> Router<Sim> {
    Router::new()
        .route("/ghcr/token", get(token))
        // axum answers HEAD with the GET handler, without the body.
        .route("/ghcr/v2/{*rest}", get(manifest))
}

#[derive(Deserialize)]
struct TokenQuery {
    scope: Option<String>,
}

async fn token(Query(q): Query<TokenQuery>) -> Response {
    let pull = q
        .scope
        .as_deref()
        .is_some_and(|s| s.starts_with("repository:") && s.ends_with(":pull"));
    if !pull {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"errors": [{"code": "UNSUPPORTED", "message": "scope must be repository:<name>:pull"}]})),
        )
            .into_response();
    }
    axum::Json(json!({"token": PULL_TOKEN})).into_response()
}

async fn manifest(State(sim): State<Sim>, Path(rest): Path<String>, headers: HeaderMap) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {PULL_TOKEN}"));
    if !authorized {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]})),
        )
            .into_response();
    }
    let Some((repository, reference)) = rest.rsplit_once("/manifests/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let image = if reference.starts_with("sha256:") {
        format!("ghcr.io/{repository}@{reference}")
    } else {
        format!("ghcr.io/{repository}:{reference}")
    };
    let digest = sim.world().digest_of(&image);
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::from_str(&digest) {
        response.headers_mut().insert("docker-content-digest", value);
    }
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/vnd.oci.image.index.v1+json"),
    );
    response
}
