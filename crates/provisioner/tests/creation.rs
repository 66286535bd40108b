//! The creation saga against the simulator and Postgres: what a created agent looks like,
//! and that neither a failed step nor a crash at any step leaves anything behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pool_provisioner::testing::{ENVIRONMENT, TestPool, provisioner_config};
use pool_provisioner::{CreationDemand, ProvisionError, StepHook};
use pool_store::{AgentStatus, CreationStep};
use railway_sim::{Faults, OperationFaults, Quirks, SimConfig};
use secrecy::ExposeSecret;

#[tokio::test]
async fn a_created_agent_has_its_own_project_and_exactly_one_deployment_with_everything_in_place() {
    let pool = TestPool::quick().await;
    let id = pool.create_one().await.unwrap();
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    assert_eq!(agent.status, AgentStatus::Starting);
    assert_eq!(agent.completed_steps, saga_steps());

    let snapshot = pool.sim.snapshot();
    let project = snapshot
        .projects
        .iter()
        .find(|p| Some(&p.id) == agent.project_id.as_ref())
        .unwrap();
    assert_eq!(project.name, format!("convos-agent-{id}"));
    assert!(
        project
            .description
            .as_deref()
            .unwrap()
            .starts_with(&format!("[agent-pool id={} env=staging]", pool.pool_id))
    );
    assert_eq!(project.environments, vec![ENVIRONMENT.to_string()]);

    let service = snapshot
        .services
        .iter()
        .find(|s| Some(&s.id) == agent.service_id.as_ref())
        .unwrap();
    assert!(service.has_registry_credentials, "GHCR credentials set");
    assert_eq!(service.sleep_application, Some(false), "sleep off");
    assert_eq!((service.vcpus, service.memory_gb), (Some(1.0), Some(2.0)));

    let deployments = snapshot.deployments_of(&service.id);
    assert_eq!(deployments.len(), 1, "exactly one deployment");
    let d = deployments[0];
    assert_eq!(d.image.as_deref(), Some("ghcr.io/xmtplabs/convos-agent:staging"));
    assert_eq!(
        d.start_command.as_deref(),
        Some(pool_provisioner::DEFAULT_START_COMMAND),
        "the runtime's pool server, not the image's own command"
    );
    assert_eq!(d.volume_mounts, vec!["/data".to_string()]);
    assert_eq!(d.domains, vec![agent.domain.clone().unwrap()]);
    let secrets = agent.secrets.as_ref().unwrap();
    let vars: &BTreeMap<String, String> = &d.variables;
    assert_eq!(vars["POOL_API_KEY"], secrets.agent_api_token.expose_secret());
    assert_ne!(vars["POOL_API_KEY"], "the pool's admin key is never used here");
    assert_eq!(
        vars["OPENCLAW_GATEWAY_TOKEN"],
        secrets.gateway_token.expose_secret()
    );
    assert_eq!(vars["GATEWAY_TOKEN"], secrets.gateway_token.expose_secret());
    assert_eq!(vars["RUNTIME_TYPE"], "openclaw");
    assert_eq!(vars["INSTANCE_ID"], id.as_str());
    for organisation_key in [
        "AGENTMAIL_API_KEY",
        "AGENTMAIL_INBOX_ID",
        "TELNYX_API_KEY",
        "BANKR_API_KEY",
    ] {
        assert!(
            !vars.contains_key(organisation_key),
            "{organisation_key} reached the agent"
        );
    }
    assert_eq!(
        vars["POOL_URL"], "https://pool.example",
        "the service proxy's address"
    );
    assert!(vars["OPENROUTER_API_KEY"].starts_with("sk-or-v1-"));
    assert!(vars["PRIVATE_WALLET_KEY"].starts_with("0x") && vars["PRIVATE_WALLET_KEY"].len() == 66);

    // Its own key, named like the project; no inbox until it asks the service proxy for one.
    assert_eq!(snapshot.keys.iter().filter(|k| !k.deleted).count(), 1);
    assert_eq!(snapshot.keys[0].name, format!("convos-agent-{id}"));
    assert!(snapshot.inboxes.is_empty(), "inboxes are made on first use");
    pool.make_idle(&id).await;
}

