//! The client: one typed function per operation, all through the budget and retry policy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use bytes::Bytes;
use cynic::{MutationBuilder, QueryBuilder};
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::budget::{Budget, BudgetSnapshot, Priority};
use crate::config::ClientConfig;
use crate::error::{GraphQlErrorInfo, RailwayError};
use crate::operations as op;
use crate::tokens::{TokenIndex, TokenPool};
use crate::transport::Transport;
use crate::types::*;

type Result<T, E = RailwayError> = std::result::Result<T, E>;

/// Projects per batched status request. Railway answers a query of 50 projects with their
/// services, latest deployments and domains well within its limits; 500 agents take 10 requests.
pub const STATUS_BATCH_SIZE: usize = 50;

/// Status batches in flight at once during one read.
const STATUS_CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Query,
    Mutation,
}

#[derive(Debug, Clone, Copy)]
struct Op {
    name: &'static str,
    kind: Kind,
    priority: Priority,
}

/// Requests by operation and outcome, since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// `(operation, outcome) → count`; outcome is `ok`, `rate_limited`, `throttled`,
    /// `unauthorized`, `graphql_error`, `http_error`, `timeout`, `transport_error`, `not_sent`
    /// or `decode_error`.
    pub by_operation: BTreeMap<(String, String), u64>,
}

struct Inner {
    config: ClientConfig,
    transport: Transport,
    tokens: TokenPool,
    budget: Arc<Budget>,
    stats: Mutex<RequestStats>,
}

/// A Railway client. Cheap to clone; clones share one budget, token pool and connection pool.
#[derive(Clone)]
pub struct RailwayClient {
    inner: Arc<Inner>,
    priority: Option<Priority>,
}

impl std::fmt::Debug for RailwayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RailwayClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct WireResponse<T> {
    data: Option<T>,
    errors: Option<Vec<WireError>>,
}

#[derive(Deserialize)]
struct WireError {
    message: String,
    #[serde(default)]
    path: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    extensions: Option<WireExtensions>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireExtensions {
    code: Option<String>,
    trace_id: Option<String>,
}

impl RailwayClient {
    /// A client with its own budget.
    pub fn new(config: ClientConfig) -> Result<Self> {
        if config.tokens.is_empty() {
            return Err(RailwayError::NotSent {
                reason: "no Railway API token configured".into(),
            });
        }
        let transport = Transport::new(&config.endpoint_with_query(), &config.user_agent)?;
        Ok(Self {
            inner: Arc::new(Inner {
                tokens: TokenPool::new(config.tokens.clone()),
                budget: Budget::new(config.budget.clone()),
                transport,
                stats: Mutex::new(RequestStats::default()),
                config,
            }),
            priority: None,
        })
    }

    /// The same client, sending every call at `priority` (e.g. `Critical` on the claim path).
    pub fn with_priority(&self, priority: Priority) -> Self {
        Self {
            inner: self.inner.clone(),
            priority: Some(priority),
        }
    }

    /// The budget's current numbers.
    pub fn budget(&self) -> BudgetSnapshot {
        self.inner.budget.snapshot()
    }

    /// How long until a token may create a project again (`None`: one may now). While every
    /// token rests after a throttle, starting a creation only wastes money.
    pub fn project_create_available_in(&self) -> Option<Duration> {
        self.inner.tokens.rested_in()
    }

