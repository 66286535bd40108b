//! The `pub use` items of the libraries, resolved to the module they take from, so the docs
//! rule can check what a private module that allows missing docs lends to the public API
//! (`pub use crate::operations::DeploymentStatus`).
//!
//! Only direct re-exports are followed: a `pub use` of a `pub(crate) use` is not traced
//! further. `pub(crate) use` makes nothing public and is ignored.

use syn::spanned::Spanned;
use syn::{Item, UseTree, Visibility};

use super::sources::{SourceFile, TargetKind, is_cfg_test};

/// One name a library makes public through `pub use`.
#[derive(Debug, Clone)]
pub struct ReExport {
    /// The member it belongs to.
    pub member: usize,
    /// The module it takes from, from the crate root (`["operations"]`).
    pub from: Vec<String>,
    /// The item's name there; `None` for a glob (`pub use x::*`).
    pub name: Option<String>,
    /// `path:line` of the `pub use`.
    pub at: String,
}

/// Every `pub use` in non-test library code.
pub fn collect(files: &[SourceFile]) -> Vec<ReExport> {
    let mut found = Vec::new();
    for file in files
        .iter()
        .filter(|f| f.target == TargetKind::Lib && !f.scope.test)
    {
        collect_items(file, &file.syntax.items, &file.module, &mut found);
    }
    found
}

fn collect_items(file: &SourceFile, items: &[Item], module: &[String], found: &mut Vec<ReExport>) {
    for item in items {
        match item {
            Item::Use(item) if matches!(item.vis, Visibility::Public(_)) && !is_cfg_test(&item.attrs) => {
                let at = file.at(item.span().start().line);
                let mut leaves = Vec::new();
                leaves_of(&item.tree, &mut Vec::new(), &mut leaves);
                for (path, name) in leaves {
                    if let Some(from) = resolve(module, &path) {
                        found.push(ReExport {
                            member: file.member,
                            from,
                            name,
                            at: at.clone(),
                        });
                    }
                }
            }
            Item::Mod(inner) if !is_cfg_test(&inner.attrs) => {
                if let Some((_, items)) = &inner.content {
                    let mut path = module.to_vec();
                    path.push(inner.ident.to_string());
                    collect_items(file, items, &path, found);
                }
            }
            _ => {}
        }
    }
}

/// `(module path as written, item name or None for a glob)` for every leaf of a use tree.
fn leaves_of(tree: &UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
    match tree {
        UseTree::Path(path) => {
            prefix.push(path.ident.to_string());
            leaves_of(&path.tree, prefix, out);
            prefix.pop();
        }
        UseTree::Name(name) => out.push((prefix.clone(), Some(name.ident.to_string()))),
        UseTree::Rename(rename) => out.push((prefix.clone(), Some(rename.ident.to_string()))),
        UseTree::Glob(_) => out.push((prefix.clone(), None)),
        UseTree::Group(group) => {
            for item in &group.items {
                leaves_of(item, prefix, out);
            }
        }
    }
}

/// A use path as a module path from the crate root: `crate::a` is `a`, `self::a` and `a` are
/// relative to `module`, each `super` goes up one. `None` when it leaves the crate.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut resolved = module.to_vec();
    let mut rest = path;
    match rest.first().map(String::as_str) {
        Some("crate") => {
            resolved.clear();
            rest = &rest[1..];
        }
        Some("self") => rest = &rest[1..],
        _ => {}
    }
    while rest.first().is_some_and(|s| s == "super") {
        resolved.pop()?;
        rest = &rest[1..];
    }
    resolved.extend(rest.iter().cloned());
    Some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(parts: &[&str]) -> Vec<String> {
        parts.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn use_paths_resolve_from_the_crate_root() {
        let types = strings(&["types"]);
        assert_eq!(
            resolve(&types, &strings(&["crate", "operations"])),
            Some(strings(&["operations"]))
        );
        assert_eq!(
            resolve(&types, &strings(&["super", "operations"])),
            Some(strings(&["operations"]))
        );
        assert_eq!(
            resolve(&types, &strings(&["wire"])),
            Some(strings(&["types", "wire"]))
        );
        assert_eq!(resolve(&[], &strings(&["super", "x"])), None);
    }
}
