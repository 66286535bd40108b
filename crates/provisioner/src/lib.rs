//! The agent's life on Railway: creation saga, teardown, claim and redeploy.
//!
//! `pool-provisioner` will own the creation saga (project → environment → service →
//! variables/limits → volume → domain → one deploy), teardown (external resources, then
//! `projectDelete`, then the row), the claim, image tag selection, the agent client
//! (`/pool/health`, `/pool/provision`) and the external resources (OpenRouter keys, AgentMail
//! inboxes).
//!
//! Architecture invariant: it talks to Railway only through `railway-api` and to the database
//! only through `pool-store`; it never reads environment variables.
