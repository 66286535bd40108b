//! The one place that deletes Railway projects.
//!
//! Deleting a project deletes everything in it. The pool deletes only projects it created
//! for one agent — never the shared project legacy agents live in, never the pool manager's
//! own project, never a project without this pool's marker. [`ProjectGuard`] is the only code
//! that calls `projectDelete`, and it takes a [`DeletableProject`], which only the guard's
//! checks can make.

use pool_store::{Agent, CreationStep};
use railway_api::{ProjectSummary, RailwayClient, RailwayError};

use crate::naming::Naming;

/// A project the guard has cleared for deletion. Cannot be built outside this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletableProject {
    id: String,
}

impl DeletableProject {
    /// The project id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Why a project may not be deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardRefusal {
    /// A legacy agent lives in the shared project: tear it down service by service.
    #[error("agent {0} is a legacy agent in the shared project; its project is never deleted")]
    Legacy(String),
    /// The project is the pool manager's own.
    #[error("project {0} is the pool manager's own project")]
    OwnProject(String),
    /// The agent has no project recorded.
    #[error("agent {0} has no project")]
    NoProject(String),
    /// The pool's saga did not record creating this project.
    #[error("project {0} was not created by this pool's creation saga")]
    NotCreatedByPool(String),
    /// The project lacks this pool's marker or name.
    #[error("project {0} does not carry this pool's marker and an agent name")]
    NotMarked(String),
}

/// Decides which projects may be deleted, and deletes them.
#[derive(Debug, Clone)]
pub struct ProjectGuard {
    own_project_id: Option<String>,
    naming: Naming,
}

impl ProjectGuard {
    /// A guard for the pool whose own project is `own_project_id`.
    pub fn new(own_project_id: Option<String>, naming: Naming) -> Self {
        Self {
            own_project_id,
            naming,
        }
    }

    fn not_own(&self, id: &str) -> Result<(), GuardRefusal> {
        if self.own_project_id.as_deref() == Some(id) {
            Err(GuardRefusal::OwnProject(id.to_string()))
        } else {
            Ok(())
        }
    }

    /// An agent's own project, if the pool created it for this agent.
    pub fn agent_project(&self, agent: &Agent) -> Result<DeletableProject, GuardRefusal> {
        if agent.legacy {
            return Err(GuardRefusal::Legacy(agent.id.to_string()));
        }
        let id = agent
            .project_id
            .as_deref()
            .ok_or_else(|| GuardRefusal::NoProject(agent.id.to_string()))?;
        self.not_own(id)?;
        if !agent.has_completed(CreationStep::Project) {
            return Err(GuardRefusal::NotCreatedByPool(id.to_string()));
        }
        Ok(DeletableProject { id: id.to_string() })
    }

    /// A project found in the workspace (an orphan, or one whose creation was not recorded):
    /// only with this pool's marker and an agent name of this pool.
    pub fn marked_project(&self, project: &ProjectSummary) -> Result<DeletableProject, GuardRefusal> {
        self.not_own(&project.id)?;
        if !self.naming.is_marked(project.description.as_deref())
            || self.naming.agent_id(&project.name).is_none()
        {
            return Err(GuardRefusal::NotMarked(project.id.clone()));
        }
        Ok(DeletableProject {
            id: project.id.clone(),
        })
    }

    /// Deletes a cleared project. The only call to `projectDelete` in the code base. A project
    /// that is already gone counts as deleted.
    pub async fn delete(
        &self,
        client: &RailwayClient,
        project: DeletableProject,
    ) -> Result<(), RailwayError> {
        match client.delete_project(&project.id).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
