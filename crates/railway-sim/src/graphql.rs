//! Railway's GraphQL surface, served by async-graphql with Railway's own type, field and
//! argument names, so the client's queries are validated against a schema, not pattern-matched.
//! `cargo xtask schema check` proves this schema is a subset of Railway's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::{
    Context, EmptySubscription, Enum, ErrorExtensions, ID, InputObject, InputValueError, InputValueResult,
    Object, Scalar, ScalarType, Schema, SimpleObject, Value,
};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::world::{InstanceUpdate, Refusal, Status, World};

/// The schema type.
pub type RailwaySchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// The world, shared by resolvers.
pub(crate) type SharedWorld = Arc<Mutex<World>>;

/// The bearer token of the request being served.
pub(crate) struct RequestToken(pub String);

pub(crate) fn build_schema(world: SharedWorld) -> RailwaySchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(world)
        .finish()
}

fn world<'a>(ctx: &'a Context<'_>) -> MutexGuard<'a, World> {
    ctx.data_unchecked::<SharedWorld>()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn token<'a>(ctx: &'a Context<'_>) -> &'a str {
    ctx.data_opt::<RequestToken>().map(|t| t.0.as_str()).unwrap_or("")
}

impl From<Refusal> for async_graphql::Error {
    fn from(r: Refusal) -> Self {
        let code = r.code;
        async_graphql::Error::new(r.message).extend_with(|_, e| e.set("code", code))
    }
}

type Result<T> = async_graphql::Result<T>;

/// `EnvironmentVariables`: an object of names to string values.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentVariables(
    /// Variable names to values.
    pub BTreeMap<String, String>,
);

#[Scalar(name = "EnvironmentVariables")]
impl ScalarType for EnvironmentVariables {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.to_string(), s)),
                    other => Err(InputValueError::custom(format!(
                        "variable {k} must be a string, got {other}"
                    ))),
                })
                .collect::<std::result::Result<BTreeMap<_, _>, _>>()
                .map(EnvironmentVariables),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (async_graphql::Name::new(k), Value::String(v.clone())))
                .collect(),
        )
    }
}

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

/// `RestartPolicyType`.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[allow(missing_docs)]
pub enum RestartPolicyType {
    Always,
    Never,
    OnFailure,
}

// ---------------------------------------------------------------------------------------------
// Output types

#[derive(SimpleObject)]
struct ApiTokenContext {
    workspaces: Vec<ApiTokenWorkspace>,
}

#[derive(SimpleObject)]
struct ApiTokenWorkspace {
    id: String,
    name: String,
}

#[derive(SimpleObject)]
struct PageInfo {
    end_cursor: Option<String>,
    has_next_page: bool,
}

#[derive(SimpleObject)]
struct QueryProjectsConnection {
    edges: Vec<QueryProjectsConnectionEdge>,
    page_info: PageInfo,
}

#[derive(SimpleObject)]
struct QueryProjectsConnectionEdge {
    node: Project,
}

struct Project(String);

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
                .volumes
                .values()
                .filter(|v| v.project_id == self.0 && !v.deleted)
                .map(|v| ProjectVolumesConnectionEdge {
                    node: Volume {
                        id: ID(v.id.clone()),
                        name: v.name.clone(),
                        volume_instances: VolumeVolumeInstancesConnection {
                            edges: vec![VolumeVolumeInstancesConnectionEdge {
                                node: VolumeInstance {
                                    environment_id: v.environment_id.clone(),
                                    mount_path: v.mount_path.clone(),
                                    service_id: v.service_id.clone(),
                                },
                            }],
                        },
                    },
                })
                .collect(),
        }
    }
}

#[derive(SimpleObject)]
struct ProjectEnvironmentsConnection {
    edges: Vec<ProjectEnvironmentsConnectionEdge>,
}

#[derive(SimpleObject)]
struct ProjectEnvironmentsConnectionEdge {
    node: Environment,
}

struct Environment {
    id: String,
    name: String,
    project_id: String,
}

#[Object]
impl Environment {
    async fn id(&self) -> ID {
        ID(self.id.clone())
    }

    async fn name(&self) -> &str {
        &self.name
    }

