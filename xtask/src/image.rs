//! `cargo xtask image build|push`: the agent images, one per runtime, built and tagged as the
//! CI workflow does.
//!
//! The agent runtime lives in another repository, xmtplabs/convos-managed-agent-runtime, which
//! ships one Dockerfile per runtime ([`RUNTIME_IMAGES`]: openclaw, hermes). `build` needs a
//! checkout of it (`--runtime-dir PATH`) and runs, for each runtime asked for (`--runtime R`,
//! repeatable; all of them without it), the two builds of `.github/workflows/agent-image.yml`:
//! 1. the runtime's own Dockerfile with the checkout's root as context, tagged
//!    `<image>:runtime-<commit of the checkout>`;
//! 2. `docker/agent/Dockerfile` on top of it (`RUNTIME_IMAGE`, `RUNTIME_TYPE`): the pool server
//!    as the default command, and labels naming the runtime commit.
//!
//! `--branch staging|main` gives the branch's moving tag and `sha-<commit>` (as the workflow
//! does); `--tag T` (repeatable) names tags directly. `--dry-run` prints the docker commands
//! instead of running them. `push` pushes the tags a `build` made.

use std::path::{Path, PathBuf};
use std::process::Command;

use pool_provisioner::image::{RUNTIME_IMAGES, RuntimeImage, runtime_image, tag_for_branch, tag_for_commit};

/// The repository the agent runtime lives in.
pub const RUNTIME_REPOSITORY: &str = "xmtplabs/convos-managed-agent-runtime";

/// The runtime commit this repository's build was checked against (its Dockerfiles' paths,
/// context, package layout and entry point); the workflow pins the same one (a test checks).
pub const CHECKED_RUNTIME_REF: &str = "723ba97820fa7c507471e797f1a80deea44375ca";

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
    /// Its root (the build context of the runtimes' Dockerfiles).
    pub dir: PathBuf,
    /// The commit checked out.
    pub revision: String,
}

