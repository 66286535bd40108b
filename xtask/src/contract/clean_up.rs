//! The clean-up: every project the run made (or may have made) is found in the workspace's
//! listing and deleted through the pool's guard, whatever the observations did.

use std::time::{Duration, Instant};

use railway_api::{ProjectPresence, ProjectSummary, RailwayError};

use super::{Report, Run};

impl Run {
    /// Deletes every project made, through the guard. The first project's deletion is also
    /// where (c) is observed.
    pub(super) async fn clean_up(&mut self, report: &mut Report) {
        let wanted: Vec<usize> = (0..self.attempts.len())
            .filter(|&i| self.attempts[i].id.is_some() || self.attempts[i].uncertain)
            .collect();
        if wanted.is_empty() {
            return;
        }
        let listing = self.listing().await;
        let listing = match listing {
            Ok(listing) => listing,
            Err(e) => {
                for &i in &wanted {
                    report.problems.push(format!(
                        "could not list the workspace to delete {}: {e}; delete it by hand",
                        self.describe(i)
                    ));
                }
                return;
            }
        };
        let mut cleared = Vec::new();
        for &i in &wanted {
            let attempt = &self.attempts[i];
            let found = listing.iter().find(|p| match &attempt.id {
                Some(id) => p.id == *id,
                None => p.name == attempt.name,
            });
            let Some(summary) = found else {
                if let Some(id) = &attempt.id
                    && !matches!(
                        self.client.project_presence(id).await,
                        Ok(ProjectPresence::Deleted | ProjectPresence::NotFound)
                    )
                {
                    report.problems.push(format!(
                        "{} is not in the workspace listing; delete it by hand",
                        self.describe(i)
                    ));
                }
                continue;
            };
            match self.guard.marked_project(summary) {
                Ok(deletable) => {
                    cleared.push(summary.name.clone());
                    match self.guard.delete(deletable.clone()).await {
                        Ok(()) if i == 0 => self.observe_deleted(report, deletable).await,
                        Ok(()) => {}
                        Err(e) => report.problems.push(format!(
                            "could not delete {}: {e}; delete it by hand",
                            self.describe(i)
                        )),
                    }
                }
                Err(refusal) => report.problems.push(format!(
                    "the guard refused {} ({refusal}); delete it by hand",
                    self.describe(i)
                )),
            }
        }
        report.observe(
            9,
            "the listing keeps the pool's marker: the guard clears its projects for deletion",
            format!("{} of {} project(s) cleared", cleared.len(), wanted.len()),
            cleared.len() == wanted.len(),
        );
    }

    /// The workspace's projects, read until every project with a known id shows up (a
    /// listing may lag a creation a little) or the wait is over.
    async fn listing(&self) -> Result<Vec<ProjectSummary>, RailwayError> {
        let deadline = Instant::now() + self.target.waits.listing;
        loop {
            let projects = self.client.workspace_projects(&self.target.workspace).await?;
            let complete = self
                .attempts
                .iter()
                .filter_map(|a| a.id.as_ref())
                .all(|id| projects.iter().any(|p| p.id == *id));
            if complete || Instant::now() >= deadline {
                return Ok(projects);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    fn describe(&self, i: usize) -> String {
        let a = &self.attempts[i];
        match &a.id {
            Some(id) => format!("project {id} ({})", a.name),
            None => format!("a project named {} (its creation may have applied)", a.name),
        }
    }
}
