//! (e): parking. The throwaway service runs with a volume on `/data`, a domain and a
//! variable; its container writes a random `sentinel` into `/data` on first boot and serves it.
//! The run parks it as the pool does — `deploymentRemove` on the running deployment, what
//! `railway down` sends (railwayapp/cli `src/commands/down.rs:59-100` at df3838bf) — and
//! wakes it with `serviceInstanceDeployV2`, then checks what the pool relies on: the
//! deployment is `REMOVED`, the volume and the domain are the same, one new deployment reaches
//! `SUCCESS` (its time is printed), the sentinel survived, the variables are intact.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use railway_api::{DeploymentId, DeploymentStatus, EnvironmentId, ProjectId, ServiceId, Variables};

use super::{Report, Run, answer_of};

/// The variable the run sets on the service, to find it intact after the wake.
pub(super) const CONTRACT_VARIABLE: &str = "CONTRACT_PARKING_CHECK";

/// The container's command: write a random sentinel into `/data` on first boot only, serve it
/// as `/sentinel`, run nginx in the foreground.
pub(super) const SENTINEL_START_COMMAND: &str = "sh -c '[ -s /data/sentinel ] || cat /proc/sys/kernel/random/uuid > \
     /data/sentinel; cp /data/sentinel /usr/share/nginx/html/sentinel; exec nginx -g \"daemon off;\"'";

/// What the service is, for the parking checks.
pub(super) struct Parkable {
    pub project: ProjectId,
    pub environment: EnvironmentId,
    pub service: ServiceId,
    pub domain: String,
    pub variables: Variables,
}

/// Where the rows sit in the table: after (d).
const ORDER: u8 = 5;

impl Run {
    /// The URL the container serves its sentinel at.
    fn sentinel_url(&self, domain: &str) -> String {
        match &self.target.agent_base {
            Some(base) => format!("{base}/agents/{domain}/sentinel"),
            None => format!("https://{domain}/sentinel"),
        }
    }

