-- Retention (issue 15). The audit logs stay append-only: no row is ever edited. The leader's
-- retention pass may delete rows past their retention period; it marks its own transaction
-- (`SET LOCAL pool.retention = 'on'`), and even then only rows older than a day can go, so
-- nothing recent can be deleted by anyone.
CREATE OR REPLACE FUNCTION agent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('pool.retention', true) = 'on'
       AND OLD.at < now() - interval '1 day' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'agent_events is append-only';
END
$$;

CREATE OR REPLACE FUNCTION pool_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('pool.retention', true) = 'on'
       AND OLD.at < now() - interval '1 day' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'pool_events is append-only';
END
$$;

-- What the pass looks for, oldest first.
CREATE INDEX agent_events_at ON agent_events (at);
CREATE INDEX agent_metadata_archived ON agent_metadata (status_changed_at) WHERE status = 'deleted';
