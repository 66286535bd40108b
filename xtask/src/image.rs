//! `cargo xtask image build|push`: the agent image, with the same tags as the CI workflow.
//!
//! `--branch staging|main` gives the branch's moving tag and `sha-<commit>` (as
//! `.github/workflows/agent-image.yml` does); `--tag T` (repeatable) names tags directly.
//! `--dry-run` prints the docker commands instead of running them.

use std::process::Command;

use pool_provisioner::image::{DEFAULT_AGENT_IMAGE, tag_for_branch, tag_for_commit};

/// What to do with the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `docker build`.
    Build,
    /// `docker push` of every tag.
    Push,
}

/// The tags a push of `branch` at `sha` produces.
pub fn workflow_tags(branch: &str, sha: &str) -> Result<Vec<String>, String> {
    let moving = tag_for_branch(branch)
        .ok_or_else(|| format!("no agent image is built from branch {branch:?} (staging or main)"))?;
    Ok(vec![moving.to_string(), tag_for_commit(sha)])
}

/// The docker commands for an action on these tags.
pub fn docker_commands(action: Action, tags: &[String]) -> Vec<Vec<String>> {
    let refs: Vec<String> = tags
        .iter()
        .map(|t| format!("{DEFAULT_AGENT_IMAGE}:{t}"))
        .collect();
    match action {
        Action::Build => {
            let mut cmd: Vec<String> = ["docker", "build", "--file", "docker/agent/Dockerfile"]
                .map(String::from)
                .to_vec();
            for r in &refs {
                cmd.push("--tag".into());
                cmd.push(r.clone());
            }
            cmd.push(".".into());
            vec![cmd]
        }
        Action::Push => refs
            .iter()
            .map(|r| vec!["docker".into(), "push".into(), r.clone()])
            .collect(),
    }
}

fn head_sha() -> Result<String, String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .map_err(|e| format!("git: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn main(args: &[String]) -> Result<(), String> {
    let usage = "usage: cargo xtask image build|push (--branch staging|main [--sha COMMIT] | --tag TAG...) [--dry-run]";
    let action = match args.first().map(String::as_str) {
        Some("build") => Action::Build,
        Some("push") => Action::Push,
        _ => return Err(usage.into()),
    };
    let (mut branch, mut sha, mut tags, mut dry_run) = (None, None, Vec::new(), false);
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--branch" => branch = rest.next().cloned(),
            "--sha" => sha = rest.next().cloned(),
            "--tag" => tags.push(rest.next().cloned().ok_or("--tag needs a value")?),
            "--dry-run" => dry_run = true,
            other => return Err(format!("unknown option {other:?}\n{usage}")),
        }
    }
    if let Some(branch) = branch {
        let sha = match sha {
            Some(s) => s,
            None => head_sha()?,
        };
        tags.extend(workflow_tags(&branch, &sha)?);
    }
    if tags.is_empty() {
        return Err(usage.into());
    }
    for cmd in docker_commands(action, &tags) {
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
    fn dry_run_commands_use_the_workflow_tags() {
        let tags = workflow_tags("main", "0123abc").unwrap();
        assert_eq!(
            docker_commands(Action::Build, &tags),
            vec![
                "docker build --file docker/agent/Dockerfile --tag ghcr.io/xmtplabs/convos-agent:production --tag ghcr.io/xmtplabs/convos-agent:sha-0123abc ."
                    .split(' ')
                    .map(String::from)
                    .collect::<Vec<_>>()
            ]
        );
        assert_eq!(
            docker_commands(Action::Push, &workflow_tags("staging", "fff").unwrap()),
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
