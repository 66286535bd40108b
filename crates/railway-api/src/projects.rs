//! Calls on workspaces, tokens, projects and environments.

use std::time::Duration;

use backon::BackoffBuilder;

use crate::classify::{ErrorKind, ThrottleScope};
use crate::client::{RailwayClient, Result};
use crate::convert;
use crate::error::RailwayError;
use crate::ids::{EnvironmentId, ProjectId, WorkspaceId};
use crate::operations::{self as op, Operation};
use crate::types::*;

/// Projects in one page of a workspace's listing: an orphan sweep of a workspace of `n`
/// projects costs `n / WORKSPACE_PAGE + 1` requests.
pub const WORKSPACE_PAGE: usize = 100;

impl RailwayClient {
    /// The workspaces this token can act on (`apiToken.workspaces`). Empty for a project token.
    pub async fn token_workspaces(&self) -> Result<Vec<Workspace>> {
        let data: op::TokenWorkspaces = self.execute(()).await?;
        Ok(workspaces(data))
    }

    /// Checks every configured token, one request each: the workspaces each can act on, or
    /// why that could not be read. Tokens are named by position, never shown.
    pub async fn check_tokens(&self) -> Vec<TokenCheck> {
        let mut checks = Vec::new();
        for index in 0..self.inner.tokens.len() {
            let workspaces = match Self::encode::<op::TokenWorkspaces>(()) {
                Ok(body) => self
                    .attempt::<op::TokenWorkspaces>(
                        op::TokenWorkspaces::NAME,
                        op::TokenWorkspaces::PRIORITY,
                        body,
                        index,
                    )
                    .await
                    .map(workspaces),
                Err(e) => Err(e),
            };
            checks.push(TokenCheck { index, workspaces });
        }
        checks
    }

    /// How long until this workspace's `projectCreate` throttle opens (`None`: it is open).
    pub fn project_create_available_in(&self, workspace: &WorkspaceId) -> Option<Duration> {
        self.inner.pacer.open_in(workspace.as_str())
    }

    /// The interval between two projects Railway allows this workspace, as its last throttle
    /// message named it (`None` before any throttle was seen).
    pub fn project_create_interval(&self, workspace: &WorkspaceId) -> Option<Duration> {
        self.inner.pacer.interval(workspace.as_str())
    }

    /// `projectCreate`, paced per workspace: it waits for the workspace's turn (first come,
    /// first served, at most `project_create_max_wait`), sends once, and never repeats an
    /// answer that may have created the project. A throttle per user moves to another token at
    /// once; a throttle of the workspace closes it for everyone for the interval Railway names.
    pub async fn create_project(&self, project: &NewProject) -> Result<CreatedProject> {
        let body = Self::encode::<op::ProjectCreate>(op::ProjectCreateVariables {
            input: op::ProjectCreateInput {
                default_environment_name: project.default_environment_name.clone(),
                description: Some(project.description.clone()),
                is_public: Some(false),
                name: Some(project.name.clone()),
                pr_deploys: Some(false),
                workspace_id: Some(project.workspace_id.to_string()),
            },
        })?;
        let config = &self.inner.config;
        let turn = self
            .inner
            .pacer
            .turn(project.workspace_id.as_str(), config.project_create_max_wait)
            .await
            .map_err(|retry_after| RailwayError::Paced { retry_after })?;
        let mut tried = 0;
        let mut backoff = self.backoff().build();
        loop {
            let token = match self.inner.tokens.rested() {
                Ok(token) => token,
                Err(wait) => {
                    turn.succeeded();
                    return Err(RailwayError::Paced { retry_after: wait });
                }
            };
            let attempt = self
                .attempt::<op::ProjectCreate>(
                    op::ProjectCreate::NAME,
                    op::ProjectCreate::PRIORITY,
                    body.clone(),
                    token,
                )
                .await;
            tried += 1;
            match attempt {
                Ok(data) => {
                    turn.succeeded();
                    let p = data.project_create;
                    return Ok(CreatedProject {
                        id: ProjectId::new(p.id.into_inner()),
                        name: p.name,
                        environments: convert::environments(p.environments),
                    });
                }
                Err(e) => match e.kind() {
                    // Provably not applied (refused before it reached Railway, a 429): again, with
                    // backoff, still in this workspace's turn.
                    _ if e.retryable_mutation() => match backoff.next() {
                        Some(delay) => {
                            tried -= 1;
                            tokio::time::sleep(delay).await;
                        }
                        None => {
                            turn.succeeded();
                            return Err(e);
                        }
                    },
                    ErrorKind::Throttled {
                        scope: ThrottleScope::User,
                        retry_after,
                    } if tried < self.inner.tokens.len() => {
                        tracing::info!(
                            token,
                            ?retry_after,
                            "projectCreate throttled for this user; trying another token"
                        );
                        self.inner.tokens.rest(token, retry_after);
                    }
                    ErrorKind::Throttled { scope, retry_after } => {
                        tracing::info!(
                            ?scope,
                            ?retry_after,
                            "projectCreate throttled; the workspace waits"
                        );
                        if scope == ThrottleScope::User {
                            self.inner.tokens.rest(token, retry_after);
                        }
                        turn.throttled(retry_after);
                        return Err(e);
                    }
                    _ => {
                        turn.succeeded();
                        return Err(e);
                    }
                },
            }
        }
    }

