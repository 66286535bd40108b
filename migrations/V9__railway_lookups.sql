-- Railway's deploy events name a project (and a service): finding the agent they are about
-- must not scan the fleet.
CREATE INDEX agent_metadata_live_project ON agent_metadata (railway_project_id) WHERE status <> 'deleted';
