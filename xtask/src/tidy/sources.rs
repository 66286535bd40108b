//! Every Rust file of the workspace, parsed, and where it sits: which member and target it
//! belongs to, and whether the module that holds it is test code, reachable from outside the
//! crate, or a private module that allows missing docs.
//!
//! Files are found the way the compiler finds them, by following `mod` declarations from each
//! target's root, so a file's context (`#[cfg(test)]`, `pub mod`) comes from its declaration
//! rather than from its name.

use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::{Attribute, Item, Meta, Visibility};

use super::manifest::Member;

/// The kind of Cargo target a file is compiled into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The library.
    Lib,
    /// A binary.
    Bin,
    /// An integration test (`tests/`, `[[test]]`).
    Test,
    /// An example (`examples/`).
    Example,
    /// A benchmark (`benches/`).
    Bench,
    /// The build script.
    Build,
}

/// Where a module sits, as its declarations say.
#[derive(Debug, Clone)]
pub struct ModuleScope {
    /// Under `#[cfg(test)]`, or in a test target.
    pub test: bool,
    /// Every module on the way from the crate root is `pub`.
    pub reachable: bool,
    /// The private module (`path:line`) whose `allow(missing_docs)` covers this one.
    pub docs_allowed_by: Option<String>,
}

/// How a parent declared a file's module (`pub mod x;`).
#[derive(Debug, Clone)]
pub struct ModuleDeclaration {
    /// `path:line` of the `mod` item.
    pub at: String,
    /// Declared `pub` (not `pub(crate)`).
    pub public: bool,
    /// The declaration carries a `///` doc comment.
    pub documented: bool,
}

/// One parsed file.
pub struct SourceFile {
    /// Index of its member in the list tidy was given.
    pub member: usize,
    /// Relative to the workspace root.
    pub path: PathBuf,
    /// The target it is compiled into.
    pub target: TargetKind,
    /// The module's context.
    pub scope: ModuleScope,
    /// `None` for a target's root file.
    pub declaration: Option<ModuleDeclaration>,
    /// The module's path from the crate root (`["operations"]`; empty for the root).
    pub module: Vec<String>,
    /// The file's text.
    pub text: String,
    /// The file's syntax tree.
    pub syntax: syn::File,
}

impl SourceFile {
    /// `path:line` for a line of this file.
    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.path.display())
    }

    /// Is this file in `dir` (relative to the workspace root)?
    pub fn is_under(&self, dir: &str) -> bool {
        self.path.starts_with(dir)
    }
}

#[cfg(test)]
impl SourceFile {
    /// A library file of the first member, not test code, parsed from `text`: for the rules'
    /// tests. Reachable from outside the crate when it is the root (`module` empty).
    pub fn for_test(path: &str, module: &[&str], text: &str) -> Self {
        Self {
            member: 0,
            path: PathBuf::from(path),
            target: TargetKind::Lib,
            scope: ModuleScope {
                test: false,
                reachable: module.is_empty(),
                docs_allowed_by: None,
            },
            declaration: None,
            module: module.iter().map(ToString::to_string).collect(),
            text: text.into(),
            syntax: syn::parse_file(text).unwrap(),
        }
    }
}

/// Every file reachable from the targets of every member.
pub fn load(root: &Path, members: &[Member]) -> Result<Vec<SourceFile>, String> {
    let mut files = Vec::new();
    for (index, member) in members.iter().enumerate() {
        for (target, path) in targets(root, member)? {
            let scope = ModuleScope {
                test: matches!(target, TargetKind::Test),
                reachable: true,
                docs_allowed_by: None,
            };
            let walk = Walk {
                root,
                member: index,
                target,
            };
            walk.file(&path, Vec::new(), scope, None, &mut files)?;
        }
    }
    Ok(files)
}

