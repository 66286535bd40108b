//! The image registry, read once per rollout to resolve a tag to the digest every agent gets.
//!
//! The calls are the Node pool's `resolveImageDigest` (`pool/src/services/providers/ghcr.ts:15-49`
//! of the runtime repository): an anonymous pull token from `GET {registry}/token?scope=
//! repository:<name>:pull`, then `HEAD {registry}/v2/<name>/manifests/<tag>` with the manifest
//! media types accepted; the `Docker-Content-Digest` header names the bytes. Unlike the Node
//! pool, a failure is an error, never a silent fallback to the tag: a rollout that deployed a
//! moving tag could give agents different bytes.

use std::time::Duration;

use crate::error::{ProvisionError, Result};
use crate::outbound::OutboundClient;

/// Time allowed for each of the two registry calls (the Node pool's 5 s).
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(5);

/// The manifest media types asked for (an index first: multi-platform images).
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.manifest.v1+json";

/// The registry client.
#[derive(Clone)]
pub(crate) struct Registry {
    http: OutboundClient,
    /// `AGENT_REGISTRY_URL`: the registry's base URL instead of `https://<host>` (the simulator).
    base_url: Option<String>,
}

/// An image reference split into registry host, repository name and tag or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reference<'a> {
    /// `ghcr.io`.
    pub host: &'a str,
    /// `xmtplabs/convos-agent`.
    pub name: &'a str,
    /// `production`, or `sha256:…` for a digest.
    pub reference: &'a str,
}

/// Splits `host/name:tag` or `host/name@sha256:…`.
pub(crate) fn split(image: &str) -> Option<Reference<'_>> {
    let (repository, reference) = match image.split_once('@') {
        Some((r, digest)) => (r, digest),
        None => {
            let slash = image.rfind('/')?;
            let colon = image[slash..].rfind(':')? + slash;
            (&image[..colon], &image[colon + 1..])
        }
    };
    let (host, name) = repository.split_once('/')?;
    if host.is_empty() || name.is_empty() || reference.is_empty() {
        return None;
    }
    Some(Reference {
        host,
        name,
        reference,
    })
}

impl Registry {
    pub(crate) fn new(http: OutboundClient, base_url: Option<String>) -> Self {
        Self { http, base_url }
    }

    /// `repository@sha256:…` for `image` (`repository:tag`); an image pinned to a digest is
    /// its own answer.
    pub(crate) async fn resolve(&self, image: &str) -> Result<String> {
        let failed = |reason: String| ProvisionError::UpstreamFailed {
            service: "registry",
            reason,
        };
        let parts = split(image).ok_or_else(|| failed(format!("{image:?} is not an image reference")))?;
        if image.contains('@') {
            return Ok(image.to_string());
        }
        let base = self
            .base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", parts.host));
        let base = base.trim_end_matches('/');
        let token_url = format!("{base}/token?scope=repository:{}:pull", parts.name);
        let answer = self
            .http
            .send(hyper::Method::GET, &token_url, None, None, REGISTRY_TIMEOUT)
            .await
            .map_err(|e| failed(format!("token: {e}")))?;
        if answer.status != 200 {
            return Err(failed(format!("token endpoint answered {}", answer.status)));
        }
        let token = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_string))
            .ok_or_else(|| failed("token endpoint answered without a token".into()))?;
        let manifest_url = format!("{base}/v2/{}/manifests/{}", parts.name, parts.reference);
        let answer = self
            .http
            .send_with_headers(
                hyper::Method::HEAD,
                &manifest_url,
                Some(&token),
                &[("accept", MANIFEST_TYPES)],
                None,
                REGISTRY_TIMEOUT,
            )
            .await
            .map_err(|e| failed(format!("manifest: {e}")))?;
        if answer.status != 200 {
            return Err(failed(format!(
                "{image}: the registry answered {} for its manifest",
                answer.status
            )));
        }
        let digest = answer
            .headers
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .filter(|d| d.starts_with("sha256:"))
            .ok_or_else(|| failed(format!("{image}: no sha256 Docker-Content-Digest in the answer")))?;
        Ok(format!("{}/{}@{digest}", parts.host, parts.name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_host_name_and_tag_or_digest() {
        assert_eq!(
            split("ghcr.io/xmtplabs/convos-agent:production"),
            Some(Reference {
                host: "ghcr.io",
                name: "xmtplabs/convos-agent",
                reference: "production"
            })
        );
        assert_eq!(
            split("ghcr.io/xmtplabs/convos-agent@sha256:abc").map(|r| r.reference),
            Some("sha256:abc")
        );
        assert_eq!(
            split("localhost:5000/agent:1").map(|r| (r.host, r.name)),
            Some(("localhost:5000", "agent"))
        );
        assert_eq!(split("ghcr.io/xmtplabs/convos-agent"), None, "no tag");
        assert_eq!(split("agent:1"), None, "no registry host");
    }
}