    /// A project's environments.
    pub async fn project_environments(&self, project: &ProjectId) -> Result<Vec<Environment>> {
        let data: op::ProjectEnvironments = self
            .execute(op::ProjectIdVariables {
                id: project.to_string(),
            })
            .await?;
        Ok(convert::environments(data.project.environments))
    }

    /// `environmentCreate`, without deploying anything into it.
    pub async fn create_environment(&self, project: &ProjectId, name: &str) -> Result<Environment> {
        let data: op::EnvironmentCreate = self
            .execute(op::EnvironmentCreateVariables {
                input: op::EnvironmentCreateInput {
                    name: name.into(),
                    project_id: project.to_string(),
                    skip_initial_deploys: Some(true),
                },
            })
            .await?;
        Ok(Environment {
            id: EnvironmentId::new(data.environment_create.id.into_inner()),
            name: data.environment_create.name,
        })
    }

    /// One page of a workspace's projects (deleted ones left out), [`WORKSPACE_PAGE`] long.
    pub async fn workspace_projects_page(
        &self,
        workspace: &WorkspaceId,
        after: Option<String>,
    ) -> Result<ProjectsPage> {
        let data: op::ProjectsPage = self
            .execute(op::ProjectsPageVariables {
                workspace_id: Some(workspace.to_string()),
                first: Some(WORKSPACE_PAGE as i32),
                after,
            })
            .await?;
        Ok(convert::projects_page(data.projects))
    }

    /// Every project of a workspace, page by page (orphan sweeps, lookups by name).
    pub async fn workspace_projects(&self, workspace: &WorkspaceId) -> Result<Vec<ProjectSummary>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.workspace_projects_page(workspace, after).await?;
            all.extend(page.projects);
            match page.next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(all),
            }
        }
    }

    /// Whether a project exists, from one `project(id)` read: the confirmation to ask for
    /// before treating a project missing from a batched read as gone.
    pub async fn project_presence(&self, project: &ProjectId) -> Result<ProjectPresence> {
        let read: Result<op::ProjectPresence> = self
            .execute(op::ProjectIdVariables {
                id: project.to_string(),
            })
            .await;
        match read {
            Ok(data) if data.project.deleted_at.is_some() => Ok(ProjectPresence::Deleted),
            Ok(_) => Ok(ProjectPresence::Exists),
            Err(e) => match e.kind() {
                ErrorKind::NotFound => Ok(ProjectPresence::NotFound),
                ErrorKind::Unauthorized => Ok(ProjectPresence::NotVisible),
                _ => Err(e),
            },
        }
    }

    /// A project's name and description now, from the same one `project(id)` read: what the
    /// deletion guard checks just before every `projectDelete`.
    pub async fn project_read(&self, project: &ProjectId) -> Result<ProjectRead> {
        let read: Result<op::ProjectPresence> = self
            .execute(op::ProjectIdVariables {
                id: project.to_string(),
            })
            .await;
        match read {
            Ok(data) if data.project.deleted_at.is_some() => Ok(ProjectRead::Gone),
            Ok(data) => Ok(ProjectRead::Exists {
                name: data.project.name,
                description: data.project.description,
            }),
            Err(e) => match e.kind() {
                ErrorKind::NotFound => Ok(ProjectRead::Gone),
                ErrorKind::Unauthorized => Ok(ProjectRead::NotVisible),
                _ => Err(e),
            },
        }
    }

    /// `projectDelete`. Reached only through [`crate::ProjectDeleter`].
    pub(crate) async fn delete_project(&self, project: &ProjectId) -> Result<()> {
        let _: op::ProjectDelete = self
            .execute(op::ProjectIdVariables {
                id: project.to_string(),
            })
            .await?;
        Ok(())
    }
}

fn workspaces(data: op::TokenWorkspaces) -> Vec<Workspace> {
    data.api_token
        .workspaces
        .into_iter()
        .map(|w| Workspace {
            id: WorkspaceId::new(w.id),
            name: w.name,
        })
        .collect()
}
