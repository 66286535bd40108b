//! The token's workspaces (`apiToken`).

use async_graphql::{Context, Object, SimpleObject};

use crate::world::Refusal;

use super::{Result, token, world};

#[derive(SimpleObject)]
pub(super) struct ApiTokenContext {
    pub(super) workspaces: Vec<ApiTokenWorkspace>,
}

#[derive(SimpleObject)]
pub(super) struct ApiTokenWorkspace {
    pub(super) id: String,
    pub(super) name: String,
}

/// `Query`'s fields about workspaces.
#[derive(Default)]
pub(super) struct WorkspaceQuery;

#[Object]
impl WorkspaceQuery {
    async fn api_token(&self, ctx: &Context<'_>) -> Result<ApiTokenContext> {
        let w = world(ctx);
        let ids = w
            .token_workspaces(token(ctx))
            .ok_or_else(Refusal::not_authorized)?
            .clone();
        Ok(ApiTokenContext {
            workspaces: ids
                .into_iter()
                .map(|id| ApiTokenWorkspace {
                    name: w.config.workspaces.get(&id).cloned().unwrap_or_default(),
                    id,
                })
                .collect(),
        })
    }
}
