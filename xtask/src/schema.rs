//! `cargo xtask schema check [UPSTREAM]`: proves that the GraphQL the project speaks is
//! Railway's.
//!
//! Two documents are checked against the full upstream schema (`../shared/railway/schema.graphql`
//! by default): the client's subset in `schema/railway.graphql`, and the simulator's own SDL.
//! Every type, field, argument, input field and enum value in them must exist upstream with
//! the same kind and exactly the same type; every argument or input field upstream requires
//! must be present, or a request would be valid here and invalid on Railway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};

/// A type as far as compatibility goes.
#[derive(Debug, Default)]
struct TypeShape {
    kind: &'static str,
    /// Field or input field → type, with arguments (name → (type, has default)).
    fields: BTreeMap<String, Field>,
    enum_values: Vec<String>,
}

#[derive(Debug, Default)]
struct Field {
    ty: String,
    has_default: bool,
    args: BTreeMap<String, (String, bool)>,
}

const BUILT_IN: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

fn shapes(sdl: &str) -> Result<BTreeMap<String, TypeShape>, String> {
    let doc = parse_schema(sdl).map_err(|e| format!("not valid SDL: {e}"))?;
    let mut out = BTreeMap::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(t) = def else {
            continue;
        };
        let t = t.node;
        let name = t.name.node.to_string();
        if name.starts_with("__") || BUILT_IN.contains(&name.as_str()) {
            continue;
        }
        let mut shape = TypeShape::default();
        match t.kind {
            TypeKind::Scalar => shape.kind = "scalar",
            TypeKind::Object(o) => {
                shape.kind = "type";
                for f in o.fields {
                    let f = f.node;
                    let args = f
                        .arguments
                        .into_iter()
                        .map(|a| {
                            (
                                a.node.name.node.to_string(),
                                (a.node.ty.node.to_string(), a.node.default_value.is_some()),
                            )
                        })
                        .collect();
                    shape.fields.insert(
                        f.name.node.to_string(),
                        Field {
                            ty: f.ty.node.to_string(),
                            has_default: false,
                            args,
                        },
                    );
                }
            }
            TypeKind::Interface(i) => {
                shape.kind = "interface";
                for f in i.fields {
                    shape.fields.insert(
                        f.node.name.node.to_string(),
                        Field {
                            ty: f.node.ty.node.to_string(),
                            ..Field::default()
                        },
                    );
                }
            }
            TypeKind::InputObject(i) => {
                shape.kind = "input";
                for f in i.fields {
                    shape.fields.insert(
                        f.node.name.node.to_string(),
                        Field {
                            ty: f.node.ty.node.to_string(),
                            has_default: f.node.default_value.is_some(),
                            args: BTreeMap::new(),
                        },
                    );
                }
            }
            TypeKind::Enum(e) => {
                shape.kind = "enum";
                shape.enum_values = e
                    .values
                    .into_iter()
                    .map(|v| v.node.value.node.to_string())
                    .collect();
            }
            TypeKind::Union(_) => shape.kind = "union",
        }
        out.insert(name, shape);
    }
    Ok(out)
}

