//! Deployments: what each captures (the digest its image tag had, the variables, mounts and
//! domains in place), how they move through their states, and which mutation pulls a moving
//! tag anew.

use std::hash::{Hash, Hasher};

use chrono::Utc;
use rand::Rng;
use tokio::time::Instant;

use super::{DeployCause, Deployment, Fate, Project, Refusal, Status, World};

impl World {
    fn draw_fate(&self) -> Fate {
        let a = &self.config.agents;
        let mut rng = rand::rng();
        let x: f64 = rng.random();
        let mut edge = 0.0;
        for (p, fate) in [
            (a.fail, Fate::FailBuild),
            (a.crash, Fate::Crash),
            (a.never_ready, Fate::NeverReady),
            (a.provision_hang, Fate::ProvisionHang),
            (a.provision_fail, Fate::ProvisionFail),
        ] {
            edge += p;
            if x < edge {
                return fate;
            }
        }
        Fate::Healthy
    }

    /// The digest an image reference has in the registry now. A reference pinned to a digest
    /// (`repository@sha256:…`) names its bytes: that digest, whatever its tags do since.
    pub(crate) fn digest_of(&self, reference: &str) -> String {
        if let Some((_, digest)) = reference.split_once('@') {
            return digest.to_string();
        }
        let version = self.images.get(reference).copied().unwrap_or(1);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (reference, version).hash(&mut hasher);
        format!("sha256:{:016x}{version:04}", hasher.finish())
    }

    /// Pushes a new image under `reference` (a moving tag moves); returns its digest.
    pub(crate) fn push_image(&mut self, reference: &str) -> String {
        let version = self.images.entry(reference.to_string()).or_insert(1);
        *version += 1;
        self.digest_of(reference)
    }

    /// Pushes a new image under `reference` that fails to boot: its container exits before it
    /// serves, and Railway ends every deployment of it `FAILED` (its deploy fails the
    /// healthcheck). Returns its digest.
    pub(crate) fn push_unbootable_image(&mut self, reference: &str) -> String {
        let digest = self.push_image(reference);
        self.unbootable.insert(digest.clone());
        digest
    }

    /// Deploys the instance's current source, capturing everything in place now.
    ///
    /// Which digest it runs: a deploy that re-resolves the tag (`serviceInstanceDeploy` with
    /// `latestCommit`, a first deploy, a changed image reference) pulls the registry's current
    /// digest; any other deploy of an instance that ran this reference before replays the
    /// digest it ran then, as Railway does (railwayapp/cli PR #865), unless that quirk is off.
    pub(crate) fn deploy(
        &mut self,
        service_id: &str,
        environment_id: &str,
        now: Instant,
        cause: DeployCause,
    ) -> Result<String, Refusal> {
        let service = self.live_service(service_id)?.clone();
        let instance = service
            .instances
            .get(environment_id)
            .ok_or_else(|| Refusal::not_found("ServiceInstance"))?
            .clone();
        let Some(image) = instance.image.clone() else {
            return Err(Refusal::bad_input("Service has no source to deploy"));
        };
        self.check_deploy_rate(&service.project_id, now)?;
        let previous = instance
            .latest_deployment
            .as_ref()
            .and_then(|d| self.deployments.get(d))
            .filter(|d| d.image.as_deref() == Some(image.as_str()))
            .and_then(|d| d.image_digest.clone());
        let digest = match (previous, cause) {
            (Some(old), DeployCause::Deploy | DeployCause::Redeploy)
                if self.config.quirks.stale_image_tags =>
            {
                old
            }
            _ => self.digest_of(&image),
        };
        self.record_deployment(service_id, environment_id, image, digest, now, cause)
    }

