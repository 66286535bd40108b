//! Calls on services: creation, variables, limits, settings, volumes, domains and deploys.
//!
//! Every call that takes several ids takes them in one order: project, environment, service.

use crate::client::{RailwayClient, Result};
use crate::convert;
use crate::ids::{DeploymentId, EnvironmentId, ProjectId, ServiceId, VolumeId};
use crate::operations as op;
use crate::types::*;

impl RailwayClient {
    /// `serviceCreate` without a source, so nothing deploys before the service is configured.
    pub async fn create_service(&self, service: &NewService) -> Result<CreatedService> {
        let data: op::ServiceCreate = self
            .execute(op::ServiceCreateVariables {
                input: op::ServiceCreateInput {
                    environment_id: Some(service.environment_id.to_string()),
                    name: Some(service.name.clone()),
                    project_id: service.project_id.to_string(),
                    registry_credentials: service.registry_credentials.as_ref().map(convert::credentials),
                    source: None,
                    variables: None,
                },
            })
            .await?;
        Ok(CreatedService {
            id: ServiceId::new(data.service_create.id.into_inner()),
            name: data.service_create.name,
        })
    }

    /// `serviceDelete` (legacy agents in a shared project).
    pub async fn delete_service(
        &self,
        environment: Option<&EnvironmentId>,
        service: &ServiceId,
    ) -> Result<()> {
        let _: op::ServiceDelete = self
            .execute(op::ServiceDeleteVariables {
                id: service.to_string(),
                environment_id: environment.map(ToString::to_string),
            })
            .await?;
        Ok(())
    }

    /// `variableCollectionUpsert`; `skip_deploys` keeps it from deploying.
    pub async fn upsert_variables(
        &self,
        project: &ProjectId,
        environment: &EnvironmentId,
        service: &ServiceId,
        variables: &Variables,
        skip_deploys: bool,
    ) -> Result<()> {
        let _: op::VariableCollectionUpsert = self
            .execute(op::VariableCollectionUpsertVariables {
                input: op::VariableCollectionUpsertInput {
                    environment_id: environment.to_string(),
                    project_id: project.to_string(),
                    replace: None,
                    service_id: Some(service.to_string()),
                    skip_deploys: Some(skip_deploys),
                    variables: op::EnvironmentVariables(variables.clone()),
                },
            })
            .await?;
        Ok(())
    }

    /// `serviceInstanceLimitsUpdate`.
    pub async fn update_limits(
        &self,
        environment: &EnvironmentId,
        service: &ServiceId,
        vcpus: Option<f64>,
        memory_gb: Option<f64>,
    ) -> Result<()> {
        let _: op::ServiceInstanceLimitsUpdate = self
            .execute(op::ServiceInstanceLimitsUpdateVariables {
                input: op::ServiceInstanceLimitsUpdateInput {
                    environment_id: environment.to_string(),
                    memory_gb,
                    service_id: service.to_string(),
                    vcpus,
                },
            })
            .await?;
        Ok(())
    }

    /// `serviceInstanceUpdate`: image source, credentials, start command, sleep, restart
    /// policy. **When it changes the source image, Railway starts a deployment by itself**
    /// (observed against live deployment records: dougwithseismic/hogsend, commit 1f2ba05f);
    /// when nothing changes it does not. Whoever wants exactly one deployment looks for one
    /// ([`Self::project_status`]) before calling [`Self::deploy_service`].
    pub async fn update_service_instance(
        &self,
        environment: &EnvironmentId,
        service: &ServiceId,
        settings: &InstanceSettings,
    ) -> Result<()> {
        let _: op::ServiceInstanceUpdate = self
            .execute(op::ServiceInstanceUpdateVariables {
                service_id: service.to_string(),
                environment_id: Some(environment.to_string()),
                input: convert::instance_settings(settings),
            })
            .await?;
        Ok(())
    }

    /// `volumeCreate` (always with the environment). A create that timed out may still have
    /// made the volume: look it up with [`Self::project_volumes`] before trying again.
    pub async fn create_volume(
        &self,
        project: &ProjectId,
        environment: &EnvironmentId,
        service: &ServiceId,
        mount_path: &str,
    ) -> Result<CreatedVolume> {
        let data: op::VolumeCreate = self
            .execute(op::VolumeCreateVariables {
                input: op::VolumeCreateInput {
                    environment_id: Some(environment.to_string()),
                    mount_path: mount_path.into(),
                    project_id: project.to_string(),
                    service_id: Some(service.to_string()),
                },
            })
            .await?;
        Ok(CreatedVolume {
            id: VolumeId::new(data.volume_create.id.into_inner()),
            name: data.volume_create.name,
        })
    }

    /// A project's volumes and their mounts.
    pub async fn project_volumes(&self, project: &ProjectId) -> Result<Vec<VolumeInfo>> {
        let data: op::ProjectVolumes = self
            .execute(op::ProjectIdVariables {
                id: project.to_string(),
            })
            .await?;
        Ok(convert::volumes(data.project))
    }

    /// `volumeDelete`.
    pub async fn delete_volume(&self, volume: &VolumeId) -> Result<()> {
        let _: op::VolumeDelete = self
            .execute(op::VolumeDeleteVariables {
                volume_id: volume.to_string(),
            })
            .await?;
        Ok(())
    }

