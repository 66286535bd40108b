//! The capability to delete projects.
//!
//! Deleting a project deletes everything in it, so `projectDelete` is not a method of
//! [`RailwayClient`] anyone can call: it is reached only through a [`ProjectDeleter`], which
//! this crate hands out only together with a new client
//! ([`RailwayClient::with_project_deleter`]). Whoever builds the client decides which code
//! holds the capability (in the pool manager: its deletion guard, and nothing else; `cargo
//! xtask tidy` checks that the guard is the only caller).

use crate::client::{RailwayClient, Result};
use crate::config::ClientConfig;
use crate::ids::ProjectId;

/// Permission to call `projectDelete`. Cannot be built outside this crate.
#[derive(Clone)]
pub struct ProjectDeleter {
    client: RailwayClient,
}

impl std::fmt::Debug for ProjectDeleter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProjectDeleter")
    }
}

impl ProjectDeleter {
    /// `projectDelete`: removes the project with its services and volumes. Deleting a project
    /// that is already gone answers "Not Authorized" or "Problem processing request" on the
    /// live API (terraform-provider-railway `isNotFoundOrGone`), not "not found": confirm with
    /// [`RailwayClient::project_presence`] before treating either as success.
    pub async fn delete_project(&self, project: &ProjectId) -> Result<()> {
        self.client.delete_project(project).await
    }

    /// The client it deletes through.
    pub fn client(&self) -> &RailwayClient {
        &self.client
    }
}

impl RailwayClient {
    /// A new client and the one capability to delete projects through it.
    pub fn with_project_deleter(config: ClientConfig) -> Result<(Self, ProjectDeleter)> {
        let client = Self::new(config)?;
        let deleter = ProjectDeleter {
            client: client.with_priority(crate::Priority::Critical),
        };
        Ok((client, deleter))
    }
}
