//! Rule `missing-docs`: every `pub` item of the library crates carries a doc comment — the
//! crate root, `pub mod`s, functions, structs and their `pub` fields, enums and their variants,
//! traits and their items, consts, statics, type aliases, macros, and the `pub` items of
//! inherent `impl` blocks.
//!
//! `pub` items of private modules are checked too: `pub use` may re-export them, and a
//! syntax tree cannot tell cheaply. The one way out is an explicit `allow(missing_docs)` on a
//! private module (or an item in one): its items are unreachable by name, and each such
//! allowance is listed in tidy's output so a reviewer sees it. On a `pub mod` it allows
//! nothing, and what a `pub use` takes out of such a module is checked all the same.

use syn::spanned::Spanned;
use syn::{Attribute, Field, ImplItem, Item, TraitItem, Visibility};

use super::reexports::{self, ReExport};
use super::sources::{SourceFile, TargetKind, allows_missing_docs, has_doc, is_cfg_test};
use super::{Rule, Violation};

/// The library crates whose public items must be documented.
pub const LIBRARIES: &[&str] = &[
    "railway-api",
    "pool-store",
    "pool-provisioner",
    "pool-reconciler",
    "pool-http",
    "railway-sim",
    "pool-sizing",
];

/// Checks the library files of `packages` (parallel to the files' member indices).
/// `allowances` receives each private module or item whose missing docs are allowed.
pub fn check(
    files: &[SourceFile],
    packages: &[String],
    violations: &mut Vec<Violation>,
    allowances: &mut Vec<String>,
) {
    let re_exports = reexports::collect(files);
    for file in files {
        let library = packages
            .get(file.member)
            .is_some_and(|p| LIBRARIES.contains(&p.as_str()));
        if !library || file.target != TargetKind::Lib || file.scope.test {
            continue;
        }
        if let Some(allowed_by) = &file.scope.docs_allowed_by {
            // Listed once, by the module that allows it: its own file (`#![allow]`) or its
            // declaration (`#[allow] mod x;`). Modules below it are covered silently.
            let in_this_file = allowed_by
                .rsplit_once(':')
                .is_some_and(|(path, _)| file.path.as_os_str() == path);
            let on_declaration = file.declaration.as_ref().is_some_and(|d| &d.at == allowed_by);
            if in_this_file || on_declaration {
                allowances.push(format!("private module {} ({allowed_by})", file.path.display()));
            }
            check_re_exported(file, &re_exports, violations, allowances);
            continue;
        }
        let file_documented = has_doc(&file.syntax.attrs);
        match &file.declaration {
            None if !file_documented => violations.push(missing(file.at(1), "crate root (`//!`)")),
            Some(declaration) if declaration.public && !declaration.documented && !file_documented => {
                violations.push(missing(
                    declaration.at.clone(),
                    &format!("pub mod {}", module_name(file)),
                ));
            }
            None | Some(_) => {}
        }
        let mut items = Items {
            file,
            violations,
            allowances,
            context: String::new(),
        };
        items.check(&file.syntax.items, false);
    }
}

/// The items a `pub use` takes from a module whose missing docs are allowed: public after
/// all, so they need docs.
fn check_re_exported(
    file: &SourceFile,
    re_exports: &[ReExport],
    violations: &mut Vec<Violation>,
    allowances: &mut Vec<String>,
) {
    for re_export in re_exports
        .iter()
        .filter(|r| r.member == file.member && r.from == file.module)
    {
        let mut items = Items {
            file,
            violations: &mut *violations,
            allowances: &mut *allowances,
            context: format!(" (re-exported by {})", re_export.at),
        };
        for item in &file.syntax.items {
            let named = item_name(item);
            if re_export.name.is_none() || named.is_some() && named == re_export.name {
                items.item(item);
            }
        }
    }
}

/// The name an item is imported by.
fn item_name(item: &Item) -> Option<String> {
    let ident = match item {
        Item::Const(i) => &i.ident,
        Item::Enum(i) => &i.ident,
        Item::Fn(i) => &i.sig.ident,
        Item::Mod(i) => &i.ident,
        Item::Static(i) => &i.ident,
        Item::Struct(i) => &i.ident,
        Item::Trait(i) => &i.ident,
        Item::Type(i) => &i.ident,
        Item::Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.to_string())
}

