//! Projects: reading them (one, a page, by ids) and creating and deleting them (`project`,
//! `projects`, `projectsByIds`, `projectCreate`, `projectDelete`).

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::world::Refusal;

use super::environments::{Environment, ProjectEnvironmentsConnection, ProjectEnvironmentsConnectionEdge};
use super::volumes::{ProjectVolumesConnection, ProjectVolumesConnectionEdge, Volume};
use super::{PageInfo, Result, token, world};

#[derive(SimpleObject)]
pub(super) struct QueryProjectsConnection {
    pub(super) edges: Vec<QueryProjectsConnectionEdge>,
    pub(super) page_info: PageInfo,
}

#[derive(SimpleObject)]
pub(super) struct QueryProjectsConnectionEdge {
    pub(super) node: Project,
}

pub(super) struct Project(pub(super) String);

#[Object]
impl Project {
    async fn id(&self) -> ID {
        ID(self.0.clone())
    }

    async fn name(&self, ctx: &Context<'_>) -> Result<String> {
        Ok(world(ctx)
            .projects
            .get(&self.0)
            .map(|p| p.name.clone())
            .unwrap_or_default())
    }

    async fn description(&self, ctx: &Context<'_>) -> Option<String> {
        world(ctx)
            .projects
            .get(&self.0)
            .and_then(|p| p.description.clone())
    }

    async fn created_at(&self, ctx: &Context<'_>) -> DateTime<Utc> {
        world(ctx)
            .projects
            .get(&self.0)
            .map(|p| p.created_at)
            .unwrap_or_default()
    }

    async fn deleted_at(&self, ctx: &Context<'_>) -> Option<DateTime<Utc>> {
        world(ctx).projects.get(&self.0).and_then(|p| p.deleted_at)
    }

    async fn workspace_id(&self, ctx: &Context<'_>) -> Option<String> {
        world(ctx)
            .projects
            .get(&self.0)
            .and_then(|p| p.workspace_id.clone())
    }

    #[allow(unused_variables)]
    async fn environments(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        is_ephemeral: Option<bool>,
        last: Option<i32>,
    ) -> ProjectEnvironmentsConnection {
        let w = world(ctx);
        let envs = w
            .projects
            .get(&self.0)
            .map(|p| p.environments.clone())
            .unwrap_or_default();
        ProjectEnvironmentsConnection {
            edges: envs
                .into_iter()
                .map(|(id, name)| ProjectEnvironmentsConnectionEdge {
                    node: Environment {
                        id,
                        name,
                        project_id: self.0.clone(),
                    },
                })
                .collect(),
        }
    }

    #[allow(unused_variables)]
    async fn volumes(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> ProjectVolumesConnection {
        let w = world(ctx);
        ProjectVolumesConnection {
            edges: w
                .volumes_of_project(&self.0)
                .filter(|v| !v.deleted)
                .map(|v| ProjectVolumesConnectionEdge { node: Volume::of(v) })
                .collect(),
        }
    }
}

#[derive(InputObject)]
pub(super) struct ProjectCreateInput {
    pub(super) default_environment_name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) is_public: Option<bool>,
    pub(super) name: Option<String>,
    pub(super) pr_deploys: Option<bool>,
    pub(super) workspace_id: Option<String>,
}

/// `Query`'s fields about projects.
#[derive(Default)]
pub(super) struct ProjectsQuery;

#[Object]
impl ProjectsQuery {
    async fn project(&self, ctx: &Context<'_>, id: String) -> Result<Project> {
        world(ctx).project_for_read(token(ctx), &id, Instant::now())?;
        Ok(Project(id))
    }

    #[allow(clippy::too_many_arguments, unused_variables)]
    async fn projects(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        include_deleted: Option<bool>,
        last: Option<i32>,
        workspace_id: Option<String>,
    ) -> Result<QueryProjectsConnection> {
        let w = world(ctx);
        let workspaces = w
            .token_workspaces(token(ctx))
            .ok_or_else(Refusal::not_authorized)?;
        let include_deleted = include_deleted.unwrap_or(false);
        let first = first.unwrap_or(100).clamp(1, 500) as usize;
        // After the cursor, and one more than the page to tell whether a next page exists: a
        // listing of the whole workspace reads each project once, not once per page.
        let from = match &after {
            Some(a) => std::ops::Bound::Excluded(a.clone()),
            None => std::ops::Bound::Unbounded,
        };
        let matching: Vec<&crate::world::Project> = w
            .projects
            .range((from, std::ops::Bound::Unbounded))
            .map(|(_, p)| p)
            .filter(|p| include_deleted || p.deleted_at.is_none())
            .filter(|p| p.workspace_id.as_ref().is_some_and(|ws| workspaces.contains(ws)))
            .filter(|p| workspace_id.is_none() || p.workspace_id == workspace_id)
            .take(first + 1)
            .collect();
        let page: Vec<_> = matching.iter().take(first).collect();
        Ok(QueryProjectsConnection {
            page_info: PageInfo {
                end_cursor: page.last().map(|p| p.id.clone()),
                has_next_page: matching.len() > page.len(),
            },
            edges: page
                .into_iter()
                .map(|p| QueryProjectsConnectionEdge {
                    node: Project(p.id.clone()),
                })
                .collect(),
        })
    }

    async fn projects_by_ids(&self, ctx: &Context<'_>, ids: Vec<String>) -> Vec<Project> {
        let token = token(ctx).to_string();
        // Railway skips ids the token cannot see, deleted projects — and, with the quirk on,
        // some others ("does not throw on partial denial").
        world(ctx)
            .projects_by_ids(&token, ids)
            .into_iter()
            .map(Project)
            .collect()
    }
}

/// `Mutation`'s fields about projects.
#[derive(Default)]
pub(super) struct ProjectsMutation;

#[Object]
impl ProjectsMutation {
    async fn project_create(&self, ctx: &Context<'_>, input: ProjectCreateInput) -> Result<Project> {
        let _ = (input.is_public, input.pr_deploys);
        let id = world(ctx).create_project(
            token(ctx),
            input.name,
            input.description,
            input.workspace_id,
            input.default_environment_name,
            Instant::now(),
        )?;
        Ok(Project(id))
    }

    async fn project_delete(&self, ctx: &Context<'_>, id: String) -> Result<bool> {
        world(ctx).delete_project(token(ctx), &id, Instant::now())?;
        Ok(true)
    }
}
