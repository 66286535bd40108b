//! Phase 1: the simulator, the database and the replicas — and what the other phases ask of
//! them (kill and restart one, read the counts, list the rows that own remote resources).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pool_e2e::{ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_provisioner::testing::OwnedResources;
use pool_store::testing::TestDatabase;
use railway_sim::{SimConfig, SimHandle};
use serde_json::Value;

use super::{MIN_IDLE, REPLICA_RPS, TICK_MS};

/// One replica: its process while it runs, and the environment to restart it with.
struct Replica {
    process: Option<ManagerProcess>,
    env: BTreeMap<String, String>,
}

/// Everything the run drives.
pub(super) struct Run {
    pub sim: SimHandle,
    pub admin: tokio_postgres::Client,
    binary: PathBuf,
    replicas: Vec<Replica>,
    /// The run's database (dropped with the run).
    db: TestDatabase,
}

/// A live row's status and what it owns remotely, for the leak checks.
pub(super) struct Row {
    pub id: String,
    pub status: String,
    pub last_error: Option<String>,
    pub teardown_attempts: i32,
    pub owned: OwnedResources,
}

impl Run {
    /// The simulator (Railway as it is: every undocumented behaviour on — a per-workspace
    /// `projectCreate` throttle, self-deploying instance updates, ids left out of batches, "Not
    /// Authorized" for deleted projects, fresh-service refusals — with its timings shortened to
    /// the run's), a fresh database and `n` replicas.
    pub async fn start(n: usize) -> Result<Self, String> {
        let binary = pool_manager_binary()?;
        let mut sim_config = SimConfig::quick();
        for token in ["chaos-a", "chaos-b"] {
            sim_config.tokens.insert(token.into(), vec!["ws-sim".into()]);
        }
        sim_config.quirks.project_create_interval = Some(Duration::from_millis(700));
        sim_config.quirks.batch_omission = 0.05;
        let sim = railway_sim::start(sim_config).await.map_err(|e| e.to_string())?;
        let db = TestDatabase::empty().await;
        let admin = db.client().await;
        let mut run = Self {
            sim,
            admin,
            binary,
            replicas: Vec::new(),
            db,
        };
        for _ in 0..n {
            let env = run.replica_environment()?;
            let process = run.launch(&env).await?;
            run.replicas.push(Replica {
                process: Some(process),
                env,
            });
        }
        Ok(run)
    }

    fn replica_environment(&self) -> Result<BTreeMap<String, String>, String> {
        let mut env = sim_environment(&self.sim, self.db.url(), free_port()?);
        for (k, v) in [
            ("POOL_MIN_IDLE", MIN_IDLE.to_string()),
            ("TICK_INTERVAL_MS", TICK_MS.to_string()),
            ("POOL_STUCK_TIMEOUT_MS", "8000".into()),
            ("POOL_PROVISION_TIMEOUT_MS", "3000".into()),
            ("POOL_FULL_SWEEP_INTERVAL_MS", "2000".into()),
            ("POOL_ORPHAN_SWEEP_INTERVAL_MS", "5000".into()),
            ("POOL_ORPHAN_GRACE_MS", "3000".into()),
            // A SIGKILLed replica's work is resumed once its lease runs out (renewed every
            // third of it), in the run's shortened time like the timeouts above.
            ("POOL_REPLICA_LEASE_MS", "3000".into()),
            ("RAILWAY_REQUEST_TIMEOUT_MS", "2000".into()),
            ("RAILWAY_REQUESTS_PER_SECOND", REPLICA_RPS.to_string()),
            ("RAILWAY_API_TOKENS", "chaos-a,chaos-b".into()),
            ("RUST_LOG", "info".into()),
        ] {
            env.insert(k.into(), v);
        }
        Ok(env)
    }

    async fn launch(&self, env: &BTreeMap<String, String>) -> Result<ManagerProcess, String> {
        let mut process = ManagerProcess::start(&self.binary, env).await?;
        process.wait_healthy(Duration::from_secs(60)).await?;
        Ok(process)
    }

    /// How many replicas there are (running or not).
    pub fn len(&self) -> usize {
        self.replicas.len()
    }

    /// The `n`-th running replica, round robin.
    pub fn live(&self, n: usize) -> Option<&ManagerProcess> {
        let live: Vec<&ManagerProcess> = self.replicas.iter().filter_map(|r| r.process.as_ref()).collect();
        (!live.is_empty()).then(|| live[n % live.len()])
    }

    /// SIGKILLs replica `i`; `false` when it was not running.
    pub fn kill(&mut self, i: usize) -> Result<bool, String> {
        match self.replicas[i].process.take() {
            Some(process) => process.signal("KILL").map(|()| true),
            None => Ok(false),
        }
    }

    /// Starts replica `i` again.
    pub async fn restart(&mut self, i: usize) -> Result<(), String> {
        let process = self.launch(&self.replicas[i].env).await?;
        self.replicas[i].process = Some(process);
        Ok(())
    }