fn module_name(file: &SourceFile) -> String {
    let stem = file
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem == "mod" {
        file.path
            .parent()
            .and_then(|p| p.file_name())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or(stem)
    } else {
        stem
    }
}

fn missing(at: String, what: &str) -> Violation {
    Violation::new(Rule::MissingDocs, format!("{at}: {what} has no doc comment"))
}

fn is_pub(vis: &Visibility) -> bool {
    matches!(vis, Visibility::Public(_))
}

struct Items<'a> {
    file: &'a SourceFile,
    violations: &'a mut Vec<Violation>,
    allowances: &'a mut Vec<String>,
    /// Added to each violation's description.
    context: String,
}

impl Items<'_> {
    /// Checks `items`; `private` says an enclosing inline module is not `pub` (the file's own
    /// reachability is in its scope).
    fn check(&mut self, items: &[Item], private: bool) {
        let unreachable = private || !self.file.scope.reachable;
        for item in items {
            let attrs = super::call_sites::item_attrs(item);
            if is_cfg_test(attrs) {
                continue;
            }
            if let Item::Mod(module) = item {
                let Some((_, inner)) = &module.content else {
                    continue;
                };
                let public = is_pub(&module.vis);
                if !public && allows_missing_docs(&module.attrs) {
                    let line = module.ident.span().start().line;
                    self.allowances.push(format!(
                        "private module {} ({})",
                        module.ident,
                        self.file.at(line)
                    ));
                    continue;
                }
                if public {
                    self.need(
                        &module.attrs,
                        module.ident.span(),
                        &format!("pub mod {}", module.ident),
                    );
                }
                self.check(inner, private || !public);
                continue;
            }
            if unreachable && allows_missing_docs(attrs) {
                let line = item.span().start().line;
                self.allowances
                    .push(format!("an item of a private module ({})", self.file.at(line)));
                continue;
            }
            self.item(item);
        }
    }

    fn need(&mut self, attrs: &[Attribute], span: proc_macro2::Span, what: &str) {
        if !has_doc(attrs) {
            let what = format!("{what}{}", self.context);
            self.violations
                .push(missing(self.file.at(span.start().line), &what));
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Fn(f) if is_pub(&f.vis) => {
                self.need(&f.attrs, f.sig.ident.span(), &format!("pub fn {}", f.sig.ident))
            }
            Item::Const(c) if is_pub(&c.vis) => {
                self.need(&c.attrs, c.ident.span(), &format!("pub const {}", c.ident))
            }
            Item::Static(s) if is_pub(&s.vis) => {
                self.need(&s.attrs, s.ident.span(), &format!("pub static {}", s.ident));
            }
            Item::Type(t) if is_pub(&t.vis) => {
                self.need(&t.attrs, t.ident.span(), &format!("pub type {}", t.ident))
            }
            Item::Struct(s) if is_pub(&s.vis) => {
                self.need(&s.attrs, s.ident.span(), &format!("pub struct {}", s.ident));
                self.fields(&s.ident.to_string(), s.fields.iter());
            }
            Item::Union(u) if is_pub(&u.vis) => {
                self.need(&u.attrs, u.ident.span(), &format!("pub union {}", u.ident));
                self.fields(&u.ident.to_string(), u.fields.named.iter());
            }
            Item::Enum(e) if is_pub(&e.vis) => {
                self.need(&e.attrs, e.ident.span(), &format!("pub enum {}", e.ident));
                for variant in &e.variants {
                    let what = format!("variant {}::{}", e.ident, variant.ident);
                    self.need(&variant.attrs, variant.ident.span(), &what);
                }
            }
            Item::Trait(t) if is_pub(&t.vis) => {
                self.need(&t.attrs, t.ident.span(), &format!("pub trait {}", t.ident));
                for inner in &t.items {
                    let (attrs, ident) = match inner {
                        TraitItem::Fn(f) => (&f.attrs, &f.sig.ident),
                        TraitItem::Const(c) => (&c.attrs, &c.ident),
                        TraitItem::Type(ty) => (&ty.attrs, &ty.ident),
                        _ => continue,
                    };
                    self.need(attrs, ident.span(), &format!("trait item {}::{ident}", t.ident));
                }
            }
            Item::Macro(m) if m.attrs.iter().any(|a| a.path().is_ident("macro_export")) => {
                let name = m.ident.as_ref().map_or_else(String::new, ToString::to_string);
                self.need(&m.attrs, m.mac.span(), &format!("exported macro {name}"));
            }
            Item::Impl(block) if block.trait_.is_none() => {
                let owner = type_name(&block.self_ty);
                for inner in &block.items {
                    let (attrs, vis, kind, ident) = match inner {
                        ImplItem::Fn(f) => (&f.attrs, &f.vis, "fn", &f.sig.ident),
                        ImplItem::Const(c) => (&c.attrs, &c.vis, "const", &c.ident),
                        ImplItem::Type(ty) => (&ty.attrs, &ty.vis, "type", &ty.ident),
                        _ => continue,
                    };
                    if is_pub(vis) && !is_cfg_test(attrs) {
                        self.need(attrs, ident.span(), &format!("pub {kind} {owner}::{ident}"));
                    }
                }
            }
            _ => {}
        }
    }

    fn fields<'f>(&mut self, owner: &str, fields: impl Iterator<Item = &'f Field>) {
        for (index, field) in fields.enumerate() {
            if !is_pub(&field.vis) {
                continue;
            }
            let name = field
                .ident
                .as_ref()
                .map_or_else(|| index.to_string(), ToString::to_string);
            self.need(&field.attrs, field.span(), &format!("field {owner}.{name}"));
        }
    }
}

