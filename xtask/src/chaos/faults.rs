//! Phase 2: faults everywhere while a client works the pool.

use std::time::{Duration, Instant};

use pool_e2e::{ADMIN_KEY, ManagerProcess};
use pool_provisioner::outbound::OutboundClient;
use railway_sim::{AgentBehaviour, Faults, OperationFaults, RateLimitStorm};
use rand::Rng;
use serde_json::{Value, json};

use super::Ledger;
use super::replicas::Run;

/// Every Railway, OpenRouter and AgentMail operation fails now and then.
pub(super) fn operation_faults(rate: f64) -> Faults {
    Faults {
        all: OperationFaults {
            server_error: rate,
            timeout_after_apply: rate / 2.0,
            // The client cannot tell it from a timeout after applying, which is drawn above
            // (and the harder case: the call may have been applied).
            timeout_before_apply: 0.0,
            graphql_error: rate,
            refused: rate / 5.0,
        },
        ..Faults::default()
    }
}

fn unhealthy_agents() -> AgentBehaviour {
    AgentBehaviour {
        crash: 0.08,
        crash_after: Duration::from_secs(4),
        fail: 0.05,
        never_ready: 0.05,
        provision_hang: 0.05,
        provision_fail: 0.05,
        provision_time: Duration::from_millis(100),
        ..AgentBehaviour::default()
    }
}

/// When the next disruption of each kind is due.
struct Schedule {
    storm: Instant,
    sigkill: Instant,
    cut: Option<Instant>,
    restart: Option<(usize, Instant)>,
}

/// Runs the fault phase for `duration`; every replica runs again when it returns.
pub(super) async fn phase(run: &mut Run, duration: Duration) -> Result<Ledger, String> {
    run.sim.set_faults(operation_faults(0.05));
    run.sim.set_agent_behaviour(unhealthy_agents());
    let mut ledger = Ledger::default();
    let http = OutboundClient::new().map_err(|e| e.to_string())?;
    let end = Instant::now() + duration;
    let mut next = Schedule {
        storm: Instant::now() + Duration::from_secs(7),
        sigkill: Instant::now() + Duration::from_secs(5),
        cut: Some(Instant::now() + duration / 2),
        restart: None,
    };
    let mut keys_used: Vec<String> = Vec::new();
    let mut step = 0usize;
    while Instant::now() < end {
        step += 1;
        if let Some(replica) = run.live(step) {
            work(&http, replica, step, &mut keys_used, &mut ledger).await;
        }
        disrupt(run, &mut next, &mut ledger).await?;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    if let Some((victim, _)) = next.restart {
        run.restart(victim).await?;
    }
    run.sim.set_faults(Faults::default());
    run.sim.set_agent_behaviour(AgentBehaviour::default());
    Ok(ledger)
}

/// One step of the client: a claim (a third with an idempotency key, half of those repeating
/// an earlier key), and now and then a kill, a drain or a redeploy.
async fn work(
    http: &OutboundClient,
    replica: &ManagerProcess,
    step: usize,
    keys_used: &mut Vec<String>,
    ledger: &mut Ledger,
) {
    let (key, action) = {
        let mut rng = rand::rng();
        let key = match rng.random_range(0..6) {
            0 if !keys_used.is_empty() => Some(keys_used[rng.random_range(0..keys_used.len())].clone()),
            0 | 1 => {
                let k = format!("chaos-key-{step}");
                keys_used.push(k.clone());
                Some(k)
            }
            _ => None,
        };
        (key, rng.random_range(0..20))
    };
    claim(http, replica, key, ledger).await;
    match action {
        0 => {
            if let Some(id) = some_agent(replica, "idle").await {
                let _ = replica
                    .send(
                        hyper::Method::DELETE,
                        &format!("/api/pool/instances/{id}"),
                        true,
                        None,
                    )
                    .await;
                ledger.kills += 1;
            }
        }
        1 => {
            let _ = replica
                .send(
                    hyper::Method::POST,
                    "/api/pool/drain",
                    true,
                    Some(&json!({"count": 1})),
                )
                .await;
            ledger.drains += 1;
        }
        2 => {
            let _ = replica
                .send(hyper::Method::POST, "/api/pool/redeploy", true, Some(&json!({})))
                .await;
            ledger.redeploys += 1;
        }
        _ => {}
    }
}

/// The disruptions that are due: a 429 storm, a SIGKILL (and the victim's restart), the cut of
/// the leader's lock connection.
async fn disrupt(run: &mut Run, next: &mut Schedule, ledger: &mut Ledger) -> Result<(), String> {
    let now = Instant::now();
    if now >= next.storm {
        let (html, wait) = {
            let mut rng = rand::rng();
            (rng.random_bool(0.3), rng.random_range(6..12))
        };
        run.sim.set_faults(Faults {
            storm: Some(RateLimitStorm {
                retry_after_secs: 1,
                html,
                duration: Duration::from_millis(1500),
            }),
            ..operation_faults(0.05)
        });
        ledger.storms += 1;
        next.storm = now + Duration::from_secs(wait);
    }
    if next.restart.is_none() && now >= next.sigkill {
        let (victim, down, wait) = {
            let mut rng = rand::rng();
            (
                rng.random_range(0..run.len()),
                rng.random_range(500..2000),
                rng.random_range(6..12),
            )
        };
        if run.kill(victim)? {
            ledger.sigkills += 1;
        }
        next.restart = Some((victim, now + Duration::from_millis(down)));
        next.sigkill = now + Duration::from_secs(wait);
    }
    if let Some((victim, at)) = next.restart
        && now >= at
    {
        run.restart(victim).await?;
        next.restart = None;
    }
    if let Some(at) = next.cut
        && now >= at
    {
        let cut: i64 = run
            .admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND ((classid::bigint << 32) | objid::bigint) = $1",
                &[&pool_store::LEADER_LOCK_KEY],
            )
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        ledger.connection_cuts += cut as u64;
        next.cut = None;
    }
    Ok(())
}

async fn claim(http: &OutboundClient, replica: &ManagerProcess, key: Option<String>, ledger: &mut Ledger) {
    ledger.claims_sent += 1;
    let body = json!({"agentName": "Chaos", "instructions": "survive"});
    let url = format!("{}/api/pool/claim", replica.base_url);
    let headers: Vec<(&str, &str)> = key.iter().map(|k| ("idempotency-key", k.as_str())).collect();
    let answer = http
        .send_with_headers(
            hyper::Method::POST,
            &url,
            Some(ADMIN_KEY),
            &headers,
            Some(&body),
            Duration::from_secs(30),
        )
        .await;
    let Ok(answer) = answer else { return };
    *ledger.claims_by_status.entry(answer.status).or_default() += 1;
    if answer.status == 200
        && let Ok(v) = serde_json::from_slice::<Value>(&answer.body)
    {
        ledger.claims_ok.push((key, v));
    }
}

async fn some_agent(replica: &ManagerProcess, status: &str) -> Option<String> {
    let answer = replica.get("/api/pool/status", true).await.ok()?;
    let v: Value = serde_json::from_slice(&answer.body).ok()?;
    v["instances"]
        .as_array()?
        .iter()
        .find(|a| a["status"] == status)
        .and_then(|a| a["id"].as_str().map(str::to_string))
}
