//! The agents' own calls to the pool, as the runtime at the pinned commit makes them: the
//! pool server's self-destruct (`runtime/convos-platform/pool-server/index.ts:470-479`) and
//! the web tools' self-info (`runtime/openclaw/src/web-tools/index.ts:81-94`), each with
//! `{"instanceId", "gatewayToken"}` in a JSON body ([`Access::AgentBody`]), paths and answers
//! as the Node pool's (`pool/src/index.ts:148-179,368-391`).

use super::{
    Access, AgentCallEndpoint, BAD_REQUEST, CONFLICT, Endpoint, LIMITED, Route, TOO_LARGE, WRONG_AGENT,
};

/// The path of the agents' self-destruct.
pub const SELF_DESTRUCT_PATH: &str = "/api/pool/self-destruct";

/// The path of the agents' self-info.
pub const SELF_INFO_PATH: &str = "/api/pool/self-info";

/// The agents' own calls.
pub fn agent_calls_table() -> Vec<Route> {
    let route = |endpoint, path, summary, request, responses| Route {
        endpoint: Endpoint::AgentCall(endpoint),
        method: "POST",
        path,
        summary,
        access: Access::AgentBody,
        request: Some(request),
        responses,
    };
    vec![
        route(
            AgentCallEndpoint::SelfDestruct,
            SELF_DESTRUCT_PATH,
            "The calling agent is torn down (its conversation ended), with an event naming it (agent:<id>) as the actor; the pool refills",
            "AgentCredentials",
            &[
                (
                    200,
                    "teardown started, or running already",
                    Some("SelfDestructed"),
                ),
                BAD_REQUEST,
                WRONG_AGENT,
                CONFLICT,
                TOO_LARGE,
                LIMITED,
            ],
        ),
        route(
            AgentCallEndpoint::SelfInfo,
            SELF_INFO_PATH,
            "The calling agent's runtime version and image, and the image new agents get",
            "AgentCredentials",
            &[
                (200, "the agent's runtime", Some("SelfInfo")),
                BAD_REQUEST,
                WRONG_AGENT,
                TOO_LARGE,
                LIMITED,
            ],
        ),
    ]
}