#[tokio::test]
async fn a_pool_whose_environment_is_not_the_default_creates_it() {
    let pool = TestPool::start(SimConfig {
        honour_default_environment_name: false,
        ..SimConfig::quick()
    })
    .await;
    let id = pool.create_one().await.unwrap();
    let agent = pool.store.agent(&id).await.unwrap().unwrap();
    let snapshot = pool.sim.snapshot();
    let project = snapshot
        .projects
        .iter()
        .find(|p| Some(&p.id) == agent.project_id.as_ref())
        .unwrap();
    assert_eq!(
        project.environments,
        vec!["production".to_string(), ENVIRONMENT.to_string()]
    );
    assert_eq!(pool.sim.counters().requests["environmentCreate"], 1);
}

/// The operation each step calls, and the simulator that makes the saga call it: the
/// environment step only when the project's default environment is not the pool's, the
/// deploy only when the instance update does not deploy by itself.
/// The steps the saga runs (the inbox step is kept in old journals only: inboxes are made on
/// an agent's first use, through the service proxy).
fn saga_steps() -> Vec<CreationStep> {
    CreationStep::ALL
        .into_iter()
        .filter(|s| *s != CreationStep::AgentMailInbox)
        .collect()
}

fn step_operation(step: CreationStep) -> (&'static str, SimConfig) {
    let plain = SimConfig::quick();
    match step {
        CreationStep::OpenRouterKey => ("openrouter.createKey", plain),
        CreationStep::AgentMailInbox => ("agentmail.createInbox", plain),
        CreationStep::Project => ("projectCreate", plain),
        CreationStep::Environment => (
            "environmentCreate",
            SimConfig {
                honour_default_environment_name: false,
                ..plain
            },
        ),
        CreationStep::Service => ("serviceCreate", plain),
        CreationStep::Variables => ("variableCollectionUpsert", plain),
        CreationStep::Limits => ("serviceInstanceLimitsUpdate", plain),
        CreationStep::Volume => ("volumeCreate", plain),
        CreationStep::Domain => ("serviceDomainCreate", plain),
        CreationStep::Instance => ("serviceInstanceUpdate", plain),
        CreationStep::Deploy => (
            "serviceInstanceDeployV2",
            SimConfig {
                quirks: Quirks {
                    instance_update_deploys: false,
                    ..Quirks::quick()
                },
                ..plain
            },
        ),
    }
}

fn faults(operation: &str, f: OperationFaults) -> Faults {
    Faults {
        operations: BTreeMap::from([(operation.to_string(), f)]),
        ..Faults::default()
    }
}

#[tokio::test]
async fn a_refusal_at_any_step_leaves_nothing_behind_and_an_event_naming_the_step() {
    for step in saga_steps() {
        let (operation, sim_config) = step_operation(step);
        let pool = TestPool::start(sim_config).await;
        pool.sim.set_faults(faults(
            operation,
            OperationFaults {
                refused: 1.0,
                ..OperationFaults::default()
            },
        ));
        let err = match pool.create_one().await {
            Ok(id) => panic!("{step}: creation of {id} succeeded despite {operation} failing"),
            Err(e) => e,
        };
        assert!(
            matches!(&err, ProvisionError::Step { step: s, .. } if *s == step),
            "{step}: {err:?}"
        );

        let agents = pool.store.agents_with_status(AgentStatus::Deleted).await.unwrap();
        assert_eq!(agents.len(), 1, "{step}: the failed agent is archived");
        let events = pool.store.events(&agents[0].id).await.unwrap();
        let failed = events
            .iter()
            .find(|e| e.kind == "creation_failed")
            .expect("a creation_failed event");
        assert!(
            failed.reason.contains(&format!("step {step}")),
            "{step}: {}",
            failed.reason
        );

        let snapshot = pool.sim.snapshot();
        assert!(snapshot.live_projects().is_empty(), "{step}: no live project");
        assert!(snapshot.keys.iter().all(|k| k.deleted), "{step}: no live key");
        assert!(
            snapshot.inboxes.iter().all(|i| i.deleted),
            "{step}: no live inbox"
        );
        assert!(pool.store.live_agents().await.unwrap().is_empty(), "{step}");
    }
}

