//! What a file calls and which strings it writes, found in its syntax tree (and, inside macro
//! calls, which `syn` does not parse, in their tokens), each with its line and whether it is
//! test code: the facts the boundary rules ([`super::boundaries`]) judge.
//!
//! A call is `name(…)`, `.name(…)` or `Path::name(…)`; comments are not seen, and a name inside a string
//! is a literal, not a call.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::visit::{self, Visit};
use syn::{Attribute, Expr, ExprLit, ImplItemFn, Item, Lit};

use super::call_sites::item_attrs;
use super::sources::is_test_item;

/// One thing a file does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// A call of `name`, with its first argument when that is a string literal
    /// (`router.route("/x", …)`).
    Call {
        /// The function's or method's name (the last segment of a path).
        name: String,
        /// `.name(…)`, a method call, rather than `name(…)` or `Path::name(…)`.
        method: bool,
        /// The first argument, when it is a string literal.
        first_literal: Option<String>,
    },
    /// A string literal.
    Literal(String),
}

/// A fact and where: `(line, fact, inside test code)`.
pub type Found = (usize, Fact, bool);

/// Every fact of a parsed file, in the order the visitor meets them.
pub fn of(syntax: &syn::File) -> Vec<Found> {
    let mut facts = Facts::default();
    facts.visit_file(syntax);
    facts.found
}

/// What a visitor found, each with its line and whether it sits in test code (under
/// `#[cfg(test)]` or in a `#[test]` function). The visitors of this module (`Recorder<Fact>`)
/// and of [`super::call_sites`] (`Recorder<Site>`) are recorders.
pub struct Recorder<T> {
    test_depth: usize,
    /// `(line, what, inside test code)`, in the order met.
    pub found: Vec<(usize, T, bool)>,
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        Self {
            test_depth: 0,
            found: Vec::new(),
        }
    }
}

impl<T> Recorder<T> {
    /// Records `found` at `line`, as test code when inside a test item.
    pub fn record(&mut self, line: usize, found: T) {
        self.found.push((line, found, self.test_depth > 0));
    }

    /// Visits an item with these attributes: what it holds is test code if the item is.
    pub fn within(&mut self, attrs: &[Attribute], visit: impl FnOnce(&mut Self)) {
        let test = usize::from(is_test_item(attrs));
        self.test_depth += test;
        visit(self);
        self.test_depth -= test;
    }
}

type Facts = Recorder<Fact>;

impl Facts {
    fn call(&mut self, line: usize, name: String, method: bool, first: Option<&Expr>) {
        let first_literal = match first {
            Some(Expr::Lit(ExprLit { lit: Lit::Str(s), .. })) => Some(s.value()),
            _ => None,
        };
        self.record(
            line,
            Fact::Call {
                name,
                method,
                first_literal,
            },
        );
    }

    /// Calls (`.name(` and `::name(`) and string literals among a macro's tokens.
    fn scan_macro_tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        for (i, tree) in trees.iter().enumerate() {
            match tree {
                TokenTree::Group(group) => self.scan_macro_tokens(group.stream()),
                TokenTree::Ident(ident) => {
                    let called = matches!(trees.get(i + 1), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis);
                    let before = i.checked_sub(1).and_then(|j| trees.get(j));
                    let method = matches!(before, Some(TokenTree::Punct(p)) if p.as_char() == '.');
                    // Not `fn name(` or `struct Name(`: a keyword or a name before it.
                    if called && !matches!(before, Some(TokenTree::Ident(_))) {
                        let first_literal = match trees.get(i + 1) {
                            Some(TokenTree::Group(g)) => {
                                g.stream().into_iter().next().and_then(|t| string_value(&t))
                            }
                            _ => None,
                        };
                        self.record(
                            ident.span().start().line,
                            Fact::Call {
                                name: ident.to_string(),
                                method,
                                first_literal,
                            },
                        );
                    }
                }
                TokenTree::Literal(literal) => {
                    if let Some(value) = string_value(tree) {
                        self.record(literal.span().start().line, Fact::Literal(value));
                    }
                }
                TokenTree::Punct(_) => {}
            }
        }
    }
}

/// The value of a string literal token (`"a"`, `r#"a"#`), `None` for any other token.
fn string_value(tree: &TokenTree) -> Option<String> {
    match tree {
        TokenTree::Literal(literal) => syn::parse_str::<syn::LitStr>(&literal.to_string())
            .ok()
            .map(|s| s.value()),
        _ => None,
    }
}

// The first two methods are `call_sites::Sites`' too: a visitor's trait methods cannot be
// shared, and `Recorder::within` already holds what they have in common.
impl<'ast> Visit<'ast> for Facts {
    fn visit_item(&mut self, item: &'ast Item) {
        self.within(item_attrs(item), |s| visit::visit_item(s, item));
    }

    fn visit_impl_item_fn(&mut self, function: &'ast ImplItemFn) {
        self.within(&function.attrs, |s| visit::visit_impl_item_fn(s, function));
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        self.call(
            call.method.span().start().line,
            call.method.to_string(),
            true,
            call.args.first(),
        );
        visit::visit_expr_method_call(self, call);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let Expr::Path(path) = call.func.as_ref()
            && let Some(last) = path.path.segments.last()
        {
            self.call(
                path.span().start().line,
                last.ident.to_string(),
                false,
                call.args.first(),
            );
        }
        visit::visit_expr_call(self, call);
    }

    /// Attributes are not code: a doc comment may mention anything.
    fn visit_attribute(&mut self, _: &'ast Attribute) {}

    fn visit_lit_str(&mut self, literal: &'ast syn::LitStr) {
        self.record(literal.span().start().line, Fact::Literal(literal.value()));
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.scan_macro_tokens(mac.tokens.clone());
        visit::visit_macro(self, mac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(source: &str) -> Vec<(Fact, bool)> {
        of(&syn::parse_file(source).unwrap())
            .into_iter()
            .map(|(_, fact, test)| (fact, test))
            .collect()
    }

    fn call(name: &str, method: bool, first: Option<&str>) -> Fact {
        Fact::Call {
            name: name.into(),
            method,
            first_literal: first.map(Into::into),
        }
    }

    #[test]
    fn calls_and_literals_are_found_in_code_and_macros_but_not_in_comments() {
        let found = facts(
            r##"
            // mail.send_message(x) in a comment is nothing
            /// Nor in a doc comment: `mail.send_message(x)`, "https://api.agentmail.to".
            fn f() {
                mail.send_message(&body);
                Telnyx::order_number(&t, "n");
                router.route("/api/x", get(h));
                println!("{}", mail.list_threads(r#"q"#));
            }
            #[cfg(test)]
            mod tests { fn g() { mail.get_message("id"); } }
            "##,
        );
        assert_eq!(
            found,
            [
                (call("send_message", true, None), false),
                (call("order_number", false, None), false),
                (Fact::Literal("n".into()), false),
                (call("route", true, Some("/api/x")), false),
                (Fact::Literal("/api/x".into()), false),
                (call("get", false, None), false),
                (Fact::Literal("{}".into()), false),
                (call("list_threads", true, Some("q")), false),
                (Fact::Literal("q".into()), false),
                (call("get_message", true, Some("id")), true),
                (Fact::Literal("id".into()), true),
            ]
        );
    }
}