    /// The sentinel the service serves now (`None`: nothing answered it).
    async fn read_sentinel(&self, domain: &str) -> Option<String> {
        let options = railway_api::https::ClientOptions::new(Duration::from_secs(10), 1);
        let http = railway_api::https::client(&options).ok()?;
        let request = hyper::Request::get(self.sentinel_url(domain))
            .body(Full::new(Bytes::new()))
            .ok()?;
        let response = tokio::time::timeout(Duration::from_secs(10), http.request(request))
            .await
            .ok()?
            .ok()?;
        let ok = response.status().is_success();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        ok.then(|| String::from_utf8_lossy(&body).trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Polls the sentinel until it answers or `within` passes.
    async fn sentinel_within(&self, domain: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.read_sentinel(domain).await {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(self.target.waits.deployment_poll).await;
        }
    }

    /// The newest deployment, once it reaches `status` (or the last one seen at `within`).
    async fn newest_until(
        &self,
        p: &Parkable,
        within: Duration,
        done: impl Fn(&railway_api::Deployment) -> bool,
    ) -> Result<Option<railway_api::Deployment>, String> {
        let deadline = Instant::now() + within;
        loop {
            let newest = self
                .client
                .service_deployments(&p.project, &p.environment, &p.service)
                .await
                .map_err(|e| format!("could not read deployments: {}", answer_of(&e)))?
                .into_iter()
                .next();
            if newest.as_ref().is_some_and(&done) || Instant::now() >= deadline {
                return Ok(newest);
            }
            tokio::time::sleep(self.target.waits.deployment_poll).await;
        }
    }

    /// (e): park, look, wake, look. An `Err` is a step that could not be taken.
    pub(super) async fn observe_parking(&self, report: &mut Report, p: &Parkable) -> Result<(), String> {
        let waits = self.target.waits.clone();
        // A running deployment to park: the one the image update started, or one asked for.
        let mut running = self
            .newest_until(p, waits.wake, |d| d.status == DeploymentStatus::Success)
            .await?;
        if running.is_none() {
            self.client
                .deploy_service(&p.environment, &p.service)
                .await
                .map_err(|e| format!("serviceInstanceDeployV2 (first deploy) failed: {}", answer_of(&e)))?;
            running = self
                .newest_until(p, waits.wake, |d| d.status == DeploymentStatus::Success)
                .await?;
        }
        let running = running
            .filter(|d| d.status == DeploymentStatus::Success)
            .ok_or("the throwaway service never reached SUCCESS, nothing to park")?;
        let written = self.sentinel_within(&p.domain, waits.serve).await;
        let volumes_before = self
            .client
            .project_volumes(&p.project)
            .await
            .map_err(|e| format!("could not read volumes: {}", answer_of(&e)))?;

        self.client
            .remove_deployment(&running.id)
            .await
            .map_err(|e| format!("deploymentRemove failed: {}", answer_of(&e)))?;
        let removed = self
            .newest_until(p, waits.deployments, |d| d.status == DeploymentStatus::Removed)
            .await?;
        let removed_status = removed.as_ref().map(|d| d.status.as_str().to_string());
        let silent = self.read_sentinel(&p.domain).await.is_none();
        report.observe(
            ORDER,
            "(e) deploymentRemove (railway down) leaves the running deployment REMOVED and the service answers nothing",
            format!(
                "newest deployment {}: {}; the domain {}",
                running.id,
                removed_status.as_deref().unwrap_or("none"),
                if silent { "answers nothing" } else { "still serves the sentinel" }
            ),
            removed_status.as_deref() == Some("REMOVED") && removed.is_some_and(|d| d.id == running.id) && silent,
        );
        self.observe_kept(report, p, &volumes_before).await;

        let started = Instant::now();
        let woken = self
            .client
            .deploy_service(&p.environment, &p.service)
            .await
            .map_err(|e| format!("serviceInstanceDeployV2 (the wake) failed: {}", answer_of(&e)));
        let woken = match woken {
            Ok(id) => id,
            Err(e) => {
                report.observe(
                    ORDER + 1,
                    "(e) serviceInstanceDeployV2 wakes the parked service",
                    e,
                    false,
                );
                return Ok(());
            }
        };
        let reached = self
            .newest_until(p, waits.wake, |d| {
                d.id == woken && d.status == DeploymentStatus::Success
            })
            .await?;
        let took = started.elapsed();
        let all = self
            .client
            .service_deployments(&p.project, &p.environment, &p.service)
            .await
            .map_err(|e| format!("could not read deployments: {}", answer_of(&e)))?;
        let new_ones = all.iter().filter(|d| d.id != running.id).count();
        let succeeded = reached.is_some_and(|d| d.id == woken && d.status == DeploymentStatus::Success);
        report.observe(
            ORDER + 1,
            "(e) serviceInstanceDeployV2 wakes it with one new deployment that reaches SUCCESS",
            format!(
                "{} {} in {:.1} s; {new_ones} new deployment(s)",
                woken,
                if succeeded {
                    "SUCCESS"
                } else {
                    "did not reach SUCCESS"
                },
                took.as_secs_f64()
            ),
            succeeded && new_ones == 1,
        );
        self.observe_state(report, p, &woken, written).await;
        Ok(())
    }

    /// The volume id and the domain, after the removal.
    async fn observe_kept(
        &self,
        report: &mut Report,
        p: &Parkable,
        volumes_before: &[railway_api::VolumeInfo],
    ) {
        let volumes = self.client.project_volumes(&p.project).await;
        let domains = self
            .client
            .service_domains(&p.project, &p.environment, &p.service)
            .await;
        let (observed, held) = match (volumes, domains) {
            (Ok(volumes), Ok(domains)) => {
                let ids =
                    |v: &[railway_api::VolumeInfo]| v.iter().map(|v| v.id.to_string()).collect::<Vec<_>>();
                let names: Vec<String> = domains.into_iter().map(|d| d.domain).collect();
                (
                    format!(
                        "volumes {:?} (before {:?}); domains {:?} (before {})",
                        ids(&volumes),
                        ids(volumes_before),
                        names,
                        p.domain
                    ),
                    !volumes.is_empty()
                        && ids(&volumes) == ids(volumes_before)
                        && names == vec![p.domain.clone()],
                )
            }
            (Err(e), _) | (_, Err(e)) => (format!("could not read: {}", answer_of(&e)), false),
        };
        report.observe(
            ORDER,
            "(e) the volume id and the domain survive parking",
            observed,
            held,
        );
    }

    /// The sentinel and the variables, after the wake.
    async fn observe_state(
        &self,
        report: &mut Report,
        p: &Parkable,
        woken: &DeploymentId,
        written: Option<String>,
    ) {
        let read = self.sentinel_within(&p.domain, self.target.waits.serve).await;
        report.observe(
            ORDER + 2,
            "(e) a sentinel file on /data survives parking and waking",
            format!(
                "written on first boot: {}; served by {woken}: {}",
                written.as_deref().unwrap_or("(never served)"),
                read.as_deref().unwrap_or("(nothing)")
            ),
            written.is_some() && read == written,
        );
        let (observed, held) = match self
            .client
            .service_variables(&p.project, &p.environment, &p.service)
            .await
        {
            Ok(now) => {
                let kept = p.variables.iter().all(|(k, v)| now.get(k) == Some(v));
                (
                    format!(
                        "{} of {} variable(s) as set",
                        p.variables
                            .iter()
                            .filter(|(k, v)| now.get(*k) == Some(*v))
                            .count(),
                        p.variables.len()
                    ),
                    kept && !p.variables.is_empty(),
                )
            }
            Err(e) => (format!("could not read variables: {}", answer_of(&e)), false),
        };
        report.observe(
            ORDER + 2,
            "(e) the variables are intact after the wake",
            observed,
            held,
        );
    }
}