impl RuntimeCheckout {
    /// The checkout at `dir`: it must hold these runtimes' Dockerfiles and be a git work tree.
    pub fn open(dir: &Path, runtimes: &[&RuntimeImage]) -> Result<Self, String> {
        for runtime in runtimes {
            if !dir.join(runtime.dockerfile).is_file() {
                return Err(format!(
                    "{} has no {}: --runtime-dir must be a checkout of {RUNTIME_REPOSITORY}",
                    dir.display(),
                    runtime.dockerfile
                ));
            }
        }
        let revision = git(dir, &["rev-parse", "HEAD"])?;
        if !git(dir, &["status", "--porcelain"])?.is_empty() {
            eprintln!(
                "note: {} has uncommitted changes; the images' runtime-{revision} tags and labels will not describe it exactly",
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

    /// The image of a runtime's own Dockerfile, the base of its agent image.
    pub fn image(&self, runtime: &RuntimeImage) -> String {
        format!("{}:runtime-{}", runtime.repository, self.revision)
    }
}

/// The tags a push of `branch` at `sha` produces.
pub fn workflow_tags(branch: &str, sha: &str) -> Result<Vec<String>, String> {
    let moving = tag_for_branch(branch)
        .ok_or_else(|| format!("no agent image is built from branch {branch:?} (staging or main)"))?;
    Ok(vec![moving.to_string(), tag_for_commit(sha)])
}

/// The runtimes named by `--runtime` (all of them when none is named).
pub fn select_runtimes(names: &[String]) -> Result<Vec<&'static RuntimeImage>, String> {
    if names.is_empty() {
        return Ok(RUNTIME_IMAGES.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            runtime_image(n).ok_or_else(|| {
                let known: Vec<&str> = RUNTIME_IMAGES.iter().map(|r| r.name).collect();
                format!("unknown runtime {n:?} (known: {})", known.join(", "))
            })
        })
        .collect()
}

/// The docker commands for an action on one runtime's image with these tags (a build needs the
/// runtime checkout).
pub fn docker_commands(
    action: Action,
    image: &RuntimeImage,
    tags: &[String],
    runtime: Option<&RuntimeCheckout>,
) -> Result<Vec<Vec<String>>, String> {
    let refs: Vec<String> = tags.iter().map(|t| format!("{}:{t}", image.repository)).collect();
    let strings = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<String>>();
    match action {
        Action::Build => {
            let runtime =
                runtime.ok_or("image build needs --runtime-dir PATH (a checkout of the runtime)")?;
            let dir = runtime.dir.display().to_string();
            let base = runtime.image(image);
            let mut first = strings(&["docker", "build", "--platform", PLATFORM, "--file"]);
            first.push(format!("{dir}/{}", image.dockerfile));
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
            second.push("--build-arg".into());
            second.push(format!("RUNTIME_TYPE={}", image.name));
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
                 [--runtime openclaw|hermes]... [--runtime-dir PATH] [--dry-run]\n  without --runtime, \
                 every runtime's image\n  build needs --runtime-dir: a checkout of \
                 https://github.com/xmtplabs/convos-managed-agent-runtime";
    let action = match args.first().map(String::as_str) {
        Some("build") => Action::Build,
        Some("push") => Action::Push,
        _ => return Err(usage.into()),
    };
    let (mut branch, mut sha, mut tags, mut dry_run, mut runtime_dir) = (None, None, Vec::new(), false, None);
    let mut runtime_names = Vec::new();
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--branch" => branch = rest.next().cloned(),
            "--sha" => sha = rest.next().cloned(),
            "--tag" => tags.push(rest.next().cloned().ok_or("--tag needs a value")?),
            "--runtime" => runtime_names.push(rest.next().cloned().ok_or("--runtime needs a name")?),
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
    let images = select_runtimes(&runtime_names)?;
    let runtime = match (action, runtime_dir) {
        (Action::Build, Some(dir)) => Some(RuntimeCheckout::open(&dir, &images)?),
        (Action::Build, None) => return Err(usage.into()),
        (Action::Push, _) => None,
    };
    let mut commands = Vec::new();
    for image in &images {
        commands.extend(docker_commands(action, image, &tags, runtime.as_ref())?);
    }
    for cmd in commands {
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
    use pool_provisioner::image::{DEFAULT_AGENT_IMAGE, select_image, tag_for_environment};

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

    /// The workflow's matrix: (runtime, dockerfile, image) per entry, in order.
    fn workflow_matrix(text: &str) -> Vec<(String, String, String)> {
        let mut entries = Vec::new();
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            let Some(runtime) = line.strip_prefix("- runtime: ") else {
                continue;
            };
            let mut field = |name: &str| {
                lines
                    .next()
                    .and_then(|l| l.strip_prefix(name))
                    .map(str::to_string)
                    .unwrap_or_default()
            };
            let dockerfile = field("dockerfile: ");
            let image = field("image: ");
            entries.push((runtime.to_string(), dockerfile, image));
        }
        entries
    }

    #[test]
    fn the_workflow_builds_every_runtime_from_its_own_dockerfile_into_its_own_image() {
        let text = workflow();
        let expected: Vec<(String, String, String)> = RUNTIME_IMAGES
            .iter()
            .map(|r| (r.name.into(), r.dockerfile.into(), r.repository.into()))
            .collect();
        assert_eq!(workflow_matrix(&text), expected);
        assert!(text.contains("IMAGE: ${{ matrix.image }}\n"));
        assert!(text.contains("file: runtime-src/${{ matrix.dockerfile }}\n"));
        assert!(text.contains("RUNTIME_TYPE=${{ matrix.runtime }}\n"));
        // Both Dockerfiles exist at the pinned runtime commit, when a checkout is beside us.
        let checkout = Path::new("/work/runtime");
        if checkout.join(".git").exists() {
            for runtime in RUNTIME_IMAGES {
                assert!(
                    checkout.join(runtime.dockerfile).is_file(),
                    "{}",
                    runtime.dockerfile
                );
            }
        }
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
            for runtime in RUNTIME_IMAGES {
                let selected = select_image(runtime.repository, None, environment).unwrap();
                assert_eq!(selected.to_string(), format!("{}:{pushed}", runtime.repository));
            }
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
        assert!(text.contains("file: docker/agent/Dockerfile\n"));
        let dockerfile =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docker/agent/Dockerfile"))
                .unwrap();
        assert!(dockerfile.contains(&format!("ARG RUNTIME_REF={CHECKED_RUNTIME_REF}\n")));
        assert!(dockerfile.contains("FROM ${RUNTIME_IMAGE}\n"));
        assert!(dockerfile.contains("ENV RUNTIME_TYPE=${RUNTIME_TYPE}\n"));
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

    fn words(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn dry_run_commands_build_each_runtime_with_the_workflow_tags() {
        let tags = workflow_tags("main", "0123abc").unwrap();
        let runtime = RuntimeCheckout {
            dir: PathBuf::from("../runtime"),
            revision: "feedbeef".into(),
        };
        let openclaw = runtime_image("openclaw").unwrap();
        assert_eq!(openclaw.repository, DEFAULT_AGENT_IMAGE);
        assert_eq!(
            docker_commands(Action::Build, openclaw, &tags, Some(&runtime)).unwrap(),
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
                     --build-arg RUNTIME_REF=feedbeef --build-arg RUNTIME_TYPE=openclaw \
                     --tag ghcr.io/xmtplabs/convos-agent:production --tag ghcr.io/xmtplabs/convos-agent:sha-0123abc \
                     docker/agent"
                ),
            ]
        );
        let hermes = runtime_image("hermes").unwrap();
        assert_eq!(
            docker_commands(Action::Build, hermes, &tags, Some(&runtime)).unwrap(),
            vec![
                words(
                    "docker build --platform linux/amd64 --file ../runtime/runtime/hermes/Dockerfile \
                     --label org.opencontainers.image.source=https://github.com/xmtplabs/convos-managed-agent-runtime \
                     --label org.opencontainers.image.revision=feedbeef \
                     --tag ghcr.io/xmtplabs/convos-agent-hermes:runtime-feedbeef ../runtime"
                ),
                words(
                    "docker build --platform linux/amd64 --file docker/agent/Dockerfile \
                     --build-arg RUNTIME_IMAGE=ghcr.io/xmtplabs/convos-agent-hermes:runtime-feedbeef \
                     --build-arg RUNTIME_REF=feedbeef --build-arg RUNTIME_TYPE=hermes \
                     --tag ghcr.io/xmtplabs/convos-agent-hermes:production \
                     --tag ghcr.io/xmtplabs/convos-agent-hermes:sha-0123abc docker/agent"
                ),
            ]
        );
        assert!(docker_commands(Action::Build, hermes, &tags, None).is_err());
        assert_eq!(
            docker_commands(
                Action::Push,
                hermes,
                &workflow_tags("staging", "fff").unwrap(),
                None
            )
            .unwrap(),
            vec![
                words("docker push ghcr.io/xmtplabs/convos-agent-hermes:staging"),
                words("docker push ghcr.io/xmtplabs/convos-agent-hermes:sha-fff"),
            ]
        );
        assert!(workflow_tags("feature/x", "1").is_err());
    }

    #[test]
    fn runtimes_are_selected_by_name_and_all_by_default() {
        let names = |rs: Vec<&RuntimeImage>| rs.iter().map(|r| r.name).collect::<Vec<_>>();
        assert_eq!(names(select_runtimes(&[]).unwrap()), vec!["openclaw", "hermes"]);
        assert_eq!(
            names(select_runtimes(&["hermes".into()]).unwrap()),
            vec!["hermes"]
        );
        let err = select_runtimes(&["claude".into()]).unwrap_err();
        assert!(
            err.contains("\"claude\"") && err.contains("openclaw, hermes"),
            "{err}"
        );
    }
}
