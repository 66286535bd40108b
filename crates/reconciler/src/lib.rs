//! The reconcile tick: Postgres is the truth, Railway and the agents are observed.
//!
//! `pool-reconciler` will own the tick (load from the database, batched status reads, health
//! checks, the pure status decision, apply, replenish, orphan sweeps) and leader election.
//!
//! Architecture invariant: every decision is a pure function of (stored agent, observation,
//! now); the loop around it only schedules, locks and executes.
