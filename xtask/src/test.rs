//! `cargo xtask test [-- ARGS]`: the whole test suite, on a fresh machine as on the team's.
//!
//! With `DATABASE_URL` set, the suite runs against that server. Without it, the task starts one
//! private, throwaway PostgreSQL cluster (`private_postgres`, as the demo does) from the server
//! programs it finds, exports its URL as `DATABASE_URL` to the test runner, so every test binary
//! shares it (each test clones its own database from a migrated template,
//! `pool_store::testing`), and stops and deletes the cluster on every way out: success, failure,
//! Ctrl-C or SIGTERM. Without the programs it says, in one line, what to install.
//!
//! The suite runs under cargo-nextest when it is installed (`runners`); the runner gets the
//! arguments after `--` and runs in a process group of its own, so an interrupt is passed to
//! every test process and the task itself lives on to clean up.

use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use crate::interrupt::Interrupt;
use crate::private_postgres::{INSTALL_HINT, PrivateCluster, ServerPrograms};

const USAGE: &str = "usage: cargo xtask test [-- RUNNER_ARGS...]";

/// How long the runner has to stop after an interrupt before its process group is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

pub fn main(args: &[String]) -> Result<(), String> {
    let runner_args = match args.split_first() {
        None => &[][..],
        Some((first, rest)) if first == "--" => rest,
        Some((other, _)) => return Err(format!("unknown option {other:?}\n{USAGE}")),
    };
    crate::runtime()?.block_on(test(runner_args))
}

async fn test(runner_args: &[String]) -> Result<(), String> {
    let mut interrupt = Interrupt::register()?;
    let (database_url, cluster) = match std::env::var("DATABASE_URL") {
        Ok(url) => {
            println!(
                "tests: using the PostgreSQL at DATABASE_URL ({})",
                pool_store::StoreConfig::new(&url).display_target()
            );
            (url, None)
        }
        Err(_) => {
            let programs = programs_or_what_to_install(ServerPrograms::find())?;
            let starting = tokio::task::spawn_blocking(move || PrivateCluster::start(&programs));
            let cluster = tokio::select! {
                biased;
                () = interrupt.received() => return Err("interrupted".into()),
                started = starting => started.map_err(|e| format!("starting the private PostgreSQL: {e}"))??,
            };
            println!(
                "tests: DATABASE_URL is unset: started a private throwaway PostgreSQL ({}) at 127.0.0.1:{} in {}, removed on exit",
                cluster.programs().bin_dir.display(),
                cluster.port(),
                cluster.dir().display()
            );
            (cluster.url(), Some(cluster))
        }
    };
    let started = Instant::now();
    let result = run_suite(&database_url, runner_args, &mut interrupt).await;
    println!("tests: wall time {:.1} s", started.elapsed().as_secs_f64());
    // After the runner and every test process are gone, so nothing holds a connection.
    drop(cluster);
    result
}

/// The server programs the private cluster needs or, without them, the one line that says
/// what to install.
fn programs_or_what_to_install(found: Option<ServerPrograms>) -> Result<ServerPrograms, String> {
    found.ok_or_else(|| {
        format!(
            "DATABASE_URL is unset and PostgreSQL's server programs (initdb, pg_ctl) are not installed: {INSTALL_HINT}"
        )
    })
}

