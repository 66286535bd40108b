//! Per-caller limits: the service proxy's per agent (`POOL_PROXY_*`), the agents' own calls
//! (`POOL_AGENT_CALLS_PER_MINUTE`), and the claims' per key
//! (`POOL_MAX_WAITING_CLAIMS_PER_KEY`, `POOL_REFUSALS_COUNTED_PER_KEY_PER_MINUTE`). The proxy's
//! services need `POOL_URL`: agents reach them there.

use pool_provisioner::ProvisionerConfig;

use super::reader::Reader;

/// The service proxy's and the claims' limits into `provisioner`.
pub(super) fn read(r: &mut Reader<'_>, provisioner: &mut ProvisionerConfig) {
    provisioner.proxy = pool_provisioner::ProxyLimits {
        requests_per_minute: r.parse("POOL_PROXY_REQUESTS_PER_MINUTE", 120, "a whole number"),
        sends_per_hour: r.parse("POOL_PROXY_SENDS_PER_HOUR", 60, "a whole number"),
        provisions_per_hour: r.parse("POOL_PROXY_PROVISIONS_PER_HOUR", 6, "a whole number"),
        upstream_timeout: r.millis("POOL_PROXY_UPSTREAM_TIMEOUT_MS", 30_000),
    };
    provisioner.agent_calls_per_minute = r.parse("POOL_AGENT_CALLS_PER_MINUTE", 30, "a whole number");
    if provisioner.agent_calls_per_minute == 0 {
        r.problems
            .push("POOL_AGENT_CALLS_PER_MINUTE must be at least 1: agents could not self-destruct".into());
    }
    provisioner.max_waiting_per_claimant = r.parse("POOL_MAX_WAITING_CLAIMS_PER_KEY", 50, "a whole number");
    provisioner.refusals_counted_per_minute =
        r.parse("POOL_REFUSALS_COUNTED_PER_KEY_PER_MINUTE", 5, "a whole number");
    if provisioner.max_waiting_per_claimant == 0 {
        r.problems
            .push("POOL_MAX_WAITING_CLAIMS_PER_KEY must be at least 1".into());
    }
    let uses_proxy = provisioner.agentmail.is_some() || provisioner.telnyx.is_some();
    if uses_proxy && provisioner.agent_variables.pool_url.is_none() {
        r.problems.push(
            "POOL_URL is required when AGENTMAIL_API_KEY or TELNYX_API_KEY is set: agents reach their email and SMS through the pool's service proxy there (they never get the keys)".into(),
        );
    }
}
