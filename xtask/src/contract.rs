//! `cargo xtask railway-contract [--sim] [--yes-create-a-project]`: checks, against the live
//! Railway API, the assumptions the pool makes where Railway's schema says nothing.
//!
//! The pool is proven against `railway-sim`, and the simulator encodes what public sources say
//! the live API does. This task looks at the live API itself, cheaply: it creates one throwaway
//! project (named and marked like a pool agent's, so the pool's own [`ProjectGuard`] clears it
//! for deletion) running a small public image, and records
//! - (a) how many deployments follow a `serviceInstanceUpdate` that sets the image,
//! - (b) what `projectsByIds` answers for [this project, an id that does not exist],
//! - (c) what a second `projectDelete` of the deleted project says, and what `project(id)` says,
//! - (d) what a second `projectCreate` within 30 s of the first says.
//!
//! Everything it made is deleted through the guard, whatever happened before: observations
//! collect failures instead of returning early, and the clean-up runs after them in any case.
//! It prints `assumption | observed | held` and fails when an assumption did not hold or
//! something could not be cleaned up. Without `--yes-create-a-project` it only says what it
//! would do. `--sim` runs the same against an in-process simulator (the unit test below).

use std::future::Future;
use std::time::{Duration, Instant};

use pool_provisioner::{DeletableProject, Naming, ProjectGuard};
use pool_store::AgentId;
use railway_api::{
    ClientConfig, CreatedProject, DEFAULT_ENDPOINT, Delivery, EnvironmentId, ErrorKind, InstanceSettings,
    NewProject, NewService, ProjectId, ProjectPresence, ProjectSummary, RailwayClient, RailwayError,
    ServiceId, ThrottleScope, WorkspaceId,
};
use secrecy::SecretString;

/// A small public image: the deployment needs no registry credentials and starts in seconds.
const CONTRACT_IMAGE: &str = "nginx:1.27-alpine";
/// The pool's default name prefix, so `Naming::agent_id` recognises the project's name.
const NAME_PREFIX: &str = "convos-agent-";
/// The marker's pool and environment: no real pool uses them, so no pool's orphan sweep will
/// mistake these projects for its own (and this task deletes them itself).
const MARKER: &str = "contract";

const USAGE: &str = "usage: cargo xtask railway-contract [--sim] [--yes-create-a-project]";

/// How long the run waits for things; the simulator's are shorter.
#[derive(Debug, Clone)]
struct Waits {
    /// How long deployments are watched after the instance update.
    deployments: Duration,
    /// Time between two reads of the deployments.
    deployment_poll: Duration,
    /// How long a step refused by a throttle or a passing failure is retried.
    step: Duration,
    /// How long the workspace listing is read until it shows every project made.
    listing: Duration,
    /// The interval the `projectCreate` throttle is expected to name.
    project_create_interval: Duration,
}

impl Waits {
    fn live() -> Self {
        Self {
            deployments: Duration::from_secs(20),
            deployment_poll: Duration::from_secs(2),
            // The terraform provider waits up to 90 s for a creation cooldown to pass.
            step: Duration::from_secs(90),
            listing: Duration::from_secs(30),
            project_create_interval: Duration::from_secs(30),
        }
    }
}

/// Where the contract runs.
struct Target {
    config: ClientConfig,
    workspace: WorkspaceId,
    waits: Waits,
}

/// One assumption and what was seen.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Sort key, so the table reads (a), (b), (c), (d) whatever order things were seen in.
    order: u8,
    /// What the pool assumes.
    pub assumption: String,
    /// What Railway did.
    pub observed: String,
    /// Whether the assumption held.
    pub held: bool,
}

/// The outcome of a run.
#[derive(Debug, Default)]
pub struct Report {
    /// What was seen.
    pub observations: Vec<Observation>,
    /// What went wrong outside the assumptions (a step that failed, a project left behind).
    pub problems: Vec<String>,
}

impl Report {
    fn observe(&mut self, order: u8, assumption: &str, observed: impl Into<String>, held: bool) {
        self.observations.push(Observation {
            order,
            assumption: assumption.to_string(),
            observed: observed.into(),
            held,
        });
    }

    /// True when every assumption held and nothing went wrong.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.observations.iter().all(|o| o.held)
    }

    /// The observations as a Markdown table, then the problems.
    pub fn markdown(&self) -> String {
        let mut rows = self.observations.clone();
        rows.sort_by_key(|o| o.order);
        let cell = |s: &str| s.replace('|', "\\|");
        let mut out = String::from("| assumption | observed | held |\n|---|---|---|\n");
        for o in &rows {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                cell(&o.assumption),
                cell(&o.observed),
                if o.held { "yes" } else { "NO" }
            ));
        }
        for problem in &self.problems {
            out.push_str(&format!("\nproblem: {problem}\n"));
        }
        out
    }
}

