-- Parked agents (#21): an agent whose project, service, variables, volume and domain exist but
-- whose deployment was removed (`deploymentRemove`, what `railway down` sends). It costs no
-- compute; waking it is one deploy (`serviceInstanceDeployV2`), with no `projectCreate`.
--
-- `parking`: the removal is under way (the tick resumes it when its worker's lease runs out);
-- `parked`: removed, kept; `waking`: the wake's deploy is under way (resumed the same way).
ALTER TABLE agent_metadata DROP CONSTRAINT agent_metadata_status_known;
ALTER TABLE agent_metadata
    ADD CONSTRAINT agent_metadata_status_known CHECK (status IN
        ('creating', 'starting', 'idle', 'claiming', 'claimed', 'pending_acceptance', 'crashed',
         'parking', 'parked', 'waking', 'deleting', 'deleted'));

ALTER TABLE agent_metadata
    -- The park or wake step about to be tried ('remove', 'deploy'): set before the remote call,
    -- cleared with the outcome, so a crash in between is looked up before it is redone.
    ADD COLUMN tier_step TEXT CHECK (tier_step IN ('remove', 'deploy')),
    -- When it was parked (the parked tier's age).
    ADD COLUMN parked_at TIMESTAMPTZ,
    -- Wakes that failed in a row; past the limit the agent is torn down and replaced.
    ADD COLUMN wake_failures INTEGER NOT NULL DEFAULT 0 CHECK (wake_failures >= 0);

CREATE INDEX agent_metadata_parked_by_age ON agent_metadata (parked_at) WHERE status = 'parked';
