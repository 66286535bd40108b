-- Operator console sign-ins. Kept in the database so every replica behind a load balancer
-- knows them; a session ends at `expires_at` or at sign-out.
CREATE TABLE console_sessions (
    token      TEXT PRIMARY KEY,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at);