    /// Requests by operation and outcome.
    pub fn stats(&self) -> RequestStats {
        self.inner.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn op(&self, name: &'static str, kind: Kind, default: Priority) -> Op {
        Op {
            name,
            kind,
            priority: self.priority.unwrap_or(default),
        }
    }

    fn record(&self, op: &Op, outcome: &str) {
        let mut stats = self.inner.stats.lock().unwrap_or_else(|p| p.into_inner());
        *stats
            .by_operation
            .entry((op.name.to_string(), outcome.to_string()))
            .or_default() += 1;
    }

    fn backoff(&self) -> ExponentialBuilder {
        let c = &self.inner.config;
        ExponentialBuilder::default()
            .with_min_delay(c.retry_min_delay)
            .with_max_delay(c.retry_max_delay)
            .with_max_times(c.max_attempts.saturating_sub(1))
            .with_jitter()
    }

    /// Runs an operation with the retry policy: queries on any transient failure, mutations
    /// only when Railway provably did not apply them.
    async fn run<T: DeserializeOwned>(&self, op: Op, body: Bytes) -> Result<T> {
        let attempt = || async {
            self.attempt::<T>(&op, body.clone(), self.inner.tokens.any())
                .await
        };
        attempt
            .retry(self.backoff())
            .when(|e: &RailwayError| match op.kind {
                Kind::Query => e.retryable_query(),
                Kind::Mutation => e.retryable_mutation(),
            })
            .notify(
                |e, delay| tracing::debug!(operation = op.name, error = %e, ?delay, "retrying Railway call"),
            )
            .await
    }

    /// One request: budget, send, classify.
    async fn attempt<T: DeserializeOwned>(&self, op: &Op, body: Bytes, token: TokenIndex) -> Result<T> {
        let result = self.send(op, body, token).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(RailwayError::RateLimited { .. }) => "rate_limited",
            Err(RailwayError::Throttled { .. }) => "throttled",
            Err(RailwayError::Unauthorized { .. }) => "unauthorized",
            Err(RailwayError::GraphQl(_)) => "graphql_error",
            Err(RailwayError::Http { .. }) => "http_error",
            Err(RailwayError::Timeout(_)) => "timeout",
            Err(RailwayError::Transport { .. }) => "transport_error",
            Err(RailwayError::NotSent { .. }) => "not_sent",
            Err(RailwayError::Decode(_)) => "decode_error",
        };
        self.record(op, outcome);
        result
    }

    async fn send<T: DeserializeOwned>(&self, op: &Op, body: Bytes, token: TokenIndex) -> Result<T> {
        let inner = &self.inner;
        let permit = inner.budget.acquire(op.priority).await;
        let response = inner
            .transport
            .post(inner.tokens.token(token), body, inner.config.request_timeout)
            .await;
        drop(permit);
        let response = response?;
        if let Some(remaining) = header_u64(&response.headers, "x-ratelimit-remaining") {
            let reset = header_u64(&response.headers, "x-ratelimit-reset").map(reset_delay);
            inner.budget.observe_remaining(remaining, reset);
        }
        match response.status {
            200 => {}
            429 => {
                let retry_after = header_u64(&response.headers, "retry-after")
                    .map(Duration::from_secs)
                    .unwrap_or(Duration::from_secs(5));
                let edge = !response.headers.contains_key("x-ratelimit-limit");
                inner.budget.pause(retry_after);
                return Err(RailwayError::RateLimited { retry_after, edge });
            }
            401 | 403 => {
                return Err(RailwayError::Unauthorized {
                    message: excerpt(&response.body),
                });
            }
            status => {
                return Err(RailwayError::Http {
                    status,
                    body_excerpt: excerpt(&response.body),
                });
            }
        }
        let decoded: WireResponse<T> = serde_json::from_slice(&response.body)
            .map_err(|e| RailwayError::Decode(format!("{e}; body starts {:?}", excerpt(&response.body))))?;
        if let Some(errors) = decoded.errors.filter(|e| !e.is_empty()) {
            return Err(self.classify_graphql(op, errors));
        }
        decoded
            .data
            .ok_or_else(|| RailwayError::Decode("answer has neither data nor errors".into()))
    }

