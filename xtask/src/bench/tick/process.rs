//! The bench's side of the fleet's process ([`super::fleet`]): it starts `xtask bench
//! tick-fleet N` (this same executable), reads how to reach the fleet, and asks it for its
//! counters over the pipe.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Mutex;

/// The simulator's and its agent hosts' counters at one moment (all since they started).
#[derive(Debug, Clone, Default)]
pub(in crate::bench) struct SimCounters {
    /// Railway (GraphQL) requests received, in all and by root field.
    pub requests_total: u64,
    pub requests: BTreeMap<String, u64>,
    /// 429s served.
    pub rate_limited: u64,
    /// Health checks answered, and those answered other than 200, by status.
    pub health_checks: u64,
    pub health_failures: BTreeMap<String, u64>,
    /// TLS handshakes that failed at the agent hosts.
    pub handshake_failures: u64,
}

impl SimCounters {
    fn from_json(v: &Value) -> Self {
        let n = |key: &str| v[key].as_u64().unwrap_or(0);
        let map = |key: &str| -> BTreeMap<String, u64> {
            v[key]
                .as_object()
                .map(|o| {
                    o.iter()
                        .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default()
        };
        SimCounters {
            requests_total: n("requests_total"),
            requests: map("requests"),
            rate_limited: n("rate_limited"),
            health_checks: n("health_checks"),
            health_failures: map("health_failures"),
            handshake_failures: n("handshake_failures"),
        }
    }
}

/// The prober's health checks as the agent hosts received them over a recording.
#[derive(Debug, Clone, Copy, Default)]
pub(in crate::bench) struct Coverage {
    pub agents_checked: usize,
    pub checks: u64,
    pub recorded: Duration,
    pub longest_unchecked: Duration,
}

/// The fleet's process: the simulator, its agent hosts and the fleet's database.
pub(in crate::bench) struct FleetProcess {
    child: Child,
    pipe: Mutex<(ChildStdin, Lines<BufReader<ChildStdout>>)>,
    /// Its process id (for its CPU time and its pinning).
    pub pid: u32,
    /// The pool's environment against this fleet (less its port).
    pub env: BTreeMap<String, String>,
    /// `AGENT_URL_TEMPLATE` for the agents over plain HTTP (`env` has HTTPS's).
    pub http_url_template: String,
    pub agents: usize,
    pub idle: usize,
    /// Claimed agents whose deployment crashed and stays down.
    pub crashed: usize,
}

impl FleetProcess {
    /// Starts the process and waits until its fleet is seeded, its crashed agents crashed
    /// when `crashed` says. `cpu`: the CPU to pin it to.
    pub async fn start(
        agents: usize,
        crashed: super::fleet::Crashed,
        cpu: Option<usize>,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("this executable: {e}"))?;
        let mut child = Command::new(exe)
            .args(["bench", "tick-fleet", &agents.to_string(), crashed.arg()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting the fleet's process: {e}"))?;
        let pid = child.id().ok_or("the fleet's process exited at once")?;
        if let Some(cpu) = cpu {
            super::procfs::pin(pid, cpu)?;
        }
        let stdin = child.stdin.take().ok_or("no pipe to the fleet's process")?;
        let stdout = child.stdout.take().ok_or("no pipe from the fleet's process")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next_line()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the fleet's process exited before its fleet was seeded")?;
        let description: Value =
            serde_json::from_str(&first).map_err(|e| format!("the fleet's process said {first:?}: {e}"))?;
        if let Some(cpu) = cpu {
            // Its threads started meanwhile.
            super::procfs::pin(pid, cpu)?;
        }
        let env = description["env"]
            .as_object()
            .ok_or("the fleet's process described no environment")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let count = |key: &str| description[key].as_u64().unwrap_or(0) as usize;
        Ok(Self {
            pid,
            env,
            http_url_template: description["http_url_template"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            agents: count("agents"),
            idle: count("idle"),
            crashed: count("crashed"),
            child,
            pipe: Mutex::new((stdin, lines)),
        })
    }

    async fn ask(&self, request: &str) -> Result<Value, String> {
        let mut pipe = self.pipe.lock().await;
        let (stdin, lines) = &mut *pipe;
        stdin
            .write_all(format!("{request}\n").as_bytes())
            .await
            .map_err(|e| format!("the fleet's process: {e}"))?;
        stdin.flush().await.map_err(|e| e.to_string())?;
        let line = lines
            .next_line()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the fleet's process exited")?;
        let answer: Value = serde_json::from_str(&line).map_err(|e| format!("{line:?}: {e}"))?;
        match answer.get("error") {
            Some(e) => Err(format!("the fleet's process: {e}")),
            None => Ok(answer),
        }
    }

    pub async fn counters(&self) -> Result<SimCounters, String> {
        Ok(SimCounters::from_json(&self.ask("counters").await?))
    }

    /// What moves while a tick works: Railway requests (the prober's health checks go on
    /// between ticks, so they are not a tick's activity).
    pub async fn activity(&self) -> Result<u64, String> {
        Ok(self.counters().await?.requests_total)
    }

    pub async fn set_keep_alive(&self, keep_alive: bool) -> Result<(), String> {
        self.ask(&format!("keep-alive {keep_alive}")).await.map(|_| ())
    }

    /// Starts recording the health checks' arrivals (anew).
    pub async fn record_arrivals(&self) -> Result<(), String> {
        self.ask("record-arrivals").await.map(|_| ())
    }

    /// Since the recording started: (agents checked, checks, time recorded, the longest an
    /// agent went unchecked).
    pub async fn coverage(&self) -> Result<Coverage, String> {
        let c = self.ask("coverage").await?;
        let n = |key: &str| c[key].as_u64().unwrap_or(0);
        Ok(Coverage {
            agents_checked: n("agents_checked") as usize,
            checks: n("checks"),
            recorded: Duration::from_millis(n("recorded_ms")),
            longest_unchecked: Duration::from_millis(n("longest_unchecked_ms")),
        })
    }

    /// The seed's strategy, run by the fleet's process: (requests, wall time).
    pub async fn seed_strategy(&self) -> Result<(u64, Duration), String> {
        let answer = self.ask("seed").await?;
        Ok((
            answer["requests"].as_u64().unwrap_or(0),
            Duration::from_millis(answer["wall_ms"].as_u64().unwrap_or(0)),
        ))
    }

    /// Closes its input (it drops its database and exits) and waits for it.
    pub async fn stop(mut self) {
        drop(self.pipe);
        if tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
