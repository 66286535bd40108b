//! Names and marks: how an agent's remote resources are named and how this pool recognises
//! the Railway projects it created.
//!
//! An agent's name is `<prefix><id>` (`convos-agent-<12 chars>` by default), the same string
//! for its Railway project, its OpenRouter key and its AgentMail user name. Every project the
//! pool creates carries a marker in its description naming the pool and its environment, so an
//! orphan sweep can find its own projects — and never touches anyone else's.
//!
//! The marker names the pool by the random id made once per database (`pool_identity`,
//! migration V12): `[agent-pool id=<32 hex> env=<environment>]`. The old form,
//! `[agent-pool pool=<RAILWAY_PROJECT_ID or local> env=…]`, was the same for two pools that
//! shared a project id (two pools off Railway: `local`), so each took the other's projects for
//! its own. Projects made in the old form are honoured only for the rows that recorded them
//! when V12 adopted them ([`MarkerForm::Adopted`]); no other project is ever taken for this
//! pool's on the old form.

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

/// Which marker a project was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerForm {
    /// The old form (`pool=<project id or local>`), adopted once for the rows that recorded it.
    Adopted,
    /// The pool id.
    PoolId,
}

impl MarkerForm {
    /// As stored (`agent_metadata.project_marker_form`).
    pub fn of_stored(form: i16) -> Self {
        if form == 1 { Self::Adopted } else { Self::PoolId }
    }
}

/// The pool's naming and marking scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naming {
    prefix: String,
    marker: String,
    adopted_marker: Option<String>,
}

impl Naming {
    /// Names `<prefix><id>`; projects marked as created by the pool with id `pool_id` in
    /// `environment`. Fails when a name would be longer than Railway allows.
    pub fn new(prefix: &str, pool_id: &str, environment: &str) -> Result<Self, InvalidNaming> {
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
            marker: format!("[agent-pool id={pool_id} env={environment}]"),
            adopted_marker: None,
        })
    }

    /// This naming, also honouring the old-form marker of `legacy_pool` (`RAILWAY_PROJECT_ID`
    /// or `local`) for the rows V12 adopted ([`MarkerForm::Adopted`]).
    pub fn with_adopted(mut self, legacy_pool: &str, environment: &str) -> Self {
        self.adopted_marker = Some(format!("[agent-pool pool={legacy_pool} env={environment}]"));
        self
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

    /// True when a project description carries this pool's marker (the pool id form).
    pub fn is_marked(&self, description: Option<&str>) -> bool {
        description.is_some_and(|d| d.starts_with(&self.marker))
    }

    /// True when a description carries the marker of `form` (a row's own project).
    pub fn is_marked_as(&self, description: Option<&str>, form: MarkerForm) -> bool {
        match form {
            MarkerForm::PoolId => self.is_marked(description),
            MarkerForm::Adopted => match (&self.adopted_marker, description) {
                (Some(marker), Some(d)) => d.starts_with(marker.as_str()),
                _ => false,
            },
        }
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
    fn another_pool_id_is_another_pool_and_the_old_form_is_only_for_adopted_rows() {
        let ours = Naming::new("convos-agent-", "aaaa", "staging")
            .unwrap()
            .with_adopted("local", "staging");
        let theirs = Naming::new("convos-agent-", "bbbb", "staging").unwrap();
        let id = AgentId::random();
        assert!(!ours.is_marked(Some(&theirs.project_description(&id))));
        let old = format!("[agent-pool pool=local env=staging] agent {id}.");
        assert!(!ours.is_marked(Some(&old)), "the old form is no pool-wide mark");
        assert!(ours.is_marked_as(Some(&old), MarkerForm::Adopted));
        assert!(
            !theirs.is_marked_as(Some(&old), MarkerForm::Adopted),
            "only with_adopted honours it"
        );
        assert!(!ours.is_marked_as(Some(&old), MarkerForm::PoolId));
    }

    #[test]
    fn a_prefix_too_long_for_railway_is_refused() {
        assert!(Naming::new("a-very-long-prefix-for-agents-", "p", "staging").is_err());
        assert!(Naming::new("Upper-", "p", "staging").is_err());
    }
}
