//! Services and their per-environment instances: `serviceCreate`, `serviceDelete`,
//! `serviceInstanceUpdate`, `serviceInstanceLimitsUpdate`, and the types a service instance is read
//! as.

use async_graphql::{Context, Enum, ID, InputObject, Object, SimpleObject};
use tokio::time::Instant;

use crate::world::InstanceUpdate;

use super::deployments::Deployment;
use super::domains::AllDomains;
use super::variables::EnvironmentVariables;
use super::{Result, token, world};

/// `RestartPolicyType`.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[allow(missing_docs)]
pub enum RestartPolicyType {
    Always,
    Never,
    OnFailure,
}

#[derive(SimpleObject)]
pub(super) struct ServiceInstance {
    pub(super) domains: AllDomains,
    pub(super) environment_id: String,
    pub(super) latest_deployment: Option<Deployment>,
    pub(super) service_id: String,
    pub(super) service_name: String,
    pub(super) source: Option<ServiceSource>,
}

#[derive(SimpleObject)]
pub(super) struct ServiceSource {
    pub(super) image: Option<String>,
}

#[derive(SimpleObject)]
pub(super) struct Service {
    pub(super) id: ID,
    pub(super) name: String,
}

#[derive(InputObject)]
pub(super) struct RegistryCredentialsInput {
    pub(super) password: String,
    pub(super) username: String,
}

#[derive(InputObject)]
pub(super) struct ServiceSourceInput {
    pub(super) image: Option<String>,
    pub(super) repo: Option<String>,
}

#[derive(InputObject)]
pub(super) struct ServiceCreateInput {
    pub(super) environment_id: Option<String>,
    pub(super) name: Option<String>,
    pub(super) project_id: String,
    pub(super) registry_credentials: Option<RegistryCredentialsInput>,
    pub(super) source: Option<ServiceSourceInput>,
    pub(super) variables: Option<EnvironmentVariables>,
}

#[derive(InputObject)]
pub(super) struct ServiceInstanceLimitsUpdateInput {
    pub(super) environment_id: String,
    #[graphql(name = "memoryGB")]
    pub(super) memory_gb: Option<f64>,
    pub(super) service_id: String,
    #[graphql(name = "vCPUs")]
    pub(super) vcpus: Option<f64>,
}

#[derive(InputObject)]
pub(super) struct ServiceInstanceUpdateInput {
    pub(super) healthcheck_path: Option<String>,
    pub(super) num_replicas: Option<i32>,
    pub(super) registry_credentials: Option<RegistryCredentialsInput>,
    pub(super) restart_policy_max_retries: Option<i32>,
    pub(super) restart_policy_type: Option<RestartPolicyType>,
    pub(super) sleep_application: Option<bool>,
    pub(super) source: Option<ServiceSourceInput>,
    pub(super) start_command: Option<String>,
}

/// `Mutation`'s fields about services.
#[derive(Default)]
pub(super) struct ServicesMutation;

#[Object]
impl ServicesMutation {
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
}
