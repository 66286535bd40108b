//! External agents: a real program (the runtime's own pool server, built from its source) as
//! the process each agent deployment runs, instead of the simulator's fake agent.
//!
//! When a deployment that runs the pool server's start command ([`crate::AGENT_START_COMMAND`])
//! is first reached at its domain (`/agents/{domain}/…`, as Railway's edge routes
//! `https://<domain>/…` to the container), the simulator starts [`ExternalAgent::program`]
//! with the deployment's variables as its environment (as Railway does:
//! `INSTANCE_ID`, `GATEWAY_TOKEN`, `POOL_URL`, …), `PORT` (Railway's public port) and
//! `GATEWAY_INTERNAL_PORT` free ports of its own, `HOME` a directory of its own (the pool server
//! rewrites `~/.convos` when a volume is mounted, `pool-server/index.ts:72-80`), and the extra
//! variables of [`ExternalAgent::env`]. Requests to the domain are passed to that process as
//! they came (method, path, query, `Authorization`, `Content-Type`, body) and its answer
//! comes back as it gave it. What Railway's edge answers itself stays the simulator's: 404
//! `Application not found` for an unknown domain, 502 `Application failed to respond` while
//! the deployment is not up, or once its process has exited (a container that exits is not
//! restarted when it exited cleanly, Railway's default `ON_FAILURE` policy).
//!
//! A process is stopped when its deployment is no longer the live one of a live service
//! (a redeploy, a deleted service or project), checked every 200 ms, and when the simulator
//! stops. Its output goes to `<log_dir>/<deployment>.log`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

use crate::server::{Sim, agent_at};
use crate::world::Status;

/// Largest request body passed to an external agent.
const MAX_BODY: usize = 1 << 20;

/// Longest an external agent may take to answer (its provision retries for minutes,
/// `pool-server/index.ts:283-334`).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// The program every agent deployment runs, and what it is given.
#[derive(Debug, Clone)]
pub struct ExternalAgent {
    /// The program (e.g. `node`).
    pub program: PathBuf,
    /// Its arguments (e.g. the pool server's `dist/index.js`).
    pub args: Vec<String>,
    /// Its working directory.
    pub work_dir: PathBuf,
    /// Variables besides the deployment's own (e.g. `PATH`, `RUNTIME_CWD`).
    pub env: BTreeMap<String, String>,
    /// Where each process's output and home directory go.
    pub log_dir: PathBuf,
}

struct Running {
    child: Child,
    domain: String,
    port: u16,
}

/// The external agents' processes, by deployment.
#[derive(Default)]
pub(crate) struct ExternalAgents {
    spec: Option<ExternalAgent>,
    running: HashMap<String, Running>,
    /// Deployments whose process exited by itself: their edge answers 502 from then on.
    exited: HashMap<String, Option<i32>>,
}

pub(crate) type SharedExternalAgents = Arc<Mutex<ExternalAgents>>;

fn lock(agents: &SharedExternalAgents) -> MutexGuard<'_, ExternalAgents> {
    agents.lock().unwrap_or_else(|p| p.into_inner())
}

impl ExternalAgents {
    /// Stops every process.
    pub(crate) fn stop_all(&mut self) {
        for (_, mut running) in self.running.drain() {
            stop(&mut running.child);
        }
    }
}

impl Drop for ExternalAgents {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts the program for a deployment.
fn spawn(
    spec: &ExternalAgent,
    deployment: &str,
    variables: &BTreeMap<String, String>,
) -> std::io::Result<Running> {
    let port = free_port()?;
    let internal = free_port()?;
    let home = spec.log_dir.join(format!("{deployment}.home"));
    std::fs::create_dir_all(&home)?;
    let log = std::fs::File::create(spec.log_dir.join(format!("{deployment}.log")))?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.work_dir)
        .env_clear()
        .envs(variables)
        .envs(&spec.env)
        .env("PORT", port.to_string())
        .env("GATEWAY_INTERNAL_PORT", internal.to_string())
        .env("HOME", &home)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = command.spawn()?;
    Ok(Running {
        child,
        domain: String::new(),
        port,
    })
}

/// Runs while external agents are on: stops processes whose deployment is gone, notes those
/// that exited.
fn start_reaper(sim: Sim) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let agents = sim.external.clone();
            if lock(&agents).spec.is_none() {
                return;
            }
            let now = Instant::now();
            let live: Vec<(String, String)> = lock(&agents)
                .running
                .iter()
                .map(|(d, r)| (d.clone(), r.domain.clone()))
                .collect();
            let gone: Vec<String> = {
                let w = sim.world();
                live.into_iter()
                    .filter(|(deployment, domain)| {
                        agent_at(&w, domain, now).is_none_or(|a| {
                            &a.deployment_id != deployment
                                || !matches!(a.status, Status::Success | Status::Sleeping)
                        })
                    })
                    .map(|(d, _)| d)
                    .collect()
            };
            let mut guard = lock(&agents);
            for deployment in gone {
                if let Some(mut running) = guard.running.remove(&deployment) {
                    tracing::info!(%deployment, "external agent stopped: its deployment is gone");
                    stop(&mut running.child);
                }
            }
            let mut exited = Vec::new();
            for (deployment, running) in &mut guard.running {
                if let Ok(Some(status)) = running.child.try_wait() {
                    exited.push((deployment.clone(), status.code()));
                }
            }
            for (deployment, code) in exited {
                tracing::info!(%deployment, ?code, "external agent exited");
                guard.running.remove(&deployment);
                guard.exited.insert(deployment, code);
            }
        }
    });
}

