-- Shapes (#22): several runtimes in one pool. Each agent belongs to one shape (the runtime it
-- runs: `openclaw`, `hermes`, ...); each shape has its own settings, its own creation brake,
-- its own demand (served and refused claims), its own queue of waiting claims and its own
-- samples.
--
-- Every row written before shapes existed belongs to `openclaw`: the pool had one runtime and
-- set `RUNTIME_TYPE=openclaw` on every agent. A pool configured without that shape seeds its
-- shapes' settings from the environment at start-up and leaves the `openclaw` rows unused.

ALTER TABLE agent_metadata ADD COLUMN shape TEXT NOT NULL DEFAULT 'openclaw';
-- The claim statement takes the oldest idle agent of one shape.
CREATE INDEX agent_metadata_idle_by_shape ON agent_metadata (shape, created_at, id)
    WHERE status = 'idle';

-- One settings row per shape (the row of V6 becomes `openclaw`'s).
ALTER TABLE pool_settings ADD COLUMN shape TEXT NOT NULL DEFAULT 'openclaw';
ALTER TABLE pool_settings DROP COLUMN id;
ALTER TABLE pool_settings ADD PRIMARY KEY (shape);
ALTER TABLE pool_settings ALTER COLUMN shape DROP DEFAULT;

-- One creation brake per shape: one runtime's broken image stops only its own creations.
ALTER TABLE creation_brake ADD COLUMN shape TEXT NOT NULL DEFAULT 'openclaw';
ALTER TABLE creation_brake DROP COLUMN id;
ALTER TABLE creation_brake ADD PRIMARY KEY (shape);
ALTER TABLE creation_brake ALTER COLUMN shape DROP DEFAULT;

-- Demand per shape: refused claims name the shape they asked for.
ALTER TABLE claim_refusals ADD COLUMN shape TEXT NOT NULL DEFAULT 'openclaw';
CREATE INDEX claim_refusals_by_shape ON claim_refusals (shape, at);

-- One queue per shape: a claim waiting for a Hermes agent does not hold up OpenClaw claims.
ALTER TABLE claim_queue ADD COLUMN shape TEXT NOT NULL DEFAULT 'openclaw';
CREATE INDEX claim_queue_by_shape ON claim_queue (shape, id);

-- Samples per shape besides the whole pool's: `shape` is '' for the whole pool.
ALTER TABLE pool_samples ADD COLUMN shape TEXT NOT NULL DEFAULT '';
ALTER TABLE pool_samples DROP CONSTRAINT pool_samples_pkey;
ALTER TABLE pool_samples ADD PRIMARY KEY (shape, at);