/// `Store` of `impl Store`, `Handle` of `impl<T> Handle<T>`.
fn type_name(ty: &syn::Type) -> String {
    match ty {
        syn::Type::Path(path) => path
            .path
            .segments
            .last()
            .map(|s| s.ident.to_string())
            .unwrap_or_default(),
        _ => "_".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tidy::sources::ModuleDeclaration;

    fn file(path: &str, module: &[&str], allowed_by: Option<&str>, text: &str) -> SourceFile {
        let mut file = SourceFile::for_test(path, module, text);
        file.scope.docs_allowed_by = allowed_by.map(str::to_string);
        file.declaration = (!module.is_empty()).then(|| ModuleDeclaration {
            at: "crates/demo/src/lib.rs:2".into(),
            public: false,
            documented: false,
        });
        file
    }

    #[test]
    fn a_private_module_that_allows_missing_docs_is_exempt_except_for_what_pub_use_exports() {
        let files = [
            file(
                "crates/demo/src/lib.rs",
                &[],
                None,
                "//! Demo.\nmod wire;\npub use crate::wire::Status;\n/// Documented.\npub fn f() {}\npub fn g() {}\n",
            ),
            file(
                "crates/demo/src/wire.rs",
                &["wire"],
                Some("crates/demo/src/wire.rs:1"),
                "#![allow(missing_docs)]\npub enum Status { Up }\npub struct Unexported;\n",
            ),
        ];
        let (mut violations, mut allowances) = (Vec::new(), Vec::new());
        check(
            &files,
            &["railway-api".to_string()],
            &mut violations,
            &mut allowances,
        );
        let found: Vec<String> = violations.iter().map(|v| v.at.clone()).collect();
        assert_eq!(
            found,
            [
                "crates/demo/src/lib.rs:6: pub fn g has no doc comment",
                "crates/demo/src/wire.rs:2: pub enum Status (re-exported by crates/demo/src/lib.rs:3) has no doc comment",
                "crates/demo/src/wire.rs:2: variant Status::Up (re-exported by crates/demo/src/lib.rs:3) has no doc comment",
            ]
        );
        assert_eq!(
            allowances,
            ["private module crates/demo/src/wire.rs (crates/demo/src/wire.rs:1)"]
        );
    }
}
