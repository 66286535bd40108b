//! Deployments: their status, `deployments` and the three ways to start one (`deploymentRedeploy`,
//! `serviceInstanceDeploy`, `serviceInstanceDeployV2`).

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::world::{Refusal, Status, World};

use super::{PageInfo, Result, token, world};

// The client has its own (`railway_api`): kept apart on purpose, since the simulator plays
// Railway and must not take its types from the client it tests.
/// `DeploymentStatus`.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[allow(missing_docs)]
pub enum DeploymentStatus {
    Building,
    Crashed,
    Deploying,
    Failed,
    Initializing,
    NeedsApproval,
    Queued,
    Removed,
    Removing,
    Skipped,
    Sleeping,
    Success,
    Waiting,
}

impl From<Status> for DeploymentStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Queued => Self::Queued,
            Status::Building => Self::Building,
            Status::Deploying => Self::Deploying,
            Status::Success => Self::Success,
            Status::Failed => Self::Failed,
            Status::Crashed => Self::Crashed,
            Status::Removed => Self::Removed,
            Status::Sleeping => Self::Sleeping,
        }
    }
}

#[derive(SimpleObject)]
pub(super) struct Deployment {
    pub(super) created_at: DateTime<Utc>,
    pub(super) deployment_stopped: bool,
    pub(super) id: ID,
    pub(super) status: DeploymentStatus,
}

impl Deployment {
    /// A deployment of the world as Railway shows it `now`.
    pub(super) fn of(w: &World, d: &crate::world::Deployment, now: Instant) -> Self {
        Self {
            created_at: d.created_at,
            deployment_stopped: d.stopped_at.is_some(),
            id: ID(d.id.clone()),
            status: w.status(d, now).into(),
        }
    }
}

#[derive(SimpleObject)]
pub(super) struct QueryDeploymentsConnection {
    pub(super) edges: Vec<QueryDeploymentsConnectionEdge>,
    pub(super) page_info: PageInfo,
}

#[derive(SimpleObject)]
pub(super) struct QueryDeploymentsConnectionEdge {
    pub(super) node: Deployment,
}

#[derive(InputObject)]
pub(super) struct DeploymentListInput {
    pub(super) environment_id: Option<String>,
    pub(super) include_deleted: Option<bool>,
    pub(super) project_id: Option<String>,
    pub(super) service_id: Option<String>,
}

/// `Query`'s fields about deployments.
#[derive(Default)]
pub(super) struct DeploymentsQuery;

#[Object]
impl DeploymentsQuery {
    #[allow(unused_variables)]
    async fn deployments(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        input: DeploymentListInput,
        last: Option<i32>,
    ) -> Result<QueryDeploymentsConnection> {
        let w = world(ctx);
        let now = Instant::now();
        let Some(project) = &input.project_id else {
            return Err(Refusal::bad_input("projectId is required").into());
        };
        w.project_visible(token(ctx), project)?;
        // Replaced deployments stay listed (as REMOVED); deleted ones are not simulated.
        let _ = input.include_deleted;
        let mut deployments: Vec<&crate::world::Deployment> = w
            .deployments_of_project(project)
            .filter(|d| {
                input
                    .environment_id
                    .as_ref()
                    .is_none_or(|e| *e == d.environment_id)
            })
            .filter(|d| input.service_id.as_ref().is_none_or(|s| *s == d.service_id))
            .collect();
        deployments.sort_by_key(|d| std::cmp::Reverse(d.started));
        let first = first.unwrap_or(100).clamp(1, 500) as usize;
        Ok(QueryDeploymentsConnection {
            edges: deployments
                .into_iter()
                .take(first)
                .map(|d| QueryDeploymentsConnectionEdge {
                    node: Deployment::of(&w, d, now),
                })
                .collect(),
            page_info: PageInfo {
                end_cursor: None,
                has_next_page: false,
            },
        })
    }
}

/// `Mutation`'s fields about deployments.
#[derive(Default)]
pub(super) struct DeploymentsMutation;

#[Object]
impl DeploymentsMutation {
    async fn deployment_redeploy(
        &self,
        ctx: &Context<'_>,
        id: String,
        use_previous_image_tag: Option<bool>,
    ) -> Result<Deployment> {
        let mut w = world(ctx);
        let now = Instant::now();
        // Railway's redeploy replays the build as-is, whatever `usePreviousImageTag` says
        // (railwayapp/cli PR #865); the flag is accepted and changes nothing here.
        let _ = use_previous_image_tag;
        let new_id = w.redeploy(token(ctx), &id, now)?;
        let d = &w.deployments[&new_id];
        Ok(Deployment::of(&w, d, now))
    }

    // `railway down` (railwayapp/cli src/commands/down.rs): REMOVED, the service kept.
    async fn deployment_remove(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        world(ctx).remove_deployment(token(ctx), &id, Instant::now())?;
        Ok(true)
    }

    // Stopped: SUCCESS with deploymentStopped, nothing serving.
    async fn deployment_stop(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        world(ctx).stop_deployment(token(ctx), &id, Instant::now())?;
        Ok(true)
    }

    #[graphql(name = "serviceInstanceDeployV2")]
    async fn service_instance_deploy_v2(
        &self,
        ctx: &Context<'_>,
        commit_sha: Option<String>,
        environment_id: String,
        service_id: String,
    ) -> Result<String> {
        let _ = commit_sha;
        Ok(world(ctx).deploy_checked(token(ctx), &service_id, &environment_id, false, Instant::now())?)
    }

    /// With `latestCommit: true` the image tag is pulled anew (railwayapp/cli PR #865).
    async fn service_instance_deploy(
        &self,
        ctx: &Context<'_>,
        commit_sha: Option<String>,
        environment_id: String,
        latest_commit: Option<bool>,
        service_id: String,
    ) -> Result<bool> {
        let _ = commit_sha;
        world(ctx).deploy_checked(
            token(ctx),
            &service_id,
            &environment_id,
            latest_commit.unwrap_or(false),
            Instant::now(),
        )?;
        Ok(true)
    }
}