fn edge(status: StatusCode, text: &'static str) -> Response {
    (status, text).into_response()
}

/// Railway's edge for `/agents/{domain}/…` when external agents are on: the request goes to
/// the process of the deployment behind the domain (started on first use).
pub(crate) async fn edge_layer(State(sim): State<Sim>, request: Request, next: Next) -> Response {
    let Some(rest) = request.uri().path().strip_prefix("/agents/") else {
        return next.run(request).await;
    };
    let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (domain, path) = (domain.to_string(), format!("/{path}"));
    let agents = sim.external.clone();
    if lock(&agents).spec.is_none() {
        return next.run(request).await;
    }
    let port = {
        let now = Instant::now();
        let (deployment_id, variables) = {
            let mut w = sim.world();
            w.counters.health_checks += u64::from(path == "/pool/health");
            let Some(agent) = agent_at(&w, &domain, now) else {
                return edge(StatusCode::NOT_FOUND, "Application not found");
            };
            if agent.status != Status::Success || !agent.serving {
                return edge(StatusCode::BAD_GATEWAY, "Application failed to respond");
            }
            let variables = w.deployments[&agent.deployment_id].variables.clone();
            (agent.deployment_id, variables)
        };
        let mut guard = lock(&agents);
        if guard.exited.contains_key(&deployment_id) {
            return edge(StatusCode::BAD_GATEWAY, "Application failed to respond");
        }
        match guard.running.get(&deployment_id) {
            Some(running) => running.port,
            None => {
                let Some(spec) = guard.spec.clone() else {
                    return edge(StatusCode::BAD_GATEWAY, "Application failed to respond");
                };
                match spawn(&spec, &deployment_id, &variables) {
                    Ok(mut running) => {
                        tracing::info!(%deployment_id, %domain, port = running.port, "external agent started");
                        running.domain = domain.clone();
                        let port = running.port;
                        guard.running.insert(deployment_id, running);
                        port
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "could not start the external agent");
                        return edge(StatusCode::BAD_GATEWAY, "Application failed to respond");
                    }
                }
            }
        }
    };
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    match forward(port, &format!("{path}{query}"), request).await {
        Ok(response) => response,
        // A process that does not listen yet, or dropped the connection: as Railway's edge.
        Err(_) => edge(StatusCode::BAD_GATEWAY, "Application failed to respond"),
    }
}

/// Passes one request to `127.0.0.1:port` (HTTP/1.0: one request, the answer until the
/// connection closes) and returns its answer.
async fn forward(port: u16, target: &str, request: Request) -> std::io::Result<Response> {
    let method = request.method().clone();
    let mut head = format!("{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(value) = request.headers().get(&name).and_then(|v| v.to_str().ok()) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .map_err(std::io::Error::other)?;
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(ANSWER_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    parse_answer(&raw).ok_or_else(|| std::io::Error::other("not an HTTP answer"))
}

fn parse_answer(raw: &[u8]) -> Option<Response> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status).ok()?;
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-type")
            && let Ok(value) = HeaderValue::from_str(value.trim())
        {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
    }
    Some(response)
}

impl crate::SimHandle {
    /// Makes every agent deployment run `agent` (see the [module docs](self)); `None` goes
    /// back to the simulator's own fake agents and stops every process.
    pub fn set_external_agent(&self, agent: Option<ExternalAgent>) {
        let mut guard = lock(&self.sim.external);
        guard.stop_all();
        let was_on = guard.spec.is_some();
        guard.spec = agent;
        if guard.spec.is_some() && !was_on {
            start_reaper(self.sim.clone());
        }
    }

    /// The public port of the process serving `domain` now (where the runtime inside the
    /// container reaches its own pool server, `localhost:$PORT`), if one runs.
    pub fn external_agent_port(&self, domain: &str) -> Option<u16> {
        lock(&self.sim.external)
            .running
            .values()
            .find(|r| r.domain == domain)
            .map(|r| r.port)
    }

    /// External agent processes running now.
    pub fn external_agents_running(&self) -> usize {
        lock(&self.sim.external).running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_parsed_with_its_status_and_content_type() {
        let raw = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"ready\":false}";
        let response = parse_answer(raw).unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert!(parse_answer(b"garbage").is_none());
    }
}