/// A `projectCreate` this run sent, and what became of it.
struct Attempt {
    name: String,
    /// The id, once Railway answered with one.
    id: Option<ProjectId>,
    /// Railway's answer may have created it without saying so (a timeout): look it up by name.
    uncertain: bool,
}

/// What the run holds: the clients, the guard, and everything it asked Railway to make.
struct Run {
    client: RailwayClient,
    guard: ProjectGuard,
    naming: Naming,
    target: Target,
    attempts: Vec<Attempt>,
}

/// The task: parses its options, runs the contract (or explains it), prints the table.
pub fn main(args: &[String]) -> Result<(), String> {
    let (mut sim, mut yes) = (false, false);
    for arg in args {
        match arg.as_str() {
            "--sim" => sim = true,
            "--yes-create-a-project" => yes = true,
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let report = if sim {
        crate::runtime()?.block_on(run_sim())
    } else {
        // xtask is the developer's tool: it may read the environment (the libraries never do).
        let token = std::env::var("RAILWAY_API_TOKEN").ok().filter(|t| !t.is_empty());
        let workspace = std::env::var("RAILWAY_WORKSPACE_ID")
            .ok()
            .filter(|w| !w.is_empty());
        if !yes || token.is_none() || workspace.is_none() {
            print!("{}", plan(token.is_some(), workspace.as_deref()));
            return Err("nothing was created: this run costs a little (see above); \
                 pass --yes-create-a-project with RAILWAY_API_TOKEN and RAILWAY_WORKSPACE_ID set"
                .into());
        }
        let (Some(token), Some(workspace)) = (token, workspace) else {
            return Err(USAGE.into());
        };
        let target = Target {
            config: ClientConfig::new(DEFAULT_ENDPOINT, vec![SecretString::from(token)]),
            workspace: WorkspaceId::new(workspace),
            waits: Waits::live(),
        };
        crate::runtime()?.block_on(run(target))
    };
    println!("\n## railway-contract{}\n", if sim { " --sim" } else { "" });
    print!("{}", report.markdown());
    if report.passed() {
        Ok(())
    } else {
        Err("an assumption about Railway did not hold, or the run could not clean up (see above)".into())
    }
}

/// What a run against a real workspace does, said before anything is done.
fn plan(have_token: bool, workspace: Option<&str>) -> String {
    format!(
        "railway-contract checks the pool's assumptions against the live Railway API. It would:
  1. create a project `{NAME_PREFIX}<random id>` in workspace {ws}, marked as a throwaway
     agent project (environment `production`), and at once a second one, to see the
     per-workspace projectCreate throttle (if it is not throttled, that project is deleted too);
  2. create a service without a source and set its image to {CONTRACT_IMAGE} (one deployment
     of a public image, running for about 20 s), and count the deployments that follow;
  3. read projectsByIds for [that project, a made-up id];
  4. delete every project it made through the pool's deletion guard, then delete the first
     one again and read project(id), to see what Railway says about deleted projects.
It costs a few seconds of a small container, and it holds the workspace's projectCreate
throttle for about 30 s: do not run it while a pool is filling in the same workspace.
Needs RAILWAY_API_TOKEN ({token}) and RAILWAY_WORKSPACE_ID ({ws_state}), and --yes-create-a-project.
",
        ws = workspace.unwrap_or("(not set)"),
        token = if have_token { "set" } else { "not set" },
        ws_state = if workspace.is_some() { "set" } else { "not set" },
    )
}

/// The contract against an in-process simulator: Railway as the simulator models it
/// (`SimConfig::quick`: every behaviour on, short timings).
pub async fn run_sim() -> Report {
    run_sim_with(railway_sim::SimConfig::quick()).await
}

/// The contract against a simulator configured so; the waits follow its timings.
async fn run_sim_with(sim_config: railway_sim::SimConfig) -> Report {
    let interval = sim_config
        .quirks
        .project_create_interval
        .unwrap_or(Duration::from_secs(1));
    let sim = match railway_sim::start(sim_config).await {
        Ok(sim) => sim,
        Err(e) => {
            return Report {
                problems: vec![format!("could not start the simulator: {e}")],
                ..Report::default()
            };
        }
    };
    let mut config = ClientConfig::new(sim.graphql_url(), vec![SecretString::from("sim-token")]);
    config.request_timeout = Duration::from_secs(5);
    let target = Target {
        config,
        workspace: WorkspaceId::new("ws-sim"),
        waits: Waits {
            deployments: Duration::from_secs(2),
            deployment_poll: Duration::from_millis(200),
            step: Duration::from_secs(10),
            listing: Duration::from_secs(5),
            project_create_interval: interval,
        },
    };
    let mut report = run(target).await;
    // The simulator can see what a live workspace cannot: nothing at all may be left.
    let left = sim.snapshot().live_projects().len();
    if left > 0 {
        report.problems.push(format!(
            "the simulator still holds {left} live project(s) after the run"
        ));
    }
    report
}

/// The contract: observations first, then the clean-up, which runs whatever they did.
async fn run(target: Target) -> Report {
    let mut report = Report::default();
    let setup = Naming::new(NAME_PREFIX, MARKER, MARKER)
        .map_err(|e| e.to_string())
        .and_then(|naming| {
            let clients = RailwayClient::with_project_deleter(target.config.clone());
            Ok((naming, clients.map_err(|e| e.to_string())?))
        });
    let (naming, (client, deleter)) = match setup {
        Ok(setup) => setup,
        Err(e) => {
            report.problems.push(e);
            return report;
        }
    };
    // No own project: nothing the run touches is the pool manager's.
    let guard = ProjectGuard::new(None, target.workspace.clone(), naming.clone(), deleter);
    let mut run = Run {
        client,
        guard,
        naming,
        target,
        attempts: Vec::new(),
    };
    if let Err(problem) = run.observe(&mut report).await {
        report.problems.push(problem);
    }
    run.clean_up(&mut report).await;
    report
}

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
    async fn observe(&mut self, report: &mut Report) -> Result<(), String> {
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
            5,
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
        let service = self.deploy_image(&project.id, &environment).await?;
        self.observe_deployments(report, &project.id, &environment, &service)
            .await;
        self.observe_batch_read(report, &project.id).await;
        Ok(())
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

    /// A service without a source, then the image set by `serviceInstanceUpdate`.
    async fn deploy_image(
        &self,
        project: &ProjectId,
        environment: &EnvironmentId,
    ) -> Result<ServiceId, String> {
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
        let settings = InstanceSettings {
            image: Some(CONTRACT_IMAGE.into()),
            sleep_application: Some(false),
            ..InstanceSettings::default()
        };
        // A brand-new instance may answer "ServiceInstance not found" for a moment.
        retrying(step, || {
            self.client
                .update_service_instance(environment, &service.id, &settings)
        })
        .await
        .map_err(|e| format!("serviceInstanceUpdate failed: {e}"))?;
        Ok(service.id)
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

    /// Deletes every project made, through the guard. The first project's deletion is also
    /// where (c) is observed.
    async fn clean_up(&mut self, report: &mut Report) {
        let wanted: Vec<usize> = (0..self.attempts.len())
            .filter(|&i| self.attempts[i].id.is_some() || self.attempts[i].uncertain)
            .collect();
        if wanted.is_empty() {
            return;
        }
        let listing = self.listing().await;
        let listing = match listing {
            Ok(listing) => listing,
            Err(e) => {
                for &i in &wanted {
                    report.problems.push(format!(
                        "could not list the workspace to delete {}: {e}; delete it by hand",
                        self.describe(i)
                    ));
                }
                return;
            }
        };
        let mut cleared = Vec::new();
        for &i in &wanted {
            let attempt = &self.attempts[i];
            let found = listing.iter().find(|p| match &attempt.id {
                Some(id) => p.id == *id,
                None => p.name == attempt.name,
            });
            let Some(summary) = found else {
                if let Some(id) = &attempt.id
                    && !matches!(
                        self.client.project_presence(id).await,
                        Ok(ProjectPresence::Deleted | ProjectPresence::NotFound)
                    )
                {
                    report.problems.push(format!(
                        "{} is not in the workspace listing; delete it by hand",
                        self.describe(i)
                    ));
                }
                continue;
            };
            match self.guard.marked_project(summary) {
                Ok(deletable) => {
                    cleared.push(summary.name.clone());
                    match self.guard.delete(deletable.clone()).await {
                        Ok(()) if i == 0 => self.observe_deleted(report, deletable).await,
                        Ok(()) => {}
                        Err(e) => report.problems.push(format!(
                            "could not delete {}: {e}; delete it by hand",
                            self.describe(i)
                        )),
                    }
                }
                Err(refusal) => report.problems.push(format!(
                    "the guard refused {} ({refusal}); delete it by hand",
                    self.describe(i)
                )),
            }
        }
        report.observe(
            6,
            "the listing keeps the pool's marker: the guard clears its projects for deletion",
            format!("{} of {} project(s) cleared", cleared.len(), wanted.len()),
            cleared.len() == wanted.len(),
        );
    }

    /// The workspace's projects, read until every project with a known id shows up (a
    /// listing may lag a creation a little) or the wait is over.
    async fn listing(&self) -> Result<Vec<ProjectSummary>, RailwayError> {
        let deadline = Instant::now() + self.target.waits.listing;
        loop {
            let projects = self.client.workspace_projects(&self.target.workspace).await?;
            let complete = self
                .attempts
                .iter()
                .filter_map(|a| a.id.as_ref())
                .all(|id| projects.iter().any(|p| p.id == *id));
            if complete || Instant::now() >= deadline {
                return Ok(projects);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// (c): the project the guard just deleted, handed to the guard once more. The guard sends
    /// `projectDelete` through the same deleter, reads the answer as the pool does and confirms
    /// with `project(id)`; the client's request counts show how Railway answered. (The guard is
    /// the only caller of `projectDelete`, here too.)
    async fn observe_deleted(&self, report: &mut Report, deleted: DeletableProject) {
        let id = deleted.id().clone();
        let before = self.client.stats();
        let again = self.guard.delete(deleted).await;
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
            Err(e) => (format!("the guard's delete failed: {}", answer_of(&e)), false),
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

    fn describe(&self, i: usize) -> String {
        let a = &self.attempts[i];
        match &a.id {
            Some(id) => format!("project {id} ({})", a.name),
            None => format!("a project named {} (its creation may have applied)", a.name),
        }
    }
}

/// Repeats a call refused by a throttle or a passing failure until `within` has passed. An
/// answer that may have applied is never repeated: the caller looks before redoing.
async fn retrying<T, F, Fut>(within: Duration, mut call: F) -> Result<T, RailwayError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RailwayError>>,
{
    let deadline = Instant::now() + within;
    loop {
        match call().await {
            Err(e) if e.is_transient() && e.delivery() != Delivery::MayHaveApplied => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(e);
                }
                let wait = e.throttled_for().unwrap_or(Duration::from_millis(500));
                tokio::time::sleep(wait.min(deadline - now)).await;
            }
            other => return other,
        }
    }
}

/// A well-formed project id (a v4 UUID, as Railway's are) that no project has.
fn made_up_project_id() -> ProjectId {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    ProjectId::new(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn first_message(e: &RailwayError) -> String {
    match e {
        RailwayError::Api { errors, .. } => errors
            .first()
            .map(|x| format!("\"{}\"", x.message))
            .unwrap_or_default(),
        other => other.to_string(),
    }
}

/// An error as the table shows it: Railway's message and what the client made of it.
fn answer_of(e: &RailwayError) -> String {
    match e {
        RailwayError::Api { kind, .. } => format!("{} ({kind:?})", first_message(e)),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_assumption_holds_against_the_simulator_and_nothing_is_left() {
        let report = run_sim().await;
        let text = report.markdown();
        assert!(report.passed(), "{text}");
        for label in ["(a)", "(b)", "(c)", "(d)"] {
            assert!(
                report
                    .observations
                    .iter()
                    .any(|o| o.assumption.starts_with(label)),
                "{label} missing:\n{text}"
            );
        }
    }

    /// The contract must be able to fail: against the schema's world (no undocumented
    /// behaviour) the rows of those behaviours say NO, and the unexpected second project is
    /// deleted like the first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_railway_without_the_behaviours_fails_the_contract_and_is_still_cleaned_up() {
        let report = run_sim_with(railway_sim::SimConfig::without_quirks()).await;
        let text = report.markdown();
        assert!(!report.passed(), "{text}");
        assert!(report.problems.is_empty(), "clean-up failed:\n{text}");
        let held = |label: &str| {
            report
                .observations
                .iter()
                .filter(|o| o.assumption.starts_with(label))
                .all(|o| o.held)
        };
        assert!(!held("(a)"), "no deployment by itself:\n{text}");
        assert!(held("(b)"), "{text}");
        assert!(
            !held("(c)"),
            "\"Project not found\" for a deleted project:\n{text}"
        );
        assert!(!held("(d)"), "no throttle:\n{text}");
        assert!(text.contains("2 of 2 project(s) cleared"), "{text}");
    }

    #[test]
    fn made_up_ids_look_like_railway_ids() {
        let id = made_up_project_id();
        assert_eq!(id.as_str().len(), 36);
        assert_eq!(id.as_str().chars().filter(|c| *c == '-').count(), 4);
        assert_ne!(id, made_up_project_id());
    }
}
