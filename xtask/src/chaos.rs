//! `cargo xtask chaos [--duration-secs N] [--short] [--seed N]`: the run that proves the pool
//! loses nothing, leaks nothing and hands nothing out twice under faults.
//!
//! Real PostgreSQL, the simulator, and two `pool-manager` processes (two replicas on one
//! database). For the fault phase the simulator fails every operation now and then (5xx,
//! timeouts after applying, GraphQL errors), sends 429 storms, throttles `projectCreate` per
//! token and makes agents crash, fail, never become ready, hang or fail provisioning; a client
//! claims continuously (some with repeated idempotency keys), kills, drains and redeploys; a
//! replica is killed with SIGKILL and restarted; the leader's lock connection is cut once. Then
//! the faults stop, the pool settles, and the invariants are checked.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use pool_e2e::{ADMIN_KEY, ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_provisioner::outbound::OutboundClient;
use pool_provisioner::testing::{OwnedResources, check_leaks};
use pool_store::testing::TestDatabase;
use railway_sim::{AgentBehaviour, Faults, OperationFaults, RateLimitStorm, SimConfig, SimHandle};
use rand::Rng;
use serde_json::{Value, json};

use crate::bench::Table;

const MIN_IDLE: i64 = 3;
const TICK_MS: u64 = 500;
/// Each replica's own Railway limit; together they stay under the simulator's 50/s.
const REPLICA_RPS: usize = 20;

struct Options {
    duration: Duration,
    settle_ticks: u64,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        duration: Duration::from_secs(180),
        settle_ticks: 120,
    };
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--short" => {
                o.duration = Duration::from_secs(25);
                o.settle_ticks = 60;
            }
            "--duration-secs" => {
                o.duration = Duration::from_secs(
                    rest.next()
                        .and_then(|v| v.parse().ok())
                        .ok_or("--duration-secs N")?,
                )
            }
            other => {
                return Err(format!(
                    "unknown option {other:?}\nusage: cargo xtask chaos [--short] [--duration-secs N]"
                ));
            }
        }
    }
    Ok(o)
}

/// What the client saw.
#[derive(Default)]
struct Ledger {
    claims_sent: u64,
    claims_ok: Vec<(Option<String>, Value)>,
    claims_by_status: BTreeMap<u16, u64>,
    kills: u64,
    drains: u64,
    redeploys: u64,
    sigkills: u64,
    connection_cuts: u64,
    storms: u64,
}

struct Replica {
    process: Option<ManagerProcess>,
    env: BTreeMap<String, String>,
}

pub fn main(args: &[String]) -> Result<(), String> {
    let options = options(args)?;
    crate::runtime()?.block_on(run(options))
}

