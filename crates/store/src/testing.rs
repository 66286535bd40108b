//! Test support: every test gets its own fresh, migrated database.
//!
//! Databases are cloned (`CREATE DATABASE … TEMPLATE`) from a template that is migrated once
//! per set of migrations, so tests run in parallel (even as separate processes under nextest)
//! and start in milliseconds. Each test database is dropped when its [`TestDatabase`] is
//! dropped, panics included.
//!
//! The server is taken from `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! this test-only module is the one place in a library that reads the environment.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{MigrateOptions, Store, StoreConfig};

/// The default server for tests.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The secrets key of every test database, the end-to-end harness and the demo: fixed (and
/// public) so a test can read what a pool manager it started wrote. Never use it elsewhere.
pub const TEST_SECRETS_KEY: &str = "dGVzdC1vbmx5IHNlY3JldHMga2V5IC0gbm90IHNlY3I=";

/// [`TEST_SECRETS_KEY`] as the keys a store takes.
pub fn test_secrets_keys() -> crate::SecretsKeys {
    crate::SecretsKeys::new(
        crate::SecretsKey::parse(TEST_SECRETS_KEY).expect("the test key parses"),
        None,
    )
}

/// Advisory lock key held while the template is built ("pool-tpl").
const TEMPLATE_LOCK_KEY: i64 = 0x706f_6f6c_2d74_706c;

/// The maintenance database URL tests connect to.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_string())
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    server_url: String,
}

fn url_with_database(server_url: &str, database: &str) -> String {
    // Replace the path of `postgres://…/db?params` with `database`, keeping any parameters.
    let (base, params) = match server_url.split_once('?') {
        Some((b, p)) => (b, Some(p)),
        None => (server_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[scheme_end..]
        .find('/')
        .map(|i| i + scheme_end)
        .unwrap_or(base.len());
    let mut url = format!("{}/{database}", &base[..host_end]);
    if let Some(p) = params {
        url.push('?');
        url.push_str(p);
    }
    url
}

/// A fingerprint of the embedded migrations, so a changed migration gets a new template.
fn migrations_fingerprint() -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    entries.sort();
    for path in entries {
        path.file_name().hash(&mut hasher);
        std::fs::read(&path).unwrap_or_default().hash(&mut hasher);
    }
    hasher.finish()
}

/// A connection through the store's own path, so a `DATABASE_URL` with `sslmode=require` or
/// `verify-full` works for the tests' administration too.
async fn admin_client(server_url: &str) -> tokio_postgres::Client {
    let config = StoreConfig::new(server_url);
    let (client, _connection) = config.connect_dedicated().await.unwrap_or_else(|e| {
        panic!(
            "tests need PostgreSQL at {} (set DATABASE_URL): {e}",
            config.display_target()
        )
    });
    client
}

/// A plain client on `url`, opened through the store's own connection path (the one migrations
/// and the leader lock use), so `sslmode` in `url` applies: for tests that inspect a session.
pub async fn client_for(url: &str) -> tokio_postgres::Client {
    admin_client(url).await
}

async fn ensure_template(admin: &tokio_postgres::Client, server_url: &str) -> String {
    let template = format!("pool_test_tpl_{:016x}", migrations_fingerprint());
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK_KEY])
        .await
        .expect("lock for the test template");
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&template])
        .await
        .expect("look up template")
        .is_some();
    if !exists {
        // Templates of older migration sets are no longer needed.
        let stale: Vec<String> = admin
            .query(
                "SELECT datname FROM pg_database WHERE datname LIKE 'pool\\_test\\_tpl\\_%' AND datname <> $1",
                &[&template],
            )
            .await
            .expect("list stale templates")
            .iter()
            .map(|r| r.get(0))
            .collect();
        for name in stale {
            let _ = admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
        let building = format!("{template}_building");
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .await
            .expect("drop a half-built template");
        admin
            .batch_execute(&format!("CREATE DATABASE {building}"))
            .await
            .expect("create template database");
        let config = StoreConfig::new(url_with_database(server_url, &building));
        crate::run_migrations(&config, &MigrateOptions::default())
            .await
            .expect("migrate the test template");
        admin
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {template}"))
            .await
            .expect("publish the test template");
    }
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK_KEY])
        .await
        .expect("unlock template");
    template
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDatabase {
    /// A fresh database with every migration applied.
    pub async fn migrated() -> Self {
        let server_url = server_url();
        let admin = admin_client(&server_url).await;
        let template = ensure_template(&admin, &server_url).await;
        let name = unique_name("pool_test");
        // Clones of one template can collide briefly ("being accessed by other users");
        // retry a few times.
        let mut attempt = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .await
            {
                Ok(()) => break,
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "retrying test database clone");
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
                }
                Err(e) => panic!("clone test database: {e}"),
            }
        }
        let url = url_with_database(&server_url, &name);
        // A clone carries the template's pool id: a database of its own gets an id of its own,
        // as a freshly migrated one would.
        admin_client(&url)
            .await
            .batch_execute("UPDATE pool_identity SET pool_id = replace(gen_random_uuid()::text, '-', '')")
            .await
            .expect("give the test database a pool id of its own");
        Self {
            name,
            url,
            server_url,
        }
    }

    /// A fresh, empty database (no migrations): for migration tests.
    pub async fn empty() -> Self {
        let server_url = server_url();
        let admin = admin_client(&server_url).await;
        let name = unique_name("pool_test_empty");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create empty test database");
        let url = url_with_database(&server_url, &name);
        Self {
            name,
            url,
            server_url,
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Store settings for this database, with [`TEST_SECRETS_KEY`].
    pub fn config(&self) -> StoreConfig {
        let mut config = StoreConfig::new(self.url.clone());
        config.max_connections = 8;
        config.secrets = test_secrets_keys();
        config
    }

    /// A store connected to this database.
    pub async fn store(&self) -> Store {
        Store::connect(self.config())
            .await
            .expect("connect to test database")
    }

    /// A plain client on this database, for setting up or inspecting raw tables.
    pub async fn client(&self) -> tokio_postgres::Client {
        admin_client(&self.url).await
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop is synchronous and may run inside a runtime: do the work on a thread of its own.
        let name = self.name.clone();
        let server_url = self.server_url.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let (client, _connection) = StoreConfig::new(server_url).connect_dedicated().await.ok()?;
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: test database {} was not dropped", self.name);
        }
    }
}

