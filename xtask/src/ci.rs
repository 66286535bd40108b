//! `cargo xtask ci [checks|scenarios]`: everything `.ci/run` checks (tools installed by
//! `.ci/run`), each step timed.
//!
//! `.ci/run` runs the three stages itself, so that its test command is exactly the README's:
//! - `checks`: fmt, clippy, hadolint, actionlint, the schema check;
//! - `cargo xtask test`: the test suite;
//! - `scenarios`: the minute-long runs, each on its own: schemathesis (`api-check`), a short
//!   chaos run, the console's browser test, the runtime's real pool server (`real-agent`).
//!
//! Without an argument, all three in that order.

use std::process::Command;
use std::time::Instant;

const USAGE: &str = "usage: cargo xtask ci [checks|scenarios]";

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    println!("==> {program} {}", args.join(" "));
    let started = Instant::now();
    let mut command = Command::new(program);
    // Not the variables `cargo run` set for xtask: build scripts rerun when they change.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(pool_e2e::is_package_variable) {
            command.env_remove(name);
        }
    }
    let status = command
        .args(args)
        .status()
        .map_err(|e| format!("could not start {program}: {e} (is it installed? .ci/run installs it)"))?;
    println!(
        "==> {program} {}: {:.1} s",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

/// Formatting, lints, the linters of the Dockerfiles and workflows, the schema check.
fn checks() -> Result<(), String> {
    run("cargo", &["fmt", "--all", "--", "--check"])?;
    run(
        "cargo",
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
    )?;
    run(
        "hadolint",
        &["docker/pool-manager.Dockerfile", "docker/agent/Dockerfile"],
    )?;
    run(
        "actionlint",
        &[".github/workflows/agent-image.yml", ".github/workflows/ci.yml"],
    )?;
    if crate::schema::default_upstream().exists() {
        run("cargo", &["xtask", "schema", "check"])?;
    } else {
        println!("==> schema check skipped: Railway's schema is not beside this checkout");
    }
    Ok(())
}

/// The runs that take minutes, kept out of the test suite.
fn scenarios() -> Result<(), String> {
    run("cargo", &["xtask", "api-check"])?;
    run("cargo", &["xtask", "chaos", "--short"])?;
    run("cargo", &["xtask", "browser-test"])?;
    run("cargo", &["xtask", "real-agent"])?;
    Ok(())
}

pub fn main(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("checks") => checks(),
        Some("scenarios") => scenarios(),
        None => {
            checks()?;
            run("cargo", &["xtask", "test"])?;
            scenarios()
        }
        Some(other) => Err(format!("unknown stage {other:?}\n{USAGE}")),
    }
}