    #[allow(unused_variables)]
    async fn service_instances(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> EnvironmentServiceInstancesConnection {
        let w = world(ctx);
        let now = Instant::now();
        let edges = w
            .services
            .values()
            .filter(|s| s.project_id == self.project_id && !s.deleted)
            .filter_map(|s| s.instances.get(&self.id).map(|i| (s, i)))
            .map(|(s, i)| EnvironmentServiceInstancesConnectionEdge {
                node: ServiceInstance {
                    domains: AllDomains {
                        service_domains: w
                            .service_domains(&s.id, &self.id)
                            .into_iter()
                            .map(|(id, domain)| ServiceDomain { domain, id: ID(id) })
                            .collect(),
                    },
                    environment_id: self.id.clone(),
                    latest_deployment: i
                        .latest_deployment
                        .as_ref()
                        .and_then(|d| w.deployments.get(d))
                        .map(|d| Deployment {
                            created_at: d.created_at,
                            id: ID(d.id.clone()),
                            status: w.status(d, now).into(),
                        }),
                    service_id: s.id.clone(),
                    service_name: s.name.clone(),
                    source: Some(ServiceSource {
                        image: i.image.clone(),
                    }),
                },
            })
            .collect();
        EnvironmentServiceInstancesConnection {
            edges,
            page_info: PageInfo {
                end_cursor: None,
                has_next_page: false,
            },
        }
    }
}

#[derive(SimpleObject)]
struct EnvironmentServiceInstancesConnection {
    edges: Vec<EnvironmentServiceInstancesConnectionEdge>,
    page_info: PageInfo,
}

#[derive(SimpleObject)]
struct EnvironmentServiceInstancesConnectionEdge {
    node: ServiceInstance,
}

#[derive(SimpleObject)]
struct ServiceInstance {
    domains: AllDomains,
    environment_id: String,
    latest_deployment: Option<Deployment>,
    service_id: String,
    service_name: String,
    source: Option<ServiceSource>,
}

#[derive(SimpleObject)]
struct ServiceSource {
    image: Option<String>,
}

#[derive(SimpleObject)]
struct AllDomains {
    service_domains: Vec<ServiceDomain>,
}

#[derive(SimpleObject)]
struct ServiceDomain {
    domain: String,
    id: ID,
}

#[derive(SimpleObject)]
struct Deployment {
    created_at: DateTime<Utc>,
    id: ID,
    status: DeploymentStatus,
}

#[derive(SimpleObject)]
struct QueryDeploymentsConnection {
    edges: Vec<QueryDeploymentsConnectionEdge>,
    page_info: PageInfo,
}

#[derive(SimpleObject)]
struct QueryDeploymentsConnectionEdge {
    node: Deployment,
}

#[derive(SimpleObject)]
struct Service {
    id: ID,
    name: String,
}

#[derive(SimpleObject)]
struct ProjectVolumesConnection {
    edges: Vec<ProjectVolumesConnectionEdge>,
}

#[derive(SimpleObject)]
struct ProjectVolumesConnectionEdge {
    node: Volume,
}

#[derive(SimpleObject)]
#[graphql(complex)]
struct Volume {
    id: ID,
    name: String,
    #[graphql(skip)]
    volume_instances: VolumeVolumeInstancesConnection,
}

#[derive(SimpleObject, Clone)]
struct VolumeVolumeInstancesConnection {
    edges: Vec<VolumeVolumeInstancesConnectionEdge>,
}

#[derive(SimpleObject, Clone)]
struct VolumeVolumeInstancesConnectionEdge {
    node: VolumeInstance,
}

#[derive(SimpleObject, Clone)]
struct VolumeInstance {
    environment_id: String,
    mount_path: String,
    service_id: Option<String>,
}

#[async_graphql::ComplexObject]
impl Volume {
    #[allow(unused_variables)]
    async fn volume_instances(
        &self,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> VolumeVolumeInstancesConnection {
        self.volume_instances.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Inputs

#[derive(InputObject)]
struct ProjectCreateInput {
    default_environment_name: Option<String>,
    description: Option<String>,
    is_public: Option<bool>,
    name: Option<String>,
    pr_deploys: Option<bool>,
    workspace_id: Option<String>,
}

#[derive(InputObject)]
struct EnvironmentCreateInput {
    name: String,
    project_id: String,
    skip_initial_deploys: Option<bool>,
}

#[derive(InputObject)]
struct RegistryCredentialsInput {
    password: String,
    username: String,
}

#[derive(InputObject)]
struct ServiceSourceInput {
    image: Option<String>,
    repo: Option<String>,
}

#[derive(InputObject)]
struct ServiceCreateInput {
    environment_id: Option<String>,
    name: Option<String>,
    project_id: String,
    registry_credentials: Option<RegistryCredentialsInput>,
    source: Option<ServiceSourceInput>,
    variables: Option<EnvironmentVariables>,
}

#[derive(InputObject)]
struct VariableCollectionUpsertInput {
    environment_id: String,
    project_id: String,
    replace: Option<bool>,
    service_id: Option<String>,
    skip_deploys: Option<bool>,
    variables: EnvironmentVariables,
}

#[derive(InputObject)]
struct ServiceInstanceLimitsUpdateInput {
    environment_id: String,
    #[graphql(name = "memoryGB")]
    memory_gb: Option<f64>,
    service_id: String,
    #[graphql(name = "vCPUs")]
    vcpus: Option<f64>,
}

#[derive(InputObject)]
struct ServiceInstanceUpdateInput {
    healthcheck_path: Option<String>,
    num_replicas: Option<i32>,
    registry_credentials: Option<RegistryCredentialsInput>,
    restart_policy_max_retries: Option<i32>,
    restart_policy_type: Option<RestartPolicyType>,
    sleep_application: Option<bool>,
    source: Option<ServiceSourceInput>,
    start_command: Option<String>,
}

#[derive(InputObject)]
struct VolumeCreateInput {
    environment_id: Option<String>,
    mount_path: String,
    project_id: String,
    service_id: Option<String>,
}

#[derive(InputObject)]
struct DeploymentListInput {
    environment_id: Option<String>,
    include_deleted: Option<bool>,
    project_id: Option<String>,
    service_id: Option<String>,
}

#[derive(InputObject)]
struct ServiceDomainCreateInput {
    environment_id: String,
    service_id: String,
    target_port: Option<i32>,
}

// ---------------------------------------------------------------------------------------------
// Roots

/// `Query`.
pub struct QueryRoot;

#[Object(name = "Query")]
impl QueryRoot {
    async fn api_token(&self, ctx: &Context<'_>) -> Result<ApiTokenContext> {
        let w = world(ctx);
        let ids = w
            .token_workspaces(token(ctx))
            .ok_or_else(Refusal::not_authorized)?
            .clone();
        Ok(ApiTokenContext {
            workspaces: ids
                .into_iter()
                .map(|id| ApiTokenWorkspace {
                    name: w.config.workspaces.get(&id).cloned().unwrap_or_default(),
                    id,
                })
                .collect(),
        })
    }

    async fn domains(
        &self,
        ctx: &Context<'_>,
        environment_id: String,
        project_id: String,
        service_id: String,
    ) -> Result<AllDomains> {
        let w = world(ctx);
        w.project_visible(token(ctx), &project_id)?;
        Ok(AllDomains {
            service_domains: w
                .service_domains(&service_id, &environment_id)
                .into_iter()
                .map(|(id, domain)| ServiceDomain { domain, id: ID(id) })
                .collect(),
        })
    }

    async fn project(&self, ctx: &Context<'_>, id: String) -> Result<Project> {
        world(ctx).project_for_read(token(ctx), &id, Instant::now())?;
        Ok(Project(id))
    }

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
        if let Some(project) = &input.project_id {
            w.project_visible(token(ctx), project)?;
        } else {
            return Err(Refusal::bad_input("projectId is required").into());
        }
        // Replaced deployments stay listed (as REMOVED); deleted ones are not simulated.
        let _ = input.include_deleted;
        let mut deployments: Vec<&crate::world::Deployment> = w
            .deployments
            .values()
            .filter(|d| input.project_id.as_ref().is_none_or(|p| *p == d.project_id))
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
                    node: Deployment {
                        created_at: d.created_at,
                        id: ID(d.id.clone()),
                        status: w.status(d, now).into(),
                    },
                })
                .collect(),
            page_info: PageInfo {
                end_cursor: None,
                has_next_page: false,
            },
        })
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
        let matching: Vec<&crate::world::Project> = w
            .projects
            .values()
            .filter(|p| include_deleted || p.deleted_at.is_none())
            .filter(|p| p.workspace_id.as_ref().is_some_and(|ws| workspaces.contains(ws)))
            .filter(|p| workspace_id.is_none() || p.workspace_id == workspace_id)
            .filter(|p| after.as_ref().is_none_or(|a| p.id > *a))
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

/// `Mutation`.
pub struct MutationRoot;

#[Object(name = "Mutation")]
impl MutationRoot {
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
        Ok(Deployment {
            created_at: d.created_at,
            id: ID(d.id.clone()),
            status: w.status(d, now).into(),
        })
    }

