//! How the live Railway API behaves where its schema says nothing, as the simulator models
//! it. Every behaviour is on by default — the simulator is Railway as it is — and each can be
//! switched off (or its timing shortened) so the other branch can be tested too. The one
//! exception is the deploy rate limit, whose figure nobody has published (see its field).
//!
//! Sources, next to each field: public code of teams that run against the live API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::millis;

/// Who Railway's `projectCreate` throttle applies to, and how it words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProjectThrottleScope {
    /// "You are creating projects too quickly. This workspace allows 1 project per 30 seconds.
    /// Try again shortly." — one workspace, whatever the token (Railway today).
    Workspace,
    /// "Only one project can be created per user every 30s" — the older, per-token form.
    User,
}

/// The live API's undocumented behaviours.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Quirks {
    /// Minimum time between two `projectCreate` (Railway: 30 s; `None`: no throttle).
    /// Source: jamesprnich/terraform-provider-railway `resource_cooldown_retry_test.go`
    /// (`TestProjectResource_recoversFromProjectCooldown`); alchemy-run/distilled `errors.ts`.
    #[serde(with = "millis::option")]
    pub project_create_interval: Option<Duration>,
    /// Whether the throttle is per workspace (today) or per user (the older message).
    pub project_create_scope: ProjectThrottleScope,
    /// Minimum time between two `environmentCreate` of one token (Railway: 30 s): "Whoa there
    /// pal! Only one environment can be created per user every 30s. Try again in a sec"
    /// (terraform `TestEnvironmentResource_recoversFromEnvCooldown`).
    #[serde(with = "millis::option")]
    pub environment_create_interval: Option<Duration>,
    /// At most this many `volumeCreate` per workspace per second, else "Whoa there pal! You are
    /// creating volumes too quickly. Try again in a sec" (terraform `helpers_test.go`,
    /// CHANGELOG). `None`: no limit.
    pub volume_creates_per_second: Option<usize>,
    /// Business errors (not found, not authorized, validation, already exists) come as HTTP
    /// 200 with `extensions.code = INTERNAL_SERVER_ERROR`, and "Problem processing request"
    /// with no code and a top-level `traceId` (distilled `errors.ts` and its live probe in
    /// `60-request-processing.json`). Off: the simulator's own precise codes.
    pub internal_server_error_codes: bool,
    /// Deleting an already deleted project answers "Not Authorized" (terraform
    /// `isNotFoundOrGone`, used for deletes only). Off: "Project not found".
    pub deleted_project_delete_unauthorized: bool,
    /// How long `project(id)` still returns a deleted project with `deletedAt` set, before it
    /// answers "Project not found" (railwayapp/cli `controllers/project.rs` handles both;
    /// alchemy polls after `projectDelete` until the project is gone).
    #[serde(with = "millis")]
    pub deleted_project_visible_for: Duration,
    /// `serviceInstanceUpdate` that changes the source image starts a deployment by itself
    /// (dougwithseismic/hogsend commit 1f2ba05f, "verified against live deployment records,
    /// `reason: "deploy"`"); a no-op update does not.
    pub instance_update_deploys: bool,
    /// Share of accessible ids a successful `projectsByIds` answer leaves out. The schema says
    /// it "skips ids the caller cannot access (does not throw on partial denial)"; an id
    /// missing from an answer is no evidence the project is gone.
    pub batch_omission: f64,
    /// After `serviceCreate`, Railway fans the instance out to its environments
    /// asynchronously; until then `volumeCreate` answers "Problem processing request"
    /// (terraform `resource_volume.go`: "the newly-created-service eventual-consistency
    /// window") and `serviceDomainCreate` "ServiceInstance not found" (alchemy
    /// `ServiceDomain.ts`).
    #[serde(with = "millis")]
    pub fresh_service_window: Duration,
    /// `serviceInstanceLimitsUpdate` answers "ServiceInstance not found" for a new instance
    /// for about this long (terraform `resource_service_instance.go` retries it for 15 s).
    #[serde(with = "millis")]
    pub fresh_limits_window: Duration,
    /// Share of `serviceDomainCreate` answered "Failed to create service domain, please try
    /// again" (alchemy `transient.ts`: the domain mutation races environment patches).
    pub domain_create_failure: f64,
    /// A variable upsert while the service's deployment is still building answers "Cannot
    /// redeploy yet, please wait for the original deployment to finish building" (terraform
    /// `isRedeployNotReady`).
    pub upsert_refused_while_building: bool,
    /// Deploys other than `serviceInstanceDeploy(latestCommit: true)` replay the digest an
    /// image tag had when the instance last deployed, so a moving tag does not move
    /// (railwayapp/cli PR #865: `deploymentRedeploy` "redeploys the existing build/image
    /// as-is"; `--from-source` calls `serviceInstanceDeploy` with `latestCommit: true` to
    /// "pull … latest image").
    pub stale_image_tags: bool,
    /// `deploymentRedeploy` of a deployment taken down by `deploymentRemove` is refused (one
    /// merely replaced by a newer deployment can still be redeployed: the pool's rollbacks do
    /// that). Railway marks it
    /// `canRedeploy: false`, and its CLI refuses "The latest deployment for service … cannot
    /// be redeployed. This may be because it's currently building, deploying, or was removed."
    /// (railwayapp/cli `src/commands/redeploy.rs:65-69` at df3838bf). What the API itself says
    /// is not documented; the simulator refuses with "Deployment cannot be redeployed". A
    /// parked service is woken with `serviceInstanceDeployV2`. Off: the removed deployment's
    /// build is redeployed.
    pub redeploy_of_removed_refused: bool,
    /// A deploy rate limit: at most `max` deploys per workspace in any `per` window, beyond
    /// which a deploy is refused "Service deployment rate limit exceeded" (the message users
    /// report after bulk variable changes: lbds137/tzurot `docs/reference/
    /// RAILWAY_CLI_REFERENCE.md`, "Rate Limiting"). Railway documents neither the limit nor its
    /// scope, so it is **off by default** (the one quirk that is: no number is known) and
    /// tests of bulk wakes switch it on.
    pub deploy_rate_limit: Option<DeployRateLimit>,
}

