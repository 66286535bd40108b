//! `cargo xtask tidy`: the repository-wide rules, checked in one place and run by
//! `cargo test` (`the_repository_is_tidy`), so a rule cannot silently rot.
//!
//! Each violation is printed as `tidy: <rule>: <where>`; any violation fails the task. The
//! rules live in the submodules, one subject each:
//! - `unused-dependency` ([`dependencies`]);
//! - `simulator-in-production` ([`production`]);
//! - `delete-project`, `project-deleter` and `environment-read` ([`call_sites`]);
//! - `missing-docs` ([`docs`]);
//! - `long-file` ([`size`]);
//! - `provider-call`, `provider-host`, `agent-variables`, `organisation-key-name` and
//!   `route-table` ([`boundaries`], on the calls and strings [`facts`] finds).
//!
//! Every rule has a test that shows it failing on a violation, next to the rule.

mod boundaries;
mod call_sites;
mod dependencies;
mod docs;
mod facts;
mod manifest;
mod production;
mod reexports;
mod size;
mod sources;

use std::fmt;
use std::path::{Path, PathBuf};

/// A repository-wide rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// A listed dependency no code names.
    UnusedDependency,
    /// `railway-sim` is linked into the production binary.
    SimulatorInProduction,
    /// `delete_project` is called outside the guard.
    DeleteProject,
    /// A `ProjectDeleter` is made outside the binary, test support and tooling.
    ProjectDeleter,
    /// An environment variable is read outside the binary's configuration.
    EnvironmentRead,
    /// A public item of a library has no doc comment.
    MissingDocs,
    /// A source file is over 600 lines (tests aside) without saying why.
    LongFile,
    /// AgentMail or Telnyx is called for an agent outside the service proxy.
    ProviderCall,
    /// A real provider's address is written outside the configuration's defaults.
    ProviderHost,
    /// An agent's variables are set outside the creation saga.
    AgentVariables,
    /// A library names an organisation key's variable.
    OrganisationKeyName,
    /// An API route is declared outside the route table.
    RouteTable,
}

impl Rule {
    /// Every rule, in the order they are reported.
    pub const ALL: [Rule; 12] = [
        Rule::UnusedDependency,
        Rule::SimulatorInProduction,
        Rule::DeleteProject,
        Rule::ProjectDeleter,
        Rule::EnvironmentRead,
        Rule::MissingDocs,
        Rule::LongFile,
        Rule::ProviderCall,
        Rule::ProviderHost,
        Rule::AgentVariables,
        Rule::OrganisationKeyName,
        Rule::RouteTable,
    ];

    /// The rule's name in tidy's output.
    pub fn name(self) -> &'static str {
        match self {
            Rule::UnusedDependency => "unused-dependency",
            Rule::SimulatorInProduction => "simulator-in-production",
            Rule::DeleteProject => "delete-project",
            Rule::ProjectDeleter => "project-deleter",
            Rule::EnvironmentRead => "environment-read",
            Rule::MissingDocs => "missing-docs",
            Rule::LongFile => "long-file",
            Rule::ProviderCall => "provider-call",
            Rule::ProviderHost => "provider-host",
            Rule::AgentVariables => "agent-variables",
            Rule::OrganisationKeyName => "organisation-key-name",
            Rule::RouteTable => "route-table",
        }
    }
}

/// One broken rule, and where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// `path:line: what`.
    pub at: String,
}

impl Violation {
    fn new(rule: Rule, at: String) -> Self {
        Self { rule, at }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tidy: {}: {}", self.rule.name(), self.at)
    }
}

/// What a run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Broken rules, sorted by rule and place.
    pub violations: Vec<Violation>,
    /// Private modules and items that allow missing docs, for a reviewer to see.
    pub docs_allowances: Vec<String>,
    /// Files read.
    pub files: usize,
}

/// The workspace this xtask was built in.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Checks every rule on the workspace at `root`. `Err` means tidy could not look (a file
/// that does not parse, `cargo tree` failing), not that a rule is broken.
pub fn check(root: &Path) -> Result<Report, String> {
    let members = manifest::members(root)?;
    let files = sources::load(root, &members)?;
    let packages: Vec<String> = members.iter().map(|m| m.package.clone()).collect();
    let mut report = Report {
        files: files.len(),
        ..Report::default()
    };
    dependencies::check(&members, &files, &mut report.violations);
    production::check(root, &mut report.violations)?;
    call_sites::check(&files, &mut report.violations);
    boundaries::check(&files, &mut report.violations);
    docs::check(
        &files,
        &packages,
        &mut report.violations,
        &mut report.docs_allowances,
    );
    size::check(&files, &mut report.violations);
    report.violations.sort();
    Ok(report)
}

/// `cargo xtask tidy`.
pub fn main(args: &[String]) -> Result<(), String> {
    if let Some(extra) = args.first() {
        return Err(format!("tidy takes no arguments (got {extra:?})"));
    }
    let report = check(&workspace_root())?;
    for allowance in &report.docs_allowances {
        println!("tidy: note: missing docs allowed for {allowance}");
    }
    for violation in &report.violations {
        println!("{violation}");
    }
    let counts: Vec<String> = Rule::ALL
        .iter()
        .map(|rule| {
            let n = report.violations.iter().filter(|v| v.rule == *rule).count();
            format!("{} {n}", rule.name())
        })
        .collect();
    println!("tidy: {} files; violations: {}", report.files, counts.join(", "));
    if report.violations.is_empty() {
        Ok(())
    } else {
        Err(format!("{} tidy violations", report.violations.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_tidy() {
        let report = check(&workspace_root()).unwrap();
        let violations: Vec<String> = report.violations.iter().map(ToString::to_string).collect();
        assert!(violations.is_empty(), "{}", violations.join("\n"));
    }
}
