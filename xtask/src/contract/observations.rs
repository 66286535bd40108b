//! The observations (a) to (d): the throwaway project and its service are made, and what
//! Railway answers is recorded against each assumption.

use std::time::{Duration, Instant};

use pool_provisioner::DeletableProject;
use pool_store::AgentId;
use railway_api::{
    CreatedProject, Delivery, EnvironmentId, ErrorKind, InstanceSettings, NewProject, NewService, ProjectId,
    ProjectPresence, RailwayClient, RailwayError, ServiceId, ThrottleScope, Variables,
};

use super::parking::{CONTRACT_VARIABLE, Parkable, SENTINEL_START_COMMAND};
use super::{Attempt, CONTRACT_IMAGE, Report, Run, answer_of, first_message, made_up_project_id, retrying};

impl Run {
    /// A throwaway project named and marked as an agent's of this run's (fictitious) pool.
    fn new_project(&self) -> NewProject {
        let id = AgentId::random();
        NewProject {
            name: self.naming.name(&id),
            description: self.naming.project_description(&id),
            workspace_id: self.target.workspace.clone(),
            default_environment_name: Some("production".into()),
        }
    }

    /// Sends `projectCreate` through `client`, recorded before it is sent so the clean-up
    /// knows of it whatever the answer. `patient`: a throttle is waited out.
    async fn create(
        &mut self,
        client: &RailwayClient,
        project: &NewProject,
        patient: bool,
    ) -> Result<CreatedProject, RailwayError> {
        let index = self.attempts.len();
        self.attempts.push(Attempt {
            name: project.name.clone(),
            id: None,
            uncertain: false,
        });
        let step = if patient {
            self.target.waits.step
        } else {
            Duration::ZERO
        };
        let created = retrying(step, || client.create_project(project)).await;
        let attempt = &mut self.attempts[index];
        match created {
            Ok(created) => {
                attempt.id = Some(created.id.clone());
                Ok(created)
            }
            Err(e) => {
                attempt.uncertain = e.delivery() == Delivery::MayHaveApplied;
                Err(e)
            }
        }
    }

