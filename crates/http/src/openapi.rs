//! The OpenAPI 3 document, built from the route table (paths, methods, auth, bodies) and the
//! schemas of the wire types below. A test checks it against the router.

use serde_json::{Map, Value, json};

use crate::route_table::{Access, CLAIM_PATH, METRICS_PATH, table};

fn nullable(kind: &str) -> Value {
    json!({"type": [kind, "null"]})
}

fn schemas() -> Value {
    let counts = json!({
        "type": "object",
        "required": ["creating", "starting", "idle", "claiming", "claimed", "pending_acceptance", "crashed", "parking", "parked", "waking", "deleting", "total"],
        "properties": {
            "creating": {"type": "integer"}, "starting": {"type": "integer"}, "idle": {"type": "integer"},
            "claiming": {"type": "integer"}, "claimed": {"type": "integer"}, "pending_acceptance": {"type": "integer"},
            "crashed": {"type": "integer"},
            "parking": {"type": "integer"}, "parked": {"type": "integer"}, "waking": {"type": "integer"},
            "deleting": {"type": "integer"}, "total": {"type": "integer"}
        }
    });
    let agent = json!({
        "type": "object",
        "required": ["id", "status", "createdAt", "statusChangedAt", "legacy", "quarantined", "redeployRequested", "teardownAttempts"],
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": ["creating", "starting", "idle", "claiming", "claimed", "pending_acceptance", "crashed", "parking", "parked", "waking", "deleting", "deleted"]},
            "createdAt": {"type": "string", "format": "date-time"},
            "statusChangedAt": {"type": "string", "format": "date-time"},
            "legacy": {"type": "boolean"},
            "quarantined": {"type": "boolean"},
            "projectId": nullable("string"),
            "serviceId": nullable("string"),
            "domain": nullable("string"),
            "deploymentStatus": nullable("string"),
            "image": nullable("string"),
            "lastHealthAt": {"type": ["string", "null"], "format": "date-time"},
            "lastHealthOk": nullable("boolean"),
            "agentName": nullable("string"),
            "inviteUrl": nullable("string"),
            "conversationId": nullable("string"),
            "claimedAt": {"type": ["string", "null"], "format": "date-time"},
            "pendingAcceptanceAt": {"type": ["string", "null"], "format": "date-time"},
            "claimSource": nullable("string"),
            "provisionStatus": {"type": ["string", "null"], "enum": ["created", "joined", "pending_acceptance", null]},
            "runtimeVersion": nullable("string"),
            "runtimeName": nullable("string"),
            "redeployRequested": {"type": "boolean"},
            "teardownAttempts": {"type": "integer"},
            "lastError": nullable("string")
        }
    });
    // Apart, and added after: one `json!` this long would pass serde_json's recursion limit.
    let replica = json!({
        "type": "object",
        "description": "a replica sharing the fleet's shards (a dead one is listed for an hour after its lease ran out)",
        "required": ["replica", "this", "leader", "live", "shards", "shardCount", "leaseAgeMs", "leaseLeftMs", "railwayHourlySlice"],
        "properties": {
            "replica": {"type": "string"}, "this": {"type": "boolean", "description": "the replica that answered"},
            "leader": {"type": "boolean"}, "live": {"type": "boolean"},
            "shards": {"type": "integer", "description": "shards it holds"}, "shardCount": {"type": "integer"},
            "leaseAgeMs": {"type": "integer", "description": "since its last renewal"},
            "leaseLeftMs": {"type": "integer"}, "railwayHourlySlice": {"type": "integer"}
        }
    });
    let status = json!({
        "type": "object",
        "required": ["counts", "instances", "waiting", "brake", "defaultRuntime", "runtimes", "tiers", "monthlyCost", "costAssumptions", "replicas"],
        "properties": {
            "counts": {"$ref": "#/components/schemas/Counts"},
            "instances": {"type": "array", "items": {"$ref": "#/components/schemas/Agent"}},
            "target": nullable("integer"),
            "targetReason": nullable("string"),
            "waiting": {"type": "integer"},
            "brake": {"$ref": "#/components/schemas/Brake"},
            "rollout": {"oneOf": [{"$ref": "#/components/schemas/Rollout"}, {"type": "null"}]},
            "defaultRuntime": {"type": "string", "description": "the runtime a claim without `runtime` gets"},
            "runtimes": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/RuntimeStock"}, "description": "each runtime's stock, by name"},
            "tiers": {"$ref": "#/components/schemas/Tiers"},
            "monthlyCost": {"$ref": "#/components/schemas/MonthlyCost"},
            "costAssumptions": {"$ref": "#/components/schemas/CostAssumptions"},
            "prober": {"oneOf": [{"$ref": "#/components/schemas/Prober"}, {"type": "null"}]},
            "replica": nullable("string"),
            "replicas": {"type": "array", "items": {"$ref": "#/components/schemas/Replica"}}
        }
    });
    let mut schemas = json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
        "Version": {
            "type": "object", "required": ["version", "environment", "image"],
            "properties": {"version": {"type": "string"}, "environment": {"type": "string"}, "image": {"type": "string"}}
        },
        "Counts": counts,
        "Agent": agent,
        "Status": status,
        "Brake": {
            "type": "object", "required": ["consecutiveFailures"],
            "properties": {
                "consecutiveFailures": {"type": "integer"},
                "engagedAt": {"type": ["string", "null"], "format": "date-time"},
                "lastFailure": nullable("string"),
                "lastFailureAt": {"type": ["string", "null"], "format": "date-time"},
                "lastProbeAt": {"type": ["string", "null"], "format": "date-time"}
            }
        },
        "Settings": {
            "type": "object", "required": ["runtime", "minIdle", "paused", "createFailureLimit", "parkedMin", "parkedMax", "parkAfterMs", "updatedAt", "updatedBy", "brake", "runtimes", "defaultRuntime"],
            "properties": {
                "runtime": {"type": "string", "description": "the runtime (shape) these settings and this brake are for"},
                "minIdle": {"type": "integer", "minimum": 0},
                "maxTotal": nullable("integer"),
                "paused": {"type": "boolean"},
                "idleSchedule": nullable("string"),
                "maxIdleAgeMs": nullable("integer"),
                "createFailureLimit": {"type": "integer", "minimum": 1},
                "parkedMin": {"type": "integer", "minimum": 0},
                "parkedMax": {"type": "integer", "minimum": 0},
                "parkAfterMs": {"type": "integer", "minimum": 0},
                "updatedAt": {"type": "string", "format": "date-time"},
                "updatedBy": {"type": "string"},
                "brake": {"$ref": "#/components/schemas/Brake"},
                "runtimes": {"type": "array", "items": {"type": "string"}, "description": "every runtime the pool serves, each with its own settings"},
                "defaultRuntime": {"type": "string", "description": "the runtime a request without ?runtime= acts on"}
            }
        },
        "SettingsChange": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "minIdle": {"type": "integer", "minimum": 0, "maximum": 10000},
                "maxTotal": {"type": ["integer", "null"], "minimum": 1, "maximum": 100000},
                "paused": {"type": "boolean"},
                "idleSchedule": nullable("string"),
                "maxIdleAgeMs": {"type": ["integer", "null"], "minimum": 600000},
                "createFailureLimit": {"type": "integer", "minimum": 1, "maximum": 1000},
                "parkedMin": {"type": "integer", "minimum": 0, "maximum": 10000, "description": "agents kept parked at all times; at most parkedMax"},
                "parkedMax": {"type": "integer", "minimum": 0, "maximum": 10000, "description": "never more parked agents; 0 turns the parked tier off"},
                "parkAfterMs": {"type": "integer", "minimum": 0, "maximum": 7776000000u64, "description": "idle time before an agent above the warm target is parked"}
            }
        },
        "SettingsChanged": {
            "type": "object", "required": ["runtime", "before", "after"],
            "properties": {"runtime": {"type": "string"}, "before": {"type": "object"}, "after": {"type": "object"}}
        },
        "Resumed": {"type": "object", "required": ["runtime", "resumed"], "properties": {"runtime": {"type": "string"}, "resumed": {"type": "boolean"}}},
        "RailwayEvent": {
            "type": "object", "required": ["type"],
            "description": "A Railway webhook event: {type: \"Deployment.crashed\", resource: {project: {id}, service: {id}, …}, …}, or the older {type: \"DEPLOY\", status, project: {id}, …}",
            "properties": {
                "type": {"type": "string"},
                "status": {"type": "string"},
                "resource": {"type": "object"},
                "project": {"type": "object"},
                "service": {"type": "object"}
            }
        },
        "WebhookAnswer": {
            "type": "object", "required": ["ok"],
            "properties": {
                "ok": {"type": "boolean"},
                "ignored": {"type": "string", "description": "why the event changes nothing"},
                "agent": {"type": "string"},
                "look": {"type": "string", "enum": ["health check", "status read"]}
            }
        },
        "AgentLists": {
            "type": "object", "required": ["claimed", "crashed"],
            "properties": {
                "claimed": {"type": "array", "items": {"$ref": "#/components/schemas/Agent"}},
                "crashed": {"type": "array", "items": {"$ref": "#/components/schemas/Agent"}}
            }
        },
        "Event": {
            "type": "object", "required": ["at", "kind", "reason"],
            "properties": {
                "at": {"type": "string", "format": "date-time"}, "kind": {"type": "string"},
                "fromStatus": nullable("string"), "toStatus": nullable("string"), "reason": {"type": "string"},
                "actor": nullable("string")
            }
        },
        "AgentDetail": {
            "type": "object", "required": ["agent", "events"],
            "properties": {"agent": {"$ref": "#/components/schemas/Agent"}, "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}
        },
        "ClaimRequest": {
            "type": "object",
            "description": "Every field is optional: the landing page sends only {joinUrl, source}. An empty or blank agentName or instructions gets the default.",
            "properties": {
                "agentName": {"type": ["string", "null"], "maxLength": 200, "default": "Assistant"},
                "instructions": {"type": ["string", "null"], "maxLength": 32768, "default": "You are a helpful AI assistant."},
                "joinUrl": {"type": ["string", "null"], "maxLength": 2048},
                "source": {"type": ["string", "null"], "maxLength": 64, "default": "api"},
                "profileImage": {"type": ["string", "null"], "maxLength": 2048, "description": "an https:// URL"},
                "metadata": {"type": ["object", "null"], "maxProperties": 32, "additionalProperties": {"type": "string"}, "description": "a flat map of strings, at most 4096 bytes"},
                "runtime": {"type": ["string", "null"], "enum": ["openclaw", null]}
            }
        },
        "ClaimResponse": {
            "type": "object", "required": ["inviteUrl", "conversationId", "status", "agentName", "instanceId", "joined", "gatewayToken", "gatewayUrl"],
            "properties": {
                "inviteUrl": {"type": "string"},
                "conversationId": {"type": ["string", "null"], "description": "null while a join waits for acceptance"},
                "status": {"type": "string", "enum": ["created", "joined", "pending_acceptance"]},
                "agentName": {"type": "string"},
                "instanceId": {"type": "string"},
                "joined": {"type": "boolean"}, "gatewayToken": {"type": "string"}, "gatewayUrl": {"type": "string"}
            }
        },
        "CountRequest": {"type": "object", "properties": {"count": {"type": ["integer", "null"], "minimum": 1, "maximum": 20}}},
        "RedeployRequest": {
            "type": "object",
            "properties": {"instanceIds": {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1, "maxItems": 1000}}
        },
        "Replenished": {
            "type": "object",
            "properties": {"creating": {"type": "array", "items": {"type": "string"}}, "triggered": {"type": "boolean"}, "leader": {"type": "boolean"}}
        },
        "Triggered": {"type": "object", "required": ["triggered", "leader"], "properties": {"triggered": {"type": "boolean"}, "leader": {"type": "boolean"}}},
        "Drained": {"type": "object", "required": ["drained"], "properties": {"drained": {"type": "array", "items": {"type": "string"}}}},
        "Killed": {"type": "object", "required": ["ok", "id"], "properties": {"ok": {"type": "boolean"}, "id": {"type": "string"}}},
        "AgentCredentials": {
            "type": "object", "required": ["instanceId", "gatewayToken"],
            "description": "An agent's own credentials (its INSTANCE_ID and GATEWAY_TOKEN); other fields are ignored",
            "properties": {"instanceId": {"type": "string"}, "gatewayToken": {"type": "string"}}
        },
        "SelfDestructed": {
            "type": "object", "required": ["ok", "instanceId", "alreadyDeleting"],
            "properties": {"ok": {"type": "boolean"}, "instanceId": {"type": "string"}, "alreadyDeleting": {"type": "boolean"}}
        },
        "PendingOutcome": {
            "type": "object", "required": ["instanceId", "gatewayToken"],
            "description": "An agent's own credentials and its pending join's conversation (required to complete); other fields (the runtime's error) are ignored",
            "properties": {"instanceId": {"type": "string"}, "gatewayToken": {"type": "string"}, "conversationId": {"type": ["string", "null"]}}
        },
        "PendingCompleted": {
            "type": "object", "required": ["ok", "instanceId", "conversationId"],
            "properties": {"ok": {"type": "boolean"}, "instanceId": {"type": "string"}, "conversationId": {"type": "string"}}
        },
        "PendingFailed": {
            "type": "object", "required": ["ok", "instanceId", "outcome"],
            "properties": {"ok": {"type": "boolean"}, "instanceId": {"type": "string"}, "outcome": {"type": "string", "enum": ["idle", "torn_down"]}}
        },
        "SelfInfo": {
            "type": "object", "required": ["ok", "instanceId", "runtimeVersion", "runtimeImage", "latestImage"],
            "properties": {
                "ok": {"type": "boolean"}, "instanceId": {"type": "string"},
                "runtimeVersion": {"type": ["string", "null"], "description": "what the agent's /pool/health reported"},
                "runtimeImage": {"type": ["string", "null"], "description": "the image the agent runs"},
                "latestImage": {"type": "string", "description": "the image new agents get"}
            }
        },
        "RedeployProgress": {
            "type": "object", "required": ["requested", "waiting", "in_progress", "image"],
            "properties": {"requested": {"type": "integer"}, "waiting": {"type": "integer"}, "in_progress": {"type": "integer"}, "image": {"type": "string"}}
        }
    });
    schemas["Replica"] = replica;
    schemas
}

