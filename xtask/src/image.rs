//! `cargo xtask image build|push`: the agent image, built and tagged as the CI workflow does.
//!
//! The agent runtime lives in another repository, xmtplabs/convos-managed-agent-runtime, so
//! `build` needs a checkout of it (`--runtime-dir PATH`) and runs the two builds of
//! `.github/workflows/agent-image.yml`:
//! 1. the runtime's own `runtime/openclaw/Dockerfile` with the checkout's root as context,
//!    tagged `runtime-<commit of the checkout>`;
//! 2. `docker/agent/Dockerfile` on top of it (`RUNTIME_IMAGE`): the pool server as the default
//!    command, and labels naming the runtime commit.
//!
//! `--branch staging|main` gives the branch's moving tag and `sha-<commit>` (as the workflow
//! does); `--tag T` (repeatable) names tags directly. `--dry-run` prints the docker commands
//! instead of running them. `push` pushes the tags a `build` made.

use std::path::{Path, PathBuf};
use std::process::Command;

use pool_provisioner::image::{DEFAULT_AGENT_IMAGE, tag_for_branch, tag_for_commit};

/// The repository the agent runtime lives in.
pub const RUNTIME_REPOSITORY: &str = "xmtplabs/convos-managed-agent-runtime";

/// The runtime commit this repository's build was checked against (its Dockerfile's path,
/// context, package layout and entry point); the workflow pins the same one (a test checks).
pub const CHECKED_RUNTIME_REF: &str = "723ba97820fa7c507471e797f1a80deea44375ca";

/// The runtime's agent Dockerfile, relative to the runtime repository's root.
pub const RUNTIME_DOCKERFILE: &str = "runtime/openclaw/Dockerfile";

/// Railway runs amd64; the runtime's own CI builds only that, and so do we (also on an arm
/// laptop, whose image would not start on Railway).
const PLATFORM: &str = "linux/amd64";

/// What to do with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The two `docker build`s.
    Build,
    /// `docker push` of every tag.
    Push,
}

/// A checkout of the agent runtime repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeCheckout {
    /// Its root (the build context of the runtime's Dockerfile).
    pub dir: PathBuf,
    /// The commit checked out.
    pub revision: String,
}

impl RuntimeCheckout {
    /// The checkout at `dir`: it must hold the runtime's Dockerfile and be a git work tree.
    pub fn open(dir: &Path) -> Result<Self, String> {
        if !dir.join(RUNTIME_DOCKERFILE).is_file() {
            return Err(format!(
                "{} has no {RUNTIME_DOCKERFILE}: --runtime-dir must be a checkout of {RUNTIME_REPOSITORY}",
                dir.display()
            ));
        }
        let revision = git(dir, &["rev-parse", "HEAD"])?;
        if !git(dir, &["status", "--porcelain"])?.is_empty() {
            eprintln!(
                "note: {} has uncommitted changes; the image's runtime-{revision} tag and labels will not describe it exactly",
                dir.display()
            );
        }
        if revision != CHECKED_RUNTIME_REF {
            eprintln!(
                "note: the runtime checkout is at {revision}; the workflow builds {CHECKED_RUNTIME_REF}, the commit this build was checked against"
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            revision,
        })
    }

    /// The image of the runtime's own Dockerfile, the base of the agent image.
    pub fn image(&self) -> String {
        format!("{DEFAULT_AGENT_IMAGE}:runtime-{}", self.revision)
    }
}

/// The tags a push of `branch` at `sha` produces.
pub fn workflow_tags(branch: &str, sha: &str) -> Result<Vec<String>, String> {
    let moving = tag_for_branch(branch)
        .ok_or_else(|| format!("no agent image is built from branch {branch:?} (staging or main)"))?;
    Ok(vec![moving.to_string(), tag_for_commit(sha)])
}