    fn classify_graphql(&self, op: &Op, errors: Vec<WireError>) -> RailwayError {
        let errors: Vec<GraphQlErrorInfo> = errors
            .into_iter()
            .map(|e| GraphQlErrorInfo {
                message: e.message,
                path: e
                    .path
                    .unwrap_or_default()
                    .iter()
                    .map(|p| match p {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
                code: e.extensions.as_ref().and_then(|x| x.code.clone()),
                trace_id: e.extensions.and_then(|x| x.trace_id),
            })
            .collect();
        let first = errors.first().map(|e| e.message.clone()).unwrap_or_default();
        let lower = first.to_ascii_lowercase();
        if lower.contains("not authorized") || lower.contains("project token not found") {
            return RailwayError::Unauthorized { message: first };
        }
        if lower.contains("only one project can be created") || lower.contains("too quickly") {
            return RailwayError::Throttled {
                operation: op.name,
                message: first,
                retry_after: self.inner.config.project_create_cooldown,
            };
        }
        RailwayError::GraphQl(errors)
    }

    fn body<T: serde::Serialize>(operation: &T) -> Result<Bytes> {
        serde_json::to_vec(operation)
            .map(Bytes::from)
            .map_err(|e| RailwayError::Decode(format!("could not encode request: {e}")))
    }

    // -----------------------------------------------------------------------------------------
    // Operations

    /// The workspaces this token can act on (`apiToken.workspaces`). Empty for a project token.
    pub async fn token_workspaces(&self) -> Result<Vec<Workspace>> {
        let body = Self::body(&op::TokenWorkspaces::build(()))?;
        let data: op::TokenWorkspaces = self
            .run(self.op("apiToken", Kind::Query, Priority::Critical), body)
            .await?;
        Ok(data
            .api_token
            .workspaces
            .into_iter()
            .map(|w| Workspace {
                id: w.id,
                name: w.name,
            })
            .collect())
    }

    /// `projectCreate`, rotating to a rested token after a per-token throttle. Never repeated
    /// after an answer that may have created the project.
    pub async fn create_project(&self, project: &NewProject) -> Result<CreatedProject> {
        let operation = op::ProjectCreate::build(op::ProjectCreateVariables {
            input: op::ProjectCreateInput {
                default_environment_name: project.default_environment_name.clone(),
                description: Some(project.description.clone()),
                is_public: Some(false),
                name: Some(project.name.clone()),
                pr_deploys: Some(false),
                workspace_id: Some(project.workspace_id.clone()),
            },
        });
        let body = Self::body(&operation)?;
        let op = self.op("projectCreate", Kind::Mutation, Priority::Replenish);
        let cooldown = self.inner.config.project_create_cooldown;
        let mut backoff = self.backoff().build();
        // Each token may be throttled once; other refusals that provably did not apply are
        // retried with backoff.
        let mut throttles = 0;
        loop {
            let token = match self.inner.tokens.rested() {
                Ok(token) => token,
                Err(wait) => {
                    return Err(RailwayError::Throttled {
                        operation: op.name,
                        message: "every token is resting after a projectCreate throttle".into(),
                        retry_after: wait,
                    });
                }
            };
            match self.attempt::<op::ProjectCreate>(&op, body.clone(), token).await {
                Ok(data) => {
                    let p = data.project_create;
                    return Ok(CreatedProject {
                        id: p.id.into_inner(),
                        name: p.name,
                        environments: environments(p.environments),
                    });
                }
                Err(RailwayError::Throttled { message, .. }) => {
                    tracing::info!(token, "projectCreate throttled; resting this token");
                    self.inner.tokens.rest(token, cooldown);
                    throttles += 1;
                    if throttles >= self.inner.tokens.len() {
                        return Err(RailwayError::Throttled {
                            operation: op.name,
                            message,
                            retry_after: cooldown,
                        });
                    }
                }
                Err(e) if e.retryable_mutation() => match backoff.next() {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// A project's environments.
    pub async fn project_environments(&self, project_id: &str) -> Result<Vec<Environment>> {
        let body = Self::body(&op::ProjectEnvironments::build(op::ProjectIdVariables {
            id: project_id.into(),
        }))?;
        let data: op::ProjectEnvironments = self
            .run(
                self.op("project.environments", Kind::Query, Priority::Replenish),
                body,
            )
            .await?;
        Ok(environments(data.project.environments))
    }

    /// `environmentCreate`.
    pub async fn create_environment(&self, project_id: &str, name: &str) -> Result<Environment> {
        let body = Self::body(&op::EnvironmentCreate::build(op::EnvironmentCreateVariables {
            input: op::EnvironmentCreateInput {
                name: name.into(),
                project_id: project_id.into(),
                skip_initial_deploys: Some(true),
            },
        }))?;
        let data: op::EnvironmentCreate = self
            .run(
                self.op("environmentCreate", Kind::Mutation, Priority::Replenish),
                body,
            )
            .await?;
        Ok(Environment {
            id: data.environment_create.id.into_inner(),
            name: data.environment_create.name,
        })
    }

    /// `serviceCreate` without a source (nothing deploys), with registry credentials.
    pub async fn create_service(&self, service: &NewService) -> Result<Created> {
        let body = Self::body(&op::ServiceCreate::build(op::ServiceCreateVariables {
            input: op::ServiceCreateInput {
                environment_id: Some(service.environment_id.clone()),
                name: Some(service.name.clone()),
                project_id: service.project_id.clone(),
                registry_credentials: service.registry_credentials.as_ref().map(credentials),
                source: None,
                variables: None,
            },
        }))?;
        let data: op::ServiceCreate = self
            .run(
                self.op("serviceCreate", Kind::Mutation, Priority::Replenish),
                body,
            )
            .await?;
        Ok(Created {
            id: data.service_create.id.into_inner(),
            name: data.service_create.name,
        })
    }

    /// `variableCollectionUpsert`; `skip_deploys` keeps it from deploying.
    pub async fn upsert_variables(
        &self,
        project_id: &str,
        environment_id: &str,
        service_id: &str,
        variables: &Variables,
        skip_deploys: bool,
    ) -> Result<()> {
        let body = Self::body(&op::VariableCollectionUpsert::build(
            op::VariableCollectionUpsertVariables {
                input: op::VariableCollectionUpsertInput {
                    environment_id: environment_id.into(),
                    project_id: project_id.into(),
                    replace: None,
                    service_id: Some(service_id.into()),
                    skip_deploys: Some(skip_deploys),
                    variables: op::EnvironmentVariables(variables.clone()),
                },
            },
        ))?;
        let _: op::VariableCollectionUpsert = self
            .run(
                self.op("variableCollectionUpsert", Kind::Mutation, Priority::Replenish),
                body,
            )
            .await?;
        Ok(())
    }

    /// `serviceInstanceLimitsUpdate`.
    pub async fn update_limits(
        &self,
        environment_id: &str,
        service_id: &str,
        vcpus: Option<f64>,
        memory_gb: Option<f64>,
    ) -> Result<()> {
        let body = Self::body(&op::ServiceInstanceLimitsUpdate::build(
            op::ServiceInstanceLimitsUpdateVariables {
                input: op::ServiceInstanceLimitsUpdateInput {
                    environment_id: environment_id.into(),
                    memory_gb,
                    service_id: service_id.into(),
                    vcpus,
                },
            },
        ))?;
        let _: op::ServiceInstanceLimitsUpdate = self
            .run(
                self.op("serviceInstanceLimitsUpdate", Kind::Mutation, Priority::Replenish),
                body,
            )
            .await?;
        Ok(())
    }

    /// `serviceInstanceUpdate`: image source, credentials, sleep, restart policy.
    pub async fn update_service_instance(
        &self,
        service_id: &str,
        environment_id: &str,
        settings: &InstanceSettings,
    ) -> Result<()> {
        let body = Self::body(&op::ServiceInstanceUpdate::build(
            op::ServiceInstanceUpdateVariables {
                service_id: service_id.into(),
                environment_id: Some(environment_id.into()),
                input: op::ServiceInstanceUpdateInput {
                    healthcheck_path: settings.healthcheck_path.clone(),
                    num_replicas: settings.num_replicas,
                    registry_credentials: settings.registry_credentials.as_ref().map(credentials),
                    restart_policy_max_retries: settings.restart_policy.map(|(_, n)| n),
                    restart_policy_type: settings.restart_policy.map(|(t, _)| t),
                    sleep_application: settings.sleep_application,
                    source: settings.image.as_ref().map(|image| op::ServiceSourceInput {
                        image: Some(image.clone()),
                        repo: None,
                    }),
                    start_command: None,
                },
            },
        ))?;
        let _: op::ServiceInstanceUpdate = self
            .run(
                self.op("serviceInstanceUpdate", Kind::Mutation, Priority::Replenish),
                body,
            )
            .await?;
        Ok(())
    }

    /// `volumeCreate` (always with the environment). A timed-out create may still have made
    /// the volume: callers look it up with [`Self::project_volumes`] before trying again.
    pub async fn create_volume(
        &self,
        project_id: &str,
        environment_id: &str,
        service_id: &str,
        mount_path: &str,
    ) -> Result<Created> {
        let body = Self::body(&op::VolumeCreate::build(op::VolumeCreateVariables {
            input: op::VolumeCreateInput {
                environment_id: Some(environment_id.into()),
                mount_path: mount_path.into(),
                project_id: project_id.into(),
                service_id: Some(service_id.into()),
            },
        }))?;
        let data: op::VolumeCreate = self
            .run(self.op("volumeCreate", Kind::Mutation, Priority::Replenish), body)
            .await?;
        Ok(Created {
            id: data.volume_create.id.into_inner(),
            name: data.volume_create.name,
        })
    }

    /// A project's volumes and their mounts.
    pub async fn project_volumes(&self, project_id: &str) -> Result<Vec<VolumeInfo>> {
        let body = Self::body(&op::ProjectVolumes::build(op::ProjectIdVariables {
            id: project_id.into(),
        }))?;
        let data: op::ProjectVolumes = self
            .run(self.op("project.volumes", Kind::Query, Priority::Replenish), body)
            .await?;
        Ok(data
            .project
            .volumes
            .edges
            .into_iter()
            .map(|e| VolumeInfo {
                id: e.node.id.into_inner(),
                name: e.node.name,
                mounts: e
                    .node
                    .volume_instances
                    .edges
                    .into_iter()
                    .map(|i| VolumeMount {
                        service_id: i.node.service_id,
                        environment_id: i.node.environment_id,
                        mount_path: i.node.mount_path,
                    })
                    .collect(),
            })
            .collect())
    }

    /// `volumeDelete`.
    pub async fn delete_volume(&self, volume_id: &str) -> Result<()> {
        let body = Self::body(&op::VolumeDelete::build(op::VolumeDeleteVariables {
            volume_id: volume_id.into(),
        }))?;
        let _: op::VolumeDelete = self
            .run(self.op("volumeDelete", Kind::Mutation, Priority::Critical), body)
            .await?;
        Ok(())
    }

    /// `serviceDomainCreate`: the public `*.up.railway.app` domain.
    pub async fn create_service_domain(
        &self,
        environment_id: &str,
        service_id: &str,
        target_port: Option<i32>,
    ) -> Result<ServiceDomain> {
        let body = Self::body(&op::ServiceDomainCreate::build(
            op::ServiceDomainCreateVariables {
                input: op::ServiceDomainCreateInput {
                    environment_id: environment_id.into(),
                    service_id: service_id.into(),
                    target_port,
                },
            },
        ))?;
        let data: op::ServiceDomainCreate = self
            .run(
                self.op("serviceDomainCreate", Kind::Mutation, Priority::Replenish),
                body,
            )
            .await?;
        Ok(ServiceDomain {
            id: data.service_domain_create.id.into_inner(),
            domain: data.service_domain_create.domain,
        })
    }

    /// A service's public domains (check before creating one on a retry).
    pub async fn service_domains(
        &self,
        project_id: &str,
        environment_id: &str,
        service_id: &str,
    ) -> Result<Vec<ServiceDomain>> {
        let body = Self::body(&op::Domains::build(op::DomainsVariables {
            project_id: project_id.into(),
            environment_id: environment_id.into(),
            service_id: service_id.into(),
        }))?;
        let data: op::Domains = self
            .run(self.op("domains", Kind::Query, Priority::Replenish), body)
            .await?;
        Ok(data
            .domains
            .service_domains
            .into_iter()
            .map(|d| ServiceDomain {
                id: d.id.into_inner(),
                domain: d.domain,
            })
            .collect())
    }

    /// `serviceInstanceDeployV2`: deploys the configured source; returns the deployment id.
    pub async fn deploy_service(&self, service_id: &str, environment_id: &str) -> Result<String> {
        let body = Self::body(&op::ServiceInstanceDeploy::build(
            op::ServiceInstanceDeployVariables {
                service_id: service_id.into(),
                environment_id: environment_id.into(),
            },
        ))?;
        let data: op::ServiceInstanceDeploy = self
            .run(
                self.op("serviceInstanceDeployV2", Kind::Mutation, Priority::Replenish),
                body,
            )
            .await?;
        Ok(data.service_instance_deploy_v2)
    }

    /// `deploymentRedeploy`. With `use_previous_image_tag: false` a moving tag is pulled anew.
    pub async fn redeploy(&self, deployment_id: &str, use_previous_image_tag: bool) -> Result<Deployment> {
        let body = Self::body(&op::DeploymentRedeploy::build(op::DeploymentRedeployVariables {
            id: deployment_id.into(),
            use_previous_image_tag: Some(use_previous_image_tag),
        }))?;
        let data: op::DeploymentRedeploy = self
            .run(
                self.op("deploymentRedeploy", Kind::Mutation, Priority::Replenish),
                body,
            )
            .await?;
        Ok(deployment(data.deployment_redeploy))
    }

    /// `projectDelete`: removes the project with its services and volumes.
    pub async fn delete_project(&self, project_id: &str) -> Result<()> {
        let body = Self::body(&op::ProjectDelete::build(op::ProjectIdVariables {
            id: project_id.into(),
        }))?;
        let _: op::ProjectDelete = self
            .run(self.op("projectDelete", Kind::Mutation, Priority::Critical), body)
            .await?;
        Ok(())
    }

    /// `serviceDelete` (legacy agents in the shared project).
    pub async fn delete_service(&self, service_id: &str, environment_id: Option<&str>) -> Result<()> {
        let body = Self::body(&op::ServiceDelete::build(op::ServiceDeleteVariables {
            id: service_id.into(),
            environment_id: environment_id.map(str::to_string),
        }))?;
        let _: op::ServiceDelete = self
            .run(self.op("serviceDelete", Kind::Mutation, Priority::Critical), body)
            .await?;
        Ok(())
    }

    /// One page of a workspace's projects.
    pub async fn workspace_projects_page(
        &self,
        workspace_id: &str,
        after: Option<String>,
    ) -> Result<ProjectsPage> {
        let body = Self::body(&op::ProjectsPage::build(op::ProjectsPageVariables {
            workspace_id: Some(workspace_id.into()),
            first: Some(100),
            after,
        }))?;
        let data: op::ProjectsPage = self
            .run(self.op("projects", Kind::Query, Priority::Status), body)
            .await?;
        let page = data.projects;
        Ok(ProjectsPage {
            next: page
                .page_info
                .has_next_page
                .then_some(page.page_info.end_cursor)
                .flatten(),
            projects: page
                .edges
                .into_iter()
                .map(|e| ProjectSummary {
                    id: e.node.id.into_inner(),
                    name: e.node.name,
                    description: e.node.description,
                    created_at: e.node.created_at.0,
                })
                .collect(),
        })
    }

    /// Every project of a workspace, page by page (orphan sweeps).
    pub async fn workspace_projects(&self, workspace_id: &str) -> Result<Vec<ProjectSummary>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = self.workspace_projects_page(workspace_id, after).await?;
            all.extend(page.projects);
            match page.next {
                Some(cursor) => after = Some(cursor),
                None => return Ok(all),
            }
        }
    }

    /// The batched status read: latest deployment, domains and image of every service of the
    /// given projects, [`STATUS_BATCH_SIZE`] projects per request. A failed batch does not fail
    /// the read: its ids are reported as `unread`, so the caller keeps what it knew.
    pub async fn projects_status(&self, project_ids: &[String]) -> StatusRead {
        self.projects_status_batched(project_ids, STATUS_BATCH_SIZE).await
    }

    /// [`Self::projects_status`] with a chosen batch size (1 is the one-request-per-agent
    /// strategy, kept for benchmarks).
    pub async fn projects_status_batched(&self, project_ids: &[String], batch_size: usize) -> StatusRead {
        let op = self.op("projectsByIds", Kind::Query, Priority::Status);
        let batches: Vec<Vec<String>> = project_ids
            .chunks(batch_size.max(1))
            .map(<[String]>::to_vec)
            .collect();
        let mut results = futures_util::stream::iter(batches)
            .map(|ids| async move {
                let body = Self::body(&op::ProjectsStatus::build(op::ProjectsByIdsVariables {
                    ids: ids.clone(),
                }));
                let result = match body {
                    Ok(body) => self.run::<op::ProjectsStatus>(op, body).await,
                    Err(e) => Err(e),
                };
                (ids, result)
            })
            .buffer_unordered(STATUS_CONCURRENCY);
        let mut read = StatusRead::default();
        while let Some((ids, result)) = results.next().await {
            read.requests += 1;
            match result {
                Ok(data) => {
                    for project in data.projects_by_ids {
                        let status = project_status(project);
                        read.projects.insert(status.project_id.clone(), status);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, projects = ids.len(), "status batch failed; keeping last known status");
                    read.unread.extend(ids);
                    read.last_error = Some(e);
                }
            }
        }
        read
    }

    /// Status of every service in one project (the shared project of legacy agents).
    pub async fn project_status(&self, project_id: &str) -> Result<ProjectStatus> {
        let body = Self::body(&op::ProjectStatus::build(op::ProjectIdVariables {
            id: project_id.into(),
        }))?;
        let data: op::ProjectStatus = self
            .run(self.op("project.status", Kind::Query, Priority::Status), body)
            .await?;
        Ok(project_status(data.project))
    }
}

fn credentials(c: &RegistryCredentials) -> op::RegistryCredentialsInput {
    use secrecy::ExposeSecret;
    op::RegistryCredentialsInput {
        username: c.username.clone(),
        password: c.password.expose_secret().to_string(),
    }
}

fn environments(connection: op::EnvironmentConnection) -> Vec<Environment> {
    connection
        .edges
        .into_iter()
        .map(|e| Environment {
            id: e.node.id.into_inner(),
            name: e.node.name,
        })
        .collect()
}

fn deployment(d: op::DeploymentNode) -> Deployment {
    Deployment {
        id: d.id.into_inner(),
        status: d.status,
        created_at: d.created_at.0,
    }
}

fn project_status(project: op::ProjectStatusNode) -> ProjectStatus {
    let mut services = Vec::new();
    for env in project.environments.edges {
        let env = env.node;
        for instance in env.service_instances.edges {
            let i = instance.node;
            services.push(ServiceStatus {
                service_id: i.service_id,
                service_name: i.service_name,
                environment_id: i.environment_id,
                environment_name: env.name.clone(),
                latest_deployment: i.latest_deployment.map(deployment),
                domains: i.domains.service_domains.into_iter().map(|d| d.domain).collect(),
                image: i.source.and_then(|s| s.image),
            });
        }
    }
    ProjectStatus {
        project_id: project.id.into_inner(),
        services,
    }
}

fn header_u64(headers: &hyper::HeaderMap, name: &str) -> Option<u64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .map(|v| v.max(0.0).ceil() as u64)
}

/// `X-RateLimit-Reset` as a delay: Railway may send epoch seconds or seconds from now.
fn reset_delay(value: u64) -> Duration {
    const EPOCH_2001: u64 = 1_000_000_000;
    if value > EPOCH_2001 {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        Duration::from_secs(value.saturating_sub(now))
    } else {
        Duration::from_secs(value)
    }
}

/// The first 300 characters of a body, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = one_line.chars().take(300).collect();
    if one_line.chars().count() > 300 {
        out.push('…');
    }
    out
}
