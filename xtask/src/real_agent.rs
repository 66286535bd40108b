//! `cargo xtask real-agent`: the pool against the runtime's real pool server.
//!
//! Builds `runtime/convos-platform/pool-server` of xmtplabs/convos-managed-agent-runtime at the
//! pinned commit ([`crate::image::CHECKED_RUNTIME_REF`]) from its source, with its own
//! package-lock (`npm ci`) and its own `tsc`, into `target/real-agent`, and runs it unchanged
//! as every agent: the simulator's external-agent mode ([`railway_sim::ExternalAgent`]) makes
//! each agent deployment that process, with a small stub runtime behind it on its internal port
//! (`xtask/real-agent/stub-runtime.mjs`, started by the pool server's own `pnpm start`, which
//! records what it receives). Then, through the real pool-manager binary:
//! - fill: idle reaches the target (the pool server's `/pool/health` two-stage readiness);
//! - the landing page's claim, `{joinUrl, source}` (`dashboard/src/app/api/claim/route.ts:7-14`):
//!   200;
//! - a pending join: 200 with `status: "pending_acceptance"`, the agent still live 20 s later;
//! - the claim's `profileImage` and `metadata` recorded by the stub runtime;
//! - a self-destruct, asked of the agent's pool server from inside its container as the
//!   runtime does (`runtime/openclaw/src/convos/src/channel.ts:1619-1640`), relayed to the pool
//!   (`pool-server/index.ts:456-501`): that agent is torn down and idle returns to the target;
//! - the runtime every agent reported is `openclaw`, its shape's, and no `runtime_mismatch`
//!   event was raised.
//!
//! The runtime's source: `CONVOS_RUNTIME_DIR` (a checkout of the repository), else a
//! `git archive` of the pinned commit from the local mirror when there is one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pool_e2e::{ManagerProcess, free_port, pool_manager_binary, sim_environment};
use pool_store::testing::TestDatabase;
use railway_sim::{ExternalAgent, SimConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::image::CHECKED_RUNTIME_REF;

/// The local mirror of the runtime's repository, used when `CONVOS_RUNTIME_DIR` is unset.
const MIRROR: &str = "/work/.mirror/xmtplabs+convos-managed-agent-runtime/repo";

/// What the pool server's build needs from the repository: the pool server, and the package
/// file its version is read from (`pool-server/index.ts:112-127`).
const SOURCE_PATHS: [&str; 2] = ["runtime/package.json", "runtime/convos-platform/pool-server"];

const HOW_TO_GET_IT: &str = "the runtime's source is missing: set CONVOS_RUNTIME_DIR to a checkout of https://github.com/xmtplabs/convos-managed-agent-runtime at 723ba97820fa7c507471e797f1a80deea44375ca (git clone it, then git checkout that commit)";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    println!("==> {what}");
    let status = command
        .status()
        .map_err(|e| format!("{what}: could not start ({e}); .ci/run installs nodejs and npm"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what}: failed ({status})"))
    }
}

/// Puts the pool server's source (at the pinned commit) into `dest`.
fn fetch_source(dest: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    if let Some(dir) = std::env::var_os("CONVOS_RUNTIME_DIR").map(PathBuf::from) {
        for path in SOURCE_PATHS {
            let from = dir.join(path);
            if !from.exists() {
                return Err(format!("CONVOS_RUNTIME_DIR has no {path} ({HOW_TO_GET_IT})"));
            }
        }
        let mut copy = Command::new("cp");
        copy.arg("-R").arg("--parents");
        copy.args(SOURCE_PATHS).arg(dest).current_dir(&dir);
        run(&mut copy, "copy the pool server's source from CONVOS_RUNTIME_DIR")?;
        // node_modules or dist of a checkout that was built: not ours to reuse.
        for leftover in ["node_modules", "dist"] {
            let _ = std::fs::remove_dir_all(dest.join(SOURCE_PATHS[1]).join(leftover));
        }
        return Ok(format!("CONVOS_RUNTIME_DIR={}", dir.display()));
    }
    if !Path::new(MIRROR).exists() {
        return Err(HOW_TO_GET_IT.into());
    }
    let mut archive = Command::new("git")
        .args(["-C", MIRROR, "archive", "--format=tar", CHECKED_RUNTIME_REF])
        .args(SOURCE_PATHS)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("git archive: {e}"))?;
    let tar_input = archive.stdout.take().ok_or("git archive: no output")?;
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dest)
        .stdin(tar_input)
        .status()
        .map_err(|e| format!("tar: {e}"))?;
    let archived = archive.wait().map_err(|e| e.to_string())?;
    if !archived.success() || !untar.success() {
        return Err(format!(
            "git archive {CHECKED_RUNTIME_REF} of {MIRROR} failed ({archived}, {untar})"
        ));
    }
    Ok(format!("git archive {CHECKED_RUNTIME_REF} of {MIRROR}"))
}

