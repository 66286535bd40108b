//! The route table: every route of the API with its path, method, who may call it and what it
//! takes and answers. It depends on nothing else in the crate; the router ([`crate::routes`]),
//! the key checks ([`crate::auth`]), the metrics endpoint and the OpenAPI document
//! ([`crate::openapi`]) all read it, so none of them needs another and they cannot drift apart.

mod agent_calls;
mod proxy;

pub use agent_calls::agent_calls_table;
pub use proxy::proxy_table;

/// The claim's path: the one route (with `POST`) the claim keys may call.
pub const CLAIM_PATH: &str = "/api/pool/claim";

/// The metrics' path (Prometheus text, behind `POOL_METRICS_KEY` when it is set).
pub const METRICS_PATH: &str = "/metrics";

/// Railway's deploy events: the secret is a path segment (`RAILWAY_WEBHOOK_SECRET`).
pub const WEBHOOK_PATH: &str = "/webhooks/railway/{secret}";

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (the webhook checks the secret in its path itself).
    Open,
    /// Anyone while `POOL_METRICS_KEY` is unset; then a bearer of it or of the admin key.
    Metrics,
    /// The admin key (`POOL_API_KEY`); a claim key gets 403.
    Admin,
    /// The admin key or a claim key (`POOL_CLAIM_KEYS`).
    Claim,
    /// An agent's own credentials (`Authorization: Bearer <instanceId>:<gatewayToken>`), or
    /// the admin key where the Node pool allows it: checked by the handler
    /// ([`crate::AgentCaller`]), before it reads the body.
    Agent,
    /// An agent's own credentials in the JSON body, `{"instanceId", "gatewayToken"}` (the
    /// calls the runtime makes to the pool itself: self-destruct, self-info, pending
    /// acceptance): checked by the handler ([`crate::AgentCredentials`]) once the body (at most
    /// [`crate::MAX_BODY`]) is read.
    AgentBody,
}

impl Access {
    /// Whether the route needs `Authorization: Bearer <key>` with the admin or a claim key.
    pub fn needs_api_key(self) -> bool {
        matches!(self, Self::Admin | Self::Claim)
    }
}

/// Which handler serves a route ([`crate::routes`] maps each to its handler).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`.
    Healthz,
    /// `GET /readyz`.
    Readyz,
    /// `GET /version`.
    Version,
    /// `GET /metrics`.
    Metrics,
    /// `GET /openapi.json`.
    OpenApi,
    /// `GET /api/pool/counts`.
    Counts,
    /// `GET /api/pool/status`.
    Status,
    /// `GET /api/pool/agents`.
    Agents,
    /// `GET /api/pool/agents/{id}`.
    Agent,
    /// `POST /api/pool/claim`.
    Claim,
    /// `POST /api/pool/replenish`.
    Replenish,
    /// `POST /api/pool/reconcile`.
    Reconcile,
    /// `POST /api/pool/drain`.
    Drain,
    /// `POST /api/pool/redeploy`.
    Redeploy,
    /// `POST /api/pool/rollout`.
    Rollout,
    /// `POST /api/pool/rollout/cancel`.
    RolloutCancel,
    /// `GET /api/pool/settings`.
    GetSettings,
    /// `PUT /api/pool/settings`.
    PutSettings,
    /// `POST /api/pool/resume`.
    Resume,
    /// `POST /webhooks/railway/{secret}`.
    RailwayWebhook,
    /// `DELETE /api/pool/instances/{id}`.
    Kill,
    /// `DELETE /api/pool/crashed/{id}`.
    Dismiss,
    /// A route of the service proxy.
    Proxy(ProxyEndpoint),
    /// One of the agents' own calls to the pool.
    AgentCall(AgentCallEndpoint),
}

/// The `?runtime=` of the routes that act on one shape (runtime).
const RUNTIME_QUERY: (&str, &str) = (
    "runtime",
    "the runtime (shape) acted on, one of POOL_RUNTIMES' names; the default runtime when left out; an unknown one is a 400 naming runtime",
);

impl Endpoint {
    /// The query parameters it reads (name, meaning); the OpenAPI document lists them.
    pub fn query(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::GetSettings | Self::PutSettings | Self::Resume => &[RUNTIME_QUERY],
            Self::Kill => &[(
                "confirm",
                "protected: the operator's explicit kill of a protected agent (PROTECTED_INSTANCES)",
            )],
            _ => &[],
        }
    }
}

