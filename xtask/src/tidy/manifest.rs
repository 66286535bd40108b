//! The few facts tidy needs from the workspace's `Cargo.toml` files: the members, each
//! member's package name, dependency entries and explicit target paths.
//!
//! The `toml` crate is not in `Cargo.lock`, and these manifests use a small, regular subset
//! of TOML, so they are read line by line instead of adding a parser for the whole language.

use std::path::{Path, PathBuf};

/// Which table of a manifest a dependency is listed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DependencyKind {
    /// `[dependencies]`: used by the library and binaries.
    Normal,
    /// `[dev-dependencies]`: used by tests, examples, benches and `#[cfg(test)]` code.
    Dev,
    /// `[build-dependencies]`: used by `build.rs`.
    Build,
}

impl DependencyKind {
    /// The table's name as written in `Cargo.toml`.
    pub fn table(self) -> &'static str {
        match self {
            Self::Normal => "[dependencies]",
            Self::Dev => "[dev-dependencies]",
            Self::Build => "[build-dependencies]",
        }
    }
}

/// One dependency entry of a member's manifest.
#[derive(Debug, Clone)]
pub struct Dependency {
    /// The key, as sources name it once `-` becomes `_` (a `package = …` rename keeps the key).
    pub key: String,
    /// The table it is listed in.
    pub kind: DependencyKind,
    /// Line in `Cargo.toml`, 1-based.
    pub line: usize,
}

impl Dependency {
    /// The name sources use for it: `pool-store` is `pool_store`.
    pub fn crate_name(&self) -> String {
        self.key.replace('-', "_")
    }
}

/// A target whose root file the manifest names (`[lib] path = …`, `[[test]] path = …`).
#[derive(Debug, Clone)]
pub struct DeclaredTarget {
    /// The table: `lib`, `bin`, `test`, `example` or `bench`.
    pub table: String,
    /// Its root file, relative to the member's directory.
    pub path: PathBuf,
}

/// What tidy knows about one member crate.
#[derive(Debug, Clone)]
pub struct Member {
    /// Directory, relative to the workspace root (`crates/store`).
    pub dir: PathBuf,
    /// `[package] name`.
    pub package: String,
    /// Every dependency entry, in file order.
    pub dependencies: Vec<Dependency>,
    /// Targets with an explicit `path`.
    pub declared_targets: Vec<DeclaredTarget>,
}

impl Member {
    /// `Cargo.toml` of this member, relative to the workspace root.
    pub fn manifest(&self) -> PathBuf {
        self.dir.join("Cargo.toml")
    }
}

/// The members listed in the root manifest's `[workspace] members`, each read.
pub fn members(root: &Path) -> Result<Vec<Member>, String> {
    let text = read(&root.join("Cargo.toml"))?;
    let mut members = Vec::new();
    for dir in workspace_members(&text) {
        let dir = PathBuf::from(dir);
        let manifest = read(&root.join(&dir).join("Cargo.toml"))?;
        members.push(member(dir, &manifest)?);
    }
    if members.is_empty() {
        return Err("the root Cargo.toml lists no workspace members".into());
    }
    Ok(members)
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The strings of `members = [ … ]`, which may span lines.
fn workspace_members(text: &str) -> Vec<String> {
    let mut in_workspace = false;
    let mut collecting = false;
    let mut members = Vec::new();
    for line in text.lines().map(strip_comment) {
        let line = line.trim();
        if let Some(header) = header(line) {
            in_workspace = header == "workspace";
            collecting = false;
            continue;
        }
        if in_workspace && !collecting && key_of(line).as_deref() == Some("members") {
            collecting = true;
        }
        if collecting {
            members.extend(quoted_strings(line));
            if line.contains(']') {
                collecting = false;
            }
        }
    }
    members
}

fn member(dir: PathBuf, text: &str) -> Result<Member, String> {
    let mut package = None;
    let mut dependencies = Vec::new();
    let mut declared_targets = Vec::new();
    let mut table = String::new();
    // Open brackets of a value that continues on the next lines (a multi-line array).
    let mut depth: i32 = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim().to_string();
        let continues = depth > 0;
        depth += bracket_balance(&line);
        if continues || line.is_empty() {
            continue;
        }
        if let Some(name) = header(&line) {
            depth = 0;
            table = name.to_string();
            // `[dependencies.foo]` names one dependency in its header.
            if let Some((kind, key)) = dependency_table(&table).and_then(|k| Some((k, dotted_key(&table)?))) {
                dependencies.push(Dependency {
                    key,
                    kind,
                    line: index + 1,
                });
            }
            continue;
        }
        let Some(key) = key_of(&line) else { continue };
        if table == "package" && key == "name" {
            package = quoted_strings(&line).into_iter().next();
        } else if let Some(kind) = dependency_table(&table).filter(|_| dotted_key(&table).is_none()) {
            dependencies.push(Dependency {
                key,
                kind,
                line: index + 1,
            });
        } else if ["lib", "bin", "test", "example", "bench"].contains(&table.as_str())
            && key == "path"
            && let Some(path) = quoted_strings(&line).into_iter().next()
        {
            declared_targets.push(DeclaredTarget {
                table: table.clone(),
                path: PathBuf::from(path),
            });
        }
    }
    let package = package.ok_or_else(|| format!("{}/Cargo.toml has no [package] name", dir.display()))?;
    Ok(Member {
        dir,
        package,
        dependencies,
        declared_targets,
    })
}

