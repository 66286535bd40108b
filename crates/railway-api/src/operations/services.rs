//! Services, their settings, volumes and domains.

use super::*;

// ---------------------------------------------------------------------------------------------
// Services

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct RegistryCredentialsInput {
    pub password: String,
    pub username: String,
}

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct ServiceSourceInput {
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
}

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct ServiceCreateInput {
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub project_id: String,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub registry_credentials: Option<RegistryCredentialsInput>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub source: Option<ServiceSourceInput>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub variables: Option<EnvironmentVariables>,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceCreateVariables {
    pub input: ServiceCreateInput,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ServiceCreateVariables")]
pub(crate) struct ServiceCreate {
    #[arguments(input: $input)]
    pub service_create: ServiceNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Service")]
pub(crate) struct ServiceNode {
    pub id: cynic::Id,
    pub name: String,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceDeleteVariables {
    pub id: String,
    pub environment_id: Option<String>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ServiceDeleteVariables")]
pub(crate) struct ServiceDelete {
    #[arguments(id: $id, environmentId: $environment_id)]
    pub service_delete: bool,
}

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct VariableCollectionUpsertInput {
    pub environment_id: String,
    pub project_id: String,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub replace: Option<bool>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub skip_deploys: Option<bool>,
    pub variables: EnvironmentVariables,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct VariableCollectionUpsertVariables {
    pub input: VariableCollectionUpsertInput,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "VariableCollectionUpsertVariables")]
pub(crate) struct VariableCollectionUpsert {
    #[arguments(input: $input)]
    pub variable_collection_upsert: bool,
}

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct ServiceInstanceLimitsUpdateInput {
    pub environment_id: String,
    #[cynic(rename = "memoryGB", skip_serializing_if = "Option::is_none")]
    pub memory_gb: Option<f64>,
    pub service_id: String,
    #[cynic(rename = "vCPUs", skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<f64>,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceInstanceLimitsUpdateVariables {
    pub input: ServiceInstanceLimitsUpdateInput,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ServiceInstanceLimitsUpdateVariables")]
pub(crate) struct ServiceInstanceLimitsUpdate {
    #[arguments(input: $input)]
    pub service_instance_limits_update: bool,
}

#[derive(cynic::InputObject, Debug, Clone, Default)]
pub(crate) struct ServiceInstanceUpdateInput {
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub healthcheck_path: Option<String>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub num_replicas: Option<i32>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub registry_credentials: Option<RegistryCredentialsInput>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub restart_policy_max_retries: Option<i32>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub restart_policy_type: Option<RestartPolicyType>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub sleep_application: Option<bool>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub source: Option<ServiceSourceInput>,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub start_command: Option<String>,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceInstanceUpdateVariables {
    pub service_id: String,
    pub environment_id: Option<String>,
    pub input: ServiceInstanceUpdateInput,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ServiceInstanceUpdateVariables")]
pub(crate) struct ServiceInstanceUpdate {
    #[arguments(serviceId: $service_id, environmentId: $environment_id, input: $input)]
    pub service_instance_update: bool,
}

// ---------------------------------------------------------------------------------------------
// Volumes

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct VolumeCreateInput {
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    pub mount_path: String,
    pub project_id: String,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub service_id: Option<String>,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct VolumeCreateVariables {
    pub input: VolumeCreateInput,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "VolumeCreateVariables")]
pub(crate) struct VolumeCreate {
    #[arguments(input: $input)]
    pub volume_create: VolumeNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Volume")]
pub(crate) struct VolumeNode {
    pub id: cynic::Id,
    pub name: String,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct VolumeDeleteVariables {
    pub volume_id: String,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "VolumeDeleteVariables")]
pub(crate) struct VolumeDelete {
    #[arguments(volumeId: $volume_id)]
    pub volume_delete: bool,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ProjectIdVariables")]
pub(crate) struct ProjectVolumes {
    #[arguments(id: $id)]
    pub project: ProjectVolumesNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Project")]
pub(crate) struct ProjectVolumesNode {
    pub volumes: VolumeConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "ProjectVolumesConnection")]
pub(crate) struct VolumeConnection {
    pub edges: Vec<VolumeEdge>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "ProjectVolumesConnectionEdge")]
pub(crate) struct VolumeEdge {
    pub node: VolumeWithInstances,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Volume")]
pub(crate) struct VolumeWithInstances {
    pub id: cynic::Id,
    pub name: String,
    pub volume_instances: VolumeInstanceConnection,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "VolumeVolumeInstancesConnection")]
pub(crate) struct VolumeInstanceConnection {
    pub edges: Vec<VolumeInstanceEdge>,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "VolumeVolumeInstancesConnectionEdge")]
pub(crate) struct VolumeInstanceEdge {
    pub node: VolumeInstanceNode,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "VolumeInstance")]
pub(crate) struct VolumeInstanceNode {
    pub service_id: Option<String>,
    pub environment_id: String,
    pub mount_path: String,
}

// ---------------------------------------------------------------------------------------------
// Domains

#[derive(cynic::InputObject, Debug, Clone)]
pub(crate) struct ServiceDomainCreateInput {
    pub environment_id: String,
    pub service_id: String,
    #[cynic(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<i32>,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceDomainCreateVariables {
    pub input: ServiceDomainCreateInput,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Mutation", variables = "ServiceDomainCreateVariables")]
pub(crate) struct ServiceDomainCreate {
    #[arguments(input: $input)]
    pub service_domain_create: ServiceDomainNode,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct DomainsVariables {
    pub project_id: String,
    pub environment_id: String,
    pub service_id: String,
}

#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "DomainsVariables")]
pub(crate) struct Domains {
    #[arguments(projectId: $project_id, environmentId: $environment_id, serviceId: $service_id)]
    pub domains: DomainsNode,
}

#[derive(cynic::QueryVariables, Debug)]
pub(crate) struct ServiceVariablesVariables {
    pub project_id: String,
    pub environment_id: String,
    pub service_id: Option<String>,
}

/// A service's variables, unrendered (`${{...}}` references as written).
#[derive(cynic::QueryFragment, Debug)]
#[cynic(graphql_type = "Query", variables = "ServiceVariablesVariables")]
pub(crate) struct ServiceVariables {
    #[arguments(projectId: $project_id, environmentId: $environment_id, serviceId: $service_id, unrendered: true)]
    pub variables: EnvironmentVariables,
}

operation!(ServiceVariables: query "variables", Status, ServiceVariablesVariables);
operation!(ServiceCreate: mutation "serviceCreate", Replenish, ServiceCreateVariables);
operation!(ServiceDelete: mutation "serviceDelete", Critical, ServiceDeleteVariables);
operation!(VariableCollectionUpsert: mutation "variableCollectionUpsert", Replenish, VariableCollectionUpsertVariables);
operation!(ServiceInstanceLimitsUpdate: mutation "serviceInstanceLimitsUpdate", Replenish, ServiceInstanceLimitsUpdateVariables);
operation!(ServiceInstanceUpdate: mutation "serviceInstanceUpdate", Replenish, ServiceInstanceUpdateVariables);
operation!(VolumeCreate: mutation "volumeCreate", Replenish, VolumeCreateVariables);
operation!(VolumeDelete: mutation "volumeDelete", Critical, VolumeDeleteVariables);
operation!(ProjectVolumes: query "project.volumes", Replenish, ProjectIdVariables);
operation!(ServiceDomainCreate: mutation "serviceDomainCreate", Replenish, ServiceDomainCreateVariables);
operation!(Domains: query "domains", Replenish, DomainsVariables);
