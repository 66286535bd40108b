//! Counts of the live agents by status: what sizing, the status and the console read.

use serde::Serialize;

use crate::agent::AgentStatus;

/// Live agents by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    /// `creating`.
    pub creating: i64,
    /// `starting`.
    pub starting: i64,
    /// `idle`.
    pub idle: i64,
    /// `claiming`.
    pub claiming: i64,
    /// `claimed`.
    pub claimed: i64,
    /// `pending_acceptance`: handed out, waiting for the conversation's approval.
    pub pending_acceptance: i64,
    /// `crashed`.
    pub crashed: i64,
    /// `parking`.
    pub parking: i64,
    /// `parked`.
    pub parked: i64,
    /// `waking`.
    pub waking: i64,
    /// `deleting`.
    pub deleting: i64,
}

impl StatusCounts {
    /// Adds `n` agents of `status` (deleted agents are not counted).
    pub fn add(&mut self, status: AgentStatus, n: i64) {
        if let Some(count) = self.count_mut(status) {
            *count += n;
        }
    }

    /// Agents in `status` (none for `deleted`, which is not counted).
    pub fn of(&self, status: AgentStatus) -> i64 {
        self.clone().count_mut(status).map_or(0, |n| *n)
    }

    fn count_mut(&mut self, status: AgentStatus) -> Option<&mut i64> {
        Some(match status {
            AgentStatus::Creating => &mut self.creating,
            AgentStatus::Starting => &mut self.starting,
            AgentStatus::Idle => &mut self.idle,
            AgentStatus::Claiming => &mut self.claiming,
            AgentStatus::Claimed => &mut self.claimed,
            AgentStatus::PendingAcceptance => &mut self.pending_acceptance,
            AgentStatus::Crashed => &mut self.crashed,
            AgentStatus::Parking => &mut self.parking,
            AgentStatus::Parked => &mut self.parked,
            AgentStatus::Waking => &mut self.waking,
            AgentStatus::Deleting => &mut self.deleting,
            AgentStatus::Deleted => return None,
        })
    }

    /// Agents that are or will soon be claimable: what replenishment counts.
    pub fn warm(&self) -> i64 {
        self.creating + self.starting + self.idle
    }

    /// Every live agent.
    pub fn total(&self) -> i64 {
        self.creating
            + self.starting
            + self.idle
            + self.claiming
            + self.claimed
            + self.pending_acceptance
            + self.crashed
            + self.parking
            + self.parked
            + self.waking
            + self.deleting
    }

    /// The parked tier: parked, and on their way in or out.
    pub fn parked_tier(&self) -> i64 {
        self.parking + self.parked + self.waking
    }
}
