//! The examples run as part of the tests, as a user runs them (`cargo run --example`): each
//! must succeed and print what it promises. `cargo test` only builds examples.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

/// Runs an example of this crate and returns what it printed. (Kept in each crate's tests on
/// purpose: the two crates share no test-support crate, and it is a dozen lines.)
fn run_example(name: &str) -> String {
    // CARGO is the cargo running these tests.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(&cargo);
    // Without the variables cargo set for this test (CARGO_MANIFEST_DIR, CARGO_PKG_*, …): ring's
    // build script reruns when they change, so the nested build would recompile it, and the
    // next ordinary build recompile it back (pool_e2e::nested_cargo says the same).
    for (variable, _) in std::env::vars() {
        if variable.starts_with("CARGO_PKG_")
            || variable.starts_with("CARGO_CFG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "OUT_DIR",
            ]
            .contains(&variable.as_str())
        {
            command.env_remove(variable);
        }
    }
    let output = command
        .args(["run", "--quiet", "-p", env!("CARGO_PKG_NAME"), "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "example {name} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn the_list_projects_example_lists_the_seeded_workspace() {
    let out = run_example("list_projects");
    assert!(out.contains("3 projects in ws-sim:"), "{out}");
    assert_eq!(out.matches(" seed-0000").count(), 3, "{out}");
}

#[test]
fn the_status_read_example_reads_in_one_request_and_reports_the_unknown_id_as_omitted() {
    let out = run_example("status_read");
    assert!(out.contains("read in 1 request(s)"), "{out}");
    assert!(out.contains("omitted: [\"project-that-does-not-exist\""), "{out}");
    assert!(out.contains("failed: []"), "{out}");
}