/// The stock's schemas: per runtime, tiers, monthly cost (a `json!` of their own, as below).
fn stock_schemas() -> Value {
    json!({
        "CountsByRuntime": {
            "description": "the whole pool's counts (the original fields) and each runtime's",
            "allOf": [
                {"$ref": "#/components/schemas/Counts"},
                {"type": "object", "required": ["runtimes"], "properties": {"runtimes": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Counts"}}}}
            ]
        },
        "Tiers": {
            "type": "object", "required": ["warm", "parked", "parking", "waking"],
            "properties": {
                "warm": {"type": "integer", "description": "idle agents"},
                "parked": {"type": "integer", "description": "provisioned, deployment removed"},
                "parking": {"type": "integer", "description": "in motion: being parked"},
                "waking": {"type": "integer", "description": "in motion: being woken"}
            }
        },
        "MonthlyCost": {
            "type": "object", "required": ["stockDollars", "runningDollars", "parkedDollars", "claimedDollars"],
            "description": "dollars a month for the current stock, estimated (see costAssumptions)",
            "properties": {
                "stockDollars": {"type": "number", "description": "running plus parked"},
                "runningDollars": {"type": "number", "description": "idle, starting, parking and waking agents: compute and volume"},
                "parkedDollars": {"type": "number", "description": "parked agents: volume only"},
                "claimedDollars": {"type": "number", "description": "claimed agents, apart: not stock"}
            }
        },
        "CostAssumptions": {
            "type": "object",
            "required": ["agentMemoryGb", "agentVcpu", "agentVolumeGb", "memoryPerGbMinute", "cpuPerVcpuMinute", "volumePerGbMonth", "hoursPerMonth", "counted"],
            "properties": {
                "agentMemoryGb": {"type": "number"}, "agentVcpu": {"type": "number"}, "agentVolumeGb": {"type": "number"},
                "memoryPerGbMinute": {"type": "number"}, "cpuPerVcpuMinute": {"type": "number"},
                "volumePerGbMonth": {"type": "number"}, "hoursPerMonth": {"type": "number"},
                "counted": {"type": "string"}
            }
        },
        "Prober": {
            "type": "object",
            "description": "the health checks the answering replica's prober spread over each interval, since it started",
            "required": ["agents", "intervalMs", "intervals", "checks", "failures", "reprobes", "reprobeFailures", "inFlight"],
            "properties": {
                "agents": {"type": "integer"}, "intervalMs": {"type": "integer"}, "intervals": {"type": "integer"},
                "checks": {"type": "integer"}, "failures": {"type": "integer"}, "reprobes": {"type": "integer"},
                "reprobeFailures": {"type": "integer"}, "inFlight": {"type": "integer"},
                "checksPerInterval": nullable("number")
            }
        },
        "RuntimeStock": {
            "type": "object", "required": ["counts", "tiers", "monthlyCost", "waiting", "brakeEngaged"],
            "properties": {
                "counts": {"$ref": "#/components/schemas/Counts"},
                "tiers": {"$ref": "#/components/schemas/Tiers"},
                "monthlyCost": {"$ref": "#/components/schemas/MonthlyCost"},
                "target": nullable("integer"),
                "targetReason": nullable("string"),
                "waiting": {"type": "integer"},
                "brakeEngaged": {"type": "boolean"}
            }
        }
    })
}

/// The rollout's schemas (a `json!` of their own: one would exceed the macro's recursion limit).
fn rollout_schemas() -> Value {
    json!({
        "RolloutRequest": {
            "type": "object", "required": ["runtime", "batch"], "additionalProperties": false,
            "properties": {
                "runtime": {"type": "string"},
                "image": {"type": ["string", "null"], "description": "repository:tag or repository@sha256:… in the runtime's repository; default: the image new agents get"},
                "include": {"type": ["array", "null"], "items": {"enum": ["idle", "claimed", "parked"]}, "description": "default idle and claimed; parked is accepted and ignored (no parked tier yet)"},
                "batch": {"type": "integer", "minimum": 1, "maximum": 100},
                "pauseMs": {"type": ["integer", "null"], "minimum": 0, "maximum": 3600000}
            }
        },
        "SelfUpgraded": {
            "type": "object", "required": ["ok", "instanceId", "image", "rollout"],
            "properties": {"ok": {"type": "boolean"}, "instanceId": {"type": "string"}, "image": {"type": "string"}, "rollout": {"type": "integer"}}
        },
        "RolloutCancelRequest": {
            "type": "object", "required": ["runtime"], "additionalProperties": false,
            "properties": {"runtime": {"type": "string"}}
        },
        "RolloutCancelled": {
            "type": "object", "required": ["cancelled"],
            "properties": {"cancelled": {"oneOf": [{"$ref": "#/components/schemas/Rollout"}, {"type": "null"}]}}
        },
        "Rollout": {
            "type": "object",
            "required": ["id", "runtime", "image", "target", "includeIdle", "includeClaimed", "batch", "pauseMs", "state", "startedAt", "agents"],
            "properties": {
                "id": {"type": "integer"}, "runtime": {"type": "string"}, "image": {"type": "string"},
                "target": {"type": "string", "description": "the digest every agent gets (repository@sha256:…)"},
                "includeIdle": {"type": "boolean"}, "includeClaimed": {"type": "boolean"},
                "batch": {"type": "integer"}, "pauseMs": {"type": "integer"},
                "state": {"enum": ["running", "succeeded", "failed", "cancelled"]},
                "failure": nullable("string"), "actor": nullable("string"),
                "startedAt": {"type": "string", "format": "date-time"}, "finishedAt": {"type": ["string", "null"], "format": "date-time"},
                "agents": {
                    "type": "object",
                    "required": ["pending", "upgrading", "done", "rollingBack", "rolledBack", "skipped"],
                    "properties": {
                        "pending": {"type": "integer"}, "upgrading": {"type": "integer"}, "done": {"type": "integer"},
                        "rollingBack": {"type": "integer"}, "rolledBack": {"type": "integer"}, "skipped": {"type": "integer"}
                    }
                }
            }
        }
    })
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in table() {
        let mut operation = Map::new();
        operation.insert("summary".into(), json!(route.summary));
        operation.insert(
            "operationId".into(),
            json!(format!("{} {}", route.method, route.path).replace(['/', '{', '}', ' ', '.'], "_")),
        );
        if route.access.needs_api_key() {
            operation.insert("security".into(), json!([{"bearer": []}]));
        }
        let path_parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let query_parameters = route.endpoint.query().iter().map(|(name, description)| {
            json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": "string"}})
        });
        let parameters: Vec<Value> = path_parameters.into_iter().chain(query_parameters).collect();
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if route.path == CLAIM_PATH {
            let params = operation.entry("parameters").or_insert_with(|| json!([]));
            if let Some(list) = params.as_array_mut() {
                list.push(json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "minLength": 1, "maxLength": 200}}));
                list.push(json!({"name": "Prefer", "in": "header", "required": false, "description": "wait=N (RFC 7240): wait up to N seconds (0 to 120) for an agent", "schema": {"type": "string"}}));
            }
        }
        if let Some(schema) = route.request {
            operation.insert(
                "requestBody".into(),
                json!({"required": false, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
            );
        }
        let mut responses = Map::new();
        for (status, description, schema) in route.responses {
            let body = match (schema, route.path) {
                (Some(s), _) => {
                    json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{s}")}}}})
                }
                (None, METRICS_PATH) => {
                    json!({"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}})
                }
                (None, _) => {
                    json!({"description": description, "content": {"application/json": {"schema": {"type": "object"}}}})
                }
            };
            responses.insert(status.to_string(), body);
        }
        if route.access == Access::Admin {
            responses.insert(
                "403".into(),
                json!({"description": "a claim key (POOL_CLAIM_KEYS): it may only claim", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}),
            );
        }
        operation.insert("responses".into(), Value::Object(responses));
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        if let Some(methods) = entry.as_object_mut() {
            methods.insert(route.method.to_ascii_lowercase(), Value::Object(operation));
        }
    }
    let mut all_schemas = schemas();
    if let Some(all) = all_schemas.as_object_mut() {
        for more in [rollout_schemas(), stock_schemas()] {
            if let Value::Object(more) = more {
                all.extend(more);
            }
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "agent pool manager",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Keeps a warm pool of AI agents on Railway (one project per agent) and hands one out per claim."
        },
        "paths": paths,
        "components": {
            "schemas": all_schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "POOL_API_KEY"}}
        }
    })
}
