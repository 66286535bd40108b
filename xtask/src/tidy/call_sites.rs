//! Rules about who may call what, found in syntax trees rather than by substring (a comment
//! or a string that mentions a name is not a call):
//! - `delete-project`: outside `railway-api` and test code, `delete_project` is called only by
//!   the provisioner's guard, which refuses projects the pool did not create;
//! - `project-deleter`: the capability to delete projects (`with_project_deleter`) is made only
//!   by the binary, the provisioner's test support, tests, benches, examples and xtask;
//! - `environment-read`: environment variables are read only by the binary's `config/` modules,
//!   test support, tests, examples and xtask (`env!`/`option_env!` are compile time, and fine).
//!
//! Macro arguments are not parsed by `syn`, so inside macro calls the tokens are scanned:
//! `delete_project(` there counts as a call, `env::var` as a read.

use proc_macro2::{Delimiter, Spacing, TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Attribute, ImplItemFn, Item, UseTree};

use super::facts::Recorder;
use super::sources::{SourceFile, TargetKind};
use super::{Rule, Violation};

/// The one file, outside `railway-api`, that may delete projects.
const GUARD: &str = "crates/provisioner/src/guard.rs";

/// Where `delete_project` is not a call of the client's method, or is its own home:
const DELETE_PROJECT_HOMES: &[&str] = &[
    // Defined and wrapped (`ProjectDeleter`) here.
    "crates/railway-api/src",
    // The simulator's `World::delete_project` is Railway's side of `projectDelete`, a
    // different function with the same name.
    "crates/railway-sim/src",
];

/// Who may create a `ProjectDeleter`, besides tests, benches, examples and xtask:
const PROJECT_DELETER_MAKERS: &[&str] = &[
    // Defined here.
    "crates/railway-api/src",
    // The binary composes the layers and hands the deleter to the provisioner.
    "bin/pool-manager/src/main.rs",
    // The pool under test of the provisioner's `testing` feature.
    "crates/provisioner/src/testing.rs",
    // The end-to-end harness.
    "tests/",
    // Developer tasks (benches, chaos run, demo).
    "xtask/",
];

/// Who may read environment variables, besides tests, benches and examples:
const ENVIRONMENT_READERS: &[&str] = &[
    // The modules that turn the environment into typed configuration, one per subject.
    "bin/pool-manager/src/config/",
    // Tests find their PostgreSQL through DATABASE_URL.
    "crates/store/src/testing.rs",
    // The end-to-end harness starts the binary with an environment of its own making.
    "tests/",
    // Developer tasks are configured like the tools they wrap.
    "xtask/",
];

/// The names whose calls are watched.
const WATCHED: &[&str] = &["delete_project", "with_project_deleter"];

/// What a file does that these rules care about.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Site {
    /// A call of (or reference to) one of [`WATCHED`].
    Call(&'static str),
    /// An environment read, as written (`std::env::var`).
    EnvironmentRead(String),
}

/// Checks every file against the three rules.
pub fn check(files: &[SourceFile], violations: &mut Vec<Violation>) {
    let mut guard_calls = 0;
    for file in files {
        let test_file = file.scope.test || file.target == TargetKind::Test;
        let tooling = matches!(file.target, TargetKind::Example | TargetKind::Bench);
        let in_any = |dirs: &[&str]| dirs.iter().any(|d| file.is_under(d));
        let mut sites = Sites::default();
        sites.visit_file(&file.syntax);
        for (line, site, test_code) in sites.found {
            if test_file || test_code {
                continue;
            }
            let at = file.at(line);
            match site {
                Site::Call("delete_project") if file.is_under(GUARD) => guard_calls += 1,
                Site::Call("delete_project") if !in_any(DELETE_PROJECT_HOMES) => {
                    violations.push(Violation::new(
                        Rule::DeleteProject,
                        format!("{at}: delete_project is called outside {GUARD}"),
                    ))
                }
                Site::Call("with_project_deleter") if !tooling && !in_any(PROJECT_DELETER_MAKERS) => {
                    violations.push(Violation::new(
                        Rule::ProjectDeleter,
                        format!("{at}: with_project_deleter is called outside the binary, test support and tooling"),
                    ));
                }
                Site::EnvironmentRead(read)
                    if !tooling && file.target != TargetKind::Build && !in_any(ENVIRONMENT_READERS) =>
                {
                    violations.push(Violation::new(
                        Rule::EnvironmentRead,
                        format!("{at}: {read} (only bin/pool-manager/src/config/ reads the environment)"),
                    ));
                }
                Site::Call(_) | Site::EnvironmentRead(_) => {}
            }
        }
    }
    if guard_calls == 0 {
        violations.push(Violation::new(
            Rule::DeleteProject,
            format!("{GUARD}: no call of delete_project found (has the guard moved? update this rule)"),
        ));
    }
}

