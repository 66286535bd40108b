//! The one place that deletes Railway projects.
//!
//! Deleting a project deletes everything in it. The pool deletes only projects it created
//! for one agent — never the shared project legacy agents live in, never the pool manager's
//! own project, never a project without this pool's marker. [`ProjectGuard`] holds the pool's
//! only [`ProjectDeleter`] (the capability `railway-api` hands out with the client), and it
//! deletes only a [`DeletableProject`], which only the guard's checks can make.
//!
//! The database is not trusted on its own: just before every `projectDelete` the guard reads
//! the project (`project(id)`) and deletes only if its name is still the agent's and its
//! description still carries this pool's marker — a row rewritten to point at someone else's
//! project, or a project renamed or re-marked since the listing, is refused.
//!
//! Railway answers a delete of an already deleted project with "Not Authorized" or "Problem
//! processing request", not "not found" (terraform-provider-railway `isNotFoundOrGone`, used
//! for deletes only). Such an answer is not taken on trust either way: one `project(id)` read
//! confirms whether the project is gone.

use pool_store::{Agent, CreationStep};
use railway_api::{
    Delivery, ErrorKind, ProjectDeleter, ProjectId, ProjectPresence, ProjectRead, ProjectSummary,
    RailwayClient, RailwayError, WorkspaceId,
};

use crate::error::Result;
use crate::naming::{MarkerForm, Naming};

/// A project the guard has cleared for deletion. Cannot be built outside this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletableProject {
    id: ProjectId,
    name: String,
    form: MarkerForm,
}

impl DeletableProject {
    /// The project id.
    pub fn id(&self) -> &ProjectId {
        &self.id
    }
}

/// Why a project may not be deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
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
    /// Read just before the delete, the project is not what the pool cleared: another name, or
    /// another pool's marker (a row rewritten, a project renamed or re-marked).
    #[error("project {id} is not this pool's agent project any more: {found}")]
    Changed {
        /// The project.
        id: String,
        /// What the read found.
        found: String,
    },
    /// The project cannot be read now, and the token no longer reaches the workspace.
    #[error("project {0} cannot be read to check it before deleting it")]
    Unverified(String),
}

/// Decides which projects may be deleted, and deletes them.
#[derive(Debug, Clone)]
pub struct ProjectGuard {
    own_project_id: Option<ProjectId>,
    workspace: WorkspaceId,
    naming: Naming,
    deleter: ProjectDeleter,
}

impl ProjectGuard {
    /// A guard for the pool whose own project is `own_project_id`, deleting in `workspace`.
    pub fn new(
        own_project_id: Option<ProjectId>,
        workspace: WorkspaceId,
        naming: Naming,
        deleter: ProjectDeleter,
    ) -> Self {
        Self {
            own_project_id,
            workspace,
            naming,
            deleter,
        }
    }