    async fn environment_create(
        &self,
        ctx: &Context<'_>,
        input: EnvironmentCreateInput,
    ) -> Result<Environment> {
        let _ = input.skip_initial_deploys;
        let (id, name) =
            world(ctx).create_environment(token(ctx), &input.project_id, input.name, Instant::now())?;
        Ok(Environment {
            id,
            name,
            project_id: input.project_id,
        })
    }

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

    async fn service_create(&self, ctx: &Context<'_>, input: ServiceCreateInput) -> Result<Service> {
        let mut w = world(ctx);
        let image = input.source.and_then(|s| s.image);
        let id = w.create_service(
            token(ctx),
            &input.project_id,
            input.environment_id.clone(),
            input.name,
            input.registry_credentials.is_some(),
            image,
            Instant::now(),
        )?;
        if let (Some(vars), Some(env)) = (input.variables, input.environment_id) {
            w.upsert_variables(
                token(ctx),
                &input.project_id,
                &env,
                Some(id.clone()),
                vars.0,
                false,
                true,
                Instant::now(),
            )?;
        }
        let name = w.services[&id].name.clone();
        Ok(Service { id: ID(id), name })
    }

    async fn service_delete(
        &self,
        ctx: &Context<'_>,
        environment_id: Option<String>,
        id: String,
    ) -> Result<bool> {
        let _ = environment_id;
        world(ctx).delete_service(token(ctx), &id)?;
        Ok(true)
    }

