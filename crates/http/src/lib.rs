//! The pool manager's HTTP API.
//!
//! `pool-http` will own the axum router, auth, error mapping, OpenAPI document and metrics
//! endpoint. It is thin: it maps HTTP onto provisioner and store calls.
//!
//! Architecture invariant: no pool logic lives here.
