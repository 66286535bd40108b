//! Shapes: the runtimes one pool serves side by side, each with its own image, tag rules,
//! resource limits and start command.
//!
//! The runtime repository ships two runtimes (`runtime/openclaw/Dockerfile`,
//! `runtime/hermes/Dockerfile`), and the Node pool lets each claim pick one (`runtime`). A
//! shape is one of them as this pool runs it: its agents carry its name (their row's `shape`,
//! their `RUNTIME_TYPE`), run its image, and are sized, claimed and rolled out apart from the
//! other shapes' agents.
//!
//! The Node pool names one image for every agent (`RAILWAY_RUNTIME_IMAGE`, pool/src/config.ts:44-49)
//! and derives the runtime from the image's name: `runtime-hermes` in it means Hermes, anything
//! else OpenClaw (pool/src/services/providers/railway.ts:351, :515). [`runtime_of_image`] is
//! that rule, so the Node pool's variable is read as the image of the shape it names.

use crate::config::DEFAULT_START_COMMAND;
use crate::image::{ImageError, ImageRef, select_image};

/// The shape a pool without `POOL_RUNTIMES` has: OpenClaw, from `AGENT_IMAGE`, as before
/// shapes existed.
pub const DEFAULT_SHAPE: &str = "openclaw";

/// One runtime the pool serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    /// The runtime's name: what a claim's `runtime` names, the agent's `RUNTIME_TYPE`, and what
    /// its `/pool/health` must report (runtime/convos-platform/pool-server/index.ts:59).
    pub name: String,
    /// The image new agents of this shape run: the shape's repository, tagged by the tag
    /// rules of [`crate::image`] (the environment's tag unless one is pinned).
    pub image: ImageRef,
    /// The command its agents run instead of the image's own (`None` keeps the image's).
    pub start_command: Option<String>,
    /// CPU limit per agent.
    pub vcpus: Option<f64>,
    /// Memory limit per agent (GB).
    pub memory_gb: Option<f64>,
}

impl Shape {
    /// A shape with the pool server as its start command and no resource limits.
    pub fn new(name: impl Into<String>, image: ImageRef) -> Self {
        Self {
            name: name.into(),
            image,
            start_command: Some(DEFAULT_START_COMMAND.into()),
            vcpus: None,
            memory_gb: None,
        }
    }
}

/// Every shape of the pool, in the order configured, and the one a claim without `runtime`
/// gets. Never empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Shapes {
    list: Vec<Shape>,
    default: usize,
}

impl Shapes {
    /// One shape, the default.
    pub fn single(shape: Shape) -> Self {
        Self {
            list: vec![shape],
            default: 0,
        }
    }

