//! The agents' own calls to the pool, as the runtime at the pinned commit makes them: the
//! pool server's self-destruct (`runtime/convos-platform/pool-server/index.ts:470-479`), the
//! web tools' self-info (`runtime/openclaw/src/web-tools/index.ts:81-94`) and a pending join's
//! outcome (`runtime/hermes/src/server/server.py:481-500`), each with
//! `{"instanceId", "gatewayToken"}` in a JSON body ([`Access::AgentBody`]), paths and answers
//! as the Node pool's (`pool/src/index.ts:148-179,331-391`).

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
        route(
            AgentCallEndpoint::SelfUpgrade,
            "/api/pool/self-upgrade",
            "The calling agent moves to the image new agents get, through a rollout of that one agent (digest once, health gate, rollback on failure)",
            "AgentCredentials",
            &[
                (200, "its upgrade started", Some("SelfUpgraded")),
                BAD_REQUEST,
                WRONG_AGENT,
                (409, "a rollout of its runtime is running (named)", Some("Error")),
                TOO_LARGE,
                LIMITED,
                (502, "the registry did not resolve the image", Some("Error")),
            ],
        ),
        route(
            AgentCallEndpoint::PendingComplete,
            "/api/pool/pending-acceptance/complete",
            "The calling agent's pending join was accepted: it is claimed, with its conversation",
            "PendingOutcome",
            &[
                (200, "claimed", Some("PendingCompleted")),
                BAD_REQUEST,
                WRONG_AGENT,
                (409, "the agent is not pending acceptance", Some("Error")),
                TOO_LARGE,
                LIMITED,
            ],
        ),
        route(
            AgentCallEndpoint::PendingFail,
            "/api/pool/pending-acceptance/fail",
            "The calling agent's pending join failed: its runtime is reset; idle when clean, torn down otherwise",
            "PendingOutcome",
            &[
                (200, "idle again, or torn down", Some("PendingFailed")),
                BAD_REQUEST,
                WRONG_AGENT,
                (409, "the agent is not pending acceptance", Some("Error")),
                TOO_LARGE,
                LIMITED,
            ],
        ),
    ]
}