/// Every way `subset` is not a faithful subset of `upstream`.
pub fn subset_problems(subset: &str, upstream: &str) -> Result<Vec<String>, String> {
    let sub = shapes(subset)?;
    let up = shapes(upstream)?;
    let mut problems = Vec::new();
    for (name, s) in &sub {
        let Some(u) = up.get(name) else {
            problems.push(format!("type {name} does not exist upstream"));
            continue;
        };
        if s.kind != u.kind {
            problems.push(format!("{name} is a {} here but a {} upstream", s.kind, u.kind));
            continue;
        }
        for value in &s.enum_values {
            if !u.enum_values.contains(value) {
                problems.push(format!("enum value {name}.{value} does not exist upstream"));
            }
        }
        for (field, f) in &s.fields {
            let Some(uf) = u.fields.get(field) else {
                problems.push(format!("field {name}.{field} does not exist upstream"));
                continue;
            };
            if f.ty != uf.ty {
                problems.push(format!("{name}.{field} is {} here but {} upstream", f.ty, uf.ty));
            }
            for (arg, (ty, _)) in &f.args {
                match uf.args.get(arg) {
                    None => problems.push(format!("argument {name}.{field}({arg}) does not exist upstream")),
                    Some((uty, _)) if uty != ty => problems.push(format!(
                        "argument {name}.{field}({arg}) is {ty} here but {uty} upstream"
                    )),
                    Some(_) => {}
                }
            }
            for (arg, (uty, has_default)) in &uf.args {
                if uty.ends_with('!') && !has_default && !f.args.contains_key(arg) {
                    problems.push(format!(
                        "argument {name}.{field}({arg}: {uty}) is required upstream but missing here"
                    ));
                }
            }
        }
        if s.kind == "input" {
            for (field, uf) in &u.fields {
                if uf.ty.ends_with('!') && !uf.has_default && !s.fields.contains_key(field) {
                    problems.push(format!(
                        "input field {name}.{field}: {} is required upstream but missing here",
                        uf.ty
                    ));
                }
            }
        }
    }
    Ok(problems)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The default location of Railway's full schema: `shared/railway/` beside the checkout.
pub fn default_upstream() -> PathBuf {
    workspace_root().join("../shared/railway/schema.graphql")
}

pub fn main(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("check") => {}
        _ => return Err("usage: cargo xtask schema check [PATH-TO-UPSTREAM-SCHEMA.graphql]".into()),
    }
    let upstream_path = args.get(1).map(PathBuf::from).unwrap_or_else(default_upstream);
    let upstream = std::fs::read_to_string(&upstream_path).map_err(|e| {
        format!(
            "cannot read Railway's schema at {}: {e} (pass its path: cargo xtask schema check PATH)",
            upstream_path.display()
        )
    })?;
    let client_path = workspace_root().join("schema/railway.graphql");
    let client =
        std::fs::read_to_string(&client_path).map_err(|e| format!("{}: {e}", client_path.display()))?;
    let mut failed = false;
    for (what, sdl) in [
        ("schema/railway.graphql", client),
        ("railway-sim's schema", railway_sim::schema_sdl()),
    ] {
        let problems = subset_problems(&sdl, &upstream)?;
        if problems.is_empty() {
            println!("ok: {what} is a faithful subset of {}", upstream_path.display());
        } else {
            failed = true;
            println!("{what}: {} problem(s)", problems.len());
            for p in problems {
                println!("  - {p}");
            }
        }
    }
    if failed {
        Err("schema check failed".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPSTREAM: &str = "type Query { project(id: String!): Project! }
        type Project { id: ID! name: String! }
        input ProjectCreateInput { name: String workspaceId: String! }
        enum DeploymentStatus { SUCCESS FAILED }";

    #[test]
    fn a_faithful_subset_has_no_problems() {
        let subset = "type Query { project(id: String!): Project! } type Project { id: ID! }";
        assert_eq!(subset_problems(subset, UPSTREAM).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn every_kind_of_drift_is_reported() {
        let subset = "type Query { project(id: String, extra: Int): Project! }
            type Project { id: String! nickname: String }
            input ProjectCreateInput { name: String }
            enum DeploymentStatus { SUCCESS TELEPORTING }
            type Ghost { id: ID! }";
        let problems = subset_problems(subset, UPSTREAM).unwrap();
        let expect = [
            "argument Query.project(id) is String here but String! upstream",
            "argument Query.project(extra) does not exist upstream",
            "Project.id is String! here but ID! upstream",
            "field Project.nickname does not exist upstream",
            "input field ProjectCreateInput.workspaceId: String! is required upstream but missing here",
            "enum value DeploymentStatus.TELEPORTING does not exist upstream",
            "type Ghost does not exist upstream",
        ];
        for e in expect {
            assert!(problems.iter().any(|p| p == e), "missing {e:?} in {problems:#?}");
        }
    }

    #[test]
    fn the_projects_schemas_are_subsets_of_railways_when_it_is_available() {
        let Ok(upstream) = std::fs::read_to_string(default_upstream()) else {
            eprintln!("skipped: Railway's schema is not beside this checkout");
            return;
        };
        let client = std::fs::read_to_string(workspace_root().join("schema/railway.graphql")).unwrap();
        assert_eq!(subset_problems(&client, &upstream).unwrap(), Vec::<String>::new());
        assert_eq!(
            subset_problems(&railway_sim::schema_sdl(), &upstream).unwrap(),
            Vec::<String>::new()
        );
    }
}
