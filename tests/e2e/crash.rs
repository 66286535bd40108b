//! The real binary SIGKILLed in the middle of filling the pool, again and again: no project
//! (or key, or inbox) Railway made for it is ever without a row that can find it, and after a
//! restart the pool converges with every remote resource owned by a live row — by recovering
//! its own creations, not by the orphan sweep (whose grace is set to a day here, so it deletes
//! nothing of this run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use pool_e2e::{ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_provisioner::testing::{OwnedResources, check_leaks};
use pool_store::testing::TestDatabase;
use pool_store::{Agent, AgentStatus, CreationStep};
use railway_sim::SimConfig;

/// Every live project is known to a row: by its id, or — for a `projectCreate` in flight when
/// the process died — by the row whose step in flight is the project and whose id is in the
/// project's name (recovery looks it up by that name).
fn every_project_has_a_row(sim: &railway_sim::SimHandle, rows: &[Agent]) -> Result<(), String> {
    for project in sim.snapshot().live_projects() {
        let by_id = rows
            .iter()
            .any(|a| a.project_id.as_deref() == Some(project.id.as_str()));
        let in_flight = rows
            .iter()
            .any(|a| a.step_in_flight == Some(CreationStep::Project) && project.name.contains(a.id.as_str()));
        if !(by_id || in_flight) {
            return Err(format!(
                "project {} ({}) has no row that knows it",
                project.id, project.name
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_fill_leaves_no_project_without_a_row_and_recovery_owns_everything() {
    let binary = pool_manager_binary().unwrap();
    let sim = railway_sim::start(SimConfig::quick()).await.unwrap();
    let db = TestDatabase::empty().await;
    let mut env = sim_environment(&sim, db.url(), free_port().unwrap());
    for (k, v) in [
        ("POOL_MIN_IDLE", "6"),
        ("POOL_CREATE_CONCURRENCY", "4"),
        ("POOL_ORPHAN_GRACE_MS", "86400000"),
        ("POOL_ORPHAN_SWEEP_INTERVAL_MS", "86400000"),
    ] {
        env.insert(k.into(), v.into());
    }
    let store = db.store().await;
    let mut kills = 0;
    let mut in_flight_at_kills = Vec::new();
    for wait_ms in [1_200u64, 2_100, 900, 1_700] {
        let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
        manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        manager.signal("KILL").unwrap();
        manager.wait_exit(Duration::from_secs(10)).await.unwrap();
        kills += 1;
        let rows = store.live_agents().await.unwrap();
        in_flight_at_kills.push(rows.iter().filter(|a| a.status == AgentStatus::Creating).count());
        every_project_has_a_row(&sim, &rows).unwrap_or_else(|e| panic!("after kill {kills}: {e}"));
    }
    assert!(
        in_flight_at_kills.iter().any(|n| *n > 0),
        "some kills hit creations in flight: {in_flight_at_kills:?}"
    );

    // Restart and let it converge: every creation is recovered or compensated.
    let mut manager = ManagerProcess::start(&binary, &env).await.unwrap();
    manager.wait_healthy(Duration::from_secs(30)).await.unwrap();
    let converged = manager
        .wait_counts(Duration::from_secs(180), |c| {
            c["idle"] == 6 && c["creating"] == 0 && c["starting"] == 0 && c["deleting"] == 0
        })
        .await;
    if let Err(e) = converged {
        let mut detail = String::new();
        for a in store
            .live_agents()
            .await
            .unwrap()
            .iter()
            .filter(|a| a.status != AgentStatus::Idle)
        {
            let events: Vec<String> = store
                .events(&a.id)
                .await
                .unwrap()
                .iter()
                .map(|e| format!("{} {:?}→{:?} {}", e.kind, e.from_status, e.to_status, e.reason))
                .collect();
            detail.push_str(&format!(
                "\n{} {} lease {:?} (now {}) project {:?} in flight {:?} attempts {} next {:?} error {:?}\n  {}",
                a.id,
                a.status,
                a.worker_lease_until,
                chrono::Utc::now(),
                a.project_id,
                a.step_in_flight,
                a.teardown_attempts,
                a.next_attempt_at,
                a.last_error,
                events.join("\n  ")
            ));
        }
        let ids: Vec<String> = store
            .live_agents()
            .await
            .unwrap()
            .iter()
            .filter(|a| a.status != AgentStatus::Idle)
            .map(|a| a.id.to_string())
            .collect();
        let logs: Vec<String> = manager
            .output_text()
            .lines()
            .filter(|l| {
                ids.iter().any(|id| l.contains(id.as_str())) || l.contains("WARN") || l.contains("ERROR")
            })
            .map(|l| l.chars().take(400).collect())
            .collect();
        panic!("{e}{detail}\nlogs:\n{}", logs.join("\n"));
    }
    let rows = store.live_agents().await.unwrap();
    let owned: Vec<OwnedResources> = rows.iter().map(OwnedResources::of).collect();
    let report = check_leaks(&sim.snapshot(), &owned);
    assert!(report.is_clean(), "after {kills} kills: {report:?}");
    assert_eq!(report.live_projects, 6, "{report:?}");
    println!(
        "{kills} SIGKILLs (creations in flight at each: {in_flight_at_kills:?}); converged to {report:?}"
    );
    manager.signal("TERM").unwrap();
    assert_eq!(manager.wait_exit(Duration::from_secs(30)).await.unwrap(), Some(0));
}