/// The agents' own calls to the pool (`/api/pool/self-*`, `/api/pool/pending-acceptance/*`),
/// credentials in the body ([`Access::AgentBody`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentCallEndpoint {
    /// `POST /api/pool/self-destruct`.
    SelfDestruct,
    /// `POST /api/pool/self-info`.
    SelfInfo,
    /// `POST /api/pool/self-upgrade`.
    SelfUpgrade,
    /// `POST /api/pool/pending-acceptance/complete`.
    PendingComplete,
    /// `POST /api/pool/pending-acceptance/fail`.
    PendingFail,
}

/// The service proxy's routes (`/api/proxy/*`, the Node pool's `serviceProxy.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyEndpoint {
    /// `POST /api/proxy/email/provision`.
    EmailProvision,
    /// `POST /api/proxy/sms/provision`.
    SmsProvision,
    /// `POST /api/proxy/email/unprovision`.
    EmailUnprovision,
    /// `POST /api/proxy/sms/unprovision`.
    SmsUnprovision,
    /// `GET /api/proxy/services/status`.
    ServicesStatus,
    /// `GET /api/proxy/info`.
    Info,
    /// `POST /api/proxy/email/send`.
    EmailSend,
    /// `GET /api/proxy/email/messages`.
    EmailMessages,
    /// `GET /api/proxy/email/messages/{id}`.
    EmailMessage,
    /// `PATCH /api/proxy/email/messages/{id}`.
    EmailUpdate,
    /// `GET /api/proxy/email/threads`.
    EmailThreads,
    /// `POST /api/proxy/sms/send`.
    SmsSend,
    /// `GET /api/proxy/sms/records`.
    SmsRecords,
    /// `GET /api/proxy/sms/messages/{id}`.
    SmsMessage,
}

/// One route as documented: method, path, who may call it, what it does, and what it takes
/// and answers.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its handler.
    pub endpoint: Endpoint,
    /// `GET`, `PUT`, `POST` or `DELETE`.
    pub method: &'static str,
    /// Path, with `{id}` parameters (axum and OpenAPI share the syntax).
    pub path: &'static str,
    /// One line.
    pub summary: &'static str,
    /// Who may call it.
    pub access: Access,
    /// Request body schema (a component name), if it takes one.
    pub request: Option<&'static str>,
    /// Answers: status, description, body schema (a component name).
    pub responses: &'static [(u16, &'static str, Option<&'static str>)],
}

const UNAUTHORIZED: (u16, &str, Option<&str>) = (401, "missing or wrong API key", Some("Error"));
const BAD_REQUEST: (u16, &str, Option<&str>) = (
    400,
    "malformed JSON, a wrong type or a missing field",
    Some("Error"),
);
const NOT_FOUND: (u16, &str, Option<&str>) = (404, "no such agent", Some("Error"));
const CONFLICT: (u16, &str, Option<&str>) = (409, "the agent's state forbids this", Some("Error"));
const TOO_LARGE: (u16, &str, Option<&str>) = (413, "request body too large", Some("Error"));
const WRONG_AGENT: (u16, &str, Option<&str>) = (403, "Invalid instance ID or token", Some("Error"));
const LIMITED: (u16, &str, Option<&str>) = (429, "this agent's rate limit (Retry-After)", Some("Error"));

/// Every route (the agents' own calls, then the service proxy's, last).
pub fn table() -> Vec<Route> {
    let mut all = pool_table();
    all.extend(agent_calls_table());
    all.extend(proxy_table());
    all
}

