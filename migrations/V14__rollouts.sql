-- Rollouts (#22): an image moved to every agent of a runtime, one canary first, then batches,
-- each behind a health gate. Rows so that a rollout survives a restart of the pool and resumes
-- where it was: each agent's row says where that agent is, so none is upgraded twice.

CREATE TABLE pool_rollouts (
    id BIGSERIAL PRIMARY KEY,
    -- The shape (runtime) rolled out: today the pool's one runtime.
    runtime TEXT NOT NULL,
    -- What the operator asked for (repository:tag or repository@digest) ...
    image TEXT NOT NULL,
    -- ... and the digest it resolved to once, at the start: every agent gets these bytes.
    target TEXT NOT NULL,
    include_idle BOOLEAN NOT NULL,
    include_claimed BOOLEAN NOT NULL,
    batch INTEGER NOT NULL CHECK (batch > 0),
    pause_ms BIGINT NOT NULL CHECK (pause_ms >= 0),
    -- running | succeeded | failed | cancelled
    state TEXT NOT NULL DEFAULT 'running'
        CHECK (state IN ('running', 'succeeded', 'failed', 'cancelled')),
    -- Why it stopped, when it failed (names the agents and their health).
    failure TEXT,
    -- Who asked (the API key's name), or 'redeploy'/'self-upgrade' for the pool's own.
    actor TEXT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ
);

-- One running rollout per runtime: a second one is refused (409) by this index.
CREATE UNIQUE INDEX pool_rollouts_one_running ON pool_rollouts (runtime) WHERE state = 'running';

CREATE TABLE pool_rollout_agents (
    rollout_id BIGINT NOT NULL REFERENCES pool_rollouts (id) ON DELETE CASCADE,
    agent_id TEXT NOT NULL,
    -- 0 is the canary; the rest go in this order, `batch` at a time.
    position INTEGER NOT NULL,
    -- What the agent ran before: its image reference and deployment (the rollback target).
    previous_image TEXT,
    previous_deployment_id TEXT,
    -- pending | upgrading | done | rolling_back | rolled_back | skipped
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'upgrading', 'done', 'rolling_back', 'rolled_back', 'skipped')),
    -- The deployment of the new image (or of the rollback).
    deployment_id TEXT,
    -- When the deploy was sent, and since when the agent has been healthy without a break.
    deployed_at TIMESTAMPTZ,
    healthy_since TIMESTAMPTZ,
    error TEXT,
    PRIMARY KEY (rollout_id, agent_id)
);

CREATE INDEX pool_rollout_agents_active ON pool_rollout_agents (agent_id)
    WHERE state IN ('upgrading', 'rolling_back');
