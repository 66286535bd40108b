//! Railway's GraphQL endpoint (`POST /graphql/v2`): the edge's and the rate limiter's answers,
//! injected faults and outages, then the schema ([`crate::graphql`]), with Railway's error
//! shapes on the way out.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::graphql::RequestToken;
use crate::limits::Limited;
use crate::quirks::Quirks;
use crate::world::PROBLEM_PROCESSING;

use super::{Sim, bearer, draw};

/// Its route.
pub(super) fn routes() -> Router<Sim> {
    Router::new().route("/graphql/v2", post(graphql))
}

fn graphql_error(status: StatusCode, message: &str, code: &str) -> Response {
    (
        status,
        Json(json!({"data": null, "errors": [{"message": message, "extensions": {"code": code}}]})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct GraphQlBody {
    query: String,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(default, rename = "operationName")]
    operation_name: Option<String>,
}

/// The root fields of the operation: what the request is about (`projectCreate`, …).
fn root_fields(query: &str) -> Result<Vec<String>, String> {
    use async_graphql::parser::types::{DocumentOperations, Selection};
    let doc = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
    let operations: Vec<_> = match &doc.operations {
        DocumentOperations::Single(op) => vec![op],
        DocumentOperations::Multiple(map) => map.values().collect(),
    };
    Ok(operations
        .iter()
        .flat_map(|op| op.node.selection_set.node.items.iter())
        .filter_map(|s| match &s.node {
            Selection::Field(f) => Some(f.node.name.node.to_string()),
            _ => None,
        })
        .collect())
}

async fn graphql(State(sim): State<Sim>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let now = Instant::now();
    let token = bearer(&headers).unwrap_or("").to_string();
    let has_query = uri.query().is_some_and(|q| !q.is_empty());
    let (limits, latency, faults) = {
        let mut w = sim.world();
        w.counters.requests_total += 1;
        if !has_query {
            w.counters.without_query_string += 1;
        }
        (w.config.limits.clone(), w.config.latency, w.config.faults.clone())
    };

    // Limits first: Railway's edge and rate limiter answer before anything is parsed.
    let storm = {
        let c = sim.control();
        c.storm_until
            .filter(|until| *until > now)
            .map(|_| (c.storm_html, c.storm_retry_after))
    };
    let admitted = match storm {
        Some((true, retry_after)) => Err(Limited::Edge { retry_after }),
        Some((false, retry_after)) => Err(Limited::Token {
            retry_after,
            limit: limits.requests_per_second,
        }),
        None => {
            let mut limiter = sim.limiter.lock().unwrap_or_else(|p| p.into_inner());
            let result = limiter.admit(&limits, &token, has_query, now);
            sim.world().counters.max_requests_in_one_second = limiter.max_in_one_second;
            result
        }
    };
    let rate_headers = match admitted {
        Ok(h) => h,
        Err(limited) => {
            sim.world().counters.rate_limited += 1;
            return match limited {
                Limited::Edge { retry_after } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::CONTENT_TYPE, "text/html".to_string()), (header::RETRY_AFTER, retry_after.to_string())],
                    "<!DOCTYPE html><html><head><title>Access denied | backboard.railway.com used Cloudflare to restrict access</title></head><body><h1>Error 1015</h1><p>You are being rate limited</p></body></html>",
                )
                    .into_response(),
                Limited::Token { retry_after, limit } => (
                    StatusCode::TOO_MANY_REQUESTS,
                    [
                        ("retry-after", retry_after.to_string()),
                        ("x-ratelimit-limit", limit.to_string()),
                        ("x-ratelimit-remaining", "0".to_string()),
                        ("x-ratelimit-reset", retry_after.to_string()),
                    ],
                    Json(json!({"errors": [{"message": "Rate limit exceeded"}]})),
                )
                    .into_response(),
            };
        }
    };

    let Ok(request) = serde_json::from_slice::<GraphQlBody>(&body) else {
        return (StatusCode::BAD_REQUEST, "Problem processing request").into_response();
    };
    let fields = match root_fields(&request.query) {
        Ok(fields) => fields,
        Err(e) => return graphql_error(StatusCode::BAD_REQUEST, &e, "GRAPHQL_PARSE_FAILED"),
    };
    let operation = fields.join(",");
    {
        let mut w = sim.world();
        for f in &fields {
            *w.counters.requests.entry(f.clone()).or_default() += 1;
        }
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if sim.control().outage {
        return (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response();
    }
    let fault = fields
        .iter()
        .filter_map(|f| draw(faults.operations.get(f).unwrap_or(&faults.all)))
        .next();
    if let Some(kind) = fault {
        *sim.world()
            .counters
            .faults
            .entry(format!("{operation}:{kind}"))
            .or_default() += 1;
        match kind {
            "server_error" => {
                return (StatusCode::SERVICE_UNAVAILABLE, "upstream connect error").into_response();
            }
            "graphql_error" => {
                return graphql_error(StatusCode::OK, "Internal server error", "INTERNAL_SERVER_ERROR");
            }
            "timeout_before_apply" => {
                // Nothing applied; the answer never comes (the client times out).
                tokio::time::sleep(Duration::from_secs(300)).await;
                return (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout").into_response();
            }
            "refused" => {
                return graphql_error(
                    StatusCode::OK,
                    "Invalid request (injected refusal)",
                    "INTERNAL_SERVER_ERROR",
                );
            }
            _ => {}
        }
    }

    let mut gql = async_graphql::Request::new(request.query).data(RequestToken(token));
    if let Some(variables) = request.variables {
        gql = gql.variables(async_graphql::Variables::from_json(variables));
    }
    if let Some(name) = request.operation_name {
        gql = gql.operation_name(name);
    }
    let response = sim.schema.execute(gql).await;
    if fault == Some("timeout_after_apply") {
        // Applied; the answer never comes (the client times out and must look it up).
        tokio::time::sleep(Duration::from_secs(300)).await;
    }
    // Validation failures (no path: nothing was executed) are HTTP 400, as on Railway.
    let status = if response.data == async_graphql::Value::Null
        && !response.errors.is_empty()
        && response
            .errors
            .iter()
            .all(|e| e.path.is_empty() && e.extensions.is_none())
    {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let quirks = sim.world().config.quirks.clone();
    let body = railway_error_shapes(serde_json::to_value(&response).unwrap_or(Value::Null), &quirks);
    let mut out = (status, Json(body)).into_response();
    // The token's hourly window, as Railway reports it on every answer; none while the
    // simulator's hourly limit is off (an answer of "0 remaining, reset in an hour" would
    // pause the client for an hour).
    if let Some(rate) = rate_headers {
        let h = out.headers_mut();
        h.insert("x-ratelimit-limit", rate.limit.into());
        h.insert("x-ratelimit-remaining", rate.remaining.into());
        h.insert("x-ratelimit-reset", rate.reset_secs.into());
    }
    out
}

/// Railway's error shapes: business errors all carry `INTERNAL_SERVER_ERROR` (distilled
/// `errors.ts`: "Railway often reuses INTERNAL_SERVER_ERROR"), and "Problem processing request"
/// goes out with no path, no extensions and a top-level `traceId` (distilled's live probe,
/// `60-request-processing.json`).
fn railway_error_shapes(mut body: Value, quirks: &Quirks) -> Value {
    let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) else {
        return body;
    };
    for error in errors {
        let Some(error) = error.as_object_mut() else {
            continue;
        };
        let code = error
            .get("extensions")
            .and_then(|x| x.get("code"))
            .and_then(Value::as_str)
            .map(str::to_string);
        match code.as_deref() {
            Some(PROBLEM_PROCESSING) => {
                error.remove("extensions");
                error.remove("path");
                error.remove("locations");
                let trace: u64 = rand::rng().random();
                error.insert("traceId".into(), Value::String(trace.to_string()));
            }
            Some("GRAPHQL_VALIDATION_FAILED" | "GRAPHQL_PARSE_FAILED") | None => {}
            Some(_) if quirks.internal_server_error_codes => {
                error.insert("extensions".into(), json!({"code": "INTERNAL_SERVER_ERROR"}));
            }
            Some(_) => {}
        }
    }
    body
}
