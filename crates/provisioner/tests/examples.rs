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
fn the_create_and_tear_down_example_leaves_an_archived_row_and_nothing_on_railway() {
    let out = run_example("create_and_tear_down");
    assert!(out.contains("created agent "), "{out}");
    assert!(out.contains("live projects on the simulator: 1"), "{out}");
    assert!(
        out.contains(" is deleted (its row is kept as the archive)"),
        "{out}"
    );
    assert!(
        out.contains("live on the simulator: 0 projects, 0 keys, 0 inboxes"),
        "{out}"
    );
}