    fn record_deployment(
        &mut self,
        service_id: &str,
        environment_id: &str,
        image: String,
        digest: String,
        now: Instant,
        cause: DeployCause,
    ) -> Result<String, Refusal> {
        let service = self.live_service(service_id)?.clone();
        let instance = service
            .instances
            .get(environment_id)
            .ok_or_else(|| Refusal::not_found("ServiceInstance"))?
            .clone();
        let private = self
            .config
            .private_image_prefixes
            .iter()
            .any(|p| image.starts_with(p));
        let can_pull = !private || service.has_registry_credentials || instance.has_registry_credentials;
        let volume_mounts: Vec<String> = self
            .volumes_of_service(service_id)
            .filter(|v| !v.deleted && v.environment_id == environment_id)
            .map(|v| v.mount_path.clone())
            .collect();
        let domains = self
            .service_domains(service_id, environment_id)
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        // A deploy of a service whose deployment was taken down (`deploymentRemove`) is a
        // wake: its time to SUCCESS is drawn from the wake distribution.
        let mut wake = false;
        let mut runtime = crate::world::AgentRuntime::default();
        if let Some(previous) = &instance.latest_deployment
            && let Some(d) = self.deployments.get_mut(previous)
        {
            wake = d.taken_down;
            d.take_down(now);
            // The runtime keeps its state in its volume (the saga sets OPENCLAW_STATE_DIR to
            // /data, provisioner `saga/steps.rs`): a new deployment that mounts the volume
            // finds what the last one left there.
            if !volume_mounts.is_empty() {
                runtime = d.runtime.clone();
            }
        }
        self.initialise_volumes(service_id, environment_id);
        let to_success = wake.then(|| self.config.wake.draw(&mut rand::rng()));
        let id = self.id("dep");
        let fate = if self.unbootable.contains(&digest) {
            Fate::FailBuild
        } else {
            self.draw_fate()
        };
        self.index.add_deployment(&service.project_id, service_id, &id);
        self.deployments.insert(
            id.clone(),
            Deployment {
                id: id.clone(),
                project_id: service.project_id.clone(),
                service_id: service_id.to_string(),
                environment_id: environment_id.to_string(),
                created_at: Utc::now(),
                started: now,
                image: Some(image),
                image_digest: Some(digest),
                reason: cause.as_str(),
                start_command: instance.start_command.clone(),
                variables: instance.variables.clone(),
                volume_mounts,
                domains,
                can_pull,
                fate,
                removed: false,
                removed_at: None,
                taken_down: false,
                stopped_at: None,
                to_success,
                crashed_at: None,
                provisions: 0,
                provision_micros: None,
                metadata: serde_json::Map::new(),
                runtime,
            },
        );
        self.instance_mut(service_id, environment_id)?.latest_deployment = Some(id.clone());
        Ok(id)
    }

