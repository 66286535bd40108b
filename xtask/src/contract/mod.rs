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
//! - (d) what a second `projectCreate` within 30 s of the first says,
//! - (e) parking: the service (with a volume on `/data`, a domain, a variable and a sentinel
//!   file its container writes on first boot) is parked with `deploymentRemove` and woken with
//!   `serviceInstanceDeployV2`: REMOVED, the same volume and domain, one deployment that
//!   reaches SUCCESS (its time printed), the sentinel and the variables intact.
//!
//! Everything it made is deleted through the guard, whatever happened before: observations
//! collect failures instead of returning early, and the clean-up runs after them in any case.
//! It prints `assumption | observed | held` and fails when an assumption did not hold or
//! something could not be cleaned up. Without `--yes-create-a-project` it only says what it
//! would do. `--sim` runs the same against an in-process simulator (the unit test below).
//!
//! The observations live in `observations.rs` and `parking.rs`, the clean-up in `clean_up.rs`, the table in
//! `report.rs`.

mod clean_up;
mod observations;
mod parking;
mod report;

pub use report::Report;

use std::future::Future;
use std::time::{Duration, Instant};

use pool_provisioner::{Naming, ProjectGuard};
use railway_api::{
    ClientConfig, DEFAULT_ENDPOINT, Delivery, ProjectId, RailwayClient, RailwayError, WorkspaceId,
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
    /// How long a deployment is given to reach `SUCCESS` (the first one, and the wake).
    wake: Duration,
    /// How long the domain is polled for the sentinel once the deployment is `SUCCESS`.
    serve: Duration,
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
            // Railway documents the deploy phase at 30 s to 2 min; a wake gets 5.
            wake: Duration::from_secs(300),
            serve: Duration::from_secs(60),
        }
    }
}

/// Where the contract runs.
struct Target {
    config: ClientConfig,
    workspace: WorkspaceId,
    waits: Waits,
    /// Where a domain's service answers over HTTP: `None` for the live `https://<domain>`,
    /// the simulator's `/agents/<domain>` otherwise.
    agent_base: Option<String>,
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
            agent_base: None,
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
  2. create a service without a source, with a volume on /data, a public domain and one
     variable, and set its image to {CONTRACT_IMAGE} with a start command that writes a random
     sentinel into /data on first boot and serves it (one deployment of a public image), and
     count the deployments that follow;
  3. read projectsByIds for [that project, a made-up id];
  4. park the service (deploymentRemove, what `railway down` sends), check the deployment is
     REMOVED and the volume and domain unchanged, wake it (serviceInstanceDeployV2), time it
     to SUCCESS, and check the sentinel and the variable survived;
  5. delete every project it made through the pool's deletion guard, then delete the first
     one again and read project(id), to see what Railway says about deleted projects.
It costs a few minutes of a small container and a little volume storage, and it holds the workspace's projectCreate
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
            wake: Duration::from_secs(30),
            serve: Duration::from_secs(5),
        },
        agent_base: Some(sim.base_url()),
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
        for label in ["(a)", "(b)", "(c)", "(d)", "(e)"] {
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
        // Parking is no quirk: it holds in the schema's world too (the first deployment is
        // asked for, since no image update deploys by itself there).
        assert!(held("(e)"), "{text}");
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