/// The root file of each target of a member, found as Cargo finds them.
fn targets(root: &Path, member: &Member) -> Result<Vec<(TargetKind, PathBuf)>, String> {
    let dir = &member.dir;
    let mut found = Vec::new();
    let mut add = |kind, path: PathBuf| {
        if root.join(&path).is_file() && !found.iter().any(|(_, p)| p == &path) {
            found.push((kind, path));
        }
    };
    for declared in &member.declared_targets {
        let kind = match declared.table.as_str() {
            "lib" => TargetKind::Lib,
            "bin" => TargetKind::Bin,
            "test" => TargetKind::Test,
            "example" => TargetKind::Example,
            _ => TargetKind::Bench,
        };
        add(kind, dir.join(&declared.path));
    }
    add(TargetKind::Lib, dir.join("src/lib.rs"));
    add(TargetKind::Bin, dir.join("src/main.rs"));
    add(TargetKind::Build, dir.join("build.rs"));
    for (sub, kind) in [
        ("src/bin", TargetKind::Bin),
        ("tests", TargetKind::Test),
        ("examples", TargetKind::Example),
        ("benches", TargetKind::Bench),
    ] {
        for path in target_roots(&root.join(dir).join(sub))? {
            add(kind, dir.join(sub).join(path));
        }
    }
    Ok(found)
}

/// `x.rs` and `x/main.rs` in an auto-discovery directory such as `tests/`.
fn target_roots(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut roots = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = PathBuf::from(entry.file_name());
        if entry.path().is_dir() {
            if entry.path().join("main.rs").is_file() {
                roots.push(name.join("main.rs"));
            }
        } else if name.extension().is_some_and(|e| e == "rs") {
            roots.push(name);
        }
    }
    roots.sort();
    Ok(roots)
}

/// A module file found by its declaration: (file, module path, scope, declaration).
type Declared = (PathBuf, Vec<String>, ModuleScope, ModuleDeclaration);

/// Where a list of items sits: its file, the directories its `mod` declarations resolve in,
/// and its module path.
#[derive(Clone, Copy)]
struct Place<'a> {
    path: &'a Path,
    parent: &'a Path,
    children_dir: &'a Path,
    inline: bool,
    module: &'a [String],
}

struct Walk<'a> {
    root: &'a Path,
    member: usize,
    target: TargetKind,
}

impl Walk<'_> {
    fn file(
        &self,
        path: &Path,
        module: Vec<String>,
        scope: ModuleScope,
        declaration: Option<ModuleDeclaration>,
        files: &mut Vec<SourceFile>,
    ) -> Result<(), String> {
        let full = self.root.join(path);
        let text =
            std::fs::read_to_string(&full).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let syntax = syn::parse_file(&text).map_err(|e| {
            let line = e.span().start().line;
            format!("cannot parse {}:{line}: {e}", path.display())
        })?;
        let mut scope = scope;
        // `#![allow(missing_docs)]` at the top of a private module's own file.
        if scope.docs_allowed_by.is_none()
            && allows_missing_docs(&syntax.attrs)
            && declaration.as_ref().is_some_and(|d| !d.public)
        {
            let line = syntax
                .attrs
                .iter()
                .find(|a| is_allow_missing_docs(a))
                .map_or(1, |a| a.span().start().line);
            scope.docs_allowed_by = Some(format!("{}:{line}", path.display()));
        }
        // A root file (and `mod.rs`) holds its children beside it; `a.rs` holds them in `a/`.
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let children_dir = if module.is_empty() || path.file_name().is_some_and(|n| n == "mod.rs") {
            parent.clone()
        } else {
            parent.join(path.file_stem().unwrap_or_default())
        };
        let mut declared = Vec::new();
        let place = Place {
            path,
            parent: &parent,
            children_dir: &children_dir,
            inline: false,
            module: &module,
        };
        self.declarations(&place, &syntax.items, &scope, &mut declared);
        files.push(SourceFile {
            member: self.member,
            path: path.to_path_buf(),
            target: self.target,
            scope,
            declaration,
            module,
            text,
            syntax,
        });
        for (child, child_module, child_scope, child_declaration) in declared {
            self.file(&child, child_module, child_scope, Some(child_declaration), files)?;
        }
        Ok(())
    }

    /// The `mod x;` items of `items`, inline modules included, with the file each names.
    fn declarations(&self, place: &Place<'_>, items: &[Item], scope: &ModuleScope, out: &mut Vec<Declared>) {
        let Place {
            path,
            parent,
            children_dir,
            inline,
            module: module_path,
        } = *place;
        for item in items {
            let Item::Mod(module) = item else { continue };
            let name = module.ident.to_string();
            let line = module.span().start().line;
            let at = format!("{}:{line}", path.display());
            let public = matches!(module.vis, Visibility::Public(_));
            let child_scope = ModuleScope {
                test: scope.test || is_cfg_test(&module.attrs),
                reachable: scope.reachable && public,
                docs_allowed_by: scope
                    .docs_allowed_by
                    .clone()
                    .or_else(|| (!public && allows_missing_docs(&module.attrs)).then(|| at.clone())),
            };
            let mut child_module = module_path.to_vec();
            child_module.push(name.clone());
            match &module.content {
                Some((_, inner)) => {
                    let dir = children_dir.join(&name);
                    let inner_place = Place {
                        path,
                        parent: &dir,
                        children_dir: &dir,
                        inline: true,
                        module: &child_module,
                    };
                    self.declarations(&inner_place, inner, &child_scope, out);
                }
                None => {
                    let file = match path_attribute(&module.attrs) {
                        // Outside inline modules a `#[path]` is relative to the declaring
                        // file's directory; inside them, to the inline module's directory.
                        Some(explicit) if inline => children_dir.join(explicit),
                        Some(explicit) => parent.join(explicit),
                        None if self.root.join(children_dir).join(format!("{name}.rs")).is_file() => {
                            children_dir.join(format!("{name}.rs"))
                        }
                        None => children_dir.join(&name).join("mod.rs"),
                    };
                    let declaration = ModuleDeclaration {
                        at,
                        public,
                        documented: has_doc(&module.attrs),
                    };
                    out.push((file, child_module, child_scope, declaration));
                }
            }
        }
    }
}