/// An agent to put straight into the table (benchmarks and large-fleet tests).
#[derive(Debug, Clone)]
pub struct SeedAgent {
    /// Id.
    pub id: String,
    /// Project.
    pub project_id: String,
    /// Environment.
    pub environment_id: String,
    /// Service.
    pub service_id: String,
    /// Domain.
    pub domain: String,
    /// The agent's own token.
    pub token: String,
}

impl SeedAgent {
    /// Agent `i` under the id `id`: project `prj-i`, environment `env-i`, service `svc-i`,
    /// domain `agent-i.up.railway.app`, token `token-i`.
    pub fn numbered(id: String, i: usize) -> Self {
        Self {
            id,
            project_id: format!("prj-{i}"),
            environment_id: format!("env-{i}"),
            service_id: format!("svc-{i}"),
            domain: format!("agent-{i}.up.railway.app"),
            token: format!("token-{i}"),
        }
    }
}

impl TestDatabase {
    /// Inserts agents as `idle`, with every creation step journaled, in one statement each.
    /// Their tokens are sealed under [`TEST_SECRETS_KEY`] (the gateway token is `gw-<id>`);
    /// like any agent past its variables step, they keep no setup secrets.
    pub async fn seed_idle_agents(&self, agents: &[SeedAgent]) {
        let client = self.client().await;
        let keys = test_secrets_keys();
        let col =
            |f: fn(&SeedAgent) -> &str| agents.iter().map(|a| f(a).to_string()).collect::<Vec<String>>();
        let (ids, projects, envs, services, domains) = (
            col(|a| &a.id),
            col(|a| &a.project_id),
            col(|a| &a.environment_id),
            col(|a| &a.service_id),
            col(|a| &a.domain),
        );
        let mut tokens = Vec::with_capacity(agents.len());
        let mut gateways = Vec::with_capacity(agents.len());
        for agent in agents {
            let id = crate::AgentId::parse(&agent.id).expect("a seed agent's id");
            let seal = |column, value: &str| {
                keys.seal(value, &crate::secrets::Binding::agent(&id, column))
                    .expect("seal a seed secret")
            };
            tokens.push(seal("agent_api_token", &agent.token));
            gateways.push(seal("gateway_token", &format!("gw-{}", agent.id)));
        }
        client
            .execute(
                "INSERT INTO agent_metadata (id, railway_project_id, railway_environment_id, railway_service_id, \
                 railway_domain, agent_api_token, gateway_token, status, image, \
                 deployment_status, last_health_ok) \
                 SELECT id, p, e, s, d, t, g, 'idle', 'ghcr.io/xmtplabs/convos-agent:production', 'SUCCESS', true \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
                 AS x(id, p, e, s, d, t, g)",
                &[&ids, &projects, &envs, &services, &domains, &tokens, &gateways],
            )
            .await
            .expect("seed agents");
        client
            .execute(
                "INSERT INTO agent_saga_steps (agent_id, step) SELECT id, step FROM unnest($1::text[]) AS id, \
                 unnest(ARRAY['project','environment','service','variables','limits','volume','domain','instance','deploy']) AS step",
                &[&ids],
            )
            .await
            .expect("seed saga steps");
    }
}

/// A claim of one idle agent by the admin key, with a ten-minute lease and, when given, an
/// idempotency key.
pub fn claim_request(idempotency_key: Option<&str>) -> crate::ClaimRequest {
    crate::ClaimRequest {
        agent_name: "Ada".into(),
        instructions: "be kind".into(),
        join_url: None,
        source: "api".into(),
        profile_image: None,
        metadata: None,
        lease: std::time::Duration::from_secs(600),
        idempotency_key: idempotency_key.map(str::to_string),
        ticket: None,
        claimant: "admin".into(),
        request_hash: "h".into(),
        idempotency_ttl: std::time::Duration::from_secs(3600),
        protected: Vec::new(),
        shape: crate::DEFAULT_SHAPE.into(),
    }
}