    /// `serviceDomainCreate`: the public `*.up.railway.app` domain.
    pub async fn create_service_domain(
        &self,
        environment: &EnvironmentId,
        service: &ServiceId,
        target_port: Option<i32>,
    ) -> Result<ServiceDomain> {
        let data: op::ServiceDomainCreate = self
            .execute(op::ServiceDomainCreateVariables {
                input: op::ServiceDomainCreateInput {
                    environment_id: environment.to_string(),
                    service_id: service.to_string(),
                    target_port,
                },
            })
            .await?;
        Ok(convert::service_domain(data.service_domain_create))
    }

    /// A service's public domains (check before creating one on a retry).
    pub async fn service_domains(
        &self,
        project: &ProjectId,
        environment: &EnvironmentId,
        service: &ServiceId,
    ) -> Result<Vec<ServiceDomain>> {
        let data: op::Domains = self
            .execute(op::DomainsVariables {
                project_id: project.to_string(),
                environment_id: environment.to_string(),
                service_id: service.to_string(),
            })
            .await?;
        Ok(data
            .domains
            .service_domains
            .into_iter()
            .map(convert::service_domain)
            .collect())
    }

    /// `serviceInstanceDeployV2`: deploys the configured source; returns the deployment id.
    /// On an instance that has deployed before, the image of a moving tag may be the one
    /// Railway pulled last time: to pull the tag anew use [`Self::deploy_latest_source`], or
    /// pin the image by digest (`repository@sha256:…`), which names its bytes. This is also
    /// how a service whose deployment was removed ([`Self::remove_deployment`]) is woken: one
    /// new deployment, with the volume, variables and domains it kept.
    pub async fn deploy_service(
        &self,
        environment: &EnvironmentId,
        service: &ServiceId,
    ) -> Result<DeploymentId> {
        let data: op::ServiceInstanceDeploy = self
            .execute(op::ServiceInstanceDeployVariables {
                service_id: service.to_string(),
                environment_id: environment.to_string(),
            })
            .await?;
        Ok(DeploymentId::new(data.service_instance_deploy_v2))
    }

    /// `serviceInstanceDeploy(latestCommit: true)`: "pull and deploy the latest commit or
    /// image from the configured source" — what Railway's own CLI calls for `railway redeploy
    /// --from-source` (railwayapp/cli PR #865). The one way to make a moving image tag
    /// (`:staging`) deploy its newest digest. Railway answers with a boolean: read the new
    /// deployment with [`Self::project_status`].
    pub async fn deploy_latest_source(&self, environment: &EnvironmentId, service: &ServiceId) -> Result<()> {
        let _: op::ServiceInstanceDeployLatest = self
            .execute(op::ServiceInstanceDeployLatestVariables {
                service_id: service.to_string(),
                environment_id: environment.to_string(),
            })
            .await?;
        Ok(())
    }

    /// `deploymentRedeploy`: a new deployment of the same build and image as `deployment`
    /// ("redeploys the existing build/image as-is", railwayapp/cli PR #865) — a moving tag is
    /// not pulled anew.
    pub async fn redeploy(
        &self,
        deployment: &DeploymentId,
        use_previous_image_tag: bool,
    ) -> Result<Deployment> {
        let data: op::DeploymentRedeploy = self
            .execute(op::DeploymentRedeployVariables {
                id: deployment.to_string(),
                use_previous_image_tag: Some(use_previous_image_tag),
            })
            .await?;
        Ok(convert::deployment(data.deployment_redeploy))
    }

    /// `deploymentRemove`: takes a deployment down. This is what `railway down` does to the
    /// service's newest `SUCCESS` deployment (railwayapp/cli `src/commands/down.rs:59-100` at
    /// df3838bf: list the deployments, keep `SUCCESS`, newest first, remove it); the
    /// deployment ends `REMOVED` and the service's volume, variables and domains stay. A
    /// removed deployment cannot be redeployed (`canRedeploy` is false; railwayapp/cli
    /// `src/commands/redeploy.rs:65-69`): bring the service back with [`Self::deploy_service`].
    pub async fn remove_deployment(&self, deployment: &DeploymentId) -> Result<()> {
        let _: op::DeploymentRemove = self
            .execute(op::DeploymentIdVariables {
                id: deployment.to_string(),
            })
            .await?;
        Ok(())
    }

    /// `deploymentStop`: stops a deployment's replicas. Unlike a removal, its status stays
    /// `SUCCESS` with `deploymentStopped: true` (railwayapp/cli shows it `STOPPED` only from
    /// that pair: `src/commands/service.rs:968-970,1038-1039`).
    pub async fn stop_deployment(&self, deployment: &DeploymentId) -> Result<()> {
        let _: op::DeploymentStop = self
            .execute(op::DeploymentIdVariables {
                id: deployment.to_string(),
            })
            .await?;
        Ok(())
    }

    /// A service's variables as set (unrendered: references stay as written).
    pub async fn service_variables(
        &self,
        project: &ProjectId,
        environment: &EnvironmentId,
        service: &ServiceId,
    ) -> Result<Variables> {
        let data: op::ServiceVariables = self
            .execute(op::ServiceVariablesVariables {
                project_id: project.to_string(),
                environment_id: environment.to_string(),
                service_id: Some(service.to_string()),
            })
            .await?;
        Ok(data.variables.0)
    }
}
