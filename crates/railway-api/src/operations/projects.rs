//! Workspaces, projects and environments.

use super::*;

// ---------------------------------------------------------------------------------------------
// The token's workspaces

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query")]
pub(crate) struct TokenWorkspaces {
    pub api_token: ApiTokenContext,
}

#[derive(cynic::QueryFragment, Debug)]
pub(crate) struct ApiTokenContext {
    pub workspaces: Vec<ApiTokenWorkspace>,
}

#[derive(cynic::QueryFragment, Debug)]
pub(crate) struct ApiTokenWorkspace {
    pub id: String,
    pub name: String,
}

// ---------------------------------------------------------------------------------------------
// Projects

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct ProjectCreateInput {
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub default_environment_name: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub is_public: Option<bool>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub pr_deploys: Option<bool>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ProjectCreateVariables {
    pub input: ProjectCreateInput,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ProjectCreateVariables")]
pub(crate) struct ProjectCreate {
    #[arguments(input: $input)]
    pub project_create: CreatedProjectNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Project")]
pub(crate) struct CreatedProjectNode {
    pub id: cynic::Id,
    pub name: String,
    pub environments: EnvironmentConnection,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ProjectIdVariables {
    pub id: String,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ProjectIdVariables")]
pub(crate) struct ProjectEnvironments {
    #[arguments(id: $id)]
    pub project: ProjectEnvironmentsNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Project")]
pub(crate) struct ProjectEnvironmentsNode {
    pub environments: EnvironmentConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ProjectIdVariables")]
pub(crate) struct ProjectDelete {
    #[arguments(id: $id)]
    pub project_delete: bool,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ProjectsPageVariables {
    pub workspace_id: Option<String>,
    pub first: Option<i32>,
    pub after: Option<String>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ProjectsPageVariables")]
pub(crate) struct ProjectsPage {
    #[arguments(workspaceId: $workspace_id, first: $first, after: $after)]
    pub projects: ProjectsConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "QueryProjectsConnection")]
pub(crate) struct ProjectsConnection {
    pub edges: Vec<ProjectsEdge>,
    pub page_info: PageInfo,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "QueryProjectsConnectionEdge")]
pub(crate) struct ProjectsEdge {
    pub node: ProjectSummaryNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Project")]
pub(crate) struct ProjectSummaryNode {
    pub id: cynic::Id,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime,
}

// ---------------------------------------------------------------------------------------------
// Environments

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct EnvironmentCreateInput {
    pub name: String,
    pub project_id: String,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub skip_initial_deploys: Option<bool>,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct EnvironmentCreateVariables {
    pub input: EnvironmentCreateInput,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "EnvironmentCreateVariables")]
pub(crate) struct EnvironmentCreate {
    #[arguments(input: $input)]
    pub environment_create: EnvironmentNode,
}

/// Whether a project exists: `deletedAt` is set during Railway's grace period after a delete,
/// and "Project not found" comes after it (railwayapp/cli `controllers/project.rs` handles
/// both).
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ProjectIdVariables")]
pub(crate) struct ProjectPresence {
    #[arguments(id: $id)]
    pub project: ProjectPresenceNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Project")]
pub(crate) struct ProjectPresenceNode {
    pub id: cynic::Id,
    pub name: String,
    pub description: Option<String>,
    pub deleted_at: Option<DateTime>,
}

operation!(TokenWorkspaces: query "apiToken", Critical, ());
operation!(ProjectCreate: mutation "projectCreate", Replenish, ProjectCreateVariables);
operation!(ProjectEnvironments: query "project.environments", Replenish, ProjectIdVariables);
operation!(ProjectDelete: mutation "projectDelete", Critical, ProjectIdVariables);
operation!(ProjectsPage: query "projects", Status, ProjectsPageVariables);
operation!(EnvironmentCreate: mutation "environmentCreate", Replenish, EnvironmentCreateVariables);
operation!(ProjectPresence: query "project.deletedAt", Status, ProjectIdVariables);
