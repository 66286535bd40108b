//! The external resources each agent gets: an OpenRouter key (`OPENROUTER_*`), and through the
//! service proxy an AgentMail inbox (`AGENTMAIL_*`) and a Telnyx number (`TELNYX_*`). Each is
//! off unless its key is set; the AgentMail and Telnyx keys never reach an agent.

use pool_provisioner::{AgentMailConfig, OpenRouterConfig, TelnyxConfig};

use super::reader::Reader;

/// `OPENROUTER_MANAGEMENT_KEY` and the keys' API, credit limit and reset.
pub(super) fn openrouter(r: &mut Reader<'_>) -> Option<OpenRouterConfig> {
    let mut openrouter = r
        .secret("OPENROUTER_MANAGEMENT_KEY")
        .map(|management_key| OpenRouterConfig {
            base_url: String::new(),
            management_key,
            key_limit: 20.0,
            limit_reset: "monthly".into(),
        });
    if let Some(openrouter) = openrouter.as_mut() {
        openrouter.base_url = r.url("OPENROUTER_API_URL", "https://openrouter.ai/api/v1");
        openrouter.key_limit = r.parse("OPENROUTER_KEY_LIMIT", 20.0, "a number of credits");
        openrouter.limit_reset = r
            .optional("OPENROUTER_KEY_LIMIT_RESET")
            .unwrap_or_else(|| "monthly".into());
    }
    openrouter
}

/// `AGENTMAIL_API_KEY` and the inboxes' API and domain.
pub(super) fn agentmail(r: &mut Reader<'_>) -> Option<AgentMailConfig> {
    let mut agentmail = r.secret("AGENTMAIL_API_KEY").map(|api_key| AgentMailConfig {
        base_url: String::new(),
        api_key,
        domain: None,
    });
    if let Some(agentmail) = agentmail.as_mut() {
        agentmail.base_url = r.url("AGENTMAIL_API_URL", "https://api.agentmail.to/v0");
        agentmail.domain = r.optional("AGENTMAIL_DOMAIN");
    }
    agentmail
}

/// `TELNYX_API_KEY` and the numbers' API, messaging profile and country.
pub(super) fn telnyx(r: &mut Reader<'_>) -> Option<TelnyxConfig> {
    let mut telnyx = r.secret("TELNYX_API_KEY").map(|api_key| TelnyxConfig {
        base_url: String::new(),
        api_key,
        messaging_profile_id: None,
        country_code: String::new(),
    });
    if let Some(telnyx) = telnyx.as_mut() {
        telnyx.base_url = r.url("TELNYX_API_URL", "https://api.telnyx.com/v2");
        telnyx.messaging_profile_id = r.optional("TELNYX_MESSAGING_PROFILE_ID");
        telnyx.country_code = r.optional("TELNYX_COUNTRY_CODE").unwrap_or_else(|| "US".into());
    }
    telnyx
}
