//! The agent's side of a self-destruct: what its pool server does when the runtime asks it to
//! (`runtime/convos-platform/pool-server/index.ts:456-501`): with `INSTANCE_ID`, `POOL_URL` and
//! `GATEWAY_TOKEN` set, `POST ${POOL_URL}/api/pool/self-destruct` with `{instanceId,
//! gatewayToken}` and a 10 s timeout (470-479); without them, nothing is sent (464-468).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// What the pool manager answered a self-destruct, or why none was sent or answered.
pub(crate) async fn call(variables: &std::collections::BTreeMap<String, String>) -> Result<u16, String> {
    let var = |name: &str| variables.get(name).filter(|v| !v.is_empty());
    let (Some(instance), Some(pool_url), Some(token)) =
        (var("INSTANCE_ID"), var("POOL_URL"), var("GATEWAY_TOKEN"))
    else {
        return Err("not a pool-managed instance".into());
    };
    let url = format!("{}/api/pool/self-destruct", pool_url.trim_end_matches('/'));
    let body = serde_json::json!({"instanceId": instance, "gatewayToken": token}).to_string();
    let request = hyper::Request::post(&url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
        Ok(Ok(response)) => Ok(response.status().as_u16()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the pool manager did not answer within 10 s".into()),
    }
}
