//! Environments: a project's environments and their service instances, and `environmentCreate`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use tokio::time::Instant;

use super::deployments::Deployment;
use super::domains::AllDomains;
use super::services::{ServiceInstance, ServiceSource};
use super::{PageInfo, Result, token, world};

#[derive(SimpleObject)]
pub(super) struct ProjectEnvironmentsConnection {
    pub(super) edges: Vec<ProjectEnvironmentsConnectionEdge>,
}

#[derive(SimpleObject)]
pub(super) struct ProjectEnvironmentsConnectionEdge {
    pub(super) node: Environment,
}

pub(super) struct Environment {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) project_id: String,
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
            .services_of_project(&self.project_id)
            .filter(|s| !s.deleted)
            .filter_map(|s| s.instances.get(&self.id).map(|i| (s, i)))
            .map(|(s, i)| EnvironmentServiceInstancesConnectionEdge {
                node: ServiceInstance {
                    domains: AllDomains::of(&w, &s.id, &self.id),
                    environment_id: self.id.clone(),
                    latest_deployment: i
                        .latest_deployment
                        .as_ref()
                        .and_then(|d| w.deployments.get(d))
                        .map(|d| Deployment::of(&w, d, now)),
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
pub(super) struct EnvironmentServiceInstancesConnection {
    pub(super) edges: Vec<EnvironmentServiceInstancesConnectionEdge>,
    pub(super) page_info: PageInfo,
}

#[derive(SimpleObject)]
pub(super) struct EnvironmentServiceInstancesConnectionEdge {
    pub(super) node: ServiceInstance,
}

#[derive(InputObject)]
pub(super) struct EnvironmentCreateInput {
    pub(super) name: String,
    pub(super) project_id: String,
    pub(super) skip_initial_deploys: Option<bool>,
}

/// `Mutation`'s fields about environments.
#[derive(Default)]
pub(super) struct EnvironmentsMutation;

#[Object]
impl EnvironmentsMutation {
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
}