fn faults(rate: f64) -> Faults {
    Faults {
        all: OperationFaults {
            server_error: rate,
            timeout_after_apply: rate / 2.0,
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

async fn run(options: Options) -> Result<(), String> {
    let started = Instant::now();
    let binary = pool_manager_binary()?;
    // Railway as it is: every undocumented behaviour on (a per-workspace projectCreate
    // throttle, self-deploying instance updates, ids left out of batches, "Not Authorized" for
    // deleted projects, fresh-service refusals), with its timings shortened to the run's.
    let mut sim_config = SimConfig::quick();
    for token in ["chaos-a", "chaos-b"] {
        sim_config.tokens.insert(token.into(), vec!["ws-sim".into()]);
    }
    sim_config.quirks.project_create_interval = Some(Duration::from_millis(700));
    sim_config.quirks.batch_omission = 0.05;
    let sim = railway_sim::start(sim_config).await.map_err(|e| e.to_string())?;
    let db = TestDatabase::empty().await;
    let admin = db.client().await;

    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut env = sim_environment(&sim, db.url(), free_port()?);
        for (k, v) in [
            ("POOL_MIN_IDLE", MIN_IDLE.to_string()),
            ("TICK_INTERVAL_MS", TICK_MS.to_string()),
            ("POOL_STUCK_TIMEOUT_MS", "8000".into()),
            ("POOL_PROVISION_TIMEOUT_MS", "3000".into()),
            ("POOL_FULL_SWEEP_INTERVAL_MS", "2000".into()),
            ("POOL_ORPHAN_SWEEP_INTERVAL_MS", "5000".into()),
            ("POOL_ORPHAN_GRACE_MS", "3000".into()),
            ("RAILWAY_REQUEST_TIMEOUT_MS", "2000".into()),
            ("RAILWAY_REQUESTS_PER_SECOND", REPLICA_RPS.to_string()),
            ("RAILWAY_API_TOKENS", "chaos-a,chaos-b".into()),
            ("RUST_LOG", "warn".into()),
        ] {
            env.insert(k.into(), v);
        }
        let mut process = ManagerProcess::start(&binary, &env).await?;
        process.wait_healthy(Duration::from_secs(60)).await?;
        replicas.push(Replica {
            process: Some(process),
            env,
        });
    }
    println!("two replicas up; filling the pool");
    wait_idle(&replicas, MIN_IDLE, Duration::from_secs(60)).await?;

    // ---- the fault phase ----
    println!("faults on for {:?}", options.duration);
    sim.set_faults(faults(0.05));
    sim.set_agent_behaviour(unhealthy_agents());
    let mut ledger = Ledger::default();
    let http = OutboundClient::new().map_err(|e| e.to_string())?;
    let fault_end = Instant::now() + options.duration;
    let mut next_storm = Instant::now() + Duration::from_secs(7);
    let mut next_sigkill = Instant::now() + Duration::from_secs(5);
    let mut cut_at = Some(Instant::now() + options.duration / 2);
    let mut restart_at: Option<(usize, Instant)> = None;
    let mut keys_used: Vec<String> = Vec::new();
    let mut step = 0u64;
    while Instant::now() < fault_end {
        step += 1;
        let mut rng = rand::rng();
        let target = live_replica(&replicas, step as usize);
        if let Some(replica) = target {
            // Claims, a third with an idempotency key (half of those repeating an earlier key).
            let key = match rng.random_range(0..6) {
                0 if !keys_used.is_empty() => Some(keys_used[rng.random_range(0..keys_used.len())].clone()),
                0 | 1 => {
                    let k = format!("chaos-key-{step}");
                    keys_used.push(k.clone());
                    Some(k)
                }
                _ => None,
            };
            claim(&http, replica, key, &mut ledger).await;
            match rng.random_range(0..20) {
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
        if Instant::now() >= next_storm {
            sim.set_faults(Faults {
                storm: Some(RateLimitStorm {
                    retry_after_secs: 1,
                    html: rng.random_bool(0.3),
                    duration: Duration::from_millis(1500),
                }),
                ..faults(0.05)
            });
            ledger.storms += 1;
            next_storm = Instant::now() + Duration::from_secs(rng.random_range(6..12));
        }
        if restart_at.is_none() && Instant::now() >= next_sigkill {
            let victim = rng.random_range(0..replicas.len());
            if let Some(process) = replicas[victim].process.as_ref() {
                process.signal("KILL")?;
                ledger.sigkills += 1;
            }
            replicas[victim].process = None;
            restart_at = Some((
                victim,
                Instant::now() + Duration::from_millis(rng.random_range(500..2000)),
            ));
            next_sigkill = Instant::now() + Duration::from_secs(rng.random_range(6..12));
        }
        if let Some((victim, at)) = restart_at
            && Instant::now() >= at
        {
            let mut process = ManagerProcess::start(&binary, &replicas[victim].env).await?;
            process.wait_healthy(Duration::from_secs(60)).await?;
            replicas[victim].process = Some(process);
            restart_at = None;
        }
        if let Some(at) = cut_at
            && Instant::now() >= at
        {
            let cut: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                     AND ((classid::bigint << 32) | objid::bigint) = $1",
                    &[&pool_store::LEADER_LOCK_KEY],
                )
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            ledger.connection_cuts += cut as u64;
            cut_at = None;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // ---- faults stop; the pool settles ----
    if let Some((victim, _)) = restart_at {
        let mut process = ManagerProcess::start(&binary, &replicas[victim].env).await?;
        process.wait_healthy(Duration::from_secs(60)).await?;
        replicas[victim].process = Some(process);
    }
    sim.set_faults(Faults::default());
    sim.set_agent_behaviour(AgentBehaviour::default());
    println!("faults off; waiting for the pool to settle");
    let settle_started = Instant::now();
    let settle_limit = Duration::from_millis(TICK_MS * options.settle_ticks);
    let mut converged_after = None;
    let mut settled = false;
    while settle_started.elapsed() < settle_limit {
        let counts = counts(&replicas).await;
        if settle_started.elapsed().as_millis() % 5000 < TICK_MS as u128 {
            println!("  settling: {counts}");
        }
        if converged_after.is_none() && counts["idle"].as_i64().unwrap_or(0) >= MIN_IDLE {
            converged_after = Some(settle_started.elapsed());
        }
        if counts["idle"].as_i64().unwrap_or(0) >= MIN_IDLE
            && counts["creating"] == 0
            && counts["claiming"] == 0
            && counts["starting"] == 0
            && orphan_free(&sim, &admin).await?
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
    }

    // Teardowns that failed during the faults retry on their backoff; give them the rest of
    // the window (they are tracked rows either way, never leaks).
    while settle_started.elapsed() < settle_limit && counts(&replicas).await["deleting"] != 0 {
        tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
    }
    let deleting_left = counts(&replicas).await["deleting"].as_i64().unwrap_or(0);

    // ---- the invariants ----
    let snapshot = sim.snapshot();
    let mut checks: Vec<(&str, bool, String)> = Vec::new();
    let rows = admin
        .query(
            "SELECT id, status, railway_project_id, openrouter_key_hash, agentmail_inbox_id, invite_url, last_error, teardown_attempts FROM agent_metadata",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let live_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.get::<_, String>(1) != "deleted")
        .collect();
    let owned: Vec<OwnedResources> = live_rows
        .iter()
        .map(|r| OwnedResources {
            deleting: r.get::<_, String>(1) == "deleting",
            project: r.get(2),
            key: r.get(3),
            inbox: r.get(4),
        })
        .collect();
    let leak_report = check_leaks(&snapshot, &owned);
    for r in live_rows
        .iter()
        .filter(|r| r.get::<_, String>(1) == "deleting")
        .take(5)
    {
        println!(
            "  still deleting: {} after {} attempt(s): {}",
            r.get::<_, String>(0),
            r.get::<_, i32>(7),
            r.get::<_, Option<String>>(6).unwrap_or_default()
        );
    }
    checks.push((
        "no leaks",
        leak_report.is_clean(),
        format!(
            "{} live projects, {} keys, {} inboxes; {} without a live row, {} rows pointing at nothing",
            leak_report.live_projects,
            leak_report.live_keys,
            leak_report.live_inboxes,
            leak_report.without_row.len(),
            leak_report.dangling.len()
        ),
    ));

    let twice = snapshot.deployments.iter().filter(|d| d.provisions > 1).count();
    let mut by_key: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (key, answer) in &ledger.claims_ok {
        if let Some(key) = key {
            by_key
                .entry(key)
                .or_default()
                .insert(answer["instanceId"].as_str().unwrap_or_default());
        }
    }
    let split_keys = by_key.values().filter(|ids| ids.len() > 1).count();
    let ids: Vec<&str> = ledger
        .claims_ok
        .iter()
        .filter(|(k, _)| k.is_none())
        .map(|(_, a)| a["instanceId"].as_str().unwrap_or_default())
        .collect();
    let keyed: BTreeSet<&str> = by_key.values().flatten().copied().collect();
    let mut all: Vec<&str> = ids.clone();
    all.extend(keyed.iter());
    let distinct: BTreeSet<&str> = all.iter().copied().collect();
    checks.push((
        "no double hand-out",
        twice == 0 && split_keys == 0 && distinct.len() == all.len(),
        format!(
            "{} agents handed out; {twice} provisioned twice; {split_keys} keys mapped to two agents",
            distinct.len()
        ),
    ));

    let mut lost = 0;
    for (_, answer) in &ledger.claims_ok {
        let id = answer["instanceId"].as_str().unwrap_or_default();
        let ok = rows.iter().any(|r| {
            r.get::<_, String>(0) == id
                && ["claimed", "crashed"].contains(&r.get::<_, String>(1).as_str())
                && r.get::<_, Option<String>>(5).as_deref() == answer["inviteUrl"].as_str()
        });
        if !ok {
            lost += 1;
        }
    }
    checks.push((
        "no lost claim",
        lost == 0,
        format!(
            "{} claims answered 200; {lost} not recorded as claimed with their invite URL",
            ledger.claims_ok.len()
        ),
    ));
    checks.push((
        "convergence",
        settled,
        match converged_after {
            Some(t) => format!(
                "idle ≥ {MIN_IDLE} after {:.1} s ({} ticks; bound {}); nothing creating or claiming: {settled}; teardowns still retrying: {deleting_left}",
                t.as_secs_f64(),
                t.as_millis() as u64 / TICK_MS,
                options.settle_ticks
            ),
            None => format!("idle never reached {MIN_IDLE} within {} ticks", options.settle_ticks),
        },
    ));
    let max_rps = snapshot.counters.max_requests_in_one_second;
    checks.push((
        "budget",
        max_rps <= 2 * REPLICA_RPS && snapshot.counters.without_query_string == 0,
        format!(
            "busiest second: {max_rps} requests (limit 2 replicas × {REPLICA_RPS}); {} without a query string; {} 429s served",
            snapshot.counters.without_query_string, snapshot.counters.rate_limited
        ),
    ));

    // ---- the report ----
    println!(
        "\n## chaos run: {:?} of faults, two replicas, {:.0} s in all\n",
        options.duration,
        started.elapsed().as_secs_f64()
    );
    let table = Table::new(&["fault", "injected"]);
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for (name, n) in &snapshot.counters.faults {
        let kind = name.rsplit(':').next().unwrap_or(name).to_string();
        *by_kind.entry(kind).or_default() += n;
    }
    for (kind, n) in &by_kind {
        table.row(&[format!("Railway/resource {kind}"), n.to_string()]);
    }
    let fates: BTreeMap<String, usize> = snapshot.deployments.iter().fold(BTreeMap::new(), |mut m, d| {
        *m.entry(format!("agent {:?}", d.fate).to_lowercase()).or_default() += 1;
        m
    });
    for (fate, n) in fates.iter().filter(|(f, _)| !f.ends_with("healthy")) {
        table.row(&[fate.clone(), n.to_string()]);
    }
    for (name, n) in [
        ("429 storms", ledger.storms),
        ("429s served", snapshot.counters.rate_limited),
        ("SIGKILLed replicas", ledger.sigkills),
        ("leader lock connections cut", ledger.connection_cuts),
        ("claims sent", ledger.claims_sent),
        ("kills", ledger.kills),
        ("drains", ledger.drains),
        ("redeploys", ledger.redeploys),
    ] {
        table.row(&[name.to_string(), n.to_string()]);
    }
    println!("\nclaims by status: {:?}\n", ledger.claims_by_status);
    let table = Table::new(&["invariant", "held", "detail"]);
    for (name, held, detail) in &checks {
        table.row(&[
            name.to_string(),
            if *held { "yes" } else { "NO" }.to_string(),
            detail.clone(),
        ]);
    }

    for replica in &mut replicas {
        if let Some(process) = replica.process.as_mut() {
            let _ = process.signal("TERM");
            let _ = process.wait_exit(Duration::from_secs(30)).await;
        }
    }
    if checks.iter().all(|(_, held, _)| *held) {
        Ok(())
    } else {
        for replica in &replicas {
            if let Some(p) = &replica.process {
                eprintln!("--- replica output (last lines) ---");
                for line in p
                    .output_text()
                    .lines()
                    .rev()
                    .take(8)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                {
                    eprintln!("{line}");
                }
            }
        }
        Err("an invariant was violated".into())
    }
}

fn live_replica(replicas: &[Replica], n: usize) -> Option<&ManagerProcess> {
    let live: Vec<&ManagerProcess> = replicas.iter().filter_map(|r| r.process.as_ref()).collect();
    if live.is_empty() {
        None
    } else {
        Some(live[n % live.len()])
    }
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

async fn counts(replicas: &[Replica]) -> Value {
    for replica in replicas.iter().filter_map(|r| r.process.as_ref()) {
        if let Ok(c) = replica.counts().await {
            return c;
        }
    }
    Value::Null
}

async fn wait_idle(replicas: &[Replica], n: i64, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if counts(replicas).await["idle"].as_i64().unwrap_or(0) >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("the pool did not fill to {n} in {timeout:?}"))
}

/// True when every live project, key and inbox in the simulator belongs to a live row.
async fn orphan_free(sim: &SimHandle, admin: &tokio_postgres::Client) -> Result<bool, String> {
    let rows = admin
        .query(
            "SELECT status, railway_project_id, openrouter_key_hash, agentmail_inbox_id FROM agent_metadata WHERE status <> 'deleted'",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    let owned: Vec<OwnedResources> = rows
        .iter()
        .map(|r| OwnedResources {
            deleting: r.get::<_, String>(0) == "deleting",
            project: r.get(1),
            key: r.get(2),
            inbox: r.get(3),
        })
        .collect();
    Ok(check_leaks(&sim.snapshot(), &owned).without_row.is_empty())
}
