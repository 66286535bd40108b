//! Which image agents run: the one place the tag rules live.
//!
//! CI builds the agent image on pushes to `staging` and `main` and tags it `staging` and
//! `production` (plus `sha-<commit>`); the pool selects the tag from its own
//! `RAILWAY_ENVIRONMENT_NAME`, unless `AGENT_IMAGE_TAG` pins one. The workflow test reads
//! `.github/workflows/agent-image.yml` and checks it produces exactly [`tag_for_branch`].

/// The default agent image repository.
pub const DEFAULT_AGENT_IMAGE: &str = "ghcr.io/xmtplabs/convos-agent";

/// A runtime the agent image workflow builds: the runtime repository ships one Dockerfile per
/// runtime (`runtime/openclaw/Dockerfile`, `runtime/hermes/Dockerfile` at the pinned commit),
/// and each becomes an image of its own, tagged by the same rules ([`tag_for_branch`],
/// [`tag_for_commit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeImage {
    /// The runtime's name: the agent's `RUNTIME_TYPE` and what its `/pool/health` reports
    /// (runtime/convos-platform/pool-server/index.ts:59,359).
    pub name: &'static str,
    /// Its Dockerfile, relative to the runtime repository's root (the build context).
    pub dockerfile: &'static str,
    /// The repository CI pushes its agent image to.
    pub repository: &'static str,
}

/// Every runtime CI builds. OpenClaw keeps the repository the pool has always used.
pub const RUNTIME_IMAGES: [RuntimeImage; 2] = [
    RuntimeImage {
        name: "openclaw",
        dockerfile: "runtime/openclaw/Dockerfile",
        repository: DEFAULT_AGENT_IMAGE,
    },
    RuntimeImage {
        name: "hermes",
        dockerfile: "runtime/hermes/Dockerfile",
        repository: "ghcr.io/xmtplabs/convos-agent-hermes",
    },
];

/// The image CI builds for a runtime.
pub fn runtime_image(name: &str) -> Option<&'static RuntimeImage> {
    RUNTIME_IMAGES.iter().find(|r| r.name == name)
}

/// Branches CI builds, and the moving tag each produces.
pub const BRANCH_TAGS: [(&str, &str); 2] = [("staging", "staging"), ("main", "production")];

/// The moving tag CI pushes for a branch.
pub fn tag_for_branch(branch: &str) -> Option<&'static str> {
    BRANCH_TAGS.iter().find(|(b, _)| *b == branch).map(|(_, t)| *t)
}

/// The pinning tag CI pushes for every commit.
pub fn tag_for_commit(sha: &str) -> String {
    format!("sha-{sha}")
}

/// The tag a pool in this Railway environment deploys when none is pinned.
pub fn tag_for_environment(environment: &str) -> Option<&'static str> {
    BRANCH_TAGS.iter().map(|(_, t)| *t).find(|t| *t == environment)
}

/// A full image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Repository, e.g. `ghcr.io/xmtplabs/convos-agent`.
    pub repository: String,
    /// Tag.
    pub tag: String,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

/// Why no image could be selected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The environment has no tag of its own and none is pinned.
    #[error(
        "RAILWAY_ENVIRONMENT_NAME is {0:?}: agent images are only built for \"staging\" and \"production\"; set AGENT_IMAGE_TAG to pin a tag"
    )]
    NoTagForEnvironment(String),
    /// The repository or tag is malformed.
    #[error("{0}")]
    Invalid(String),
}

/// Selects the image: `repository:tag` with the pinned tag, else the environment's.
pub fn select_image(
    repository: &str,
    pinned_tag: Option<&str>,
    environment: &str,
) -> Result<ImageRef, ImageError> {
    let repository = repository.trim();
    if repository.is_empty() || repository.contains(char::is_whitespace) || repository.contains('@') {
        return Err(ImageError::Invalid(format!(
            "AGENT_IMAGE {repository:?} is not an image repository"
        )));
    }
    if repository
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
    {
        return Err(ImageError::Invalid(format!(
            "AGENT_IMAGE {repository:?} must not carry a tag; use AGENT_IMAGE_TAG"
        )));
    }
    let tag = match pinned_tag.map(str::trim).filter(|t| !t.is_empty()) {
        Some(tag) => {
            let valid = tag.len() <= 128
                && tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                && !tag.starts_with(['.', '-']);
            if !valid {
                return Err(ImageError::Invalid(format!(
                    "AGENT_IMAGE_TAG {tag:?} is not a valid image tag"
                )));
            }
            tag.to_string()
        }
        None => tag_for_environment(environment)
            .ok_or_else(|| ImageError::NoTagForEnvironment(environment.to_string()))?
            .to_string(),
    };
    Ok(ImageRef {
        repository: repository.to_string(),
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_selects_the_tag_unless_one_is_pinned() {
        let img = |tag, env| select_image(DEFAULT_AGENT_IMAGE, tag, env).map(|i| i.to_string());
        assert_eq!(
            img(None, "staging").unwrap(),
            "ghcr.io/xmtplabs/convos-agent:staging"
        );
        assert_eq!(
            img(None, "production").unwrap(),
            "ghcr.io/xmtplabs/convos-agent:production"
        );
        assert_eq!(
            img(Some("sha-abc123"), "staging").unwrap(),
            "ghcr.io/xmtplabs/convos-agent:sha-abc123"
        );
        assert_eq!(
            img(Some("sha-abc123"), "pr-42").unwrap(),
            "ghcr.io/xmtplabs/convos-agent:sha-abc123"
        );
        assert_eq!(
            img(None, "pr-42"),
            Err(ImageError::NoTagForEnvironment("pr-42".into()))
        );
        assert!(img(Some("bad tag"), "staging").is_err());
        assert!(select_image("ghcr.io/x/y:latest", None, "staging").is_err());
    }

    #[test]
    fn branches_and_environments_agree() {
        assert_eq!(tag_for_branch("staging"), tag_for_environment("staging"));
        assert_eq!(tag_for_branch("main"), tag_for_environment("production"));
        assert_eq!(tag_for_branch("feature"), None);
        assert_eq!(tag_for_commit("0123abc"), "sha-0123abc");
    }

    #[test]
    fn every_runtime_has_its_own_dockerfile_and_repository() {
        assert_eq!(runtime_image("openclaw").unwrap().repository, DEFAULT_AGENT_IMAGE);
        assert_eq!(
            runtime_image("hermes").unwrap().dockerfile,
            "runtime/hermes/Dockerfile"
        );
        assert!(runtime_image("claude").is_none());
        let repositories: std::collections::HashSet<_> =
            RUNTIME_IMAGES.iter().map(|r| r.repository).collect();
        assert_eq!(repositories.len(), RUNTIME_IMAGES.len());
    }
}