    /// Several shapes; `default` names the one a claim without `runtime` gets (`None`: the
    /// first). Refused when empty, when a name repeats, or when `default` is not one of them.
    pub fn new(list: Vec<Shape>, default: Option<&str>) -> Result<Self, ShapeError> {
        if list.is_empty() {
            return Err(ShapeError("POOL_RUNTIMES lists no runtime".into()));
        }
        for (i, shape) in list.iter().enumerate() {
            check_name(&shape.name)?;
            if list[..i].iter().any(|s| s.name == shape.name) {
                return Err(ShapeError(format!(
                    "POOL_RUNTIMES names the runtime {:?} twice",
                    shape.name
                )));
            }
        }
        let default = match default {
            None => 0,
            Some(name) => list.iter().position(|s| s.name == name).ok_or_else(|| {
                ShapeError(format!(
                    "POOL_DEFAULT_RUNTIME {name:?} is not one of the configured runtimes ({})",
                    list.iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?,
        };
        Ok(Self { list, default })
    }

    /// The shape a claim without `runtime` gets.
    pub fn default_shape(&self) -> &Shape {
        &self.list[self.default]
    }

    /// The shape of this name.
    pub fn get(&self, name: &str) -> Option<&Shape> {
        self.list.iter().find(|s| s.name == name)
    }

    /// The shape of this name, mutably (the binary's configuration).
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Shape> {
        self.list.iter_mut().find(|s| s.name == name)
    }

    /// Every shape, in the order configured.
    pub fn iter(&self) -> impl Iterator<Item = &Shape> {
        self.list.iter()
    }

    /// Every shape, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Shape> {
        self.list.iter_mut()
    }

    /// The shapes' names, in the order configured.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|s| s.name.as_str()).collect()
    }

    /// The shape a claim's (or a request's) `runtime` asks for: the default when none or an
    /// empty one is named. `Err` carries the unknown name.
    pub fn pick(&self, runtime: Option<&str>) -> Result<&Shape, String> {
        match runtime.map(str::trim).filter(|r| !r.is_empty()) {
            None => Ok(self.default_shape()),
            Some(name) => self.get(name).ok_or_else(|| name.to_string()),
        }
    }
}

/// A shape configuration refused, naming the variable to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(
    /// What is wrong, naming the variable.
    pub String,
);

impl From<ImageError> for ShapeError {
    fn from(e: ImageError) -> Self {
        Self(e.to_string())
    }
}

/// A runtime's name: lowercase letters, digits and dashes, 1 to 32 characters (it is written
/// into variables, metrics labels and URLs).
fn check_name(name: &str) -> Result<(), ShapeError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ShapeError(format!(
            "POOL_RUNTIMES: {name:?} is not a runtime name (lowercase letters, digits and dashes, at most 32)"
        )))
    }
}

/// Parses `POOL_RUNTIMES`: `name=image-repository` pairs separated by commas, e.g.
/// `openclaw=ghcr.io/xmtplabs/convos-runtime,hermes=ghcr.io/xmtplabs/convos-runtime-hermes`.
pub fn parse_runtimes(spec: &str) -> Result<Vec<(String, String)>, ShapeError> {
    let mut out = Vec::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, repository)) = entry.split_once('=') else {
            return Err(ShapeError(format!(
                "POOL_RUNTIMES: {entry:?} is not name=image-repository"
            )));
        };
        let (name, repository) = (name.trim(), repository.trim());
        check_name(name)?;
        if repository.is_empty() {
            return Err(ShapeError(format!(
                "POOL_RUNTIMES: the runtime {name:?} has no image repository"
            )));
        }
        out.push((name.to_string(), repository.to_string()));
    }
    Ok(out)
}

/// The runtime the Node pool gives an agent of this image: `hermes` when the image's name
/// holds `runtime-hermes`, `openclaw` otherwise (pool/src/services/providers/railway.ts:351,
/// :515 at the pinned commit).
pub fn runtime_of_image(image: &str) -> &'static str {
    if image.contains("runtime-hermes") {
        "hermes"
    } else {
        "openclaw"
    }
}

/// Splits a full image reference (`repository:tag`) as `RAILWAY_RUNTIME_IMAGE` carries it.
/// A reference without a tag is `(repository, None)`; a digest is refused.
pub fn split_image(reference: &str) -> Result<(String, Option<String>), ShapeError> {
    let reference = reference.trim();
    if reference.contains('@') {
        return Err(ShapeError(format!(
            "RAILWAY_RUNTIME_IMAGE {reference:?}: a digest cannot be pinned here; name a tag"
        )));
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => {
            let at = last_slash + colon;
            Ok((reference[..at].to_string(), Some(reference[at + 1..].to_string())))
        }
        None => Ok((reference.to_string(), None)),
    }
}