/// `[x]` and `[[x]]` headers, without the brackets.
fn header(line: &str) -> Option<&str> {
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix('[')
        .and_then(|i| i.strip_suffix(']'))
        .unwrap_or(inner);
    Some(inner.trim())
}

/// The dependency kind of a table: `dependencies`, `dev-dependencies`,
/// `target.'cfg(unix)'.build-dependencies`, `dependencies.foo`, …
fn dependency_table(table: &str) -> Option<DependencyKind> {
    let table = table.strip_prefix("target.").map_or(table, |rest| {
        // Skip the target's name, which may be a quoted cfg with dots in it.
        rest.rsplit_once("'.")
            .or_else(|| rest.rsplit_once("\"."))
            .map_or(rest, |(_, after)| after)
    });
    let first = table.split('.').next()?;
    match first {
        "dependencies" => Some(DependencyKind::Normal),
        "dev-dependencies" => Some(DependencyKind::Dev),
        "build-dependencies" => Some(DependencyKind::Build),
        _ => None,
    }
}

/// `foo` of `dependencies.foo`.
fn dotted_key(table: &str) -> Option<String> {
    let (_, key) = table.split_once("dependencies.")?;
    Some(key.trim_matches(['"', '\'']).to_string())
}

/// The bare key a `key = …` or `key.sub = …` line starts with.
fn key_of(line: &str) -> Option<String> {
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .unwrap_or(line.len());
    let key = &line[..end];
    let rest = line[end..].trim_start();
    (!key.is_empty() && (rest.starts_with('=') || rest.starts_with('.'))).then(|| key.to_string())
}

/// The line without a trailing `# comment` (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = None;
    for (i, c) in line.char_indices() {
        match (c, in_string) {
            ('"' | '\'', None) => in_string = Some(c),
            (c, Some(open)) if c == open => in_string = None,
            ('#', None) => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Opened minus closed `[`/`{` outside strings: above zero, the value goes on.
fn bracket_balance(line: &str) -> i32 {
    let mut balance = 0;
    let mut in_string = None;
    for c in line.chars() {
        match (c, in_string) {
            ('"' | '\'', None) => in_string = Some(c),
            (c, Some(open)) if c == open => in_string = None,
            ('[' | '{', None) => balance += 1,
            (']' | '}', None) => balance -= 1,
            _ => {}
        }
    }
    // A header line (`[lib]`) balances itself; only values can stay open.
    balance
}

/// The contents of the `"…"` strings on a line.
fn quoted_strings(line: &str) -> Vec<String> {
    line.split('"').skip(1).step_by(2).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_way_of_listing_a_dependency_is_read() {
        let text = r#"
[package]
name = "pool-demo" # a comment
[dependencies]
tokio.workspace = true
serde = { workspace = true, features = [
    "derive",
] }
plain = "1"
[dev-dependencies]
insta.workspace = true
[target.'cfg(unix)'.dependencies]
libc = "0.2"
[build-dependencies.cc]
version = "1"
[[test]]
name = "service"
path = "e2e/service.rs"
"#;
        let member = member(PathBuf::from("crates/demo"), text).unwrap();
        assert_eq!(member.package, "pool-demo");
        let listed: Vec<(&str, DependencyKind)> = member
            .dependencies
            .iter()
            .map(|d| (d.key.as_str(), d.kind))
            .collect();
        assert_eq!(
            listed,
            [
                ("tokio", DependencyKind::Normal),
                ("serde", DependencyKind::Normal),
                ("plain", DependencyKind::Normal),
                ("insta", DependencyKind::Dev),
                ("libc", DependencyKind::Normal),
                ("cc", DependencyKind::Build),
            ]
        );
        assert_eq!(member.declared_targets[0].path, PathBuf::from("e2e/service.rs"));
    }

    #[test]
    fn members_may_span_lines() {
        let text = "[workspace]\nresolver = \"3\"\nmembers = [\n  \"crates/a\", # why\n  \"xtask\",\n]\n";
        assert_eq!(workspace_members(text), ["crates/a", "xtask"]);
    }
}
