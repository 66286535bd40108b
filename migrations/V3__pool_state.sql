-- What the rest of the design needs: stored status, every remote id, per-agent secrets,
-- the claim lease, the creation saga journal, the append-only event log and claim idempotency.

-- Status (see ARCHITECTURE.md):
--   creating -> starting -> idle -> claiming -> claimed, crashed, deleting, deleted (archived).
-- Rows adopted from the shared-project era are `claimed` when they were claimed, else
-- `starting` (the tick observes them and promotes healthy ones to idle).
ALTER TABLE agent_metadata
    ADD COLUMN status TEXT NOT NULL DEFAULT 'starting',
    ADD COLUMN status_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Legacy agents live in the pool's own shared project: they are torn down service by
    -- service and their project is never deleted.
    ADD COLUMN legacy BOOLEAN NOT NULL DEFAULT false,
    -- Remote ids, each saved as soon as it exists.
    ADD COLUMN railway_environment_id TEXT,
    ADD COLUMN railway_volume_id TEXT,
    ADD COLUMN railway_domain TEXT,
    ADD COLUMN railway_deployment_id TEXT,
    ADD COLUMN image TEXT,
    -- Per-agent secrets the agent needs (never shown by any list, log or metric).
    ADD COLUMN gateway_token TEXT,
    ADD COLUMN setup_password TEXT,
    ADD COLUMN wallet_private_key TEXT,
    ADD COLUMN agent_api_token TEXT,
    ADD COLUMN openrouter_api_key TEXT,
    -- Claim.
    ADD COLUMN join_url TEXT,
    ADD COLUMN joined BOOLEAN,
    ADD COLUMN claim_expires_at TIMESTAMPTZ,
    -- Agents that must never be handed out again (a claim that died mid-provision).
    ADD COLUMN quarantined BOOLEAN NOT NULL DEFAULT false,
    -- Last observation by the tick.
    ADD COLUMN deployment_status TEXT,
    ADD COLUMN last_health_at TIMESTAMPTZ,
    ADD COLUMN last_health_ok BOOLEAN,
    -- Someone (a creation saga, a teardown) is working on this row until then; recovery and
    -- retries only take rows whose lease has run out.
    ADD COLUMN worker_lease_until TIMESTAMPTZ,
    -- An operator asked to move this idle agent to the current image.
    ADD COLUMN redeploy_requested_at TIMESTAMPTZ,
    -- Retries of teardown (never given up) and the last error seen.
    ADD COLUMN teardown_attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN next_attempt_at TIMESTAMPTZ,
    ADD COLUMN last_error TEXT,
    ADD COLUMN deleted_at TIMESTAMPTZ;

UPDATE agent_metadata
   SET legacy = true,
       status = CASE WHEN claimed_at IS NOT NULL THEN 'claimed' ELSE 'starting' END;

ALTER TABLE agent_metadata
    ADD CONSTRAINT agent_metadata_status_known CHECK (status IN
        ('creating', 'starting', 'idle', 'claiming', 'claimed', 'crashed', 'deleting', 'deleted')),
    -- The project does not exist yet while the row is `creating` (the row is written before
    -- the first remote call), and a creation may fail before it; '' stands for "none yet".
    ADD CONSTRAINT agent_metadata_project_known CHECK (
        railway_project_id <> '' OR status IN ('creating', 'deleting', 'deleted'));

-- The tick loads every live agent; the claim takes the oldest idle one.
CREATE INDEX agent_metadata_live_status ON agent_metadata (status) WHERE status <> 'deleted';
CREATE INDEX agent_metadata_idle_by_age ON agent_metadata (created_at) WHERE status = 'idle';
CREATE INDEX agent_metadata_claim_leases ON agent_metadata (claim_expires_at) WHERE status = 'claiming';

-- The creation saga's journal: one row per completed step, written in the same transaction
-- as the remote id it produced, so recovery knows exactly what exists.
CREATE TABLE agent_saga_steps (
    agent_id     TEXT NOT NULL REFERENCES agent_metadata (id),
    step         TEXT NOT NULL,
    remote_id    TEXT,
    completed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, step)
);

-- The audit log: every transition with its reason. Append-only.
CREATE TABLE agent_events (
    id          BIGSERIAL PRIMARY KEY,
    agent_id    TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind        TEXT NOT NULL,
    from_status TEXT,
    to_status   TEXT,
    reason      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX agent_events_by_agent ON agent_events (agent_id, id);

CREATE FUNCTION agent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'agent_events is append-only';
END
$$;
CREATE TRIGGER agent_events_append_only
    BEFORE UPDATE OR DELETE ON agent_events
    FOR EACH ROW EXECUTE FUNCTION agent_events_append_only();

-- One claim per idempotency key: the key is inserted first in the claim's transaction (so a
-- concurrent request with the same key waits for it), then the agent it took; the response is
-- stored once provisioning answered.
CREATE TABLE claim_idempotency_keys (
    key        TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    response   JSONB
);
