//! Deployments and the batched status read.

use super::*;

// ---------------------------------------------------------------------------------------------
// Deployments

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceInstanceDeployVariables {
    pub service_id: String,
    pub environment_id: String,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ServiceInstanceDeployVariables")]
pub(crate) struct ServiceInstanceDeploy {
    #[arguments(serviceId: $service_id, environmentId: $environment_id)]
    pub service_instance_deploy_v2: String,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct DeploymentRedeployVariables {
    pub id: String,
    pub use_previous_image_tag: Option<bool>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "DeploymentRedeployVariables")]
pub(crate) struct DeploymentRedeploy {
    #[arguments(id: $id, usePreviousImageTag: $use_previous_image_tag)]
    pub deployment_redeploy: DeploymentNode,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct DeploymentIdVariables {
    pub id: String,
}

/// `deploymentRemove`: what `railway down` sends for the newest SUCCESS deployment
/// (railwayapp/cli `src/commands/down.rs:59-100` at df3838bf).
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "DeploymentIdVariables")]
pub(crate) struct DeploymentRemove {
    #[arguments(id: $id)]
    pub deployment_remove: bool,
}

/// `deploymentStop`.
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "DeploymentIdVariables")]
pub(crate) struct DeploymentStop {
    #[arguments(id: $id)]
    pub deployment_stop: bool,
}

/// `serviceInstanceDeploy(latestCommit: true)`: "pull and deploy the latest commit or image
/// from the configured source" — the one mutation Railway itself says resolves a moving image
/// tag anew (railwayapp/cli `redeploy --from-source`, PR #865, commit e5a2096c). It answers a
/// boolean, not the deployment.
#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceInstanceDeployLatestVariables {
    pub service_id: String,
    pub environment_id: String,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ServiceInstanceDeployLatestVariables")]
pub(crate) struct ServiceInstanceDeployLatest {
    #[arguments(serviceId: $service_id, environmentId: $environment_id, latestCommit: true)]
    pub service_instance_deploy: bool,
}

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct DeploymentListInput {
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceDeploymentsVariables {
    pub input: DeploymentListInput,
}

/// A service's deployments, newest first (how many followed an instance update).
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ServiceDeploymentsVariables")]
pub(crate) struct ServiceDeployments {
    #[arguments(input: $input, first: 50)]
    pub deployments: DeploymentsConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "QueryDeploymentsConnection")]
pub(crate) struct DeploymentsConnection {
    pub edges: Vec<DeploymentsEdge>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "QueryDeploymentsConnectionEdge")]
pub(crate) struct DeploymentsEdge {
    pub node: DeploymentNode,
}

// ---------------------------------------------------------------------------------------------
// The batched status read

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ProjectsByIdsVariables {
    pub ids: Vec<String>,
}

/// Every service of up to N projects, with latest deployment, domains and image: one request.
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ProjectsByIdsVariables")]
pub(crate) struct ProjectsStatus {
    #[arguments(ids: $ids)]
    pub projects_by_ids: Vec<ProjectStatusNode>,
}

/// The same for one project (the shared project of legacy agents).
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ProjectIdVariables")]
pub(crate) struct ProjectStatus {
    #[arguments(id: $id)]
    pub project: ProjectStatusNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Project")]
pub(crate) struct ProjectStatusNode {
    pub id: cynic::Id,
    pub environments: StatusEnvironmentConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "ProjectEnvironmentsConnection")]
pub(crate) struct StatusEnvironmentConnection {
    pub edges: Vec<StatusEnvironmentEdge>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "ProjectEnvironmentsConnectionEdge")]
pub(crate) struct StatusEnvironmentEdge {
    pub node: StatusEnvironmentNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Environment")]
pub(crate) struct StatusEnvironmentNode {
    pub id: cynic::Id,
    pub name: String,
    // A project holds at most 100 services (Railway's cap), so one page covers it.
    #[arguments(first: 100)]
    pub service_instances: ServiceInstanceConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "EnvironmentServiceInstancesConnection")]
pub(crate) struct ServiceInstanceConnection {
    pub edges: Vec<ServiceInstanceEdge>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "EnvironmentServiceInstancesConnectionEdge")]
pub(crate) struct ServiceInstanceEdge {
    pub node: ServiceInstanceStatusNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "ServiceInstance")]
pub(crate) struct ServiceInstanceStatusNode {
    pub service_id: String,
    pub service_name: String,
    pub environment_id: String,
    pub latest_deployment: Option<DeploymentNode>,
    pub domains: DomainsNode,
    pub source: Option<ServiceSourceNode>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "ServiceSource")]
pub(crate) struct ServiceSourceNode {
    pub image: Option<String>,
}

operation!(ServiceInstanceDeploy: mutation "serviceInstanceDeployV2", Replenish, ServiceInstanceDeployVariables);
operation!(ServiceInstanceDeployLatest: mutation "serviceInstanceDeploy", Replenish, ServiceInstanceDeployLatestVariables);
operation!(DeploymentRedeploy: mutation "deploymentRedeploy", Replenish, DeploymentRedeployVariables);
operation!(DeploymentRemove: mutation "deploymentRemove", Replenish, DeploymentIdVariables);
operation!(DeploymentStop: mutation "deploymentStop", Replenish, DeploymentIdVariables);
operation!(ServiceDeployments: query "deployments", Status, ServiceDeploymentsVariables);
operation!(ProjectsStatus: query "projectsByIds", Status, ProjectsByIdsVariables);
operation!(ProjectStatus: query "project.status", Status, ProjectIdVariables);