    /// (d), then (a) and (b) on the first project; an `Err` is a step that failed.
    pub(super) async fn observe(&mut self, report: &mut Report) -> Result<(), String> {
        let first = self.new_project();
        let client = self.client.clone();
        // A throttle on this first create (someone created a project in this workspace moments
        // ago) is waited out: it is not the observation, the second create is.
        let project = self
            .create(&client, &first, true)
            .await
            .map_err(|e| format!("could not create the throwaway project: {e}"))?;
        let first_created = Instant::now();
        self.observe_second_create(report, first_created).await;

        let environment = project.environments.iter().find(|e| e.name == "production");
        report.observe(
            8,
            "projectCreate names its environment after defaultEnvironmentName",
            format!(
                "environments: {}",
                project
                    .environments
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            environment.is_some(),
        );
        let environment = environment
            .or(project.environments.first())
            .map(|e| e.id.clone())
            .ok_or("the throwaway project has no environment")?;
        let parkable = self.deploy_image(&project.id, &environment).await?;
        self.observe_deployments(report, &project.id, &environment, &parkable.service)
            .await;
        self.observe_batch_read(report, &project.id).await;
        self.observe_parking(report, &parkable).await
    }

    /// (d): a second `projectCreate` right after the first, through a client of its own so the
    /// pool's own pacing (which would wait for the throttle to open) does not hide Railway's.
    async fn observe_second_create(&mut self, report: &mut Report, first_created: Instant) {
        const ASSUMPTION: &str = "(d) a second projectCreate right after the first is throttled for the whole \
                                  workspace, for the interval Railway names (live: 30 s)";
        let fresh = match RailwayClient::new(self.target.config.clone()) {
            Ok(client) => client,
            Err(e) => {
                report.observe(4, ASSUMPTION, format!("no client: {e}"), false);
                return;
            }
        };
        let second = self.new_project();
        let after = first_created.elapsed().as_secs_f64();
        let answer = self.create(&fresh, &second, false).await;
        let expected = self.target.waits.project_create_interval;
        let (observed, held) = match answer {
            Err(e) => match e.kind() {
                ErrorKind::Throttled { scope, retry_after } => (
                    format!(
                        "sent {after:.1} s after the first: {} — throttled, scope {scope:?}, retry after {} s",
                        first_message(&e),
                        retry_after.as_secs()
                    ),
                    scope == ThrottleScope::Workspace
                        && retry_after >= expected / 2
                        && retry_after <= expected * 2,
                ),
                _ => (format!("refused otherwise: {}", answer_of(&e)), false),
            },
            Ok(created) => (
                format!(
                    "NOT throttled: project {} created {after:.1} s after the first (deleted below)",
                    created.id
                ),
                false,
            ),
        };
        report.observe(4, ASSUMPTION, observed, held);
    }

    /// A service without a source, its volume, domain and variable (all before the first
    /// deploy, which sees only what exists then), then the image set by `serviceInstanceUpdate`.
    async fn deploy_image(
        &self,
        project: &ProjectId,
        environment: &EnvironmentId,
    ) -> Result<Parkable, String> {
        let new_service = NewService {
            project_id: project.clone(),
            environment_id: environment.clone(),
            name: "contract-nginx".into(),
            registry_credentials: None,
        };
        let step = self.target.waits.step;
        let service = retrying(step, || self.client.create_service(&new_service))
            .await
            .map_err(|e| format!("serviceCreate failed: {e}"))?;
        let variables = Variables::from([(
            CONTRACT_VARIABLE.to_string(),
            format!("{:016x}", rand::random::<u64>()),
        )]);
        retrying(step, || {
            self.client
                .upsert_variables(project, environment, &service.id, &variables, true)
        })
        .await
        .map_err(|e| format!("variableCollectionUpsert failed: {e}"))?;
        self.create_volume_once(project, environment, &service.id).await?;
        let domain = retrying(step, || {
            self.client
                .create_service_domain(environment, &service.id, Some(80))
        })
        .await
        .map_err(|e| format!("serviceDomainCreate failed: {e}"))?
        .domain;
        let settings = InstanceSettings {
            image: Some(CONTRACT_IMAGE.into()),
            sleep_application: Some(false),
            start_command: Some(SENTINEL_START_COMMAND.into()),
            ..InstanceSettings::default()
        };
        // A brand-new instance may answer "ServiceInstance not found" for a moment.
        retrying(step, || {
            self.client
                .update_service_instance(environment, &service.id, &settings)
        })
        .await
        .map_err(|e| format!("serviceInstanceUpdate failed: {e}"))?;
        Ok(Parkable {
            project: project.clone(),
            environment: environment.clone(),
            service: service.id,
            domain,
            variables,
        })
    }

    /// `volumeCreate` on `/data`; an answer that may have applied (a fresh service's "Problem
    /// processing request") is looked up before the volume is asked for again.
    async fn create_volume_once(
        &self,
        project: &ProjectId,
        environment: &EnvironmentId,
        service: &ServiceId,
    ) -> Result<(), String> {
        let deadline = Instant::now() + self.target.waits.step;
        loop {
            let mounted = self
                .client
                .project_volumes(project)
                .await
                .map_err(|e| format!("could not read volumes: {e}"))?
                .iter()
                .any(|v| v.mounts.iter().any(|m| m.service_id.as_ref() == Some(service)));
            if mounted {
                return Ok(());
            }
            match self
                .client
                .create_volume(project, environment, service, "/data")
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tokio::time::sleep(e.throttled_for().unwrap_or(Duration::from_millis(500))).await;
                }
                Err(e) => return Err(format!("volumeCreate failed: {e}")),
            }
        }
    }

    /// (a): deployments that follow the instance update, watched for a while.
    async fn observe_deployments(
        &self,
        report: &mut Report,
        project: &ProjectId,
        environment: &EnvironmentId,
        service: &ServiceId,
    ) {
        const ASSUMPTION: &str =
            "(a) serviceInstanceUpdate that sets the image starts exactly one deployment by itself";
        let waits = &self.target.waits;
        let deadline = Instant::now() + waits.deployments;
        let mut seen = None;
        let mut last_error = None;
        loop {
            match self
                .client
                .service_deployments(project, environment, service)
                .await
            {
                Ok(deployments) => seen = Some(deployments),
                Err(e) => last_error = Some(e),
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(waits.deployment_poll).await;
        }
        let (observed, held) = match (seen, last_error) {
            (Some(deployments), _) => (
                format!(
                    "{} deployment(s) in the {} s after the update, none asked for ({})",
                    deployments.len(),
                    waits.deployments.as_secs_f64(),
                    deployments
                        .iter()
                        .map(|d| d.status.as_str().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                deployments.len() == 1,
            ),
            (None, Some(e)) => (format!("could not read deployments: {e}"), false),
            (None, None) => ("no read".into(), false),
        };
        report.observe(1, ASSUMPTION, observed, held);
    }

    /// (b): a batched read of this project and one that does not exist. Read three times:
    /// the pool already expects Railway to leave out a real id now and then.
    async fn observe_batch_read(&self, report: &mut Report, project: &ProjectId) {
        const ASSUMPTION: &str =
            "(b) projectsByIds answers the ids it can, silently leaves out one that does not exist";
        const READS: usize = 3;
        let made_up = made_up_project_id();
        let ids = [project.clone(), made_up.clone()];
        let (mut present, mut left_out, mut errors) = (0, 0, Vec::new());
        for _ in 0..READS {
            let read = self.client.projects_status(&ids).await;
            present += usize::from(read.projects.contains_key(project));
            left_out += usize::from(!read.projects.contains_key(&made_up) && read.omitted.contains(&made_up));
            if let Some(e) = read.last_error {
                errors.push(answer_of(&e));
            }
        }
        let observed = format!(
            "this project in {present}/{READS} reads; the made-up id left out in {left_out}/{READS}; {}",
            if errors.is_empty() {
                "no error".to_string()
            } else {
                format!("errors: {}", errors.join("; "))
            }
        );
        report.observe(
            2,
            ASSUMPTION,
            observed,
            present > 0 && left_out == READS && errors.is_empty(),
        );
    }

    /// (c): the project the guard just deleted, handed to the guard once more. The guard sends
    /// `projectDelete` through the same deleter, reads the answer as the pool does and confirms
    /// with `project(id)`; the client's request counts show how Railway answered. (The guard is
    /// the only caller of `projectDelete`, here too.)
    pub(super) async fn observe_deleted(&self, report: &mut Report, deleted: DeletableProject) {
        let id = deleted.id().clone();
        let before = self.client.stats();
        let again = self.guard.delete_again(deleted).await;
        let after = self.client.stats();
        let outcomes: Vec<String> = after
            .by_operation
            .iter()
            .filter(|((operation, _), _)| operation == "projectDelete")
            .filter_map(|(key, n)| {
                let new = n - before.by_operation.get(key).copied().unwrap_or(0);
                (new > 0).then(|| format!("{} × {new}", key.1))
            })
            .collect();
        let answered_gone = !outcomes.is_empty()
            && outcomes
                .iter()
                .all(|o| o.starts_with("unauthorized ") || o.starts_with("transient "));
        let (observed, held) = match again {
            Ok(()) => (
                format!(
                    "projectDelete answered {}; the guard read the project gone and counted it deleted",
                    if outcomes.is_empty() {
                        "nothing".into()
                    } else {
                        outcomes.join(", ")
                    }
                ),
                answered_gone,
            ),
            Err(pool_provisioner::ProvisionError::Railway(e)) => {
                (format!("the guard's delete failed: {}", answer_of(&e)), false)
            }
            Err(e) => (format!("the guard's delete failed: {e}"), false),
        };
        report.observe(
            3,
            "(c) projectDelete of a deleted project is refused as Unauthorized (\"Not Authorized\") or Transient (\"Problem processing request\")",
            observed,
            held,
        );
        let (observed, held) = match self.client.project_presence(&id).await {
            Ok(presence) => (
                format!("{presence:?}"),
                matches!(presence, ProjectPresence::Deleted | ProjectPresence::NotFound),
            ),
            Err(e) => (answer_of(&e), false),
        };
        report.observe(
            3,
            "(c) project(id) of a deleted project says Deleted or NotFound",
            observed,
            held,
        );
    }
}
