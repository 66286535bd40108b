-- The agent contract as the runtime at the pinned commit defines it (issue 19).
--
-- `pending_acceptance`: the agent asked to join a conversation that needs approval; its pool
-- server answered 200 with `conversationId: null` and `status: "pending_acceptance"`
-- (runtime/convos-platform/pool-server/index.ts:304-306, 441-447). The agent is handed out
-- and waits; the runtime resolves it with /api/pool/pending-acceptance/{complete,fail}.
ALTER TABLE agent_metadata DROP CONSTRAINT agent_metadata_status_known;
ALTER TABLE agent_metadata
    ADD CONSTRAINT agent_metadata_status_known CHECK (status IN
        ('creating', 'starting', 'idle', 'claiming', 'claimed', 'pending_acceptance', 'crashed',
         'deleting', 'deleted'));

ALTER TABLE agent_metadata
    -- When the agent entered `pending_acceptance` (the reconciler tears it down past
    -- POOL_PENDING_ACCEPTANCE_TIMEOUT_MS).
    ADD COLUMN pending_acceptance_at TIMESTAMPTZ,
    -- What the agent's `GET /pool/health` said it runs: `{ready, version, runtime}`
    -- (pool-server/index.ts:359).
    ADD COLUMN runtime_version TEXT,
    ADD COLUMN runtime_name TEXT,
    -- The claim's own fields: who asked (`source`, "api" by default), the avatar and the flat
    -- metadata map given to the agent (pool-server/index.ts:423-429).
    ADD COLUMN claim_source TEXT,
    ADD COLUMN profile_image TEXT,
    ADD COLUMN claim_metadata JSONB,
    -- The agent's word on the provision: created, joined or pending_acceptance.
    ADD COLUMN provision_status TEXT
        CHECK (provision_status IN ('created', 'joined', 'pending_acceptance')),
    ADD CONSTRAINT agent_metadata_pending_since CHECK (
        status <> 'pending_acceptance' OR pending_acceptance_at IS NOT NULL);

-- The joinUrl dedupe: a claim whose joinUrl an agent is already claiming, claimed or pending
-- for gets that agent's answer (the Node pool's `claimIdle`, pool/src/db/pool.ts:89-99).
CREATE INDEX agent_metadata_active_join_url ON agent_metadata (join_url)
    WHERE join_url IS NOT NULL AND status IN ('claiming', 'claimed', 'pending_acceptance');

-- The reconciler's look for pending agents past their time.
CREATE INDEX agent_metadata_pending_since ON agent_metadata (pending_acceptance_at)
    WHERE status = 'pending_acceptance';