/// Where the built pool server and the stub runtime are.
struct Built {
    /// The pool server's directory (its `dist/index.js` is the agent's entry point).
    pool_server: PathBuf,
    /// `RUNTIME_CWD`: the stub runtime's directory.
    stub: PathBuf,
    /// Holds the `pnpm` the pool server starts its runtime with.
    bin: PathBuf,
    /// The stub runtime's records.
    records: PathBuf,
    /// The agents' output.
    logs: PathBuf,
}

/// Builds the pool server with its own package-lock and `tsc`, and puts the stub beside it.
fn build(out: &Path) -> Result<Built, String> {
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "{tool} is not installed: apt-get install nodejs npm (.ci/run does)"
            ));
        }
    }
    let source = out.join("source");
    let _ = std::fs::remove_dir_all(&source);
    let from = fetch_source(&source)?;
    println!("==> the pool server's source: {from}");
    let pool_server = source.join(SOURCE_PATHS[1]);
    run(
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&pool_server),
        "npm ci (the pool server's own package-lock)",
    )?;
    run(
        Command::new(pool_server.join("node_modules/.bin/tsc"))
            .args(["-p", "tsconfig.json"])
            .current_dir(&pool_server),
        "tsc (the pool server's own)",
    )?;
    if !pool_server.join("dist/index.js").exists() {
        return Err("tsc wrote no dist/index.js".into());
    }
    let stub = out.join("stub");
    let bin = out.join("bin");
    let records = out.join("records");
    let logs = out.join("logs");
    for dir in [&stub, &bin, &records, &logs] {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let script = stub.join("stub-runtime.mjs");
    std::fs::write(&script, include_str!("../real-agent/stub-runtime.mjs")).map_err(|e| e.to_string())?;
    // The pool server starts OpenClaw with `pnpm start` (`pool-server/index.ts:147`): here
    // that `pnpm` starts the stub.
    let pnpm = bin.join("pnpm");
    std::fs::write(&pnpm, format!("#!/bin/sh\nexec node '{}'\n", script.display()))
        .map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pnpm, std::fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    Ok(Built {
        pool_server,
        stub,
        bin,
        records,
        logs,
    })
}