    async fn service_domain_create(
        &self,
        ctx: &Context<'_>,
        input: ServiceDomainCreateInput,
    ) -> Result<ServiceDomain> {
        let _ = input.target_port;
        let (id, domain) = world(ctx).create_domain(
            token(ctx),
            &input.environment_id,
            &input.service_id,
            Instant::now(),
        )?;
        Ok(ServiceDomain { domain, id: ID(id) })
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

    async fn service_instance_limits_update(
        &self,
        ctx: &Context<'_>,
        input: ServiceInstanceLimitsUpdateInput,
    ) -> Result<bool> {
        world(ctx).update_limits(
            token(ctx),
            &input.environment_id,
            &input.service_id,
            input.vcpus,
            input.memory_gb,
            Instant::now(),
        )?;
        Ok(true)
    }

    async fn service_instance_update(
        &self,
        ctx: &Context<'_>,
        environment_id: Option<String>,
        input: ServiceInstanceUpdateInput,
        service_id: String,
    ) -> Result<bool> {
        let _ = (input.healthcheck_path, input.restart_policy_max_retries);
        let restart = input.restart_policy_type.map(|t| {
            match t {
                RestartPolicyType::Always => "ALWAYS",
                RestartPolicyType::Never => "NEVER",
                RestartPolicyType::OnFailure => "ON_FAILURE",
            }
            .to_string()
        });
        world(ctx).update_instance(
            token(ctx),
            &service_id,
            environment_id,
            InstanceUpdate {
                image: input.source.and_then(|s| s.image),
                registry_credentials: input.registry_credentials.is_some(),
                sleep_application: input.sleep_application,
                restart_policy: restart,
                num_replicas: input.num_replicas,
                start_command: input.start_command,
            },
            Instant::now(),
        )?;
        Ok(true)
    }

    async fn variable_collection_upsert(
        &self,
        ctx: &Context<'_>,
        input: VariableCollectionUpsertInput,
    ) -> Result<bool> {
        world(ctx).upsert_variables(
            token(ctx),
            &input.project_id,
            &input.environment_id,
            input.service_id,
            input.variables.0,
            input.replace.unwrap_or(false),
            input.skip_deploys.unwrap_or(false),
            Instant::now(),
        )?;
        Ok(true)
    }

    async fn volume_create(&self, ctx: &Context<'_>, input: VolumeCreateInput) -> Result<Volume> {
        let (id, name) = world(ctx).create_volume(
            token(ctx),
            &input.project_id,
            input.environment_id,
            input.service_id.clone(),
            input.mount_path,
            Instant::now(),
        )?;
        Ok(Volume {
            id: ID(id),
            name,
            volume_instances: VolumeVolumeInstancesConnection { edges: Vec::new() },
        })
    }

    async fn volume_delete(&self, ctx: &Context<'_>, volume_id: String) -> Result<bool> {
        world(ctx).delete_volume(token(ctx), &volume_id)?;
        Ok(true)
    }
}
