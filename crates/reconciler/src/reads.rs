//! The walk's Railway reads, put off until its last page: agents in motion, this tick's slice
//! of the rolling sweep, those Railway's events named. Read page by page, a 500-row page's
//! share of a slice made one or two half-full `projectsByIds` batches, one page after the
//! other (about 21 requests a tick at 10,000 agents where 10 full ones do); read together,
//! they go out in full batches of 50, several at once (`railway_api`'s status concurrency).
//! The rows held meanwhile are the narrow ones of the agents to read only: a slice of the
//! fleet, not the fleet.

use std::collections::HashMap;

use pool_store::{AgentId, LeaderLock, TickRow};

use crate::Reconciler;
use crate::error::ReconcileError;
use crate::observe::Checked;
use crate::report::TickReport;
use crate::suspicion::{Frame, Mode};
use crate::tick::{MAX_CONFIRMATIONS_PER_TICK, PAGE};

/// The agents the walk put off for a Railway read, with the checks it had for them.
#[derive(Debug, Default)]
pub(crate) struct PutOff {
    rows: Vec<TickRow>,
    health: HashMap<AgentId, Checked>,
}

impl PutOff {
    /// Puts these agents off, with their checks in `health` (when they have one).
    pub(crate) fn add(&mut self, agents: &[&TickRow], health: &HashMap<AgentId, Checked>) {
        for agent in agents {
            if let Some(checked) = health.get(&agent.id) {
                self.health.insert(agent.id.clone(), checked.clone());
            }
            self.rows.push((*agent).clone());
        }
    }
}

impl Reconciler {
    /// Reads the agents the walk put off, in full batches, and decides and applies what was
    /// read, [`PAGE`] agents at a time. `Some(true)` when every read went through, `None` when
    /// leadership (or this replica's shards) was lost.
    pub(crate) async fn read_put_off(
        &self,
        put_off: PutOff,
        frame: &Frame<'_>,
        lock: Option<&LeaderLock>,
        report: &mut TickReport,
    ) -> Result<Option<bool>, ReconcileError> {
        let PutOff { rows, mut health } = put_off;
        let confirmed_before = report.confirmed;
        let mut read_ok = true;
        for chunk in rows.chunks(PAGE) {
            let mut mode = Mode::Reads {
                health: chunk
                    .iter()
                    .filter_map(|a| Some((a.id.clone(), health.remove(&a.id)?)))
                    .collect(),
                confirmations: MAX_CONFIRMATIONS_PER_TICK.saturating_sub(report.confirmed - confirmed_before),
            };
            let Some(ok) = self
                .observe_decide_apply(chunk, frame, lock, report, &mut mode)
                .await?
            else {
                return Ok(None);
            };
            read_ok &= ok;
        }
        Ok(Some(read_ok))
    }
}
