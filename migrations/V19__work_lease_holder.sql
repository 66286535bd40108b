-- Who holds a row's work lease (a creation, a teardown, a park or a wake): the replica id of
-- the process (`pool_replicas.replica`). A replica SIGKILLed mid-work used to keep its rows
-- for the whole work lease (a minute), and the leader counted its creations as on their way
-- meanwhile, creating none in their place; now the leader frees the leases of a replica that
-- is gone (its lease in `pool_replicas` ran out and its lock connection is no more) at its
-- next tick, and the work is resumed from its journal.
ALTER TABLE agent_metadata ADD COLUMN worker_replica TEXT;
CREATE INDEX agent_metadata_worker_replica ON agent_metadata (worker_replica)
    WHERE worker_replica IS NOT NULL;
