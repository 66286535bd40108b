-- Baseline: the table the Node.js pool manager already has.
--
-- A database that ran the Node pool manager has this table with its rows; it is adopted as is.
-- A new database gets the same shape, so every later migration sees one starting point.
CREATE TABLE IF NOT EXISTS agent_metadata (
    id                  TEXT PRIMARY KEY,
    railway_service_id  TEXT,
    agent_name          TEXT,
    conversation_id     TEXT,
    invite_url          TEXT,
    instructions        TEXT,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    claimed_at          TIMESTAMPTZ,
    source_branch       TEXT,
    openrouter_key_hash TEXT,
    agentmail_inbox_id  TEXT
);