    /// The counts, from whichever replica answers.
    pub async fn counts(&self) -> Value {
        for process in self.replicas.iter().filter_map(|r| r.process.as_ref()) {
            if let Ok(c) = process.counts().await {
                return c;
            }
        }
        Value::Null
    }

    /// Waits until at least `n` agents are idle.
    pub async fn wait_idle(&self, n: i64, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.counts().await["idle"].as_i64().unwrap_or(0) >= n {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("the pool did not fill to {n} in {timeout:?}"))
    }

    /// Every live (not archived) row, read straight from the database.
    pub async fn live_rows(&self) -> Result<Vec<Row>, String> {
        let rows = self
            .admin
            .query(
                "SELECT a.id, a.status, a.railway_project_id, a.openrouter_key_hash, \
                 COALESCE(a.agentmail_inbox_id, (SELECT s.resource_id FROM agent_services s \
                   WHERE s.agent_id = a.id AND s.service = 'email')), \
                 a.last_error, a.teardown_attempts FROM agent_metadata a WHERE a.status <> 'deleted'",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows
            .iter()
            .map(|r| {
                let status: String = r.get(1);
                Row {
                    id: r.get(0),
                    owned: OwnedResources {
                        deleting: status == "deleting",
                        project: r.get(2),
                        key: r.get(3),
                        inbox: r.get(4),
                    },
                    status,
                    last_error: r.get(5),
                    teardown_attempts: r.get(6),
                }
            })
            .collect())
    }

    /// Stops every running replica with SIGTERM.
    pub async fn stop(&mut self) {
        for replica in &mut self.replicas {
            if let Some(process) = replica.process.as_mut() {
                let _ = process.signal("TERM");
                let _ = process.wait_exit(Duration::from_secs(30)).await;
            }
        }
    }

    /// One line per running replica: leadership, ticks, and its Railway budget (what a pool
    /// that does not settle is waiting for), from its `/metrics`.
    pub async fn print_replicas(&self) {
        const SHOWN: [&str; 6] = [
            "pool_is_leader",
            "pool_ticks_total",
            "railway_budget_used_last_hour",
            "railway_budget_limit_per_hour",
            "railway_paused_seconds",
            "railway_server_remaining",
        ];
        for (i, replica) in self.replicas.iter().enumerate() {
            let Some(process) = &replica.process else {
                println!("    replica {i}: not running");
                continue;
            };
            let text = match process.get("/metrics", true).await {
                Ok(answer) => String::from_utf8_lossy(&answer.body).into_owned(),
                Err(e) => {
                    println!("    replica {i}: /metrics failed: {e}");
                    continue;
                }
            };
            let shown: Vec<String> = text
                .lines()
                .filter_map(|l| l.split_once(' '))
                .filter(|(name, _)| SHOWN.contains(name))
                .map(|(name, value)| format!("{}={value}", name.trim_start_matches("railway_")))
                .collect();
            println!("    replica {i}: {}", shown.join(" "));
        }
    }

    /// The rows in motion (neither idle nor claimed) with their leases, retry times and last
    /// errors: what a pool that does not settle is stuck on.
    pub async fn print_rows_in_motion(&self) -> Result<(), String> {
        let rows = self
            .admin
            .query(
                "SELECT id, status, step_in_flight::text, \
                 extract(epoch FROM worker_lease_until - now())::float8, \
                 extract(epoch FROM next_attempt_at - now())::float8, \
                 extract(epoch FROM now() - status_changed_at)::float8, teardown_attempts, last_error \
                 FROM agent_metadata WHERE status NOT IN ('deleted', 'idle', 'claimed') ORDER BY status, id",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?;
        for r in &rows {
            let secs = |i: usize| {
                r.get::<_, Option<f64>>(i)
                    .map_or("-".to_string(), |s| format!("{s:.1} s"))
            };
            println!(
                "    {} {} for {}: step in flight {}, work lease {}, next attempt {}, {} teardown attempt(s), last error {:?}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                secs(5),
                r.get::<_, Option<String>>(2).unwrap_or_else(|| "-".into()),
                secs(3),
                secs(4),
                r.get::<_, i32>(6),
                r.get::<_, Option<String>>(7).unwrap_or_default(),
            );
        }
        Ok(())
    }

    /// The last lines each replica printed (for a failed run).
    pub fn print_last_output(&self) {
        for (i, process) in self
            .replicas
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i, r.process.as_ref()?)))
        {
            let text = process.output_text();
            let whole = std::env::temp_dir().join(format!("chaos-replica-{i}.log"));
            let saved = match std::fs::write(&whole, &text) {
                Ok(()) => format!("all of it in {}", whole.display()),
                Err(e) => format!("could not save all of it: {e}"),
            };
            eprintln!("--- replica {i} output (last lines; {saved}) ---");
            let lines: Vec<&str> = text.lines().collect();
            for line in &lines[lines.len().saturating_sub(8)..] {
                eprintln!("{line}");
            }
        }
    }
}