/// The commands that run the suite, in order: cargo-nextest (each test in a process of its own,
/// tests of every binary side by side; settings in `.config/nextest.toml`), then the doctests,
/// which nextest does not run. Arguments go to nextest only, and with arguments the doctests
/// are left out. Without nextest installed, `cargo test` runs everything, more slowly.
fn runners(runner_args: &[String]) -> Vec<(&'static str, tokio::process::Command)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let command = |args: &[&str]| {
        let mut command = tokio::process::Command::new(&cargo);
        // Not the variables `cargo run` set for xtask itself: ring's build script reruns when
        // they change, so the suite's build would recompile ring and everything above it, and
        // the next ordinary build recompile it back.
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(pool_e2e::is_package_variable) {
                command.env_remove(name);
            }
        }
        command.args(args);
        if !names_packages(runner_args) {
            command.arg("--workspace");
        }
        command.args(runner_args);
        command
    };
    if !nextest_installed(&cargo) {
        println!(
            "tests: cargo-nextest is not installed, so cargo test runs the suite (slower; `cargo install cargo-nextest --locked`)"
        );
        return vec![("cargo test", command(&["test"]))];
    }
    let mut runners = vec![("cargo nextest run", command(&["nextest", "run"]))];
    if runner_args.is_empty() {
        runners.push(("cargo test --doc", command(&["test", "--doc"])));
    }
    runners
}

fn nextest_installed(cargo: &str) -> bool {
    std::process::Command::new(cargo)
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the arguments choose packages (`-p x`, `-px`, `--package x`, `--package=x`), up to a
/// `--` that starts the test binaries' own arguments.
fn names_packages(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| a.as_str() != "--")
        .any(|a| a.starts_with("-p") || a == "--package" || a.starts_with("--package="))
}

async fn run_suite(
    database_url: &str,
    runner_args: &[String],
    interrupt: &mut Interrupt,
) -> Result<(), String> {
    for (name, command) in runners(runner_args) {
        run_one(name, command, database_url, interrupt).await?;
    }
    Ok(())
}

/// Runs one runner to its end; an interrupt stops it and every process it started.
async fn run_one(
    name: &str,
    mut command: tokio::process::Command,
    database_url: &str,
    interrupt: &mut Interrupt,
) -> Result<(), String> {
    command.env("DATABASE_URL", database_url).process_group(0);
    let mut child = command.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
    let group = child.id().ok_or_else(|| format!("{name} exited at once"))?;
    let status = tokio::select! {
        status = child.wait() => status.map_err(|e| e.to_string())?,
        () = interrupt.received() => {
            println!("tests: interrupted; stopping {name}");
            signal_group(group, "INT");
            match tokio::time::timeout(STOP_GRACE, child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    signal_group(group, "KILL");
                    let _ = child.wait().await;
                }
            }
            return Err("interrupted".into());
        }
    };
    // Whatever the runner left in its group (a test's child process) goes with it.
    signal_group(group, "KILL");
    if status.success() {
        Ok(())
    } else if let Some(code) = status.code() {
        Err(format!("{name} failed (exit code {code})"))
    } else {
        Err(format!(
            "{name} was killed by signal {}",
            status.signal().unwrap_or_default()
        ))
    }
}

/// Sends `signal` to every process of a group; a group already gone is fine.
fn signal_group(group: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([format!("-{signal}"), "--".into(), format!("-{group}")])
        .stderr(std::process::Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn without_the_server_programs_one_line_says_what_to_install() {
        let message = programs_or_what_to_install(None).unwrap_err();
        assert_eq!(message.lines().count(), 1, "{message}");
        assert!(message.starts_with("DATABASE_URL is unset and PostgreSQL's server programs"));
        assert!(message.contains("apt-get install postgresql"), "{message}");
        assert!(message.contains("set DATABASE_URL"), "{message}");
        let programs = ServerPrograms {
            bin_dir: "/usr/lib/postgresql/15/bin".into(),
        };
        assert_eq!(programs_or_what_to_install(Some(programs.clone())), Ok(programs));
    }

    #[test]
    fn the_whole_workspace_runs_unless_packages_are_named() {
        assert!(!names_packages(&args(&[])));
        assert!(!names_packages(&args(&["--no-fail-fast", "--", "-p"])));
        for named in [
            &["-p", "pool-store"][..],
            &["-ppool-store"],
            &["--package", "x"],
            &["--package=x"],
        ] {
            assert!(names_packages(&args(named)), "{named:?}");
        }
    }
}
