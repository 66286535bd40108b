//! Services and what hangs off them: variables, limits, settings, volumes and domains — with
//! the moment a brand-new service needs before its instances exist everywhere.

use std::collections::BTreeMap;

use rand::Rng;
use tokio::time::Instant;

use super::{DeployCause, Domain, Instance, Owner, Refusal, Service, Status, Volume, World};

/// A `serviceInstanceUpdate`, as the simulator applies it.
#[derive(Debug, Clone, Default)]
pub(crate) struct InstanceUpdate {
    pub image: Option<String>,
    pub registry_credentials: bool,
    pub sleep_application: Option<bool>,
    pub restart_policy: Option<String>,
    pub num_replicas: Option<i32>,
    pub start_command: Option<String>,
}

impl World {
    /// The latest deployment of a live service (of its first instance that has one).
    pub(crate) fn latest_deployment_of(&self, service_id: &str) -> Option<String> {
        self.services
            .get(service_id)
            .filter(|s| !s.deleted)
            .and_then(|s| s.instances.values().find_map(|i| i.latest_deployment.clone()))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn create_service(
        &mut self,
        token: &str,
        project_id: &str,
        environment_id: Option<String>,
        name: Option<String>,
        has_registry_credentials: bool,
        image: Option<String>,
        now: Instant,
    ) -> Result<String, Refusal> {
        self.project_visible(token, project_id)?;
        let environments: Vec<String> = self
            .live_project(project_id)?
            .environments
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        if let Some(env) = &environment_id {
            self.check_environment(project_id, env)?;
        }
        let live_services = self
            .services_of_project(project_id)
            .filter(|s| !s.deleted)
            .count();
        if live_services >= 100 {
            return Err(Refusal::bad_input("Projects can have at most 100 services"));
        }
        let id = self.id("svc");
        self.index.add_service(project_id, &id);
        let instances = environments
            .into_iter()
            .map(|env| {
                (
                    env,
                    Instance {
                        image: image.clone(),
                        ..Instance::default()
                    },
                )
            })
            .collect();
        self.services.insert(
            id.clone(),
            Service {
                id: id.clone(),
                project_id: project_id.to_string(),
                name: name.unwrap_or_else(|| id.clone()),
                deleted: false,
                has_registry_credentials,
                created: Some(now),
                instances,
            },
        );
        // Railway deploys at once when a service is created with a source (hogsend 1f2ba05f).
        if image.is_some()
            && let Some(env) = environment_id
        {
            self.deploy(&id, &env, now, DeployCause::Deploy)?;
        }
        Ok(id)
    }

    /// Whether a new service's instances are still landing in their environments.
    fn fresh(&self, service_id: &str, window: std::time::Duration, now: Instant) -> bool {
        self.services
            .get(service_id)
            .and_then(|s| s.created)
            .is_some_and(|created| now.saturating_duration_since(created) < window)
    }

    pub(crate) fn instance_mut(
        &mut self,
        service_id: &str,
        environment_id: &str,
    ) -> Result<&mut Instance, Refusal> {
        self.services
            .get_mut(service_id)
            .filter(|s| !s.deleted)
            .and_then(|s| s.instances.get_mut(environment_id))
            .ok_or_else(|| Refusal::not_found("ServiceInstance"))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn upsert_variables(
        &mut self,
        token: &str,
        project_id: &str,
        environment_id: &str,
        service_id: Option<String>,
        variables: BTreeMap<String, String>,
        replace: bool,
        skip_deploys: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.project_visible(token, project_id)?;
        self.check_environment(project_id, environment_id)?;
        let Some(service_id) = service_id else {
            return Err(Refusal::bad_input(
                "shared variables are not simulated; pass serviceId",
            ));
        };
        self.check_token_for_service(token, &service_id)?;
        // The redeploy an upsert asks for is refused while the last deployment still builds
        // (terraform `isRedeployNotReady`).
        if !skip_deploys && self.config.quirks.upsert_refused_while_building {
            let building = self
                .instance_mut(&service_id, environment_id)?
                .latest_deployment
                .clone()
                .and_then(|d| self.deployments.get(&d))
                .is_some_and(|d| matches!(self.status(d, now), Status::Queued | Status::Building));
            if building {
                return Err(self.quirk(Refusal::transient(
                    "Cannot redeploy yet, please wait for the original deployment to finish building",
                )));
            }
        }
        let instance = self.instance_mut(&service_id, environment_id)?;
        if replace {
            instance.variables = variables;
        } else {
            instance.variables.extend(variables);
        }
        // Without skipDeploys Railway redeploys a service that has been deployed before.
        if !skip_deploys && instance.latest_deployment.is_some() {
            self.deploy(&service_id, environment_id, now, DeployCause::Redeploy)?;
        }
        Ok(())
    }

    pub(crate) fn update_limits(
        &mut self,
        token: &str,
        environment_id: &str,
        service_id: &str,
        vcpus: Option<f64>,
        memory_gb: Option<f64>,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.check_token_for_service(token, service_id)?;
        // Not found for a new instance for about 15 s (terraform retries it that long).
        if self.fresh(service_id, self.config.quirks.fresh_limits_window, now) {
            return Err(self.quirk(Refusal::not_found("ServiceInstance")));
        }
        let instance = self.instance_mut(service_id, environment_id)?;
        instance.vcpus = vcpus.or(instance.vcpus);
        instance.memory_gb = memory_gb.or(instance.memory_gb);
        Ok(())
    }

    pub(crate) fn update_instance(
        &mut self,
        token: &str,
        service_id: &str,
        environment_id: Option<String>,
        update: InstanceUpdate,
        now: Instant,
    ) -> Result<(), Refusal> {
        self.check_token_for_service(token, service_id)?;
        if update.num_replicas.is_some_and(|n| n < 1) {
            return Err(Refusal::bad_input("numReplicas must be at least 1"));
        }
        let environments: Vec<String> = match environment_id {
            Some(env) => vec![env],
            None => self.live_service(service_id)?.instances.keys().cloned().collect(),
        };
        for env in environments {
            let instance = self.instance_mut(service_id, &env)?;
            let image_changed = update.image.is_some() && update.image != instance.image;
            if update.image.is_some() {
                instance.image = update.image.clone();
            }
            if update.registry_credentials {
                instance.has_registry_credentials = true;
            }
            if update.sleep_application.is_some() {
                instance.sleep_application = update.sleep_application;
            }
            if update.restart_policy.is_some() {
                instance.restart_policy = update.restart_policy.clone();
            }
            if update.start_command.is_some() {
                instance.start_command = update.start_command.clone();
            }
            // Changing the source deploys by itself (hogsend 1f2ba05f, verified live); a no-op
            // update does not.
            if image_changed && self.config.quirks.instance_update_deploys {
                self.deploy(service_id, &env, now, DeployCause::InstanceUpdate)?;
            }
        }
        Ok(())
    }

    pub(crate) fn create_volume(
        &mut self,
        token: &str,
        project_id: &str,
        environment_id: Option<String>,
        service_id: Option<String>,
        mount_path: String,
        now: Instant,
    ) -> Result<(String, String), Refusal> {
        self.project_visible(token, project_id)?;
        let environment_id = match environment_id {
            Some(env) => env,
            None => self.live_project(project_id)?.environments[0].0.clone(),
        };
        self.check_environment(project_id, &environment_id)?;
        // Bursts of volume creations per workspace: "Whoa there pal!" (terraform CHANGELOG).
        if let Some(per_second) = self.config.quirks.volume_creates_per_second {
            let workspace = self
                .projects
                .get(project_id)
                .and_then(|p| p.workspace_id.clone())
                .unwrap_or_default();
            let recent = self.volume_creates.entry(workspace).or_default();
            while recent
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= std::time::Duration::from_secs(1))
            {
                recent.pop_front();
            }
            if recent.len() >= per_second {
                return Err(self.quirk(Refusal::throttled(
                    "Whoa there pal! You are creating volumes too quickly. Try again in a sec",
                )));
            }
            recent.push_back(now);
        }
        if let Some(service) = &service_id {
            self.check_token_for_service(token, service)?;
            // The new service's instance has not landed yet (terraform's "eventual-consistency
            // window on newly created services").
            if self.fresh(service, self.config.quirks.fresh_service_window, now) {
                return Err(self.quirk(Refusal::problem_processing()));
            }
            let taken = self
                .volumes_of_service(service)
                .any(|v| !v.deleted && v.environment_id == environment_id);
            if taken {
                return Err(Refusal::bad_input("A service can only have one volume"));
            }
        }
        let in_project = self.volumes_of_project(project_id).filter(|v| !v.deleted).count();
        if in_project >= self.config.limits.max_volumes_per_project {
            return Err(Refusal::bad_input("Project volume limit reached"));
        }
        let id = self.id("vol");
        let name = format!("volume-{}", &id[4..10]);
        self.index.add_volume(project_id, service_id.as_deref(), &id);
        self.volumes.insert(
            id.clone(),
            Volume {
                id: id.clone(),
                name: name.clone(),
                project_id: project_id.to_string(),
                service_id,
                environment_id,
                mount_path,
                deleted: false,
                files: Default::default(),
            },
        );
        Ok((id, name))
    }

    pub(crate) fn delete_volume(&mut self, token: &str, volume_id: &str) -> Result<(), Refusal> {
        let project_id = self
            .volumes
            .get(volume_id)
            .filter(|v| !v.deleted)
            .map(|v| v.project_id.clone())
            .ok_or_else(|| Refusal::not_found("Volume"))?;
        self.project_visible(token, &project_id)?;
        if let Some(v) = self.volumes.get_mut(volume_id) {
            v.deleted = true;
        }
        Ok(())
    }

    pub(crate) fn create_domain(
        &mut self,
        token: &str,
        environment_id: &str,
        service_id: &str,
        now: Instant,
    ) -> Result<(String, String), Refusal> {
        self.check_token_for_service(token, service_id)?;
        let project_id = self.live_service(service_id)?.project_id.clone();
        self.check_environment(&project_id, environment_id)?;
        // "ServiceInstance not found" until the instance lands; "Failed to create service
        // domain, please try again" now and then (alchemy ServiceDomain.ts, transient.ts).
        if self.fresh(service_id, self.config.quirks.fresh_service_window, now) {
            return Err(self.quirk(Refusal::not_found("ServiceInstance")));
        }
        let failure = self.config.quirks.domain_create_failure;
        if failure > 0.0 && rand::rng().random::<f64>() < failure {
            return Err(self.quirk(Refusal::transient(
                "Failed to create service domain, please try again",
            )));
        }
        let id = self.id("dom");
        let domain = format!(
            "{}-{}.up.railway.app",
            self.live_service(service_id)?.name,
            &id[4..10]
        );
        self.index.add_domain(service_id, &domain);
        self.domains.insert(
            domain.clone(),
            Domain {
                id: id.clone(),
                domain: domain.clone(),
                project_id,
                service_id: service_id.to_string(),
                environment_id: environment_id.to_string(),
            },
        );
        Ok((id, domain))
    }

    pub(crate) fn service_domains(&self, service_id: &str, environment_id: &str) -> Vec<(String, String)> {
        self.domains_of_service(service_id)
            .filter(|d| d.environment_id == environment_id)
            .map(|d| (d.id.clone(), d.domain.clone()))
            .collect()
    }

    pub(crate) fn delete_service(&mut self, token: &str, service_id: &str) -> Result<(), Refusal> {
        self.check_token_for_service(token, service_id)?;
        if let Some(s) = self.services.get_mut(service_id) {
            s.deleted = true;
        }
        self.remove_domains_of_service(service_id);
        for id in self.deployment_ids_of(Owner::Service(service_id)) {
            if let Some(d) = self.deployments.get_mut(&id) {
                d.take_down(Instant::now());
            }
        }
        Ok(())
    }
}