/// What the binary read for the shapes, before the tag rules are applied.
#[derive(Debug, Clone, Default)]
pub struct ShapeSources<'a> {
    /// `POOL_RUNTIMES`, parsed ([`parse_runtimes`]).
    pub runtimes: Option<Vec<(String, String)>>,
    /// `AGENT_IMAGE` (the one shape's repository without `POOL_RUNTIMES`).
    pub agent_image: Option<&'a str>,
    /// `AGENT_IMAGE_TAG`: the tag every shape's image takes instead of the environment's.
    pub agent_image_tag: Option<&'a str>,
    /// `RAILWAY_RUNTIME_IMAGE`: the Node pool's full image, the image of the shape it names.
    pub railway_runtime_image: Option<&'a str>,
    /// `POOL_DEFAULT_RUNTIME`.
    pub default_runtime: Option<&'a str>,
}

/// The shapes from what the binary read, with every image tagged for `environment`:
///
/// - `POOL_RUNTIMES` lists them; without it there is one shape, `openclaw`, from `AGENT_IMAGE`
///   (or, when only `RAILWAY_RUNTIME_IMAGE` is set, of the runtime that image names).
/// - `AGENT_IMAGE_TAG` pins every shape's tag; otherwise the environment's (`staging`,
///   `production`).
/// - `RAILWAY_RUNTIME_IMAGE` replaces the repository (and tag, when it carries one) of the
///   shape whose runtime its name gives; that shape must be configured.
pub fn shapes_from(sources: &ShapeSources<'_>, environment: &str) -> Result<Shapes, ShapeError> {
    let node_image = sources
        .railway_runtime_image
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|image| split_image(image).map(|split| (runtime_of_image(image), split)))
        .transpose()?;
    let pairs = match &sources.runtimes {
        Some(pairs) => pairs.clone(),
        None => {
            let name = match (&node_image, sources.agent_image) {
                (Some((runtime, _)), None) => runtime.to_string(),
                _ => DEFAULT_SHAPE.to_string(),
            };
            let repository = sources
                .agent_image
                .unwrap_or(crate::image::DEFAULT_AGENT_IMAGE)
                .to_string();
            vec![(name, repository)]
        }
    };
    let mut list = Vec::with_capacity(pairs.len());
    for (name, repository) in pairs {
        let (repository, tag) = match &node_image {
            Some((runtime, (repo, tag))) if *runtime == name => {
                (repo.clone(), tag.as_deref().or(sources.agent_image_tag))
            }
            _ => (repository, sources.agent_image_tag),
        };
        let image = select_image(&repository, tag, environment)?;
        list.push(Shape::new(name, image));
    }
    if let Some((runtime, _)) = &node_image
        && !list.iter().any(|s| s.name == *runtime)
    {
        return Err(ShapeError(format!(
            "RAILWAY_RUNTIME_IMAGE names an image of the runtime {runtime:?}, which POOL_RUNTIMES does not list"
        )));
    }
    Shapes::new(
        list,
        sources.default_runtime.map(str::trim).filter(|d| !d.is_empty()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(sources: ShapeSources<'_>) -> Result<Shapes, ShapeError> {
        shapes_from(&sources, "staging")
    }

    #[test]
    fn without_pool_runtimes_there_is_one_openclaw_shape_from_agent_image() {
        let shapes = from(ShapeSources {
            agent_image: Some("ghcr.io/me/agent"),
            ..ShapeSources::default()
        })
        .unwrap();
        assert_eq!(shapes.names(), ["openclaw"]);
        assert_eq!(
            shapes.default_shape().image.to_string(),
            "ghcr.io/me/agent:staging"
        );
        let shapes = from(ShapeSources::default()).unwrap();
        assert_eq!(
            shapes.default_shape().image.to_string(),
            "ghcr.io/xmtplabs/convos-agent:staging"
        );
    }

    #[test]
    fn pool_runtimes_lists_shapes_and_the_first_is_the_default_unless_named() {
        let runtimes = parse_runtimes(
            "openclaw=ghcr.io/xmtplabs/convos-runtime, hermes=ghcr.io/xmtplabs/convos-runtime-hermes",
        )
        .unwrap();
        let shapes = from(ShapeSources {
            runtimes: Some(runtimes.clone()),
            agent_image_tag: Some("sha-abc"),
            ..ShapeSources::default()
        })
        .unwrap();
        assert_eq!(shapes.names(), ["openclaw", "hermes"]);
        assert_eq!(shapes.default_shape().name, "openclaw");
        assert_eq!(
            shapes.get("hermes").unwrap().image.to_string(),
            "ghcr.io/xmtplabs/convos-runtime-hermes:sha-abc"
        );
        let shapes = from(ShapeSources {
            runtimes: Some(runtimes.clone()),
            default_runtime: Some("hermes"),
            ..ShapeSources::default()
        })
        .unwrap();
        assert_eq!(shapes.default_shape().name, "hermes");
        assert_eq!(shapes.pick(None).unwrap().name, "hermes");
        assert_eq!(shapes.pick(Some("openclaw")).unwrap().name, "openclaw");
        assert_eq!(shapes.pick(Some("claude")), Err("claude".to_string()));
        let refused = from(ShapeSources {
            runtimes: Some(runtimes),
            default_runtime: Some("claude"),
            ..ShapeSources::default()
        })
        .unwrap_err();
        assert!(
            refused.0.starts_with("POOL_DEFAULT_RUNTIME \"claude\""),
            "{refused}"
        );
    }

    #[test]
    fn bad_pool_runtimes_are_refused_naming_the_variable() {
        for bad in ["openclaw", "=repo", "Open=repo", "a=", "a=x,a=y"] {
            let refused = parse_runtimes(bad)
                .and_then(|r| {
                    from(ShapeSources {
                        runtimes: Some(r),
                        ..ShapeSources::default()
                    })
                })
                .unwrap_err();
            assert!(refused.0.contains("POOL_RUNTIMES"), "{bad}: {refused}");
        }
    }

    #[test]
    fn the_node_pools_runtime_image_is_the_image_of_the_shape_it_names() {
        assert_eq!(
            runtime_of_image("ghcr.io/xmtplabs/convos-runtime-hermes:production"),
            "hermes"
        );
        assert_eq!(
            runtime_of_image("ghcr.io/xmtplabs/convos-runtime:staging"),
            "openclaw"
        );
        let runtimes =
            parse_runtimes("openclaw=ghcr.io/x/convos-runtime,hermes=ghcr.io/x/convos-runtime-hermes")
                .unwrap();
        let shapes = from(ShapeSources {
            runtimes: Some(runtimes),
            railway_runtime_image: Some("ghcr.io/xmtplabs/convos-runtime-hermes:production"),
            ..ShapeSources::default()
        })
        .unwrap();
        assert_eq!(
            shapes.get("hermes").unwrap().image.to_string(),
            "ghcr.io/xmtplabs/convos-runtime-hermes:production"
        );
        assert_eq!(
            shapes.get("openclaw").unwrap().image.to_string(),
            "ghcr.io/x/convos-runtime:staging"
        );
        // Alone, it is the one shape, of the runtime it names.
        let shapes = from(ShapeSources {
            railway_runtime_image: Some("ghcr.io/xmtplabs/convos-runtime-hermes:production"),
            ..ShapeSources::default()
        })
        .unwrap();
        assert_eq!(shapes.names(), ["hermes"]);
        // A runtime the pool does not list is refused, naming the variable.
        let refused = from(ShapeSources {
            runtimes: Some(parse_runtimes("openclaw=ghcr.io/x/a").unwrap()),
            railway_runtime_image: Some("ghcr.io/xmtplabs/convos-runtime-hermes:production"),
            ..ShapeSources::default()
        })
        .unwrap_err();
        assert!(refused.0.starts_with("RAILWAY_RUNTIME_IMAGE"), "{refused}");
        assert!(split_image("ghcr.io/x/y@sha256:00").is_err());
        assert_eq!(
            split_image("localhost:5000/x/y").unwrap(),
            ("localhost:5000/x/y".to_string(), None)
        );
    }
}
