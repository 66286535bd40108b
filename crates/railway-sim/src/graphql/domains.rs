//! Domains: a service instance's domains (`domains`) and `serviceDomainCreate`.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use tokio::time::Instant;

use crate::world::World;

use super::{Result, token, world};

#[derive(SimpleObject)]
pub(super) struct AllDomains {
    pub(super) service_domains: Vec<ServiceDomain>,
}

impl AllDomains {
    /// The domains of a service's instance in an environment.
    pub(super) fn of(w: &World, service_id: &str, environment_id: &str) -> Self {
        Self {
            service_domains: w
                .service_domains(service_id, environment_id)
                .into_iter()
                .map(|(id, domain)| ServiceDomain { domain, id: ID(id) })
                .collect(),
        }
    }
}

#[derive(SimpleObject)]
pub(super) struct ServiceDomain {
    pub(super) domain: String,
    pub(super) id: ID,
}

#[derive(InputObject)]
pub(super) struct ServiceDomainCreateInput {
    pub(super) environment_id: String,
    pub(super) service_id: String,
    pub(super) target_port: Option<i32>,
}

/// `Query`'s fields about domains.
#[derive(Default)]
pub(super) struct DomainsQuery;

#[Object]
impl DomainsQuery {
    async fn domains(
        &self,
        ctx: &Context<'_>,
        environment_id: String,
        project_id: String,
        service_id: String,
    ) -> Result<AllDomains> {
        let w = world(ctx);
        w.project_visible(token(ctx), &project_id)?;
        Ok(AllDomains::of(&w, &service_id, &environment_id))
    }
}

/// `Mutation`'s fields about domains.
#[derive(Default)]
pub(super) struct DomainsMutation;

#[Object]
impl DomainsMutation {
    async fn service_domain_create(
        &self,
        ctx: &Context<'_>,
        input: ServiceDomainCreateInput,
    ) -> Result<ServiceDomain> {
        let _ = input.target_port;
        let (id, domain) = world(ctx).create_domain(
            token(ctx),
            &input.environment_id,
            &input.service_id,
            Instant::now(),
        )?;
        Ok(ServiceDomain { domain, id: ID(id) })
    }
}