/// A throttle or a transient failure never turns into a compensation: the step waits and is
/// tried again, with the journal kept.
#[tokio::test]
async fn a_passing_failure_at_any_step_is_waited_out_and_compensates_nothing() {
    for step in saga_steps() {
        let (operation, sim_config) = step_operation(step);
        let pool = TestPool::start(sim_config).await;
        pool.sim.set_faults(faults(
            operation,
            OperationFaults {
                server_error: 1.0,
                ..OperationFaults::default()
            },
        ));
        let started = pool
            .provisioner
            .start_creations(CreationDemand::Exactly(1))
            .await
            .unwrap();
        // Railway answers 503 for a while, then recovers.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        pool.sim.set_faults(Faults::default());
        let outcome = started.finished().await.pop().unwrap();
        let id = outcome.unwrap_or_else(|e| panic!("{step}: {e}"));
        let agent = pool.store.agent(&id).await.unwrap().unwrap();
        assert_eq!(agent.status, AgentStatus::Starting, "{step}");
        assert!(
            pool.store
                .agents_with_status(AgentStatus::Deleted)
                .await
                .unwrap()
                .is_empty(),
            "{step}: nothing compensated"
        );
        let snapshot = pool.sim.snapshot();
        assert_eq!(snapshot.live_projects().len(), 1, "{step}");
        assert_eq!(snapshot.keys.len(), 1, "{step}: no key made twice");
        let service = agent.service_id.clone().unwrap();
        assert_eq!(
            snapshot.deployments_of(&service).len(),
            1,
            "{step}: one deployment"
        );
        pool.assert_nothing_leaked().await;
    }
}

/// Must show: 2 s of fresh-service refusals ("Problem processing request" on the volume,
/// "ServiceInstance not found" on the domain) compensate no creation.
#[tokio::test]
async fn two_seconds_of_fresh_service_refusals_compensate_no_creation() {
    let pool = TestPool::start(SimConfig {
        quirks: Quirks {
            fresh_service_window: Duration::from_secs(2),
            // The limits come before the volume: let them through so the volume meets the
            // window (their own refusal is the same kind of wait).
            fresh_limits_window: Duration::ZERO,
            ..Quirks::quick()
        },
        ..SimConfig::quick()
    })
    .await;
    let outcomes = pool.create(2).await;
    for outcome in &outcomes {
        assert!(outcome.is_ok(), "{outcome:?}");
    }
    assert!(
        pool.store
            .agents_with_status(AgentStatus::Deleted)
            .await
            .unwrap()
            .is_empty()
    );
    let quirks = pool.sim.counters().quirks;
    assert!(
        quirks.keys().any(|m| m.starts_with("Problem processing request")),
        "the volume was refused at first: {quirks:?}"
    );
    let snapshot = pool.sim.snapshot();
    assert_eq!(snapshot.live_projects().len(), 2);
    assert_eq!(snapshot.keys.len(), 2, "no key made twice");
    assert_eq!(
        snapshot.volumes.iter().filter(|v| !v.deleted).count(),
        2,
        "no volume made twice"
    );
    pool.assert_nothing_leaked().await;
}

/// Must show: filling 3 agents gives exactly one deployment each, whether or not Railway's
/// instance update deploys by itself.
#[tokio::test]
async fn filling_three_agents_gives_exactly_one_deployment_each_in_both_simulator_modes() {
    for self_deploys in [true, false] {
        let pool = TestPool::start(SimConfig {
            quirks: Quirks {
                instance_update_deploys: self_deploys,
                ..Quirks::quick()
            },
            ..SimConfig::quick()
        })
        .await;
        let ids: Vec<_> = pool.create(3).await.into_iter().map(Result::unwrap).collect();
        let snapshot = pool.sim.snapshot();
        for id in &ids {
            let agent = pool.store.agent(id).await.unwrap().unwrap();
            let deployments = snapshot.deployments_of(agent.service_id.as_deref().unwrap());
            assert_eq!(
                deployments.len(),
                1,
                "self-deploying updates {self_deploys}: {deployments:?}"
            );
            assert_eq!(agent.deployment_id.as_deref(), Some(deployments[0].id.as_str()));
            let expected = if self_deploys { "instance_update" } else { "deploy" };
            assert_eq!(deployments[0].reason, expected);
        }
    }
}

