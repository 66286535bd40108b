//! The simulator's agent calls the pool as the runtime's pool server does
//! (`runtime/convos-platform/pool-server/index.ts:456-501`): a self-destruct goes to
//! `${POOL_URL}/api/pool/self-destruct` with the agent's own `INSTANCE_ID` and `GATEWAY_TOKEN`,
//! and the real server tears that agent down (issue 19).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use pool_http::console::ConsoleConfig;
use pool_http::{AppState, DetachedControl, SecurityConfig, ServiceInfo};
use pool_provisioner::CreationDemand;
use pool_provisioner::testing::{TestPool, provisioner_config, unthrottled};
use pool_store::AgentStatus;
use secrecy::SecretString;

#[tokio::test]
async fn the_simulators_agent_self_destructs_through_the_pools_own_route() {
    let pool = TestPool::start(unthrottled()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The agents are told where the pool is (their `POOL_URL`): this server.
    let mut config = provisioner_config(&pool.sim, None);
    config.agent_variables.pool_url = Some(format!("http://{addr}"));
    let provisioner = pool.provisioner(config);
    let state = AppState {
        provisioner: provisioner.clone(),
        control: Arc::new(DetachedControl::default()),
        admin_key: SecretString::from("sim-self-destruct-admin-key-0123"),
        info: ServiceInfo {
            version: "test".into(),
        },
        console: ConsoleConfig::default(),
        webhook_secret: None,
        security: SecurityConfig::default(),
    };
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(pool_http::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let started = provisioner
        .start_creations(CreationDemand::UpTo(1))
        .await
        .unwrap();
    let id = started.finished().await.pop().unwrap().unwrap();
    pool.make_idle(&id).await;
    let domain = pool.store.agent(&id).await.unwrap().unwrap().domain.unwrap();

    assert_eq!(pool.sim.agent_self_destruct(&domain).await, Ok(200));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let agent = pool.store.agent(&id).await.unwrap().unwrap();
        if agent.status == AgentStatus::Deleted {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never torn down: {:?}",
            agent.status
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let events = pool.store.events(&id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.actor.as_deref() == Some(format!("agent:{id}").as_str())),
        "the agent is the actor"
    );
    // Gone: its credentials no longer open the route (or nothing serves it any more).
    assert_ne!(pool.sim.agent_self_destruct(&domain).await, Ok(200));
}