/// One request to a process on this machine, as a container's own processes reach each other
/// (`localhost`).
async fn local_post(port: u16, path: &str) -> Result<(u16, Value), String> {
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect :{port}: {e}"))?;
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.map_err(|e| e.to_string())?;
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no answer from :{port}: {raw:?}"))?;
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn answer_json(answer: &pool_provisioner::outbound::OutboundAnswer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or(Value::Null)
}

async fn agent(manager: &ManagerProcess, id: &str) -> Result<Value, String> {
    let answer = manager.get(&format!("/api/pool/agents/{id}"), true).await?;
    Ok(answer_json(&answer)["agent"].clone())
}

/// What the stub runtime behind agent `id` received on `path`.
fn received(records: &Path, id: &str, path: &str) -> Vec<Value> {
    std::fs::read_to_string(records.join(format!("{id}.jsonl")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["path"] == path)
        .collect()
}

async fn claim(manager: &ManagerProcess, what: &str, body: Value) -> Result<Value, String> {
    let answer = manager
        .send(hyper::Method::POST, "/api/pool/claim", true, Some(&body))
        .await?;
    let reply = answer_json(&answer);
    if answer.status != 200 {
        return Err(format!("{what}: {} {reply}", answer.status));
    }
    Ok(reply)
}

async fn scenario(built: Built) -> Result<(), String> {
    let binary = pool_manager_binary()?;
    let sim = railway_sim::start(SimConfig::quick())
        .await
        .map_err(|e| e.to_string())?;
    let path = format!(
        "{}:{}",
        built.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    sim.set_external_agent(Some(ExternalAgent {
        program: "node".into(),
        args: vec!["dist/index.js".into()],
        work_dir: built.pool_server.clone(),
        env: [
            ("PATH".to_string(), path),
            ("RUNTIME_CWD".to_string(), built.stub.display().to_string()),
            ("STUB_RECORD_DIR".to_string(), built.records.display().to_string()),
        ]
        .into_iter()
        .collect(),
        log_dir: built.logs.clone(),
    }));
    let db = TestDatabase::empty().await;
    let env = sim_environment(&sim, db.url(), free_port()?);
    let mut manager = ManagerProcess::start(&binary, &env).await?;
    let result = match manager.wait_healthy(Duration::from_secs(60)).await {
        Ok(()) => steps(&manager, &sim, &built, &db).await,
        Err(e) => Err(e),
    };
    if result.is_err() {
        for line in manager
            .output_text()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            eprintln!("  pool-manager: {line}");
        }
        eprintln!("  the agents' output: {}", built.logs.display());
    }
    manager.signal("TERM")?;
    let exit = manager.wait_exit(Duration::from_secs(30)).await?;
    sim.set_external_agent(None);
    result?;
    if exit != Some(0) {
        return Err(format!("pool-manager exited with {exit:?}"));
    }
    Ok(())
}

/// The scenario's checks, in order; each prints `PASS …` or `FAIL …`, and a failed one does not
/// stop those that do not need it.
async fn steps(
    manager: &ManagerProcess,
    sim: &railway_sim::SimHandle,
    built: &Built,
    db: &TestDatabase,
) -> Result<(), String> {
    let started = Instant::now();
    let counts = manager
        .wait_counts(Duration::from_secs(240), |c| c["idle"] == 2)
        .await?;
    println!(
        "PASS fill: idle {} of 2 in {:.1} s, {} real pool servers running",
        counts["idle"],
        started.elapsed().as_secs_f64(),
        sim.external_agents_running()
    );
    let mut failures = Vec::new();
    let mut check = |result: Result<String, String>| match result {
        Ok(pass) => println!("PASS {pass}"),
        Err(fail) => {
            println!("FAIL {fail}");
            failures.push(fail);
        }
    };

    // The landing page's claim: its body as the dashboard forwards it (route.ts:7-14).
    let landing = claim(
        manager,
        "landing-page claim {joinUrl, source}",
        json!({"joinUrl": "https://dev.convos.org/v2?i=landing-real-agent", "source": "landing"}),
    )
    .await;
    let landing_id = landing
        .as_ref()
        .ok()
        .and_then(|l| l["instanceId"].as_str())
        .map(str::to_string);
    check(landing.map(|l| {
        format!(
            "landing-page claim {{joinUrl, source}}: 200, agent {}, status {}",
            l["instanceId"], l["status"]
        )
    }));

    check(pending_join(manager, sim, built).await);

    // The self-destruct: of the landing page's agent, or (while that claim fails) of one
    // claimed as the pool's own clients claim.
    let target = match landing_id {
        Some(id) => Ok(id),
        None => claim(
            manager,
            "a claim with agentName and instructions",
            json!({"agentName": "Real agent", "instructions": "Be brief.", "joinUrl": "https://dev.convos.org/v2?i=fallback-real-agent"}),
        )
        .await
        .and_then(|c| c["instanceId"].as_str().map(str::to_string).ok_or_else(|| format!("no instanceId in {c}"))),
    };
    match target {
        Ok(id) => check(self_destruct(manager, sim, &id).await),
        Err(e) => check(Err(format!("self-destruct: no claimed agent ({e})"))),
    }
    check(runtime_reported(db).await);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} check(s) failed: {}",
            failures.len(),
            failures.join("; ")
        ))
    }
}

