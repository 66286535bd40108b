//! Rule `simulator-in-production`: `railway-sim` is not in the production binary's dependency
//! graph. Cargo resolves the graph (features included), so tidy asks `cargo tree` rather than
//! reading manifests itself: a feature that pulls the simulator in is caught as well.

use std::path::Path;
use std::process::Command;

use super::{Rule, Violation};

/// The production binary's package.
const PRODUCTION_PACKAGE: &str = "pool-manager";

/// The package that must not be linked into it.
const SIMULATOR_PACKAGE: &str = "railway-sim";

/// Runs `cargo tree -p pool-manager -e normal` and looks for the simulator in it.
pub fn check(root: &Path, violations: &mut Vec<Violation>) -> Result<(), String> {
    // Under `cargo test` and `cargo run`, CARGO is the cargo that started us.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(&cargo)
        .args(["tree", "--quiet", "-p", PRODUCTION_PACKAGE, "-e", "normal"])
        .args(["--prefix", "none", "--format", "{p}"])
        .current_dir(root)
        .output()
        .map_err(|e| format!("could not run {cargo} tree: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{cargo} tree -p {PRODUCTION_PACKAGE} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    violations.extend(simulator_in(&String::from_utf8_lossy(&output.stdout))?);
    Ok(())
}

/// The violation, if `cargo tree`'s listing of the production binary (`{p}` a line) holds the
/// simulator.
fn simulator_in(tree: &str) -> Result<Option<Violation>, String> {
    if !tree
        .lines()
        .any(|l| l.starts_with(&format!("{PRODUCTION_PACKAGE} ")))
    {
        return Err(format!("cargo tree printed no {PRODUCTION_PACKAGE}: {tree}"));
    }
    Ok(tree
        .lines()
        .find(|l| l.starts_with(&format!("{SIMULATOR_PACKAGE} ")))
        .map(|line| {
            Violation::new(
                Rule::SimulatorInProduction,
                format!(
                    "`cargo tree -p {PRODUCTION_PACKAGE} -e normal` contains {} (see `cargo tree -p {PRODUCTION_PACKAGE} -e normal -i {SIMULATOR_PACKAGE}`)",
                    line.trim()
                ),
            )
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulator_in_the_production_tree_fails() {
        let clean = "pool-manager v0.1.0 (/w/bin/pool-manager)\npool-http v0.1.0 (/w/crates/http)\n";
        assert_eq!(simulator_in(clean), Ok(None));
        let linked = format!("{clean}railway-sim v0.1.0 (/w/crates/railway-sim)\n");
        assert_eq!(
            simulator_in(&linked).unwrap().map(|v| v.to_string()).as_deref(),
            Some(
                "tidy: simulator-in-production: `cargo tree -p pool-manager -e normal` contains railway-sim v0.1.0 (/w/crates/railway-sim) (see `cargo tree -p pool-manager -e normal -i railway-sim`)"
            )
        );
        assert!(
            simulator_in("pool-http v0.1.0\n").is_err(),
            "no pool-manager line: tidy cannot tell"
        );
    }
}
