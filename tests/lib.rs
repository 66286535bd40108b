//! End-to-end harness: runs the real `pool-manager` binary as an operator would — its own
//! process, configured only through the environment — against a simulator and a PostgreSQL.
//! Used by the tests in `e2e/`, the demo and the chaos run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_provisioner::outbound::{OutboundAnswer, OutboundClient};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The pool's admin key in runs of this harness.
pub const ADMIN_KEY: &str = "e2e-admin-key-0123456789abcdef";

/// `cargo` (the one running these tests), without the variables cargo sets for the package
/// under test (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, …): build scripts such as ring's
/// `rerun-if-env-changed` on them, so inheriting them makes the nested build recompile ring
/// and everything above it, and the next ordinary build recompile it back.
pub fn nested_cargo() -> std::process::Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(is_package_variable) {
            command.env_remove(name);
        }
    }
    command
}

/// A variable cargo sets for one package's build, test or run (not one of cargo's settings).
pub fn is_package_variable(name: &str) -> bool {
    [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "OUT_DIR",
    ]
    .contains(&name)
        || name.starts_with("CARGO_PKG_")
        || name.starts_with("CARGO_CFG_")
}

/// Builds the `pool-manager` binary (a no-op when it is fresh) and returns its path.
pub fn pool_manager_binary() -> Result<PathBuf, String> {
    let out = nested_cargo()
        .args(["build", "--quiet", "--package", "pool-manager"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building pool-manager failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("debug").join("pool-manager"))
}

/// Builds the `pool-manager` binary with the release profile (a no-op when it is fresh) and
/// returns its path: for benchmarks, whose timings and memory of a debug build say little.
pub fn pool_manager_release_binary() -> Result<PathBuf, String> {
    let out = nested_cargo()
        .args(["build", "--quiet", "--release", "--package", "pool-manager"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building pool-manager (release) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    Ok(target.join("release").join("pool-manager"))
}

/// A free TCP port on loopback.
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The environment that points a pool manager at a simulator.
pub fn sim_environment(
    sim: &railway_sim::SimHandle,
    database_url: &str,
    port: u16,
) -> BTreeMap<String, String> {
    [
        ("PORT", port.to_string()),
        ("POOL_API_KEY", ADMIN_KEY.to_string()),
        ("DATABASE_URL", database_url.to_string()),
        ("RAILWAY_API_URL", sim.graphql_url()),
        ("RAILWAY_API_TOKEN", "sim-token".to_string()),
        ("RAILWAY_WORKSPACE_ID", "ws-sim".to_string()),
        ("RAILWAY_PROJECT_ID", "pool-own-project".to_string()),
        ("RAILWAY_ENVIRONMENT_NAME", "staging".to_string()),
        // Staging refuses to start without it. pool_store::testing::TEST_SECRETS_KEY: the test
        // databases' own key, so a test reads what the binary sealed.
        (
            "POOL_SECRETS_KEY",
            "dGVzdC1vbmx5IHNlY3JldHMga2V5IC0gbm90IHNlY3I=".to_string(),
        ),
        ("GHCR_TOKEN", "ghp_e2e_registry_token".to_string()),
        ("AGENT_URL_TEMPLATE", sim.agent_url_template()),
        ("OPENROUTER_API_URL", sim.openrouter_url()),
        (
            "OPENROUTER_MANAGEMENT_KEY",
            "sim-openrouter-management-key".to_string(),
        ),
        ("AGENTMAIL_API_URL", sim.agentmail_url()),
        ("AGENTMAIL_API_KEY", "sim-agentmail-key".to_string()),
        ("TELNYX_API_URL", sim.telnyx_url()),
        ("TELNYX_API_KEY", "sim-telnyx-key".to_string()),
        // Rollouts resolve tags to digests at the simulator's registry.
        ("AGENT_REGISTRY_URL", sim.registry_url()),
        // Agents reach the service proxy here.
        ("POOL_URL", format!("http://127.0.0.1:{port}")),
        // Staging requires a ceiling, and a verified database connection unless waived: the
        // tests' PostgreSQL on loopback has no certificate.
        ("POOL_MAX_TOTAL", "1000".to_string()),
        ("POOL_ALLOW_UNVERIFIED_DATABASE_TLS", "true".to_string()),
        ("POOL_MIN_IDLE", "2".to_string()),
        // No parked tier (its defaults keep 300 agents parked): the tests about anything else
        // see the pool's warm behaviour exactly; the tiers' own tests turn it on.
        ("POOL_PARKED_MAX", "0".to_string()),
        ("TICK_INTERVAL_MS", "300".to_string()),
        ("POOL_STUCK_TIMEOUT_MS", "20000".to_string()),
        ("POOL_PROVISION_TIMEOUT_MS", "20000".to_string()),
        ("POOL_FULL_SWEEP_INTERVAL_MS", "1000".to_string()),
        ("RUST_LOG", "info".to_string()),
        ("POOL_CONSOLE_INSECURE_COOKIES", "true".to_string()),
        // The simulator speaks plain http (Railway, agents, OpenRouter, AgentMail).
        ("POOL_ALLOW_INSECURE_URLS", "true".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A running pool manager.
pub struct ManagerProcess {
    child: Child,
    /// Where it listens.
    pub base_url: String,
    /// Everything it printed (stdout and stderr), line by line.
    pub output: Arc<Mutex<Vec<String>>>,
    http: OutboundClient,
}

impl ManagerProcess {
    /// Starts the binary with exactly this environment.
    pub async fn start(binary: &PathBuf, env: &BTreeMap<String, String>) -> Result<Self, String> {
        let port = env.get("PORT").cloned().unwrap_or_else(|| "8080".into());
        let mut child = Command::new(binary)
            .env_clear()
            .envs(env)
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", binary.display()))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            collect(stdout, output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            collect(stderr, output.clone());
        }
        let http = OutboundClient::new().map_err(|e| e.to_string())?;
        Ok(Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            output,
            http,
        })
    }

    /// Waits until `/healthz` answers, or the process exits.
    pub async fn wait_healthy(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "pool-manager exited with {status}:\n{}",
                    self.output_text()
                ));
            }
            if let Ok(answer) = self.get("/healthz", false).await
                && answer.status == 200
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "pool-manager not healthy after {timeout:?}:\n{}",
                    self.output_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// All output so far.
    pub fn output_text(&self) -> String {
        self.output.lock().map(|o| o.join("\n")).unwrap_or_default()
    }

    /// The OS process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends a signal (`TERM`, `KILL`, `INT`).
    pub fn signal(&self, signal: &str) -> Result<(), String> {
        let pid = self.pid().ok_or("the process has exited")?;
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {pid} failed"))
        }
    }

    /// How the process ended, if it has (a terminal's Ctrl-C reaches it along with its
    /// parent); `None` while it runs.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>, String> {
        self.child.try_wait().map_err(|e| e.to_string())
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => Ok(status.code()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("still running after {timeout:?}")),
        }
    }

    /// `GET path`, with the admin key when `auth`.
    pub async fn get(&self, path: &str, auth: bool) -> Result<OutboundAnswer, String> {
        self.send(hyper::Method::GET, path, auth, None).await
    }

    /// A request to the pool manager.
    pub async fn send(
        &self,
        method: hyper::Method,
        path: &str,
        auth: bool,
        body: Option<&Value>,
    ) -> Result<OutboundAnswer, String> {
        let url = format!("{}{path}", self.base_url);
        self.http
            .send(
                method,
                &url,
                auth.then_some(ADMIN_KEY),
                body,
                Duration::from_secs(60),
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// `POST /api/pool/claim` for `agent_name`, with the admin key.
    pub async fn claim(&self, agent_name: &str) -> Result<OutboundAnswer, String> {
        let body = serde_json::json!({"agentName": agent_name, "instructions": "hi"});
        self.send(hyper::Method::POST, "/api/pool/claim", true, Some(&body))
            .await
    }

    /// `GET /api/pool/counts` as JSON.
    pub async fn counts(&self) -> Result<Value, String> {
        let answer = self.get("/api/pool/counts", true).await?;
        serde_json::from_slice(&answer.body).map_err(|e| format!("counts: {e}"))
    }

    /// Polls counts until `done` holds.
    pub async fn wait_counts(
        &self,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let counts = self.counts().await?;
            if done(&counts) {
                return Ok(counts);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("counts still {counts} after {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut out) = into.lock() {
                out.push(line);
            }
        }
    });
}