/// A join that needs approval, with an avatar and metadata: 200 with `pending_acceptance`,
/// what the stub runtime received, the agent still live 20 s later.
async fn pending_join(
    manager: &ManagerProcess,
    sim: &railway_sim::SimHandle,
    built: &Built,
) -> Result<String, String> {
    let metadata = json!({"campaign": "real-agent", "locale": "en"});
    let image = "https://example.com/avatar.png";
    let pending = claim(
        manager,
        "pending join",
        json!({"joinUrl": "https://dev.convos.org/v2?i=pending-real-agent", "source": "landing",
               "profileImage": image, "metadata": metadata}),
    )
    .await?;
    if pending["status"] != "pending_acceptance" {
        return Err(format!("pending join: answered {pending}"));
    }
    let id = pending["instanceId"].as_str().ok_or("no instanceId")?.to_string();
    let joins = received(&built.records, &id, "/convos/join");
    let join = joins
        .last()
        .ok_or("pending join: the stub runtime received no /convos/join")?;
    if join["body"]["profileImage"] != image || join["body"]["metadata"] != metadata {
        return Err(format!("pending join: the stub runtime received {join}"));
    }
    println!(
        "PASS the stub runtime recorded profileImage {} and metadata {}",
        join["body"]["profileImage"], join["body"]["metadata"]
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    let later = agent(manager, &id).await?;
    let domain = later["domain"].as_str().unwrap_or_default().to_string();
    let port = sim
        .external_agent_port(&domain)
        .ok_or("pending join: 20 s later the agent's process is gone")?;
    if later["status"] != "pending_acceptance" {
        return Err(format!(
            "pending join: 20 s later the agent is {}",
            later["status"]
        ));
    }
    Ok(format!(
        "pending join: 200 with status pending_acceptance; 20 s later agent {id} is {} and its pool server (:{port}) runs",
        later["status"]
    ))
}

/// The runtime the real pool servers reported (`runtime` of `/pool/health`,
/// `pool-server/index.ts:359`, recorded by the tick as `runtime_name`) is the shape's,
/// `openclaw`, for every agent that reported one (at least one did), and no
/// `runtime_mismatch` event was raised for any agent (issue 22).
async fn runtime_reported(db: &TestDatabase) -> Result<String, String> {
    let client = db.client().await;
    let mismatches: Vec<String> = client
        .query(
            "SELECT agent_id || ': ' || reason FROM agent_events WHERE kind = 'runtime_mismatch' ORDER BY id",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let reported: Vec<(String, String, String)> = client
        .query(
            "SELECT id, shape, runtime_name FROM agent_metadata WHERE runtime_name IS NOT NULL ORDER BY id",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    if !mismatches.is_empty() {
        return Err(format!("runtime: runtime_mismatch events raised: {mismatches:?}"));
    }
    if reported.is_empty() {
        return Err("runtime: no agent reported its runtime".into());
    }
    let wrong: Vec<&(String, String, String)> = reported
        .iter()
        .filter(|(_, shape, runtime)| runtime != "openclaw" || runtime != shape)
        .collect();
    if !wrong.is_empty() {
        return Err(format!(
            "runtime: agents reported another runtime than openclaw, their shape's: {wrong:?}"
        ));
    }
    Ok(format!(
        "runtime: all {} agents that reported one report openclaw, their shape's; no runtime_mismatch event",
        reported.len()
    ))
}

/// The self-destruct, asked of the agent's pool server from inside its container
/// (`channel.ts:1636`): the agent is torn down, with its event, and idle returns to 2.
async fn self_destruct(
    manager: &ManagerProcess,
    sim: &railway_sim::SimHandle,
    id: &str,
) -> Result<String, String> {
    let claimed = agent(manager, id).await?;
    let domain = claimed["domain"].as_str().unwrap_or_default().to_string();
    let port = sim
        .external_agent_port(&domain)
        .ok_or("self-destruct: the agent's process is not running")?;
    let (status, answer) = local_post(port, "/pool/self-destruct").await?;
    if status != 200 || answer["ok"] != true {
        return Err(format!(
            "self-destruct: the pool server answered {status} {answer}"
        ));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        let now = agent(manager, id).await?;
        let counts = manager.counts().await?;
        if now["status"] == "deleted" && counts["idle"] == 2 {
            let detail = manager.get(&format!("/api/pool/agents/{id}"), true).await?;
            let actor = answer_json(&detail)["events"]
                .as_array()
                .and_then(|e| e.iter().find(|e| e["toStatus"] == "deleting").cloned())
                .map(|e| e["actor"].clone())
                .unwrap_or(Value::Null);
            return Ok(format!(
                "self-destruct: agent {id} ({} before) torn down (event actor {actor}), idle back to {} in {:.1} s, {} pool servers running",
                claimed["status"],
                counts["idle"],
                started.elapsed().as_secs_f64(),
                sim.external_agents_running()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("self-destruct: agent {}, counts {counts}", now["status"]));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn main(args: &[String]) -> Result<(), String> {
    if let Some(arg) = args.first() {
        return Err(format!("unknown argument {arg:?}\nusage: cargo xtask real-agent"));
    }
    let out = workspace_root().join("target/real-agent");
    let built = build(&out)?;
    crate::runtime()?.block_on(scenario(built))
}