    /// The deploy rate limit quirk: a deploy beyond `max` in the window is refused.
    fn check_deploy_rate(&mut self, project_id: &str, now: Instant) -> Result<(), Refusal> {
        let Some(limit) = self.config.quirks.deploy_rate_limit else {
            return Ok(());
        };
        let workspace = self
            .projects
            .get(project_id)
            .and_then(|p| p.workspace_id.clone())
            .unwrap_or_default();
        let recent = self.recent_deploys.entry(workspace).or_default();
        while recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= limit.per)
        {
            recent.pop_front();
        }
        if recent.len() >= limit.max {
            return Err(self.quirk(Refusal::throttled("Service deployment rate limit exceeded")));
        }
        recent.push_back(now);
        Ok(())
    }

    /// The first container to mount a volume writes its `sentinel`: a random id that every
    /// later deployment finds in place.
    fn initialise_volumes(&mut self, service_id: &str, environment_id: &str) {
        for id in self.volume_ids_of_service(service_id) {
            let Some(v) = self
                .volumes
                .get_mut(&id)
                .filter(|v| !v.deleted && v.environment_id == environment_id)
            else {
                continue;
            };
            v.files
                .entry("sentinel".into())
                .or_insert_with(|| format!("{:032x}", rand::rng().random::<u128>()));
        }
    }

    /// The deployment `deployment_id`, when `token` may act on its service.
    fn deployment_of_token(&mut self, token: &str, deployment_id: &str) -> Result<&mut Deployment, Refusal> {
        let service_id = self
            .deployments
            .get(deployment_id)
            .map(|d| d.service_id.clone())
            .ok_or_else(|| Refusal::not_found("Deployment"))?;
        self.check_token_for_service(token, &service_id)?;
        self.deployments
            .get_mut(deployment_id)
            .ok_or_else(|| Refusal::not_found("Deployment"))
    }

    /// `deploymentRemove`: the deployment goes `REMOVED` and its compute stops; the service
    /// keeps its volume, variables and domains (`railway down`, railwayapp/cli
    /// `src/commands/down.rs`). Removing a removed deployment changes nothing.
    pub(crate) fn remove_deployment(
        &mut self,
        token: &str,
        deployment_id: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        let d = self.deployment_of_token(token, deployment_id)?;
        if !d.removed {
            d.taken_down = true;
            d.take_down(now);
        }
        Ok(())
    }

    /// `deploymentStop`: its replicas stop; the status stays `SUCCESS` with
    /// `deploymentStopped` (railwayapp/cli `src/commands/service.rs:968-970,1038-1039`).
    pub(crate) fn stop_deployment(
        &mut self,
        token: &str,
        deployment_id: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        let d = self.deployment_of_token(token, deployment_id)?;
        d.stopped_at.get_or_insert(now);
        Ok(())
    }

    /// Compute used so far: the seconds every deployment ran (from `SUCCESS` until it was
    /// removed, stopped or crashed, or until `now`). A removed deployment stops counting.
    pub fn compute_seconds(&self, now: Instant) -> f64 {
        self.deployments
            .values()
            .map(|d| {
                let from = self.success_at(d);
                let mut until = now;
                for end in [d.removed_at, d.stopped_at, d.crashed_at].into_iter().flatten() {
                    until = until.min(end);
                }
                if !d.can_pull || d.fate == Fate::FailBuild {
                    return 0.0;
                }
                until.saturating_duration_since(from).as_secs_f64()
            })
            .sum()
    }

    /// `serviceInstanceDeployV2` (`latest: false`) and `serviceInstanceDeploy(latestCommit:
    /// true)` (`latest: true`).
    pub(crate) fn deploy_checked(
        &mut self,
        token: &str,
        service_id: &str,
        environment_id: &str,
        latest: bool,
        now: Instant,
    ) -> Result<String, Refusal> {
        self.check_token_for_service(token, service_id)?;
        let cause = if latest {
            DeployCause::Latest
        } else {
            DeployCause::Deploy
        };
        self.deploy(service_id, environment_id, now, cause)
    }

    /// `deploymentRedeploy`: a new deployment of the same build — the same image and, with
    /// the stale-tag quirk on, the same digest ("redeploys the existing build/image as-is").
    pub(crate) fn redeploy(
        &mut self,
        token: &str,
        deployment_id: &str,
        now: Instant,
    ) -> Result<String, Refusal> {
        let old = self
            .deployments
            .get(deployment_id)
            .cloned()
            .ok_or_else(|| Refusal::not_found("Deployment"))?;
        self.check_token_for_service(token, &old.service_id)?;
        if old.taken_down && self.config.quirks.redeploy_of_removed_refused {
            return Err(self.quirk(Refusal::bad_input("Deployment cannot be redeployed")));
        }
        let image = old
            .image
            .clone()
            .ok_or_else(|| Refusal::bad_input("Deployment has no image to redeploy"))?;
        let digest = match (&old.image_digest, self.config.quirks.stale_image_tags) {
            (Some(digest), true) => digest.clone(),
            _ => self.digest_of(&image),
        };
        self.record_deployment(
            &old.service_id,
            &old.environment_id,
            image,
            digest,
            now,
            DeployCause::Redeploy,
        )
    }

    /// A deployment's status now.
    pub fn status(&self, deployment: &Deployment, now: Instant) -> Status {
        if deployment.removed {
            return Status::Removed;
        }
        if deployment.crashed_at.is_some() {
            return Status::Crashed;
        }
        let t = self.phases(deployment);
        let elapsed = now.saturating_duration_since(deployment.started);
        if elapsed < t.queued {
            return Status::Queued;
        }
        if elapsed < t.queued + t.building {
            return Status::Building;
        }
        if !deployment.can_pull || deployment.fate == Fate::FailBuild {
            return Status::Failed;
        }
        if elapsed < t.queued + t.building + t.deploying {
            return Status::Deploying;
        }
        let since_success = elapsed - (t.queued + t.building + t.deploying);
        if deployment.fate == Fate::Crash && since_success >= self.config.agents.crash_after {
            return Status::Crashed;
        }
        let instance = self
            .services
            .get(&deployment.service_id)
            .and_then(|s| s.instances.get(&deployment.environment_id));
        if let Some(instance) = instance
            && instance.sleep_application == Some(true)
        {
            let idle_since = instance
                .last_agent_request
                .unwrap_or(deployment.started)
                .max(deployment.started);
            if now.saturating_duration_since(idle_since) >= std::time::Duration::from_secs(600) {
                return Status::Sleeping;
            }
        }
        Status::Success
    }

    /// When the deployment reached `SUCCESS` (if it did).
    pub(crate) fn success_at(&self, deployment: &Deployment) -> Instant {
        let t = self.phases(deployment);
        deployment.started + t.queued + t.building + t.deploying
    }

    /// The time a deployment spends queued, building and deploying: the fixed timings, or a
    /// wake's drawn total split in the same proportions (a tenth queued, the rest halved).
    fn phases(&self, deployment: &Deployment) -> crate::DeployTimings {
        match deployment.to_success {
            None => self.config.deploy.clone(),
            Some(total) => crate::DeployTimings {
                queued: total / 10,
                building: total * 9 / 20,
                deploying: total - total / 10 - total * 9 / 20,
            },
        }
    }

    /// Live (not deleted) projects.
    pub fn live_projects(&self) -> impl Iterator<Item = &Project> {
        self.projects.values().filter(|p| p.deleted_at.is_none())
    }
}
