//! HTTP transport: posts GraphQL bodies over the workspace's one HTTPS client ([`crate::https`]).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};

use crate::RailwayError;
use crate::https::{ClientOptions, HttpsClient};

/// Largest answer read (a status batch of 50 projects is well under 1 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// An HTTP answer, read whole.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Posts GraphQL bodies to one endpoint.
#[derive(Clone)]
pub(crate) struct Transport {
    client: HttpsClient,
    uri: hyper::Uri,
    user_agent: String,
}

impl Transport {
    pub(crate) fn new(endpoint: &str, user_agent: &str) -> Result<Self, RailwayError> {
        let uri: hyper::Uri = endpoint.parse().map_err(|e| RailwayError::Config {
            reason: format!("invalid Railway endpoint {endpoint:?}: {e}"),
        })?;
        let client = crate::https::client(&ClientOptions::new(Duration::from_secs(30), 32)).map_err(|e| {
            RailwayError::Config {
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            client,
            uri,
            user_agent: user_agent.to_string(),
        })
    }

    /// Sends one request and reads the whole answer within `timeout`.
    pub(crate) async fn post(
        &self,
        token: &SecretString,
        body: Bytes,
        timeout: Duration,
    ) -> Result<RawResponse, RailwayError> {
        let request = hyper::Request::post(self.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, &self.user_agent)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose_secret()))
            .body(Full::new(body))
            .map_err(|e| RailwayError::Config {
                reason: format!("could not build a request: {e}"),
            })?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    RailwayError::NotSent { reason: one_line(&e) }
                } else {
                    RailwayError::Transport { reason: one_line(&e) }
                }
            })?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = Limited::new(response.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| RailwayError::Transport {
                    reason: e.to_string(),
                })?
                .to_bytes();
            Ok(RawResponse {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RailwayError::Timeout(timeout))?
    }
}

fn one_line(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
