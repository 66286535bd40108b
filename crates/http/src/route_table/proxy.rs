//! The service proxy's routes (`/api/proxy/*`, the Node pool's `serviceProxy.ts`).

use super::{Access, Endpoint, LIMITED, ProxyEndpoint, Route, TOO_LARGE, WRONG_AGENT};

const AGENT_AUTH: (u16, &str, Option<&str>) = (
    401,
    "no Authorization: Bearer <instanceId>:<gatewayToken>",
    Some("Error"),
);
const UPSTREAM: (u16, &str, Option<&str>) = (
    502,
    "the provider failed (its body is never passed on)",
    Some("Error"),
);
const PROVISION: &[(u16, &str, Option<&str>)] = &[
    (
        200,
        "the agent's inbox or number, and whether it was made now",
        None,
    ),
    (400, "the admin key without instanceId", Some("Error")),
    AGENT_AUTH,
    WRONG_AGENT,
    (404, "no such agent (admin key)", Some("Error")),
    (
        409,
        "the agent is being torn down, or another provisioning runs",
        Some("Error"),
    ),
    LIMITED,
    UPSTREAM,
    (503, "the service is not configured on this pool", Some("Error")),
];
const DATA: &[(u16, &str, Option<&str>)] = &[
    (200, "the provider's answer, as it came", None),
    (400, "a malformed body, id or query", Some("Error")),
    AGENT_AUTH,
    WRONG_AGENT,
    (
        404,
        "no inbox or number provisioned, or no such message of the agent's",
        Some("Error"),
    ),
    TOO_LARGE,
    LIMITED,
    UPSTREAM,
];

/// The service proxy's routes: the agents' own calls (and the admin's, where Node allows).
pub fn proxy_table() -> Vec<Route> {
    let route = |endpoint, method, path, summary, responses| Route {
        endpoint: Endpoint::Proxy(endpoint),
        method,
        path,
        summary,
        access: Access::Agent,
        request: None,
        responses,
    };
    use ProxyEndpoint as P;
    vec![
        route(
            P::EmailProvision,
            "POST",
            "/api/proxy/email/provision",
            "An inbox for the agent on first use (its credentials, or the admin key with {instanceId})",
            PROVISION,
        ),
        route(
            P::SmsProvision,
            "POST",
            "/api/proxy/sms/provision",
            "A phone number for the agent on first use (its credentials, or the admin key with {instanceId})",
            PROVISION,
        ),
        route(
            P::EmailUnprovision,
            "POST",
            "/api/proxy/email/unprovision",
            "Delete the agent's inbox",
            PROVISION,
        ),
        route(
            P::SmsUnprovision,
            "POST",
            "/api/proxy/sms/unprovision",
            "Release the agent's number (back to the pool's stock)",
            PROVISION,
        ),
        route(
            P::ServicesStatus,
            "GET",
            "/api/proxy/services/status",
            "An agent's inbox and number (admin key; ?instanceId=)",
            &[
                (200, "inbox and number", None),
                (400, "no instanceId", Some("Error")),
                (401, "not the admin key", Some("Error")),
                (404, "no such agent", Some("Error")),
            ],
        ),
        route(
            P::Info,
            "GET",
            "/api/proxy/info",
            "The calling agent's id, inbox and number",
            &[(200, "its services", None), AGENT_AUTH, WRONG_AGENT, LIMITED],
        ),
        route(
            P::EmailSend,
            "POST",
            "/api/proxy/email/send",
            "Send an email from the agent's inbox",
            DATA,
        ),
        route(
            P::EmailMessages,
            "GET",
            "/api/proxy/email/messages",
            "The agent's messages (query forwarded as it came)",
            DATA,
        ),
        route(
            P::EmailMessage,
            "GET",
            "/api/proxy/email/messages/{id}",
            "One message of the agent's inbox, with attachment links",
            DATA,
        ),
        route(
            P::EmailUpdate,
            "PATCH",
            "/api/proxy/email/messages/{id}",
            "Change a message's labels",
            DATA,
        ),
        route(
            P::EmailThreads,
            "GET",
            "/api/proxy/email/threads",
            "The agent's threads (query forwarded as it came)",
            DATA,
        ),
        route(
            P::SmsSend,
            "POST",
            "/api/proxy/sms/send",
            "Send a text from the agent's number",
            DATA,
        ),
        route(
            P::SmsRecords,
            "GET",
            "/api/proxy/sms/records",
            "Inbound records of the agent's number since it got it",
            DATA,
        ),
        route(
            P::SmsMessage,
            "GET",
            "/api/proxy/sms/messages/{id}",
            "One message of the agent's number",
            DATA,
        ),
    ]
}
