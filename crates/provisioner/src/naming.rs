//! Names and marks: how an agent's remote resources are named and how this pool recognises
//! the Railway projects it created.
//!
//! An agent's name is `<prefix><id>` (`convos-agent-<12 chars>` by default), the same string
//! for its Railway project, its OpenRouter key and its AgentMail user name. Every project the
//! pool creates carries a marker in its description naming the pool and its environment, so an
//! orphan sweep can find its own projects — and never touches anyone else's.

use pool_store::AgentId;

/// Railway refuses longer project names.
pub const MAX_NAME_LEN: usize = 32;

/// Why a naming scheme cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidNaming {
    /// With a generated id, names would be longer than Railway allows.
    #[error(
        "agent name prefix {0:?} is too long: with a {len}-character id names must fit in {MAX_NAME_LEN} characters",
        len = AgentId::GENERATED_LEN
    )]
    PrefixTooLong(String),
    /// The prefix has characters Railway, OpenRouter or AgentMail would refuse.
    #[error("agent name prefix {0:?} may hold only lowercase letters, digits and '-'")]
    PrefixCharacters(String),
}

/// The pool's naming and marking scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
    marker: String,
}

impl Naming {
    /// Names `<prefix><id>`; projects marked as created by pool `pool` in `environment`.
    /// Fails when a name would be longer than Railway allows.
    pub fn new(prefix: &str, pool: &str, environment: &str) -> Result<Self, InvalidNaming> {
        if prefix.len() + AgentId::GENERATED_LEN > MAX_NAME_LEN {
            return Err(InvalidNaming::PrefixTooLong(prefix.to_string()));
        }
        if !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(InvalidNaming::PrefixCharacters(prefix.to_string()));
        }
        Ok(Self {
            prefix: prefix.to_string(),
            marker: format!("[agent-pool pool={pool} env={environment}]"),
        })
    }

    /// The agent's name.
    pub fn name(&self, id: &AgentId) -> String {
        format!("{}{id}", self.prefix)
    }

    /// The agent id in a name this pool gave, if it is one (a generated id after the prefix).
    pub fn agent_id(&self, name: &str) -> Option<AgentId> {
        AgentId::parse(name.strip_prefix(&self.prefix)?)
            .ok()
            .filter(AgentId::is_generated)
    }

    /// The description of an agent's project: the marker, and a word for humans.
    pub fn project_description(&self, id: &AgentId) -> String {
        format!(
            "{} agent {id}. Created and deleted by the agent pool manager; do not edit.",
            self.marker
        )
    }

    /// True when a project description carries this pool's marker.
    pub fn is_marked(&self, description: Option<&str>) -> bool {
        description.is_some_and(|d| d.starts_with(&self.marker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_railway_and_round_trip() {
        let naming = Naming::new("convos-agent-", "pool-1", "staging").unwrap();
        let id = AgentId::random();
        let name = naming.name(&id);
        assert!(name.len() <= MAX_NAME_LEN);
        assert_eq!(naming.agent_id(&name), Some(id.clone()));
        assert_eq!(naming.agent_id("convos-agent-short"), None);
        assert_eq!(naming.agent_id("someone-else-abcdefabcdef"), None);
        assert!(naming.is_marked(Some(&naming.project_description(&id))));
        assert!(!naming.is_marked(Some("my own project")));
        assert!(!naming.is_marked(None));
        let other_env = Naming::new("convos-agent-", "pool-1", "production").unwrap();
        assert!(!other_env.is_marked(Some(&naming.project_description(&id))));
    }

    #[test]
    fn a_prefix_too_long_for_railway_is_refused() {
        assert!(Naming::new("a-very-long-prefix-for-agents-", "p", "staging").is_err());
        assert!(Naming::new("Upper-", "p", "staging").is_err());
    }
}