/// `#[cfg(test)]`, `#[cfg(all(test, …))]`: code that exists only in tests.
pub fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs.iter().any(|attr| {
        let Meta::List(list) = &attr.meta else {
            return false;
        };
        if !list.path.is_ident("cfg") {
            return false;
        }
        let idents = idents(list.tokens.clone());
        idents.iter().any(|i| i == "test") && !idents.iter().any(|i| i == "not" || i == "any")
    })
}

/// `#[test]`, `#[tokio::test]`: a test function.
pub fn is_test_function(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| attr.path().segments.last().is_some_and(|s| s.ident == "test"))
}

/// Test code: under `#[cfg(test)]` or a test function.
pub fn is_test_item(attrs: &[Attribute]) -> bool {
    is_cfg_test(attrs) || is_test_function(attrs)
}

/// A `///` or `#[doc = …]` attribute (`#[doc(hidden)]` is not documentation).
pub fn has_doc(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|attr| matches!(&attr.meta, Meta::NameValue(nv) if nv.path.is_ident("doc")))
}

/// `#[allow(missing_docs)]` or `#![allow(missing_docs, …)]`.
pub fn allows_missing_docs(attrs: &[Attribute]) -> bool {
    attrs.iter().any(is_allow_missing_docs)
}

fn is_allow_missing_docs(attr: &Attribute) -> bool {
    let Meta::List(list) = &attr.meta else {
        return false;
    };
    list.path.is_ident("allow") && idents(list.tokens.clone()).iter().any(|i| i == "missing_docs")
}

fn path_attribute(attrs: &[Attribute]) -> Option<String> {
    attrs.iter().find_map(|attr| {
        let Meta::NameValue(nv) = &attr.meta else {
            return None;
        };
        if !nv.path.is_ident("path") {
            return None;
        }
        match &nv.value {
            syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) => Some(s.value()),
            _ => None,
        }
    })
}

/// Every identifier in a token stream, groups flattened.
pub fn idents(tokens: TokenStream) -> Vec<String> {
    let mut out = Vec::new();
    for tree in tokens {
        match tree {
            TokenTree::Ident(i) => out.push(i.to_string()),
            TokenTree::Group(g) => out.extend(idents(g.stream())),
            TokenTree::Punct(_) | TokenTree::Literal(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(source: &str) -> Vec<Attribute> {
        let item: syn::ItemFn = syn::parse_str(&format!("{source}\nfn f() {{}}")).unwrap();
        item.attrs
    }

    #[test]
    fn test_code_is_recognised_by_its_attributes() {
        assert!(is_test_item(&attrs("#[cfg(test)]")));
        assert!(is_test_item(&attrs("#[cfg(all(test, feature = \"x\"))]")));
        assert!(is_test_item(&attrs("#[tokio::test]")));
        assert!(!is_test_item(&attrs("#[cfg(not(test))]")));
        assert!(!is_test_item(&attrs("#[cfg(feature = \"testing\")]")));
    }

    #[test]
    fn hidden_is_not_documented() {
        assert!(has_doc(&attrs("/// Why.")));
        assert!(!has_doc(&attrs("#[doc(hidden)]")));
    }
}
