//! `long-file`: no source file is longer than [`MAX_LINES`] lines, test code aside, unless its
//! first line is a `//! Long because …` comment saying why. A long file usually hides a subject
//! that wants a module of its own; the rule makes keeping one long a decision someone wrote
//! down rather than something that happened.
//!
//! Test code does not count: test targets, modules under `#[cfg(test)]` (in their own files or
//! inline) and `#[test]` functions. Generated code is not in the source tree (`build.rs` writes
//! it to `OUT_DIR`), and a file marked `@generated` on its first line is skipped too.

use syn::spanned::Spanned;

use super::call_sites::item_attrs;
use super::sources::{SourceFile, TargetKind, is_test_item};
use super::{Rule, Violation};

/// The most lines a file may have (test code aside) without saying why.
pub const MAX_LINES: usize = 600;

/// How the first line of a long file starts when it says why.
pub const REASON_PREFIX: &str = "//! Long because";

/// Checks every file.
pub fn check(files: &[SourceFile], violations: &mut Vec<Violation>) {
    for file in files {
        if file.scope.test || file.target == TargetKind::Test {
            continue;
        }
        let first_line = file.text.lines().next().unwrap_or_default();
        if first_line.starts_with(REASON_PREFIX) || first_line.contains("@generated") {
            continue;
        }
        let lines = counted_lines(file);
        if lines > MAX_LINES {
            violations.push(Violation::new(
                Rule::LongFile,
                format!(
                    "{}: {lines} lines besides tests (at most {MAX_LINES}): split it by subject, or say why on its first line (`{REASON_PREFIX} …`)",
                    file.path.display()
                ),
            ));
        }
    }
}

/// The file's lines, less those of its top-level test items (`#[cfg(test)] mod tests { … }`,
/// `#[test] fn …`).
fn counted_lines(file: &SourceFile) -> usize {
    let total = file.text.lines().count();
    let test_lines: usize = file
        .syntax
        .items
        .iter()
        .filter(|item| is_test_item(item_attrs(item)))
        .map(|item| {
            let span = item.span();
            span.end().line + 1 - span.start().line
        })
        .sum();
    total.saturating_sub(test_lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: String) -> SourceFile {
        SourceFile::for_test(path, &["big"], &text)
    }

    /// `n` lines of code after `first`.
    fn source(first: &str, n: usize, tests: usize) -> String {
        let mut text = format!("{first}\n");
        for i in 0..n {
            text.push_str(&format!("pub const C{i}: u32 = {i};\n"));
        }
        if tests > 0 {
            text.push_str("#[cfg(test)]\nmod tests {\n");
            for i in 0..tests {
                text.push_str(&format!("    const T{i}: u32 = {i};\n"));
            }
            text.push_str("}\n");
        }
        text
    }

    fn violations(files: &[SourceFile]) -> Vec<String> {
        let mut found = Vec::new();
        check(files, &mut found);
        found.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_long_file_fails_unless_its_first_line_says_why_and_tests_do_not_count() {
        let long = file("crates/demo/src/big.rs", source("//! Big.", MAX_LINES, 0));
        assert_eq!(
            violations(&[long]),
            [format!(
                "tidy: long-file: crates/demo/src/big.rs: {} lines besides tests (at most {MAX_LINES}): split it by subject, or say why on its first line (`//! Long because …`)",
                MAX_LINES + 1
            )]
        );
        let explained = file(
            "crates/demo/src/big.rs",
            source("//! Long because one table lists every route.", MAX_LINES, 0),
        );
        let at_the_limit = file("crates/demo/src/limit.rs", source("//! Limit.", MAX_LINES - 1, 0));
        let mostly_tests = file("crates/demo/src/tested.rs", source("//! Tested.", 300, 500));
        let mut test_module = file("crates/demo/src/tests.rs", source("//! Tests.", 900, 0));
        test_module.scope.test = true;
        assert!(
            violations(&[explained, at_the_limit, mostly_tests, test_module]).is_empty(),
            "a reason, the limit itself, inline tests and test modules are fine"
        );
    }
}
