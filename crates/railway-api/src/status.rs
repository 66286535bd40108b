//! Status reads: the batched `projectsByIds` read of many projects, one project's services,
//! and a service's deployments.

use std::collections::BTreeSet;

use futures_util::StreamExt;

use crate::client::{RailwayClient, Result};
use crate::convert;
use crate::ids::{EnvironmentId, ProjectId, ServiceId};
use crate::operations as op;
use crate::types::*;

/// Projects per batched status request. Railway answers a query of 50 projects with their
/// services, latest deployments and domains well within its limits; 500 agents take 10
/// requests.
pub const STATUS_BATCH_SIZE: usize = 50;

/// Status batches in flight at once during one read.
const STATUS_CONCURRENCY: usize = 8;

impl RailwayClient {
    /// The batched status read: latest deployment, domains and image of every service of the
    /// given projects, [`STATUS_BATCH_SIZE`] projects per request. Nothing fails the read as a
    /// whole: the ids of a failed batch are reported as `failed`, and ids a successful batch
    /// left out as `omitted`, so the caller keeps what it knew.
    pub async fn projects_status(&self, projects: &[ProjectId]) -> StatusRead {
        self.projects_status_batched(projects, STATUS_BATCH_SIZE).await
    }

    /// [`Self::projects_status`] with a chosen batch size (1 is the one-request-per-agent
    /// strategy, kept for benchmarks).
    pub async fn projects_status_batched(&self, projects: &[ProjectId], batch_size: usize) -> StatusRead {
        let batches: Vec<Vec<ProjectId>> = projects
            .chunks(batch_size.max(1))
            .map(<[ProjectId]>::to_vec)
            .collect();
        let mut results = futures_util::stream::iter(batches)
            .map(|ids| async move {
                let variables = op::ProjectsByIdsVariables {
                    ids: ids.iter().map(ToString::to_string).collect(),
                };
                let result: Result<op::ProjectsStatus> = self.execute(variables).await;
                (ids, result)
            })
            .buffer_unordered(STATUS_CONCURRENCY);
        let mut read = StatusRead::default();
        while let Some((ids, result)) = results.next().await {
            read.requests += 1;
            match result {
                Ok(data) => {
                    for project in data.projects_by_ids {
                        let status = convert::project_status(project);
                        read.projects.insert(status.project_id.clone(), status);
                    }
                    // "Skips ids the caller cannot access (does not throw on partial denial)":
                    // an id left out is unread, not gone.
                    let answered: BTreeSet<&ProjectId> = read.projects.keys().collect();
                    read.omitted
                        .extend(ids.into_iter().filter(|id| !answered.contains(id)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, projects = ids.len(), "status batch failed; keeping last known status");
                    read.failed.extend(ids);
                    read.last_error = Some(e);
                }
            }
        }
        read
    }

    /// Status of every service in one project (the shared project of legacy agents, lookups
    /// during creation).
    pub async fn project_status(&self, project: &ProjectId) -> Result<ProjectStatus> {
        let data: op::ProjectStatus = self
            .execute(op::ProjectIdVariables {
                id: project.to_string(),
            })
            .await?;
        Ok(convert::project_status(data.project))
    }

    /// A service's deployments in one environment, newest first (at most 50).
    pub async fn service_deployments(
        &self,
        project: &ProjectId,
        environment: &EnvironmentId,
        service: &ServiceId,
    ) -> Result<Vec<Deployment>> {
        let data: op::ServiceDeployments = self
            .execute(op::ServiceDeploymentsVariables {
                input: op::DeploymentListInput {
                    environment_id: Some(environment.to_string()),
                    project_id: Some(project.to_string()),
                    service_id: Some(service.to_string()),
                },
            })
            .await?;
        let mut deployments: Vec<Deployment> = data
            .deployments
            .edges
            .into_iter()
            .map(|e| convert::deployment(e.node))
            .collect();
        deployments.sort_by_key(|d| std::cmp::Reverse(d.created_at));
        Ok(deployments)
    }
}
