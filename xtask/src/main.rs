//! Developer tasks, run as `cargo xtask <task>`. All automation lives here, in Rust.

mod api_check;
mod bench;
mod browser;
mod chaos;
mod ci;
mod contract;
mod demo;
mod image;
mod interrupt;
mod migrate;
mod private_postgres;
mod real_agent;
mod schema;
mod sim;
mod test;
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  demo [--port N]               run the pool manager locally against the simulator
  test [-- RUNNER_ARGS...]      the test suite, on DATABASE_URL or, when it is unset, on a
                                private PostgreSQL started for the run
  image build|push (--branch B [--sha S] | --tag T...) [--dry-run]
                                the agent image, tagged as CI tags it
  migrate status|run [--legacy-project-id ID]
                                list or apply migrations on DATABASE_URL (DATABASE_SCHEMA)
  migrate adopt-node [--dry-run] [--legacy-project-id ID]
                                take over the Node pool's agents in DATABASE_URL
  schema check [UPSTREAM]       prove schema/ and the simulator speak Railway's GraphQL
  sim [--port N] [--latency-ms N] [--config FILE]
                                the Railway simulator, standalone
  bench [railway|tick|claim|fill|sizing|all]
                                benchmarks (print tables)
  api-check [--max-examples N]  schemathesis against /openapi.json of a running instance
  railway-contract [--sim] [--yes-create-a-project]
                                check the pool's assumptions about the live Railway API
                                (one throwaway project; --sim: against the simulator)
  chaos [--short] [--duration-secs N]
                                the fault-injection run (two replicas, faults, invariants)
  browser-test                  the console in headless Chromium (screenshots in artifacts/console)
  real-agent                    the runtime's real pool server (built from its source at the pinned
                                commit, CONVOS_RUNTIME_DIR) as every agent, through the real binary
  tidy                          the repository-wide rules (dependencies, call sites, docs);
                                also run by `cargo test` as the_repository_is_tidy
  ci [checks|scenarios]         everything .ci/run checks: checks (fmt, clippy, linters, schema),
                                then `test`, then scenarios (api-check, chaos --short,
                                browser-test, real-agent), each timed
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("migrate") => migrate::main(&args[1..]),
        Some("ci") => ci::main(&args[1..]),
        Some("schema") => schema::main(&args[1..]),
        Some("sim") => sim::main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("demo") => demo::main(&args[1..]),
        Some("test") => test::main(&args[1..]),
        Some("image") => image::main(&args[1..]),
        Some("api-check") => api_check::main(&args[1..]),
        Some("chaos") => chaos::main(&args[1..]),
        Some("railway-contract") => contract::main(&args[1..]),
        Some("browser-test") => browser::main(&args[1..]),
        Some("real-agent") => real_agent::main(&args[1..]),
        Some("tidy") => tidy::main(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task {other:?}\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {}", message.trim_end());
            ExitCode::FAILURE
        }
    }
}

/// The database tasks use: `DATABASE_URL`, else the local default.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A multi-threaded runtime for tasks that run async code.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}
