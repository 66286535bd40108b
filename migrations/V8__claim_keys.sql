-- Scoped API keys, idempotency keys that belong to their caller and expire, and console
-- sessions kept only as a hash of their token (issue 15).

-- Who did it: the name of the API key that claimed (`admin`, `console` or a name from
-- POOL_CLAIM_KEYS), never the key itself. NULL for events no caller caused.
ALTER TABLE agent_events ADD COLUMN actor TEXT;

-- An idempotency key belongs to the caller's key: the same key from two callers is two claims.
-- The hash of the first request's fields makes a repeat with a different body a refusal (422);
-- a key expires (POOL_IDEMPOTENCY_TTL_MS) and may then be used again. Every claim made before
-- this migration was made with the admin key.
ALTER TABLE claim_idempotency_keys
    ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin',
    ADD COLUMN request_hash TEXT,
    ADD COLUMN expires_at TIMESTAMPTZ;
UPDATE claim_idempotency_keys SET expires_at = created_at + interval '24 hours';
ALTER TABLE claim_idempotency_keys
    ALTER COLUMN scope DROP DEFAULT,
    ALTER COLUMN expires_at SET NOT NULL,
    DROP CONSTRAINT claim_idempotency_keys_pkey,
    ADD PRIMARY KEY (scope, key);
CREATE INDEX claim_idempotency_keys_expiry ON claim_idempotency_keys (expires_at);

-- Console sessions: only the hash of a session's token (bound to the admin key) is kept, so a
-- read of this table signs no one in. Sessions stored in plaintext before are ended: operators
-- sign in again. A session also ends after an idle period (`last_seen_at`).
DELETE FROM console_sessions;
ALTER TABLE console_sessions RENAME COLUMN token TO token_hash;
ALTER TABLE console_sessions ADD COLUMN last_seen_at TIMESTAMPTZ NOT NULL DEFAULT now();
