//! Which services, volumes, domains and deployments belong to which project or service, so
//! that a lookup by owner reads that owner's own and not the whole world (seeding 100,000
//! agents scanned every service per new service: quadratic). An index holds ids only; the
//! world's maps keep the records. Ids are listed in the same order as the maps' (by id, or by
//! host name for domains), so a lookup answers in the order a scan of the map did.

use std::collections::{BTreeMap, BTreeSet};

use super::{Deployment, Domain, Owner, Service, Volume, World};

/// Ids by owner. Deleted services and volumes stay listed (they stay in the world's maps, with
/// `deleted` set); domains leave with their service, as they leave the world's map.
#[derive(Debug, Default)]
pub(crate) struct Index {
    services_by_project: Owned,
    volumes_by_project: Owned,
    /// A volume's service may be of another project than the volume (`volumeCreate` does not
    /// check), so volumes are listed under both.
    volumes_by_service: Owned,
    /// Host names (the domains' keys) by service; a domain's project is its service's.
    domains_by_service: Owned,
    deployments_by_project: Owned,
    deployments_by_service: Owned,
}

/// Owner id → the ids it owns.
type Owned = BTreeMap<String, BTreeSet<String>>;

fn add(map: &mut Owned, owner: &str, id: &str) {
    map.entry(owner.to_string()).or_default().insert(id.to_string());
}

fn of<'a>(map: &'a Owned, owner: &str) -> impl Iterator<Item = &'a String> + use<'a> {
    map.get(owner).into_iter().flatten()
}

impl Index {
    pub(crate) fn add_service(&mut self, project_id: &str, service_id: &str) {
        add(&mut self.services_by_project, project_id, service_id);
    }

    pub(crate) fn add_volume(&mut self, project_id: &str, service_id: Option<&str>, volume_id: &str) {
        add(&mut self.volumes_by_project, project_id, volume_id);
        if let Some(service_id) = service_id {
            add(&mut self.volumes_by_service, service_id, volume_id);
        }
    }

    pub(crate) fn add_domain(&mut self, service_id: &str, domain: &str) {
        add(&mut self.domains_by_service, service_id, domain);
    }

    /// Forgets a service's domains; returns their host names.
    pub(crate) fn take_domains(&mut self, service_id: &str) -> BTreeSet<String> {
        self.domains_by_service.remove(service_id).unwrap_or_default()
    }

    pub(crate) fn add_deployment(&mut self, project_id: &str, service_id: &str, deployment_id: &str) {
        add(&mut self.deployments_by_project, project_id, deployment_id);
        add(&mut self.deployments_by_service, service_id, deployment_id);
    }

    pub(crate) fn services_of_project(&self, project_id: &str) -> impl Iterator<Item = &String> {
        of(&self.services_by_project, project_id)
    }

    pub(crate) fn volumes_of_project(&self, project_id: &str) -> impl Iterator<Item = &String> {
        of(&self.volumes_by_project, project_id)
    }

    pub(crate) fn volumes_of_service(&self, service_id: &str) -> impl Iterator<Item = &String> {
        of(&self.volumes_by_service, service_id)
    }

    pub(crate) fn domains_of_service(&self, service_id: &str) -> impl Iterator<Item = &String> {
        of(&self.domains_by_service, service_id)
    }

    pub(crate) fn deployments_of_project(&self, project_id: &str) -> impl Iterator<Item = &String> {
        of(&self.deployments_by_project, project_id)
    }

    pub(crate) fn deployments_of_service(&self, service_id: &str) -> impl Iterator<Item = &String> {
        of(&self.deployments_by_service, service_id)
    }
}

/// The records of `map` that `ids` name and that still belong to their owner, in `ids`' order.
fn records<'a, T>(
    ids: impl Iterator<Item = &'a String> + 'a,
    map: &'a BTreeMap<String, T>,
    belongs: impl Fn(&T) -> bool + 'a,
) -> impl Iterator<Item = &'a T> + 'a {
    ids.filter_map(|id| map.get(id)).filter(move |r| belongs(r))
}

