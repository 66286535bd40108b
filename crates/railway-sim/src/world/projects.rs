//! Projects and environments: creation under Railway's throttles, soft deletion, and reads
//! that see deleted projects the way the live API does.

use std::time::Duration;

use chrono::Utc;
use rand::Rng;
use tokio::time::Instant;

use super::{Owner, Project, Refusal, World};
use crate::quirks::ProjectThrottleScope;

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}

impl World {
    pub(crate) fn create_project(
        &mut self,
        token: &str,
        name: Option<String>,
        description: Option<String>,
        workspace_id: Option<String>,
        default_environment_name: Option<String>,
        now: Instant,
    ) -> Result<String, Refusal> {
        let workspaces = self.token_workspaces(token).ok_or_else(Refusal::not_authorized)?;
        let workspace_id = match workspace_id {
            Some(ws) if workspaces.contains(&ws) => ws,
            Some(_) => return Err(Refusal::not_authorized()),
            None => return Err(Refusal::bad_input("workspaceId is required")),
        };
        let name = name.unwrap_or_else(|| "untitled".into());
        if name.chars().count() > self.config.limits.max_project_name {
            return Err(Refusal::bad_input(format!(
                "Project name must be at most {} characters",
                self.config.limits.max_project_name
            )));
        }
        // Railway's throttle: per workspace today, per user in its older form (the exact
        // messages of terraform-provider-railway's cooldown tests and distilled's errors.ts).
        let quirks = &self.config.quirks;
        let throttle_key = match quirks.project_create_scope {
            ProjectThrottleScope::Workspace => format!("workspace:{workspace_id}"),
            ProjectThrottleScope::User => format!("token:{token}"),
        };
        if let Some(interval) = quirks.project_create_interval
            && let Some(last) = self.last_project_create.get(&throttle_key)
            && now.saturating_duration_since(*last) < interval
        {
            let secs = whole_seconds(interval);
            let message = match quirks.project_create_scope {
                ProjectThrottleScope::Workspace => format!(
                    "You are creating projects too quickly. This workspace allows 1 project per {secs} seconds. Try again shortly."
                ),
                ProjectThrottleScope::User => {
                    format!("Only one project can be created per user every {secs}s")
                }
            };
            return Err(self.quirk(Refusal::throttled(message)));
        }
        self.last_project_create.insert(throttle_key, now);
        let id = self.id("prj");
        let env_id = self.id("env");
        let env_name = default_environment_name
            .filter(|_| self.config.honour_default_environment_name)
            .unwrap_or_else(|| "production".into());
        self.projects.insert(
            id.clone(),
            Project {
                id: id.clone(),
                name,
                description,
                workspace_id: Some(workspace_id),
                created_at: Utc::now(),
                deleted_at: None,
                deleted: None,
                environments: vec![(env_id, env_name)],
            },
        );
        Ok(id)
    }

    pub(crate) fn create_environment(
        &mut self,
        token: &str,
        project_id: &str,
        name: String,
        now: Instant,
    ) -> Result<(String, String), Refusal> {
        self.project_visible(token, project_id)?;
        if let Some(interval) = self.config.quirks.environment_create_interval
            && let Some(last) = self.last_environment_create.get(token)
            && now.saturating_duration_since(*last) < interval
        {
            let secs = whole_seconds(interval);
            return Err(self.quirk(Refusal::throttled(format!(
                "Whoa there pal! Only one environment can be created per user every {secs}s. Try again in a sec"
            ))));
        }
        if self
            .live_project(project_id)?
            .environments
            .iter()
            .any(|(_, n)| *n == name)
        {
            return Err(Refusal::bad_input(format!("Environment {name} already exists")));
        }
        self.last_environment_create.insert(token.to_string(), now);
        let id = self.id("env");
        if let Some(p) = self.projects.get_mut(project_id) {
            p.environments.push((id.clone(), name.clone()));
        }
        Ok((id, name))
    }

    /// `project(id)`: a deleted project is still returned, with `deletedAt`, for a moment;
    /// then it is "Project not found".
    pub(crate) fn project_for_read(&self, token: &str, id: &str, now: Instant) -> Result<&Project, Refusal> {
        let project = self
            .projects
            .get(id)
            .ok_or_else(|| Refusal::not_found("Project"))?;
        if let Some(deleted) = project.deleted
            && now.saturating_duration_since(deleted) >= self.config.quirks.deleted_project_visible_for
        {
            return Err(Refusal::not_found("Project"));
        }
        let workspaces = self.token_workspaces(token).ok_or_else(Refusal::not_authorized)?;
        match &project.workspace_id {
            Some(ws) if workspaces.contains(ws) => Ok(project),
            _ => Err(Refusal::not_authorized()),
        }
    }

    /// `projectsByIds`: the visible, live projects among `ids` — less a share of them when
    /// the omission quirk is on ("skips ids the caller cannot access").
    pub(crate) fn projects_by_ids(&mut self, token: &str, ids: Vec<String>) -> Vec<String> {
        let omission = self.config.quirks.batch_omission;
        let mut rng = rand::rng();
        let mut answered = Vec::new();
        for id in ids {
            if self.project_visible(token, &id).is_err() {
                continue;
            }
            if omission > 0.0 && rng.random::<f64>() < omission {
                self.counters.ids_omitted += 1;
                continue;
            }
            answered.push(id);
        }
        answered
    }

    pub(crate) fn delete_project(
        &mut self,
        token: &str,
        project_id: &str,
        now: Instant,
    ) -> Result<(), Refusal> {
        if let Err(refusal) = self.project_visible(token, project_id) {
            // Deleting a deleted project answers "Not Authorized" on the live API
            // (terraform-provider-railway `isNotFoundOrGone`).
            let deleted = self
                .projects
                .get(project_id)
                .is_some_and(|p| p.deleted_at.is_some());
            if deleted && self.config.quirks.deleted_project_delete_unauthorized {
                return Err(self.quirk(Refusal::not_authorized()));
            }
            return Err(refusal);
        }
        if let Some(p) = self.projects.get_mut(project_id) {
            p.deleted_at = Some(Utc::now());
            p.deleted = Some(now);
        }
        let services: Vec<String> = self
            .services_of_project(project_id)
            .map(|s| s.id.clone())
            .collect();
        for id in &services {
            if let Some(s) = self.services.get_mut(id) {
                s.deleted = true;
            }
            // A domain's project is its service's.
            self.remove_domains_of_service(id);
        }
        let volumes: Vec<String> = self
            .volumes_of_project(project_id)
            .map(|v| v.id.clone())
            .collect();
        for id in volumes {
            if let Some(v) = self.volumes.get_mut(&id) {
                v.deleted = true;
            }
        }
        for id in self.deployment_ids_of(Owner::Project(project_id)) {
            if let Some(d) = self.deployments.get_mut(&id) {
                d.take_down(Instant::now());
            }
        }
        Ok(())
    }
}