    fn not_own(&self, id: &ProjectId) -> Result<(), GuardRefusal> {
        if self.own_project_id.as_ref() == Some(id) {
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
            .map(ProjectId::new)
            .ok_or_else(|| GuardRefusal::NoProject(agent.id.to_string()))?;
        self.not_own(&id)?;
        if !agent.has_completed(CreationStep::Project) {
            return Err(GuardRefusal::NotCreatedByPool(id.to_string()));
        }
        Ok(DeletableProject {
            id,
            name: self.naming.name(&agent.id),
            form: MarkerForm::of_stored(agent.project_marker_form),
        })
    }

    /// A project found in the workspace (an orphan, or one whose creation was not recorded):
    /// only with this pool's marker and an agent name of this pool.
    pub fn marked_project(&self, project: &ProjectSummary) -> Result<DeletableProject, GuardRefusal> {
        self.not_own(&project.id)?;
        if !self.naming.is_marked(project.description.as_deref())
            || self.naming.agent_id(&project.name).is_none()
        {
            return Err(GuardRefusal::NotMarked(project.id.to_string()));
        }
        Ok(DeletableProject {
            id: project.id.clone(),
            name: project.name.clone(),
            form: MarkerForm::PoolId,
        })
    }

    /// A project found in the workspace under `agent`'s name (a creation whose
    /// `projectCreate` may have applied unrecorded), with the marker the agent's row was
    /// created with.
    pub fn marked_project_of(
        &self,
        project: &ProjectSummary,
        agent: &Agent,
    ) -> Result<DeletableProject, GuardRefusal> {
        self.not_own(&project.id)?;
        let form = MarkerForm::of_stored(agent.project_marker_form);
        if project.name != self.naming.name(&agent.id)
            || !self.naming.is_marked_as(project.description.as_deref(), form)
        {
            return Err(GuardRefusal::NotMarked(project.id.to_string()));
        }
        Ok(DeletableProject {
            id: project.id.clone(),
            name: project.name.clone(),
            form,
        })
    }

    /// Reads the project just before a delete: `Ok(true)` when it is still the one cleared
    /// (its name, this pool's marker), `Ok(false)` when it is gone.
    async fn still_ours(&self, project: &DeletableProject) -> Result<bool> {
        let client = self.deleter.client();
        match client.project_read(&project.id).await? {
            ProjectRead::Gone => Ok(false),
            ProjectRead::NotVisible => {
                if self.is_gone(client, &project.id).await? {
                    Ok(false)
                } else {
                    Err(GuardRefusal::Unverified(project.id.to_string()).into())
                }
            }
            ProjectRead::Exists { name, description } => {
                let marked = self.naming.is_marked_as(description.as_deref(), project.form);
                if name == project.name && marked {
                    Ok(true)
                } else {
                    let found = format!(
                        "named {:?}, {}",
                        name.chars().take(60).collect::<String>(),
                        if marked {
                            "marked as this pool's"
                        } else {
                            "without this pool's marker"
                        }
                    );
                    tracing::error!(project = %project.id, %found, "refused to delete a project that is not this pool's agent project");
                    Err(GuardRefusal::Changed {
                        id: project.id.to_string(),
                        found,
                    }
                    .into())
                }
            }
        }
    }

    /// Deletes a cleared project: the only call to `projectDelete` in the pool. The project is
    /// read first (name and marker; see the module documentation); a project already gone
    /// counts as deleted, without a delete.
    pub async fn delete(&self, project: DeletableProject) -> Result<()> {
        if !self.still_ours(&project).await? {
            return Ok(());
        }
        self.send_delete(project).await
    }

    /// Sends `projectDelete` for a project this guard deleted before, once a read confirms it
    /// is gone (`cargo xtask railway-contract` observes how Railway answers such a delete).
    /// Never sent for a project that still exists.
    pub async fn delete_again(&self, project: DeletableProject) -> Result<()> {
        if self.still_ours(&project).await? {
            return Err(GuardRefusal::Changed {
                id: project.id.to_string(),
                found: "it still exists".into(),
            }
            .into());
        }
        self.send_delete(project).await
    }

    async fn send_delete(&self, project: DeletableProject) -> Result<()> {
        let error = match self.deleter.delete_project(&project.id).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let worth_a_look = matches!(
            error.kind(),
            ErrorKind::NotFound | ErrorKind::Unauthorized | ErrorKind::Transient | ErrorKind::Unknown
        ) || error.delivery() == Delivery::MayHaveApplied;
        if !worth_a_look {
            return Err(error.into());
        }
        if self.is_gone(self.deleter.client(), &project.id).await? {
            tracing::info!(project = %project.id, answer = %error, "project delete answered with an error, but the project is gone");
            Ok(())
        } else {
            Err(error.into())
        }
    }

    /// Whether a project is gone, by one `project(id)` read. "Not Authorized" means gone only
    /// while the token still reaches the workspace: a token that lost access gets the same
    /// answer for projects that still exist.
    pub async fn is_gone(
        &self,
        client: &RailwayClient,
        project: &ProjectId,
    ) -> std::result::Result<bool, RailwayError> {
        match client.project_presence(project).await? {
            ProjectPresence::Deleted | ProjectPresence::NotFound => Ok(true),
            ProjectPresence::Exists => Ok(false),
            ProjectPresence::NotVisible => Ok(client
                .token_workspaces()
                .await?
                .iter()
                .any(|w| w.id == self.workspace)),
        }
    }
}