/// A deploy rate limit per workspace (see [`Quirks::deploy_rate_limit`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DeployRateLimit {
    /// Deploys allowed in one window.
    pub max: usize,
    /// The window.
    #[serde(with = "millis")]
    pub per: Duration,
}

impl Default for Quirks {
    /// Railway as it is, with its real timings.
    fn default() -> Self {
        Self {
            project_create_interval: Some(Duration::from_secs(30)),
            project_create_scope: ProjectThrottleScope::Workspace,
            environment_create_interval: Some(Duration::from_secs(30)),
            volume_creates_per_second: Some(5),
            internal_server_error_codes: true,
            deleted_project_delete_unauthorized: true,
            deleted_project_visible_for: Duration::from_secs(5),
            instance_update_deploys: true,
            batch_omission: 0.02,
            fresh_service_window: Duration::from_secs(2),
            fresh_limits_window: Duration::from_secs(15),
            domain_create_failure: 0.05,
            upsert_refused_while_building: true,
            stale_image_tags: true,
            redeploy_of_removed_refused: true,
            deploy_rate_limit: None,
        }
    }
}

impl Quirks {
    /// Every behaviour on, with timings short enough for tests: a 1 s `projectCreate`
    /// throttle, 300 ms fresh-service windows.
    pub fn quick() -> Self {
        Self {
            project_create_interval: Some(Duration::from_secs(1)),
            environment_create_interval: Some(Duration::from_secs(1)),
            deleted_project_visible_for: Duration::from_millis(500),
            fresh_service_window: Duration::from_millis(300),
            fresh_limits_window: Duration::from_millis(300),
            ..Self::default()
        }
    }

    /// Every behaviour off: the schema's world (for tests of the other branch).
    pub fn none() -> Self {
        Self {
            project_create_interval: None,
            project_create_scope: ProjectThrottleScope::Workspace,
            environment_create_interval: None,
            volume_creates_per_second: None,
            internal_server_error_codes: false,
            deleted_project_delete_unauthorized: false,
            deleted_project_visible_for: Duration::ZERO,
            instance_update_deploys: false,
            batch_omission: 0.0,
            fresh_service_window: Duration::ZERO,
            fresh_limits_window: Duration::ZERO,
            domain_create_failure: 0.0,
            upsert_refused_while_building: false,
            stale_image_tags: false,
            redeploy_of_removed_refused: false,
            deploy_rate_limit: None,
        }
    }
}
