//! The agents' own credentials against a real PostgreSQL and the simulator: the right pair
//! names its agent; a wrong token, an unknown or malformed id, another agent's token and a
//! torn-down agent's token are all refused alike.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use pool_provisioner::ProvisionError;
use pool_provisioner::testing::{TestPool, unthrottled};
use secrecy::ExposeSecret;

#[tokio::test]
async fn an_agent_is_known_by_its_own_pair_and_by_nothing_else() {
    let pool = TestPool::start(unthrottled()).await;
    let ids = pool.idle_agents(2).await;
    let token = |i: usize| {
        let store = pool.store.clone();
        let id = ids[i].clone();
        async move {
            let agent = store.agent(&id).await.unwrap().unwrap();
            agent.secrets.unwrap().gateway_token.expose_secret().to_string()
        }
    };
    let (first, second) = (token(0).await, token(1).await);

    let agent = pool
        .provisioner
        .authenticate_agent(ids[0].as_str(), &first)
        .await
        .unwrap();
    assert_eq!(agent.id, ids[0]);

    let refused = |id: String, token: String| {
        let provisioner = pool.provisioner.clone();
        async move {
            match provisioner.authenticate_agent(&id, &token).await {
                Err(ProvisionError::AgentCredentials) => {}
                other => panic!("{id}: {other:?}"),
            }
        }
    };
    refused(ids[0].to_string(), second.clone()).await; // another agent's token
    refused(ids[0].to_string(), format!("{first}x")).await; // longer
    refused(ids[0].to_string(), first[..first.len() - 1].to_string()).await; // shorter
    refused(ids[0].to_string(), String::new()).await;
    refused("nosuchagent1".into(), first.clone()).await;
    refused("not an id/../x".into(), first.clone()).await;

    // Torn down: the archived row keeps no secret, so the pair stops working at once.
    pool.provisioner.kill(&ids[1], "test").await.unwrap();
    refused(ids[1].to_string(), second).await;
}