/// Lookups by owner, through the index.
impl World {
    /// The services of a project, deleted ones too, in id order.
    pub(crate) fn services_of_project<'a>(
        &'a self,
        project_id: &'a str,
    ) -> impl Iterator<Item = &'a Service> + 'a {
        records(
            self.index.services_of_project(project_id),
            &self.services,
            move |s| s.project_id == project_id,
        )
    }

    /// The volumes of a project, deleted ones too, in id order.
    pub(crate) fn volumes_of_project<'a>(
        &'a self,
        project_id: &'a str,
    ) -> impl Iterator<Item = &'a Volume> + 'a {
        records(
            self.index.volumes_of_project(project_id),
            &self.volumes,
            move |v| v.project_id == project_id,
        )
    }

    /// The volumes attached to a service, deleted ones too, in id order.
    pub(crate) fn volumes_of_service<'a>(
        &'a self,
        service_id: &'a str,
    ) -> impl Iterator<Item = &'a Volume> + 'a {
        records(
            self.index.volumes_of_service(service_id),
            &self.volumes,
            move |v| v.service_id.as_deref() == Some(service_id),
        )
    }

    /// The ids of the volumes attached to a service (to change them).
    pub(crate) fn volume_ids_of_service(&self, service_id: &str) -> Vec<String> {
        self.volumes_of_service(service_id)
            .map(|v| v.id.clone())
            .collect()
    }

    /// The domains of a service, in host name order.
    pub(crate) fn domains_of_service<'a>(
        &'a self,
        service_id: &'a str,
    ) -> impl Iterator<Item = &'a Domain> + 'a {
        records(
            self.index.domains_of_service(service_id),
            &self.domains,
            move |d| d.service_id == service_id,
        )
    }

    /// Removes a service's domains.
    pub(crate) fn remove_domains_of_service(&mut self, service_id: &str) {
        for host in self.index.take_domains(service_id) {
            if self
                .domains
                .get(&host)
                .is_some_and(|d| d.service_id == service_id)
            {
                self.domains.remove(&host);
            }
        }
    }

    /// The deployments of a project, in id order.
    pub(crate) fn deployments_of_project<'a>(
        &'a self,
        project_id: &'a str,
    ) -> impl Iterator<Item = &'a Deployment> + 'a {
        records(
            self.index.deployments_of_project(project_id),
            &self.deployments,
            move |d| d.project_id == project_id,
        )
    }

    /// The ids of the deployments of a project or of a service (to change them).
    pub(crate) fn deployment_ids_of(&self, owner: Owner<'_>) -> Vec<String> {
        let ids: Vec<&String> = match owner {
            Owner::Project(id) => self.index.deployments_of_project(id).collect(),
            Owner::Service(id) => self.index.deployments_of_service(id).collect(),
        };
        ids.into_iter()
            .filter(|id| {
                self.deployments.get(*id).is_some_and(|d| match owner {
                    Owner::Project(p) => d.project_id == p,
                    Owner::Service(s) => d.service_id == s,
                })
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use crate::config::SimConfig;
    use crate::world::{Status, World};

    const TOKEN: &str = "sim-token";

    fn project(w: &mut World, name: &str) -> (String, String) {
        let id = w
            .create_project(
                TOKEN,
                Some(name.into()),
                None,
                Some("ws-sim".into()),
                None,
                Instant::now(),
            )
            .unwrap();
        let env = w.projects[&id].environments[0].0.clone();
        (id, env)
    }

    fn service(w: &mut World, project: &str, env: &str) -> String {
        w.create_service(
            TOKEN,
            project,
            Some(env.into()),
            None,
            false,
            Some("ghcr.io/x/agent:1".into()),
            Instant::now(),
        )
        .unwrap()
    }

    /// Every lookup by owner sees its owner's records and no other's: the 100-service cap is
    /// per project, a service's deletion takes its own domains and deployments only, a
    /// project's deletion its own services, volumes, domains and deployments only.
    #[tokio::test]
    async fn lookups_by_owner_see_their_own() {
        let mut w = World::new(SimConfig::without_quirks());
        let now = Instant::now();
        let (a, env_a) = project(&mut w, "a");
        let (b, env_b) = project(&mut w, "b");
        let a_services: Vec<String> = (0..100).map(|_| service(&mut w, &a, &env_a)).collect();
        let refused = w
            .create_service(TOKEN, &a, Some(env_a.clone()), None, false, None, now)
            .unwrap_err();
        assert_eq!(refused.message, "Projects can have at most 100 services");
        let b1 = service(&mut w, &b, &env_b);
        let b2 = service(&mut w, &b, &env_b);
        assert_eq!(w.services_of_project(&b).count(), 2);

        let (_, host_a) = w.create_domain(TOKEN, &env_a, &a_services[0], now).unwrap();
        let (_, host_b1) = w.create_domain(TOKEN, &env_b, &b1, now).unwrap();
        let (_, host_b2) = w.create_domain(TOKEN, &env_b, &b2, now).unwrap();
        assert_eq!(w.service_domains(&b1, &env_b).len(), 1);
        assert!(w.service_domains(&b1, "another-environment").is_empty());
        w.create_volume(
            TOKEN,
            &a,
            Some(env_a.clone()),
            Some(a_services[1].clone()),
            "/data".into(),
            now,
        )
        .unwrap();
        w.create_volume(
            TOKEN,
            &b,
            Some(env_b.clone()),
            Some(b2.clone()),
            "/data".into(),
            now,
        )
        .unwrap();
        let again = w
            .create_volume(
                TOKEN,
                &b,
                Some(env_b.clone()),
                Some(b2.clone()),
                "/other".into(),
                now,
            )
            .unwrap_err();
        assert_eq!(again.message, "A service can only have one volume");
        // A deployment after the volume mounts it and finds the sentinel written.
        let redeployed = w.deploy_checked(TOKEN, &b2, &env_b, false, now).unwrap();
        assert_eq!(
            w.deployments[&redeployed].volume_mounts,
            vec!["/data".to_string()]
        );
        assert_eq!(w.deployments[&redeployed].domains, vec![host_b2.clone()]);

        w.delete_service(TOKEN, &b1).unwrap();
        assert!(!w.domains.contains_key(&host_b1));
        assert!(w.domains.contains_key(&host_b2) && w.domains.contains_key(&host_a));
        let down = |w: &World, service: &str| {
            w.deployments
                .values()
                .filter(|d| d.service_id == service)
                .all(|d| w.status(d, now) == Status::Removed)
        };
        assert!(down(&w, &b1));
        assert!(!down(&w, &b2));

        w.delete_project(TOKEN, &a, now).unwrap();
        assert!(w.services_of_project(&a).all(|s| s.deleted));
        assert!(w.volumes_of_project(&a).all(|v| v.deleted));
        assert!(!w.domains.contains_key(&host_a));
        assert!(a_services.iter().all(|s| down(&w, s)));
        assert!(w.domains.contains_key(&host_b2));
        assert!(!w.services[&b2].deleted && !down(&w, &b2));
        assert!(w.volumes_of_project(&b).all(|v| !v.deleted));
        assert_eq!(
            w.deployments_of_project(&b).count(),
            3,
            "b1's, b2's first and its redeploy"
        );
    }
}
