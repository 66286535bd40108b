//! The pool's Postgres store: the source of truth for every agent.
//!
//! ```no_run
//! use pool_store::{MigrateOptions, Store, StoreConfig, run_migrations};
//!
//! # async fn example() -> Result<(), pool_store::StoreError> {
//! let config = StoreConfig::new("postgres://postgres@127.0.0.1:5432/pool");
//! // Under an advisory lock: replicas that start together migrate once.
//! run_migrations(&config, &MigrateOptions::default()).await?;
//! let store = Store::connect(config).await?;
//! let counts = store.counts().await?;
//! println!("{} idle, {} starting, {} claimed", counts.idle, counts.starting, counts.claimed);
//! # Ok(()) }
//! ```
//!
//! `pool-store` owns the connection pool (deadpool-postgres over tokio-postgres), the schema
//! (refinery migrations embedded from the workspace's `migrations/`, run under an advisory
//! lock), typed queries for agents, the creation saga journal, events and claim idempotency,
//! the reconciler's leader lock, and the one-time adoption of a Node pool's agents from its
//! tables ([`adopt_node`], read-only to this crate). Agents' secrets and stored claim answers are sealed at
//! rest with the keys in [`StoreConfig::secrets`] (see [`SecretsKeys`]).
//!
//! Architecture invariant: this crate knows nothing about Railway, HTTP or the environment.
//! It stores remote ids as opaque strings and never reads environment variables; callers hand
//! it a [`StoreConfig`].

pub mod adopt_node;
mod agent;
mod brake;
mod claims;
mod config;
mod counts;
mod demand;
mod error;
mod events;
mod gathered;
mod journal;
mod leader;
mod limits;
mod listing;
mod migrate;
mod notify;
mod pending;
mod queries;
mod queue;
mod retention;
mod rollouts;
mod rows;
mod secrets;
mod services;
mod sessions;
mod settings;
mod shards;
#[cfg(feature = "testing")]
pub mod testing;
mod tick_rows;
mod tiers;
mod tls;
mod transitions;
mod upkeep;
mod work;

pub use adopt_node::{AdoptOptions, AdoptionReport};
pub use agent::{
    Agent, AgentId, AgentSecrets, AgentStatus, ClaimRequest, CreationStep, InvalidAgentId, NewAgent,
    SetupSecrets, StatusCounts, TierStep,
};
pub use brake::BrakeState;
pub use claims::{ClaimOutcome, IdempotentClaim};
pub use config::{DEFAULT_SCHEMA, DEFAULT_SHAPE, SslMode, StoreConfig};
pub use demand::{ClaimCounts, PoolSample};
pub use error::StoreError;
pub use events::{AgentEvent, EventKind};
pub use leader::{LEADER_LOCK_KEY, LeaderLock};
pub use limits::{RateDecision, SignInLimit};
pub use listing::AgentListing;
pub use migrate::{MigrateOptions, MigrationState, MigrationStatus, run_migrations};
pub use notify::{Listener, PoolSignal};
pub use queue::{QueueTicket, TICKET_HEARTBEAT, TICKET_STALE};
pub use retention::{MIN_ARCHIVE_RETENTION, MIN_EVENT_RETENTION, Pruned, Retention};
pub use rollouts::{NewRollout, Rollout, RolloutAgent, RolloutCounts, RolloutMember};
pub use secrets::{InvalidSecretsKey, SecretError, SecretProblem, SecretsKey, SecretsKeys};
pub use services::{AgentService, PhoneNumber, ServiceKind, ServiceStart};
pub use sessions::ConsoleSession;
pub use settings::{PoolEvent, PoolSettings, StoredSettings};
pub use shards::{
    DEFAULT_SHARDS, MAX_SHARDS, Renewal, ReplicaRow, ReplicaShards, SHARD_LOCK_CLASS, ShardFilter,
    fair_share, hysteresis, new_replica_id, shard_key, shard_of,
};
pub use tick_rows::{ResourceOwner, SeenAgent, TickRow, TickScope};
pub use transitions::Transition;
pub use upkeep::{SecretsCensus, SecretsUpkeep};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A handle on the pool's database. Cheap to clone; all clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    config: StoreConfig,
    /// This replica's notifications (`notify.rs`).
    hub: std::sync::Arc<notify::Hub>,
    /// This process's replica id (`pool_replicas.replica`), stamped on the work leases it takes.
    replica: std::sync::Arc<str>,
    /// Claims and completions waiting for a statement shared with others (`gathered.rs`).
    gathered: std::sync::Arc<gathered::Gathered>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a pool and checks that the database answers, so a wrong URL or password is
    /// reported at start-up in one line instead of on the first request.
    pub async fn connect(config: StoreConfig) -> Result<Self> {
        let pg_config = config.pg_config()?;
        let manager = Manager::from_config(
            pg_config,
            config.tls_connector()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.acquire_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        let store = Self {
            pool,
            config,
            hub: std::sync::Arc::new(notify::Hub::new()),
            replica: shards::new_replica_id().into(),
            gathered: std::sync::Arc::new(gathered::Gathered::new()),
        };
        store.ping().await?;
        Ok(store)
    }

    /// This pool's id: random, made once per database (migration V12), in every project's
    /// marker.
    pub async fn pool_id(&self) -> Result<String> {
        let client = self.client().await?;
        Ok(client
            .query_one("SELECT pool_id FROM pool_identity", &[])
            .await?
            .get(0))
    }

    /// Runs one trivial query: `Ok` when the database is reachable.
    pub async fn ping(&self) -> Result<()> {
        let client = self.client().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }

    /// This process's replica id: its row in `pool_replicas` (its lock connection is
    /// `pool-shards <id>`), and the holder named on the work leases it takes. One per opened
    /// store (per process; tests open one per simulated replica).
    pub fn replica_id(&self) -> &str {
        &self.replica
    }

    /// The configuration this store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The keys this store seals and opens secrets with.
    pub(crate) fn keys(&self) -> &SecretsKeys {
        &self.config.secrets
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::from_pool(e, &self.config))
    }
}
