//! `cargo xtask ci`: everything `.ci/run` checks, in order (tools installed by `.ci/run`).

use std::process::Command;

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    println!("==> {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .status()
        .map_err(|e| format!("could not start {program}: {e} (is it installed? .ci/run installs it)"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

pub fn main(_args: &[String]) -> Result<(), String> {
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
    run("cargo", &["test", "--workspace"])?;
    run("cargo", &["xtask", "api-check"])?;
    run("cargo", &["xtask", "chaos", "--short"])?;
    run("cargo", &["xtask", "browser-test"])?;
    Ok(())
}
