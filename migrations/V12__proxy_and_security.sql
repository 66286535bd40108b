-- The service proxy and what a security review found (issue 20).

-- 1. The services an agent was given on first use through the service proxy (an AgentMail
--    inbox, a Telnyx number). Which inbox or number belongs to which agent is this table's
--    fact; the agent never names one. A row is written before the remote call that costs
--    money (`provisioning`, under a lease: one provisioning per agent and service at a time,
--    across replicas), and becomes `active` with the remote id. `assigned_at` is when the
--    resource became this agent's: a recycled phone number's earlier messages are not its.
CREATE TABLE agent_services (
    agent_id    TEXT NOT NULL REFERENCES agent_metadata (id) ON DELETE CASCADE,
    service     TEXT NOT NULL CHECK (service IN ('email', 'sms')),
    state       TEXT NOT NULL CHECK (state IN ('provisioning', 'active')),
    resource_id TEXT,
    lease_until TIMESTAMPTZ,
    assigned_at TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (agent_id, service),
    CHECK (state = 'provisioning' OR resource_id IS NOT NULL)
);
CREATE UNIQUE INDEX agent_services_resource ON agent_services (service, resource_id) WHERE resource_id IS NOT NULL;

-- Inboxes the creation saga made before inboxes were made on first use are the agents' email
-- from now on: recorded here, so the proxy serves them and teardown releases them.
INSERT INTO agent_services (agent_id, service, state, resource_id, assigned_at, created_at)
SELECT id, 'email', 'active', agentmail_inbox_id, created_at, created_at
  FROM agent_metadata
 WHERE agentmail_inbox_id IS NOT NULL AND agentmail_inbox_id <> '' AND status <> 'deleted';
UPDATE agent_metadata SET agentmail_inbox_id = NULL
 WHERE agentmail_inbox_id IS NOT NULL AND status <> 'deleted';

-- Telnyx numbers the pool owns. A number costs money every month: a released one goes back to
-- `available` and is given to the next agent that asks (its earlier messages stay unreadable
-- to it, see `agent_services.assigned_at`). `ordering`: the row is written before the order.
CREATE TABLE phone_numbers (
    phone_number         TEXT PRIMARY KEY,
    messaging_profile_id TEXT NOT NULL,
    status               TEXT NOT NULL CHECK (status IN ('ordering', 'available', 'assigned')),
    agent_id             TEXT,
    acquired_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    assigned_at          TIMESTAMPTZ,
    released_at          TIMESTAMPTZ,
    CHECK (status = 'available' OR agent_id IS NOT NULL)
);
CREATE INDEX phone_numbers_available ON phone_numbers (released_at) WHERE status = 'available';

