//! Rule `unused-dependency`: every dependency a member lists is named by the code that can
//! use it — `[dependencies]` by the library and binaries, `[build-dependencies]` by
//! `build.rs`, `[dev-dependencies]` by any of the member's code or doctests.
//!
//! A crate counts as named when its name starts a path (`serde::Serialize`, `tokio::main`
//! in an attribute, `serde_json::json!` in a macro's arguments), follows `use` or
//! `extern crate`. Derive-only crates are covered because a derive needs its macro in scope
//! (`use serde::Serialize`). The token scan sees inside macro calls, which a syntax tree
//! does not parse.

use std::collections::BTreeSet;

use proc_macro2::{Spacing, TokenStream, TokenTree};

use super::manifest::{DependencyKind, Member};
use super::sources::{SourceFile, TargetKind};
use super::{Rule, Violation};

/// Dependencies that are needed although no code names them: `(member, dependency, why)`.
/// Each entry must say why; an entry that is no longer needed is itself a violation, so the
/// list cannot outlive its reasons.
const NEEDED_WITHOUT_A_PATH: &[(&str, &str, &str)] = &[];

/// Checks every member's dependency entries.
pub fn check(members: &[Member], files: &[SourceFile], violations: &mut Vec<Violation>) {
    for (index, member) in members.iter().enumerate() {
        let own: Vec<&SourceFile> = files.iter().filter(|f| f.member == index).collect();
        let named_by = |targets: &[TargetKind], doctests: bool| {
            let mut names = BTreeSet::new();
            for file in own.iter().filter(|f| targets.contains(&f.target)) {
                // The file parsed as a syntax tree already, so it lexes as tokens too.
                if let Ok(tokens) = file.text.parse::<TokenStream>() {
                    crate_references(tokens, &mut names);
                }
                if doctests {
                    doctest_references(&file.text, &mut names);
                }
            }
            names
        };
        let by_library_and_binaries = named_by(&[TargetKind::Lib, TargetKind::Bin], false);
        let by_build_script = named_by(&[TargetKind::Build], false);
        let by_any = named_by(
            &[
                TargetKind::Lib,
                TargetKind::Bin,
                TargetKind::Test,
                TargetKind::Example,
                TargetKind::Bench,
            ],
            true,
        );
        for dependency in &member.dependencies {
            let names = match dependency.kind {
                DependencyKind::Normal => &by_library_and_binaries,
                DependencyKind::Build => &by_build_script,
                DependencyKind::Dev => &by_any,
            };
            let named = names.contains(&dependency.crate_name());
            let allowed = NEEDED_WITHOUT_A_PATH
                .iter()
                .any(|(m, d, _)| *m == member.package && *d == dependency.key);
            let at = format!("{}:{}", member.manifest().display(), dependency.line);
            if !named && !allowed {
                violations.push(Violation::new(
                    Rule::UnusedDependency,
                    format!(
                        "{at}: {} in {} is never named",
                        dependency.key,
                        dependency.kind.table()
                    ),
                ));
            }
            if named && allowed {
                violations.push(Violation::new(
                    Rule::UnusedDependency,
                    format!(
                        "{at}: {} is named now; drop it from NEEDED_WITHOUT_A_PATH in xtask/src/tidy/dependencies.rs",
                        dependency.key
                    ),
                ));
            }
        }
    }
}

/// Adds every crate name `tokens` refers to: the first segment of a path, and what follows
/// `use` or `extern crate`.
pub fn crate_references(tokens: TokenStream, names: &mut BTreeSet<String>) {
    let trees: Vec<TokenTree> = tokens.into_iter().collect();
    for (i, tree) in trees.iter().enumerate() {
        match tree {
            TokenTree::Group(group) => crate_references(group.stream(), names),
            TokenTree::Ident(ident) => {
                let name = ident.to_string();
                if ["crate", "self", "super", "Self"].contains(&name.as_str()) {
                    continue;
                }
                let before = |back: usize| i.checked_sub(back).and_then(|j| trees.get(j));
                let is_ident = |tree: Option<&TokenTree>, word: &str| matches!(tree, Some(TokenTree::Ident(p)) if p == word);
                let after_use = is_ident(before(1), "use")
                    || (is_ident(before(1), "crate") && is_ident(before(2), "extern"));
                // `a::b::` names `a`, not `b`: a path's first segment follows no `::` (or only
                // a leading one, as in `::serde::Serialize`).
                let first_segment = !(i >= 2 && is_path_separator(&trees, i - 2))
                    || matches!(before(3), None | Some(TokenTree::Punct(_)));
                if (first_segment && is_path_separator(&trees, i + 1)) || after_use {
                    names.insert(name);
                }
            }
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
    }
}

/// `::` starting at `trees[i]`.
fn is_path_separator(trees: &[TokenTree], i: usize) -> bool {
    matches!(
        (trees.get(i), trees.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && a.spacing() == Spacing::Joint && b.as_char() == ':'
    )
}

/// Crate names used by the doc comments' code (`/// use railway_sim::…`): doctests may use
/// dev-dependencies.
fn doctest_references(text: &str, names: &mut BTreeSet<String>) {
    let code: String = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("///").or_else(|| l.strip_prefix("//!"))
        })
        .map(|l| l.trim_start().trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n");
    if let Ok(tokens) = code.parse::<TokenStream>() {
        crate_references(tokens, names);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(source: &str) -> Vec<String> {
        let mut names = BTreeSet::new();
        crate_references(source.parse().unwrap(), &mut names);
        names.into_iter().collect()
    }

    #[test]
    fn only_first_segments_name_crates() {
        assert_eq!(
            names(
                "use serde::Serialize; fn f() { a::b::c(); ::tokio::spawn(x); let y = <T as rand::Rng>::f; }"
            ),
            ["a", "rand", "serde", "tokio"]
        );
    }

    #[test]
    fn attributes_macros_and_use_lines_name_crates() {
        assert_eq!(
            names(
                "#[tokio::main] async fn main() { println!(\"{}\", serde_json::json!({})); } use secrecy; extern crate libc;"
            ),
            ["libc", "secrecy", "serde_json", "tokio"]
        );
    }

    #[test]
    fn a_dependency_no_code_names_fails() {
        use std::path::PathBuf;

        use super::super::manifest::{Dependency, DependencyKind};

        let dependency = |key: &str, kind, line| Dependency {
            key: key.into(),
            kind,
            line,
        };
        let member = Member {
            dir: PathBuf::from("crates/demo"),
            package: "demo".into(),
            dependencies: vec![
                dependency("serde", DependencyKind::Normal, 7),
                dependency("rand", DependencyKind::Normal, 8),
                dependency("tempfile", DependencyKind::Dev, 11),
            ],
            declared_targets: Vec::new(),
        };
        let library = SourceFile::for_test("crates/demo/src/lib.rs", &[], "use serde::Serialize;");
        let mut violations = Vec::new();
        check(&[member], &[library], &mut violations);
        let found: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert_eq!(
            found,
            [
                "tidy: unused-dependency: crates/demo/Cargo.toml:8: rand in [dependencies] is never named",
                "tidy: unused-dependency: crates/demo/Cargo.toml:11: tempfile in [dev-dependencies] is never named",
            ]
        );
    }

    #[test]
    fn crate_paths_name_no_crate() {
        assert!(
            names("use crate::x; pub(crate) fn f() { crate::y::z(); self::a::b(); super::c(); }").is_empty()
        );
    }
}