/// A hook that stops the saga forever after `step`'s remote call, and says when it got there.
fn crash_after(step: CreationStep) -> (StepHook, Arc<tokio::sync::Notify>) {
    let reached = Arc::new(tokio::sync::Notify::new());
    let signal = reached.clone();
    let hook: StepHook = Arc::new(move |s| {
        let signal = signal.clone();
        Box::pin(async move {
            if s == step {
                signal.notify_one();
                std::future::pending::<()>().await;
            }
        })
    });
    (hook, reached)
}

#[tokio::test]
async fn a_crash_after_any_steps_remote_call_is_recovered_with_nothing_left_behind() {
    for step in saga_steps() {
        let (_, sim_config) = step_operation(step);
        let (hook, reached) = crash_after(step);
        let pool = TestPool::with_hook(sim_config, Some(hook)).await;
        let creation = pool
            .provisioner
            .start_creations(CreationDemand::Exactly(1))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), reached.notified())
            .await
            .unwrap_or_else(|_| panic!("{step}: the saga reached the step"));
        creation.abort(); // the process dies here: remote effect done, not journaled
        let _ = creation.finished().await;

        // The dead worker's lease runs out; a restarted replica recovers.
        pool.db
            .client()
            .await
            .execute(
                "UPDATE agent_metadata SET worker_lease_until = now() - interval '1 second'",
                &[],
            )
            .await
            .unwrap();
        let restarted = pool.provisioner(provisioner_config(&pool.sim, None));
        let recovery = restarted.recover_abandoned_creations().await.unwrap();
        assert_eq!(
            recovery.resumed.len() + recovery.compensated.len(),
            1,
            "{step}: {recovery:?}"
        );
        assert!(
            pool.store
                .agents_with_status(AgentStatus::Creating)
                .await
                .unwrap()
                .is_empty(),
            "{step}: nothing stuck in creating"
        );
        pool.assert_nothing_leaked().await;
        if let Some(id) = recovery.resumed.first() {
            let agent = pool.store.agent(id).await.unwrap().unwrap();
            assert_eq!(agent.status, AgentStatus::Starting, "{step}");
            let snapshot = pool.sim.snapshot();
            assert_eq!(snapshot.live_projects().len(), 1, "{step}: one project");
            let service = agent.service_id.clone().unwrap();
            assert_eq!(
                snapshot.deployments_of(&service).len(),
                1,
                "{step}: still exactly one deployment"
            );
            pool.make_idle(id).await;
        }
    }
}

/// Found by the chaos run: while Railway throttled projectCreate, each tick started creations
/// that failed at once — making and deleting keys and inboxes each time. The project step now
/// comes first and waits for the workspace's turn; nothing is made twice.
#[tokio::test]
async fn a_project_create_throttle_is_waited_out_instead_of_churning_keys_and_inboxes() {
    let pool = TestPool::start(SimConfig {
        quirks: Quirks {
            project_create_interval: Some(Duration::from_secs(1)),
            ..Quirks::quick()
        },
        ..SimConfig::quick()
    })
    .await;
    let outcomes = pool.create(3).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let snapshot = pool.sim.snapshot();
    assert_eq!(snapshot.keys.len(), 3, "one key per agent, none made twice");
    assert!(snapshot.inboxes.is_empty(), "inboxes are made on first use");
    assert!(
        pool.store
            .agents_with_status(AgentStatus::Deleted)
            .await
            .unwrap()
            .is_empty(),
        "nothing compensated"
    );
    let attempts = pool.sim.counters().requests["projectCreate"];
    assert!(attempts <= 4, "{attempts} projectCreate attempts for 3 projects");
}