-- 2. Claims that wait: a ticket has an owner (the caller's key name) and a heartbeat. A ticket
--    whose heartbeat stopped (its claim's process died or hung) is not live: it neither heads
--    the queue nor counts as demand.
ALTER TABLE claim_queue
    ADD COLUMN owner TEXT NOT NULL DEFAULT 'admin',
    ADD COLUMN heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE claim_queue ALTER COLUMN owner DROP DEFAULT;
CREATE INDEX claim_queue_owner ON claim_queue (owner);

-- 3. Refused claims name their caller, so the forecast counts at most a few per caller a
--    minute (a claim key hammering an empty pool must not make it create at Railway's pace).
ALTER TABLE claim_refusals ADD COLUMN claimant TEXT;
CREATE INDEX claim_refusals_by_claimant ON claim_refusals (claimant, at);

-- 4. Rate limits shared by every replica: hits per key in fixed windows (claim keys, agents'
--    proxy calls), and the console's sign-in limit (failures per address, lockouts).
CREATE TABLE rate_limit_windows (
    key          TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    hits         INTEGER NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limit_windows_start ON rate_limit_windows (window_start);

CREATE TABLE sign_in_failures (
    address TEXT NOT NULL,
    at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX sign_in_failures_by_address ON sign_in_failures (address, at);
CREATE INDEX sign_in_failures_at ON sign_in_failures (at);

CREATE TABLE sign_in_lockouts (
    address        TEXT PRIMARY KEY,
    locked_until   TIMESTAMPTZ NOT NULL,
    strikes        INTEGER NOT NULL,
    last_strike_at TIMESTAMPTZ NOT NULL
);

-- 5. Who this pool is: a random id made once per database. It goes into every project's
--    marker, so two pools never take each other's projects for their own, whatever
--    RAILWAY_PROJECT_ID says. `secrets_sealed_at`: once the secrets upkeep has found every
--    stored secret sealed, a plaintext value is refused as tampered with.
CREATE TABLE pool_identity (
    id                SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    pool_id           TEXT NOT NULL CHECK (pool_id ~ '^[0-9a-f]{32}$'),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    secrets_sealed_at TIMESTAMPTZ
);
INSERT INTO pool_identity (pool_id) VALUES (replace(gen_random_uuid()::text, '-', ''));

-- The marker each agent's project was created with: 1 = the old form
-- (`pool=<RAILWAY_PROJECT_ID or local>`), adopted once here for the projects this database
-- already records; 2 = the pool id. Only these rows' projects may carry the old form.
ALTER TABLE agent_metadata ADD COLUMN project_marker_form SMALLINT NOT NULL DEFAULT 2
    CHECK (project_marker_form IN (1, 2));
UPDATE agent_metadata SET project_marker_form = 1 WHERE status <> 'deleted';

-- 6. Retention. The audit logs could be pruned by any session that said so
--    (`SET pool.retention = 'on'`), and TRUNCATE was not covered. Now only the pruning
--    function may delete, and it runs as the role `pool_pruner` (NOLOGIN, no member): an
--    ordinary session can neither be that role nor switch the check off. (A superuser or the
--    tables' owner can still drop the triggers: that is DDL, not a setting.)
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pool_pruner') THEN
        CREATE ROLE pool_pruner NOLOGIN;
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'migration V12 creates the role pool_pruner (NOLOGIN): run it once as a user with CREATEROLE or as a superuser';
END
$$;
GRANT SELECT, DELETE ON agent_events, pool_events TO pool_pruner;

CREATE OR REPLACE FUNCTION agent_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_user = 'pool_pruner' AND OLD.at < now() - interval '1 day' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'agent_events is append-only';
END
$$;

CREATE OR REPLACE FUNCTION pool_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_user = 'pool_pruner' AND OLD.at < now() - interval '1 day' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'pool_events is append-only';
END
$$;

CREATE FUNCTION audit_log_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: TRUNCATE is refused', TG_TABLE_NAME;
END
$$;
CREATE TRIGGER agent_events_no_truncate BEFORE TRUNCATE ON agent_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_no_truncate();
CREATE TRIGGER pool_events_no_truncate BEFORE TRUNCATE ON pool_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_no_truncate();

-- The one way to prune the audit logs: rows older than `older_than` (never younger than a day,
-- the triggers check), at most `batch` of each log per call.
CREATE FUNCTION prune_audit_logs(older_than interval, batch integer)
RETURNS TABLE (agent_events_deleted bigint, pool_events_deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
    a bigint;
    p bigint;
BEGIN
    DELETE FROM agent_events WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM agent_events WHERE at < now() - older_than LIMIT batch));
    GET DIAGNOSTICS a = ROW_COUNT;
    DELETE FROM pool_events WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM pool_events WHERE at < now() - older_than LIMIT batch));
    GET DIAGNOSTICS p = ROW_COUNT;
    RETURN QUERY SELECT a, p;
END
$$;

-- The function runs as pool_pruner. Giving it that owner needs membership in the role, which
-- a non-superuser with CREATEROLE grants itself for the moment and gives back at once; only
-- the migration's user may call it.
DO $$
DECLARE
    superuser boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    IF NOT superuser THEN
        EXECUTE format('GRANT pool_pruner TO %I', current_user);
    END IF;
    ALTER FUNCTION prune_audit_logs(interval, integer) OWNER TO pool_pruner;
    REVOKE ALL ON FUNCTION prune_audit_logs(interval, integer) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION prune_audit_logs(interval, integer) TO %I', current_user);
    IF NOT superuser THEN
        EXECUTE format('REVOKE pool_pruner FROM %I', current_user);
    END IF;
END
$$;