fn pool_table() -> Vec<Route> {
    vec![
        Route {
            endpoint: Endpoint::Healthz,
            method: "GET",
            path: "/healthz",
            summary: "The process is up",
            access: Access::Open,
            request: None,
            responses: &[(200, "up", Some("Ok"))],
        },
        Route {
            endpoint: Endpoint::Readyz,
            method: "GET",
            path: "/readyz",
            summary: "The database is reachable and its schema current",
            access: Access::Open,
            request: None,
            responses: &[(200, "ready", Some("Ok")), (503, "not ready", Some("Error"))],
        },
        Route {
            endpoint: Endpoint::Version,
            method: "GET",
            path: "/version",
            summary: "Version, environment and agent image",
            access: Access::Open,
            request: None,
            responses: &[(200, "version", Some("Version"))],
        },
        Route {
            endpoint: Endpoint::Metrics,
            method: "GET",
            path: METRICS_PATH,
            summary: "Prometheus metrics (behind POOL_METRICS_KEY as a bearer key when it is set)",
            access: Access::Metrics,
            request: None,
            responses: &[
                (200, "Prometheus text format", None),
                (
                    401,
                    "POOL_METRICS_KEY is set and the bearer key is neither it nor the admin key",
                    Some("Error"),
                ),
            ],
        },
        Route {
            endpoint: Endpoint::OpenApi,
            method: "GET",
            path: "/openapi.json",
            summary: "This document",
            access: Access::Open,
            request: None,
            responses: &[(200, "OpenAPI 3 document", None)],
        },
        Route {
            endpoint: Endpoint::Counts,
            method: "GET",
            path: "/api/pool/counts",
            summary: "Live agents by status, the whole pool's and each runtime's",
            access: Access::Admin,
            request: None,
            responses: &[(200, "counts", Some("CountsByRuntime")), UNAUTHORIZED],
        },
        Route {
            endpoint: Endpoint::Status,
            method: "GET",
            path: "/api/pool/status",
            summary: "Counts, tiers and monthly cost (the whole pool and each runtime) and every live agent (no secrets)",
            access: Access::Admin,
            request: None,
            responses: &[(200, "status", Some("Status")), UNAUTHORIZED],
        },
        Route {
            endpoint: Endpoint::Agents,
            method: "GET",
            path: "/api/pool/agents",
            summary: "Claimed and crashed agents (the original's list, now without secrets)",
            access: Access::Admin,
            request: None,
            responses: &[(200, "agents", Some("AgentLists")), UNAUTHORIZED],
        },
        Route {
            endpoint: Endpoint::Agent,
            method: "GET",
            path: "/api/pool/agents/{id}",
            summary: "One agent (no secrets) and its event timeline",
            access: Access::Admin,
            request: None,
            responses: &[(200, "the agent", Some("AgentDetail")), UNAUTHORIZED, NOT_FOUND],
        },
        Route {
            endpoint: Endpoint::Claim,
            method: "POST",
            path: CLAIM_PATH,
            summary: "Claim an idle agent: provision it and return its invite URL (optional Idempotency-Key header, the caller's own; Prefer: wait=N waits up to N ≤ 300 s for an agent, waking a parked one on an empty warm tier). The admin key or a claim key (POOL_CLAIM_KEYS)",
            access: Access::Claim,
            request: Some("ClaimRequest"),
            responses: &[
                (200, "claimed", Some("ClaimResponse")),
                BAD_REQUEST,
                UNAUTHORIZED,
                (
                    409,
                    "a claim with this Idempotency-Key is still running",
                    Some("Error"),
                ),
                TOO_LARGE,
                (
                    422,
                    "this Idempotency-Key was used before with a different request",
                    Some("Error"),
                ),
                (
                    502,
                    "the agent could not be provisioned (it was quarantined)",
                    Some("Error"),
                ),
                (
                    503,
                    "no idle agent (or none within the wait) (Retry-After)",
                    Some("Error"),
                ),
            ],
        },
        Route {
            endpoint: Endpoint::Replenish,
            method: "POST",
            path: "/api/pool/replenish",
            summary: "Create `count` agents (1-20) now, or run a tick when no count is given",
            access: Access::Admin,
            request: Some("CountRequest"),
            responses: &[
                (200, "started", Some("Replenished")),
                BAD_REQUEST,
                UNAUTHORIZED,
                (409, "POOL_MAX_TOTAL would be exceeded", Some("Error")),
                TOO_LARGE,
            ],
        },
        Route {
            endpoint: Endpoint::Reconcile,
            method: "POST",
            path: "/api/pool/reconcile",
            summary: "Run a tick now (on the leader)",
            access: Access::Admin,
            request: None,
            responses: &[(202, "tick requested", Some("Triggered")), UNAUTHORIZED],
        },
        Route {
            endpoint: Endpoint::Drain,
            method: "POST",
            path: "/api/pool/drain",
            summary: "Tear down `count` unclaimed agents (default 1, at most 20)",
            access: Access::Admin,
            request: Some("CountRequest"),
            responses: &[
                (200, "drained", Some("Drained")),
                BAD_REQUEST,
                UNAUTHORIZED,
                TOO_LARGE,
            ],
        },
        Route {
            endpoint: Endpoint::Redeploy,
            method: "POST",
            path: "/api/pool/redeploy",
            summary: "Move idle agents (all, or the named ones) to the current image, a batch at a time",
            access: Access::Admin,
            request: Some("RedeployRequest"),
            responses: &[
                (200, "progress", Some("RedeployProgress")),
                BAD_REQUEST,
                UNAUTHORIZED,
                NOT_FOUND,
                CONFLICT,
                TOO_LARGE,
            ],
        },
        Route {
            endpoint: Endpoint::Rollout,
            method: "POST",
            path: "/api/pool/rollout",
            summary: "Move every agent of a runtime (idle, and claimed in place) to an image resolved to a digest once: one canary, then `batch` at a time, each healthy for `pauseMs`; a failure stops it and rolls the failed agents back",
            access: Access::Admin,
            request: Some("RolloutRequest"),
            responses: &[
                (200, "the rollout, started", Some("Rollout")),
                BAD_REQUEST,
                UNAUTHORIZED,
                (409, "a rollout of this runtime is running (named)", Some("Error")),
                TOO_LARGE,
                (502, "the registry did not resolve the image", Some("Error")),
            ],
        },
        Route {
            endpoint: Endpoint::RolloutCancel,
            method: "POST",
            path: "/api/pool/rollout/cancel",
            summary: "Stop the running rollout of a runtime: no agent starts its upgrade after this",
            access: Access::Admin,
            request: Some("RolloutCancelRequest"),
            responses: &[
                (
                    200,
                    "the cancelled rollout, or `{\"cancelled\": null}` when none ran",
                    Some("RolloutCancelled"),
                ),
                BAD_REQUEST,
                UNAUTHORIZED,
                TOO_LARGE,
            ],
        },
        Route {
            endpoint: Endpoint::GetSettings,
            method: "GET",
            path: "/api/pool/settings",
            summary: "One runtime's settings (minIdle, maxTotal, paused, idleSchedule, maxIdleAgeMs, createFailureLimit, parkedMin, parkedMax, parkAfterMs) and creation brake (?runtime=, the default runtime's without it)",
            access: Access::Admin,
            request: None,
            responses: &[
                (200, "settings", Some("Settings")),
                (400, "an unknown runtime", Some("Error")),
                UNAUTHORIZED,
            ],
        },
        Route {
            endpoint: Endpoint::PutSettings,
            method: "PUT",
            path: "/api/pool/settings",
            summary: "Change one runtime's settings (?runtime=, the default runtime's without it; fields left out keep their value; null clears an optional one); every replica applies them at its next tick",
            access: Access::Admin,
            request: Some("SettingsChange"),
            responses: &[
                (200, "before and after", Some("SettingsChanged")),
                BAD_REQUEST,
                UNAUTHORIZED,
                TOO_LARGE,
            ],
        },
        Route {
            endpoint: Endpoint::Resume,
            method: "POST",
            path: "/api/pool/resume",
            summary: "Release one runtime's creation brake (?runtime=, the default runtime's without it): its creation resumes",
            access: Access::Admin,
            request: None,
            responses: &[
                (200, "whether it was engaged", Some("Resumed")),
                (400, "an unknown runtime", Some("Error")),
                UNAUTHORIZED,
            ],
        },
        Route {
            endpoint: Endpoint::RailwayWebhook,
            method: "POST",
            path: WEBHOOK_PATH,
            summary: "Railway's deployment events (RAILWAY_WEBHOOK_SECRET in the path): the agent named is looked at now",
            access: Access::Open,
            request: Some("RailwayEvent"),
            responses: &[
                (
                    200,
                    "looked at, or ignored (unknown project or event type)",
                    Some("WebhookAnswer"),
                ),
                (400, "not JSON, or no event type", Some("Error")),
                (401, "wrong secret", Some("Error")),
                (404, "no RAILWAY_WEBHOOK_SECRET: the route is off", Some("Error")),
                TOO_LARGE,
            ],
        },
        Route {
            endpoint: Endpoint::Kill,
            method: "DELETE",
            path: "/api/pool/instances/{id}",
            summary: "Kill an agent: tear it down (a protected agent only with ?confirm=protected)",
            access: Access::Admin,
            request: None,
            responses: &[
                (200, "teardown started", Some("Killed")),
                UNAUTHORIZED,
                NOT_FOUND,
                CONFLICT,
            ],
        },
        Route {
            endpoint: Endpoint::Dismiss,
            method: "DELETE",
            path: "/api/pool/crashed/{id}",
            summary: "Dismiss a crashed agent: tear it down",
            access: Access::Admin,
            request: None,
            responses: &[
                (200, "teardown started", Some("Killed")),
                UNAUTHORIZED,
                NOT_FOUND,
                CONFLICT,
            ],
        },
    ]
}