/// The docker commands for an action on these tags (a build needs the runtime checkout).
pub fn docker_commands(
    action: Action,
    tags: &[String],
    runtime: Option<&RuntimeCheckout>,
) -> Result<Vec<Vec<String>>, String> {
    let refs: Vec<String> = tags
        .iter()
        .map(|t| format!("{DEFAULT_AGENT_IMAGE}:{t}"))
        .collect();
    let strings = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<String>>();
    match action {
        Action::Build => {
            let runtime =
                runtime.ok_or("image build needs --runtime-dir PATH (a checkout of the runtime)")?;
            let dir = runtime.dir.display().to_string();
            let base = runtime.image();
            let mut first = strings(&["docker", "build", "--platform", PLATFORM, "--file"]);
            first.push(format!("{dir}/{RUNTIME_DOCKERFILE}"));
            first.push("--label".into());
            first.push(format!(
                "org.opencontainers.image.source=https://github.com/{RUNTIME_REPOSITORY}"
            ));
            first.push("--label".into());
            first.push(format!("org.opencontainers.image.revision={}", runtime.revision));
            first.extend(["--tag".to_string(), base.clone(), dir]);
            let mut second = strings(&["docker", "build", "--platform", PLATFORM]);
            second.extend(strings(&["--file", "docker/agent/Dockerfile", "--build-arg"]));
            second.push(format!("RUNTIME_IMAGE={base}"));
            second.push("--build-arg".into());
            second.push(format!("RUNTIME_REF={}", runtime.revision));
            for r in &refs {
                second.push("--tag".into());
                second.push(r.clone());
            }
            // The overlay copies nothing: its context is its own directory.
            second.push("docker/agent".into());
            Ok(vec![first, second])
        }
        Action::Push => Ok(refs
            .iter()
            .map(|r| vec!["docker".into(), "push".into(), r.clone()])
            .collect()),
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("git: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "git {} in {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn main(args: &[String]) -> Result<(), String> {
    let usage = "usage: cargo xtask image build|push (--branch staging|main [--sha COMMIT] | --tag TAG...) \
                 [--runtime-dir PATH] [--dry-run]\n  build needs --runtime-dir: a checkout of \
                 https://github.com/xmtplabs/convos-managed-agent-runtime";
    let action = match args.first().map(String::as_str) {
        Some("build") => Action::Build,
        Some("push") => Action::Push,
        _ => return Err(usage.into()),
    };
    let (mut branch, mut sha, mut tags, mut dry_run, mut runtime_dir) = (None, None, Vec::new(), false, None);
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--branch" => branch = rest.next().cloned(),
            "--sha" => sha = rest.next().cloned(),
            "--tag" => tags.push(rest.next().cloned().ok_or("--tag needs a value")?),
            "--runtime-dir" => {
                runtime_dir = Some(PathBuf::from(rest.next().ok_or("--runtime-dir needs a path")?))
            }
            "--dry-run" => dry_run = true,
            other => return Err(format!("unknown option {other:?}\n{usage}")),
        }
    }
    if let Some(branch) = branch {
        let sha = match sha {
            Some(s) => s,
            None => git(Path::new("."), &["rev-parse", "HEAD"])?,
        };
        tags.extend(workflow_tags(&branch, &sha)?);
    }
    if tags.is_empty() {
        return Err(usage.into());
    }
    let runtime = match (action, runtime_dir) {
        (Action::Build, Some(dir)) => Some(RuntimeCheckout::open(&dir)?),
        (Action::Build, None) => return Err(usage.into()),
        (Action::Push, _) => None,
    };
    for cmd in docker_commands(action, &tags, runtime.as_ref())? {
        println!("{}", cmd.join(" "));
        if !dry_run {
            let status = Command::new(&cmd[0])
                .args(&cmd[1..])
                .status()
                .map_err(|e| format!("{}: {e}", cmd[0]))?;
            if !status.success() {
                return Err(format!("{} failed ({status})", cmd.join(" ")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pool_provisioner::image::{select_image, tag_for_environment};

    fn workflow() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../.github/workflows/agent-image.yml"
        );
        std::fs::read_to_string(path).expect("the agent image workflow")
    }

    /// The branches the workflow runs on, and the moving tag its `case` gives each.
    fn workflow_rules(text: &str) -> (Vec<String>, Vec<(String, String)>) {
        let branches = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("branches:"))
            .map(|list| {
                list.trim()
                    .trim_matches(['[', ']'])
                    .split(',')
                    .map(|b| b.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let arms = text
            .lines()
            .filter_map(|l| {
                let (branch, rest) = l.trim().split_once(") moving=")?;
                Some((branch.to_string(), rest.trim_end_matches(";;").trim().to_string()))
            })
            .collect();
        (branches, arms)
    }

    #[test]
    fn the_workflow_tags_are_the_tags_the_pool_manager_selects() {
        let text = workflow();
        let (branches, arms) = workflow_rules(&text);
        assert_eq!(branches, vec!["staging".to_string(), "main".to_string()]);
        assert_eq!(arms.len(), 2, "{arms:?}");
        for (branch, tag) in &arms {
            assert_eq!(tag_for_branch(branch), Some(tag.as_str()), "branch {branch}");
        }
        assert!(text.contains(&format!("IMAGE: {DEFAULT_AGENT_IMAGE}")));
        assert!(
            text.contains("${IMAGE}:sha-${SHA}"),
            "every push is also tagged sha-<commit>"
        );
        // What CI pushes from staging and main is exactly what pools in staging and production run.
        for (branch, environment) in [("staging", "staging"), ("main", "production")] {
            let pushed = arms
                .iter()
                .find(|(b, _)| b == branch)
                .map(|(_, t)| t.clone())
                .unwrap();
            let selected = select_image(DEFAULT_AGENT_IMAGE, None, environment).unwrap();
            assert_eq!(selected.to_string(), format!("{DEFAULT_AGENT_IMAGE}:{pushed}"));
            assert_eq!(tag_for_environment(environment), Some(pushed.as_str()));
        }
    }

    #[test]
    fn the_workflow_and_the_dockerfile_build_the_checked_runtime_commit_the_way_it_builds() {
        let text = workflow();
        assert!(text.contains(&format!("RUNTIME_REPOSITORY: {RUNTIME_REPOSITORY}")));
        assert!(text.contains(&format!("RUNTIME_REF: {CHECKED_RUNTIME_REF}")));
        // The runtime's Dockerfile with the runtime repository's root as its context.
        assert!(text.contains("context: runtime-src\n"));
        assert!(text.contains(&format!("file: runtime-src/{RUNTIME_DOCKERFILE}\n")));
        assert!(text.contains("file: docker/agent/Dockerfile\n"));
        let dockerfile =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/agent/Dockerfile"))
                .unwrap();
        assert!(dockerfile.contains(&format!("ARG RUNTIME_REF={CHECKED_RUNTIME_REF}\n")));
        assert!(dockerfile.contains("FROM ${RUNTIME_IMAGE}\n"));
        // The image's own command is the one the pool sets on Railway.
        let words: Vec<String> = pool_provisioner::DEFAULT_START_COMMAND
            .split(' ')
            .map(|w| format!("{w:?}"))
            .collect();
        assert!(
            dockerfile.contains(&format!("CMD [{}]\n", words.join(", "))),
            "CMD must be {}",
            pool_provisioner::DEFAULT_START_COMMAND
        );
    }

    #[test]
    fn dry_run_commands_use_the_workflow_tags() {
        let tags = workflow_tags("main", "0123abc").unwrap();
        let runtime = RuntimeCheckout {
            dir: PathBuf::from("../runtime"),
            revision: "feedbeef".into(),
        };
        let words = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            docker_commands(Action::Build, &tags, Some(&runtime)).unwrap(),
            vec![
                words(
                    "docker build --platform linux/amd64 --file ../runtime/runtime/openclaw/Dockerfile \
                     --label org.opencontainers.image.source=https://github.com/xmtplabs/convos-managed-agent-runtime \
                     --label org.opencontainers.image.revision=feedbeef \
                     --tag ghcr.io/xmtplabs/convos-agent:runtime-feedbeef ../runtime"
                ),
                words(
                    "docker build --platform linux/amd64 --file docker/agent/Dockerfile \
                     --build-arg RUNTIME_IMAGE=ghcr.io/xmtplabs/convos-agent:runtime-feedbeef \
                     --build-arg RUNTIME_REF=feedbeef \
                     --tag ghcr.io/xmtplabs/convos-agent:production --tag ghcr.io/xmtplabs/convos-agent:sha-0123abc \
                     docker/agent"
                ),
            ]
        );
        assert!(docker_commands(Action::Build, &tags, None).is_err());
        assert_eq!(
            docker_commands(Action::Push, &workflow_tags("staging", "fff").unwrap(), None).unwrap(),
            vec![
                vec![
                    "docker".to_string(),
                    "push".into(),
                    "ghcr.io/xmtplabs/convos-agent:staging".into()
                ],
                vec![
                    "docker".to_string(),
                    "push".into(),
                    "ghcr.io/xmtplabs/convos-agent:sha-fff".into()
                ],
            ]
        );
        assert!(workflow_tags("feature/x", "1").is_err());
    }
}
