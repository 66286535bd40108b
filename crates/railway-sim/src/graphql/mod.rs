//! Railway's GraphQL surface, served by async-graphql with Railway's own type, field and
//! argument names, so the client's queries are validated against a schema, not pattern-matched.
//! `cargo xtask schema check` proves this schema is a subset of Railway's.
//!
//! One module per Railway resource, as `world/` is split: each holds the resource's types, its
//! inputs and its `Query` and `Mutation` fields, merged here into Railway's two roots.

mod deployments;
mod domains;
mod environments;
mod projects;
mod services;
mod variables;
mod volumes;
mod workspace;

use std::sync::{Arc, Mutex, MutexGuard};

use async_graphql::{Context, EmptySubscription, ErrorExtensions, MergedObject, Schema, SimpleObject};

use crate::world::{Refusal, World};

/// The schema type.
pub(crate) type RailwaySchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// The world, shared by resolvers.
pub(crate) type SharedWorld = Arc<Mutex<World>>;

/// The bearer token of the request being served.
pub(crate) struct RequestToken(pub String);

pub(crate) fn build_schema(world: SharedWorld) -> RailwaySchema {
    Schema::build(QueryRoot::default(), MutationRoot::default(), EmptySubscription)
        .data(world)
        .finish()
}

fn world<'a>(ctx: &'a Context<'_>) -> MutexGuard<'a, World> {
    ctx.data_unchecked::<SharedWorld>()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
}

fn token<'a>(ctx: &'a Context<'_>) -> &'a str {
    ctx.data_opt::<RequestToken>().map(|t| t.0.as_str()).unwrap_or("")
}

impl From<Refusal> for async_graphql::Error {
    fn from(r: Refusal) -> Self {
        let code = r.code;
        async_graphql::Error::new(r.message).extend_with(|_, e| e.set("code", code))
    }
}

type Result<T> = async_graphql::Result<T>;

// A page of a connection (this simulator answers every list in one page, but `projects`).
// Plain comments on these three: a doc comment would become a description in the SDL.
#[derive(SimpleObject)]
struct PageInfo {
    end_cursor: Option<String>,
    has_next_page: bool,
}

// `Query`: the resources' fields, merged.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub(crate) struct QueryRoot(
    workspace::WorkspaceQuery,
    projects::ProjectsQuery,
    deployments::DeploymentsQuery,
    domains::DomainsQuery,
    variables::VariablesQuery,
);

// `Mutation`: the resources' fields, merged.
#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub(crate) struct MutationRoot(
    deployments::DeploymentsMutation,
    environments::EnvironmentsMutation,
    projects::ProjectsMutation,
    services::ServicesMutation,
    domains::DomainsMutation,
    variables::VariablesMutation,
    volumes::VolumesMutation,
);
