-- A pool that keeps up with demand: settings every replica reads at run time, the creation
-- brake, pool-level events, claim demand (served and refused), the queue of claims that wait,
-- and samples of the pool over time for the console.

-- Runtime settings: one row. The environment seeds it on the first start; after that the API
-- and the console change it, and every replica reads it each tick.
CREATE TABLE pool_settings (
    id                   SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    min_idle             INTEGER NOT NULL CHECK (min_idle >= 0),
    max_total            INTEGER CHECK (max_total >= 0),
    paused               BOOLEAN NOT NULL DEFAULT false,
    idle_schedule        TEXT,
    max_idle_age_ms      BIGINT CHECK (max_idle_age_ms > 0),
    create_failure_limit INTEGER NOT NULL CHECK (create_failure_limit >= 1),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by           TEXT NOT NULL
);

-- The creation brake: after `create_failure_limit` consecutive failed creations, creation
-- stops, but for one probe now and then; the first success (or an operator) releases it.
CREATE TABLE creation_brake (
    id                   SMALLINT PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    engaged_at           TIMESTAMPTZ,
    last_failure         TEXT,
    last_failure_at      TIMESTAMPTZ,
    last_probe_at        TIMESTAMPTZ
);
INSERT INTO creation_brake (id) VALUES (1);

-- The pool's own audit log (settings changes, the brake): who, what, before and after.
CREATE TABLE pool_events (
    id     BIGSERIAL PRIMARY KEY,
    at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind   TEXT NOT NULL,
    actor  TEXT NOT NULL,
    detail JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX pool_events_at ON pool_events (at);

CREATE FUNCTION pool_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pool_events is append-only';
END
$$;
CREATE TRIGGER pool_events_append_only
    BEFORE UPDATE OR DELETE ON pool_events
    FOR EACH ROW EXECUTE FUNCTION pool_events_append_only();

-- Demand: served claims are the `idle → claiming` events; refused ones are recorded here, as
-- the forecast must see every claim the pool was asked for.
CREATE TABLE claim_refusals (
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX claim_refusals_at ON claim_refusals (at);
CREATE INDEX agent_events_claims ON agent_events (at) WHERE to_status = 'claiming';
CREATE INDEX agent_events_ready ON agent_events (agent_id, at) WHERE to_status = 'idle';

-- Claims that wait for an agent (`Prefer: wait=N`), first in, first out, on every replica:
-- only the head of the queue may take an agent that becomes idle.
CREATE TABLE claim_queue (
    id          BIGSERIAL PRIMARY KEY,
    enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL
);

-- The pool over time, one sample per leader tick (the console's chart).
CREATE TABLE pool_samples (
    at      TIMESTAMPTZ PRIMARY KEY,
    idle    INTEGER NOT NULL,
    claimed INTEGER NOT NULL,
    warm    INTEGER NOT NULL,
    target  INTEGER NOT NULL,
    reason  TEXT NOT NULL DEFAULT ''
);
