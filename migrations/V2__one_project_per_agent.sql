-- The seed design's change (one Railway project per agent):
--   add  railway_project_id TEXT NOT NULL
--   drop source_branch (the image tag decides the version now)
--
-- Rows that already exist lived in the pool manager's own shared project. Their project id is
-- only known at run time, so the migration runner sets `pool.legacy_project_id` on this session
-- (from RAILWAY_PROJECT_ID) before running. With legacy rows and no id, this raises, and the
-- whole migration rolls back: nothing changes.
DO $$
DECLARE
    legacy_project_id TEXT := NULLIF(current_setting('pool.legacy_project_id', true), '');
    legacy_rows BIGINT;
BEGIN
    SELECT count(*) INTO legacy_rows FROM agent_metadata;
    IF legacy_rows > 0 AND legacy_project_id IS NULL THEN
        RAISE EXCEPTION 'agent_metadata has % legacy row(s) that need railway_project_id: set RAILWAY_PROJECT_ID to the pool manager''s own Railway project id and run the migrations again', legacy_rows;
    END IF;

    ALTER TABLE agent_metadata ADD COLUMN railway_project_id TEXT;
    UPDATE agent_metadata SET railway_project_id = legacy_project_id;
    ALTER TABLE agent_metadata ALTER COLUMN railway_project_id SET NOT NULL;
    ALTER TABLE agent_metadata DROP COLUMN IF EXISTS source_branch;
END
$$;