/// Functions of `std::env` that read variables at run time.
const ENVIRONMENT_FUNCTIONS: &[&str] = &["var", "var_os", "vars", "vars_os"];

/// Collects the sites of one file: `(line, site, inside test code)`.
type Sites = Recorder<Site>;

impl Sites {
    /// `a::b::c` as segments.
    fn environment_read(segments: &[String]) -> Option<String> {
        let n = segments.len();
        (n >= 2 && segments[n - 2] == "env" && ENVIRONMENT_FUNCTIONS.contains(&segments[n - 1].as_str()))
            .then(|| segments.join("::"))
    }

    fn scan_macro_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(group) => self.scan_macro_tokens(group.stream()),
                TokenTree::Ident(ident) => {
                    let name = ident.to_string();
                    let called = matches!(trees.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
                    if let Some(watched) = WATCHED.iter().find(|w| **w == name).filter(|_| called) {
                        self.record(ident.span().start().line, Site::Call(watched));
                    }
                    let separated = matches!(
                        (trees.get(i + 1), trees.get(i + 2)),
                        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
                            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
                    );
                    if name == "env"
                        && separated
                        && let Some(TokenTree::Ident(function)) = trees.get(i + 3)
                        && let Some(read) = Self::environment_read(&[name.clone(), function.to_string()])
                    {
                        self.record(ident.span().start().line, Site::EnvironmentRead(read));
                    }
                }
                TokenTree::Punct(_) | TokenTree::Literal(_) => {}
            }
        }
    }

    /// `use std::env::var;`, `use std::env::{self, var_os};`, `use std::env::*;`.
    fn scan_use(&mut self, tree: &UseTree, prefix: &mut Vec<String>) {
        let imports_from_env = prefix.last().is_some_and(|p| p == "env");
        match tree {
            UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.scan_use(&path.tree, prefix);
                prefix.pop();
            }
            UseTree::Name(name) => {
                let mut segments = prefix.clone();
                segments.push(name.ident.to_string());
                if let Some(read) = Self::environment_read(&segments) {
                    self.record(
                        name.ident.span().start().line,
                        Site::EnvironmentRead(format!("use {read}")),
                    );
                }
            }
            UseTree::Rename(rename) => {
                let mut segments = prefix.clone();
                segments.push(rename.ident.to_string());
                if let Some(read) = Self::environment_read(&segments) {
                    self.record(
                        rename.ident.span().start().line,
                        Site::EnvironmentRead(format!("use {read}")),
                    );
                }
            }
            UseTree::Glob(glob) if imports_from_env => {
                let line = glob.star_token.span().start().line;
                self.record(
                    line,
                    Site::EnvironmentRead(format!("use {}::*", prefix.join("::"))),
                );
            }
            UseTree::Glob(_) => {}
            UseTree::Group(group) => {
                for item in &group.items {
                    self.scan_use(item, prefix);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Sites {
    fn visit_item(&mut self, item: &'ast Item) {
        self.within(item_attrs(item), |s| visit::visit_item(s, item));
    }

    fn visit_impl_item_fn(&mut self, function: &'ast ImplItemFn) {
        self.within(&function.attrs, |s| visit::visit_impl_item_fn(s, function));
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let name = call.method.to_string();
        if let Some(watched) = WATCHED.iter().find(|w| **w == name) {
            self.record(call.method.span().start().line, Site::Call(watched));
        }
        visit::visit_expr_method_call(self, call);
    }

    /// Paths in expressions: `Type::delete_project(…)` and `std::env::var("X")` as calls, and
    /// as values (`.map(std::env::var)`).
    fn visit_expr_path(&mut self, path: &'ast syn::ExprPath) {
        let segments: Vec<String> = path.path.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = path.span().start().line;
        if let Some(watched) = segments
            .last()
            .and_then(|last| WATCHED.iter().find(|w| *w == last))
        {
            self.record(line, Site::Call(watched));
        }
        if let Some(read) = Self::environment_read(&segments) {
            self.record(line, Site::EnvironmentRead(read));
        }
        visit::visit_expr_path(self, path);
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.scan_use(&item.tree, &mut Vec::new());
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_macro_tokens(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
}

/// The attributes of any item.
pub fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(i) => &i.attrs,
        Item::Enum(i) => &i.attrs,
        Item::ExternCrate(i) => &i.attrs,
        Item::Fn(i) => &i.attrs,
        Item::ForeignMod(i) => &i.attrs,
        Item::Impl(i) => &i.attrs,
        Item::Macro(i) => &i.attrs,
        Item::Mod(i) => &i.attrs,
        Item::Static(i) => &i.attrs,
        Item::Struct(i) => &i.attrs,
        Item::Trait(i) => &i.attrs,
        Item::TraitAlias(i) => &i.attrs,
        Item::Type(i) => &i.attrs,
        Item::Union(i) => &i.attrs,
        Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites(source: &str) -> Vec<(Site, bool)> {
        let mut sites = Sites::default();
        sites.visit_file(&syn::parse_file(source).unwrap());
        sites
            .found
            .into_iter()
            .map(|(_, site, test)| (site, test))
            .collect()
    }

    #[test]
    fn calls_are_found_as_methods_paths_and_in_macros_but_not_in_comments_or_strings() {
        let found = sites(
            r#"
            // deleter.delete_project(&id) in a comment is no call
            fn f() {
                let s = "delete_project(x)";
                deleter.delete_project(&id);
                ProjectDeleter::delete_project(&deleter, &id);
                assert!(d.delete_project(&id).is_ok());
            }
            #[cfg(test)]
            mod tests { fn g() { d.delete_project(&id); } }
            "#,
        );
        assert_eq!(
            found,
            [
                (Site::Call("delete_project"), false),
                (Site::Call("delete_project"), false),
                (Site::Call("delete_project"), false),
                (Site::Call("delete_project"), true),
            ]
        );
    }

    fn violations(files: &[SourceFile]) -> Vec<String> {
        let mut found = Vec::new();
        check(files, &mut found);
        found.iter().map(ToString::to_string).collect()
    }

    /// The guard, which must call `delete_project` once for the rule to know it has not moved.
    fn guard() -> SourceFile {
        SourceFile::for_test(
            GUARD,
            &["guard"],
            "async fn f() { deleter.delete_project(&id).await; }",
        )
    }

    #[test]
    fn delete_project_fails_outside_the_guard_and_when_the_guard_has_moved() {
        let teardown = SourceFile::for_test(
            "crates/provisioner/src/teardown.rs",
            &["teardown"],
            "async fn f() { deleter.delete_project(&id).await; }",
        );
        assert_eq!(
            violations(&[guard(), teardown]),
            [
                "tidy: delete-project: crates/provisioner/src/teardown.rs:1: delete_project is called outside crates/provisioner/src/guard.rs"
            ]
        );
        assert_eq!(
            violations(&[]),
            [
                "tidy: delete-project: crates/provisioner/src/guard.rs: no call of delete_project found (has the guard moved? update this rule)"
            ]
        );
    }

    #[test]
    fn project_deleter_fails_outside_the_binary_and_tooling() {
        let reconciler = SourceFile::for_test(
            "crates/reconciler/src/tick.rs",
            &["tick"],
            "fn f() { let (c, d) = RailwayClient::with_project_deleter(config)?; }",
        );
        let binary = SourceFile::for_test(
            "bin/pool-manager/src/main.rs",
            &[],
            "fn f() { let (c, d) = RailwayClient::with_project_deleter(config)?; }",
        );
        assert_eq!(
            violations(&[guard(), reconciler, binary]),
            [
                "tidy: project-deleter: crates/reconciler/src/tick.rs:1: with_project_deleter is called outside the binary, test support and tooling"
            ]
        );
    }

    #[test]
    fn environment_read_fails_outside_the_configuration() {
        let library = SourceFile::for_test(
            "crates/provisioner/src/config.rs",
            &["config"],
            r#"fn f() { let a = std::env::var("AGENT_IMAGE"); }"#,
        );
        let configuration = SourceFile::for_test(
            "bin/pool-manager/src/config/agents.rs",
            &["config", "agents"],
            r#"fn f() { let a = std::env::var("AGENT_IMAGE"); }"#,
        );
        assert_eq!(
            violations(&[guard(), library, configuration]),
            [
                "tidy: environment-read: crates/provisioner/src/config.rs:1: std::env::var (only bin/pool-manager/src/config/ reads the environment)"
            ]
        );
    }

    #[test]
    fn environment_reads_are_found_in_every_spelling() {
        let found = sites(
            r#"
            use std::env::var_os;
            fn f() {
                let a = std::env::var("A");
                let b = env::vars();
                let c = format!("{:?}", std::env::var("C"));
                let d = env!("CARGO_PKG_VERSION");
                let e = std::env::args();
            }
            "#,
        );
        let reads: Vec<String> = found
            .into_iter()
            .filter_map(|(site, _)| match site {
                Site::EnvironmentRead(read) => Some(read),
                Site::Call(_) => None,
            })
            .collect();
        assert_eq!(
            reads,
            ["use std::env::var_os", "std::env::var", "env::vars", "env::var"]
        );
    }
}
