//! The pool's stock per runtime (shape), as `/api/pool/status`, `/api/pool/counts` and the
//! console show it: the counts by status, the tiers (warm, parked and the agents moving
//! between them) and what the stock costs a month at Railway Pro's prices.
//!
//! The cost is [`pool_sizing::AgentSize`]'s model with its stated assumption
//! ([`AgentSize::ASSUMED`]): the figures are an estimate of the stock as it stands now, kept
//! for a month, not a bill.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pool_sizing::{
    AgentSize, CPU_PER_VCPU_MINUTE, HOURS_PER_MONTH, MEMORY_PER_GB_MINUTE, VOLUME_PER_GB_MONTH,
};
use pool_store::{StatusCounts, Store};
use serde::Serialize;

use crate::dto::Counts;

/// The tiers of a runtime's stock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tiers {
    /// Warm: idle agents, handed out at once.
    pub warm: i64,
    /// Parked: provisioned, their deployment removed; woken by one deploy.
    pub parked: i64,
    /// In motion: being parked.
    pub parking: i64,
    /// In motion: being woken.
    pub waking: i64,
}

impl From<&StatusCounts> for Tiers {
    fn from(c: &StatusCounts) -> Self {
        Self {
            warm: c.idle,
            parked: c.parked,
            parking: c.parking,
            waking: c.waking,
        }
    }
}

/// What a stock costs a month, in dollars (see [`CostAssumptions`] for what is counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MonthlyCost {
    /// The stock: running stock plus parked stock.
    pub stock_dollars: f64,
    /// Running stock (idle, starting, parking and waking agents): compute and volume.
    pub running_dollars: f64,
    /// Parked stock: volume storage only.
    pub parked_dollars: f64,
    /// Claimed agents (claiming, claimed, pending acceptance), apart: not stock, but what the
    /// handed-out agents cost at the same assumption.
    pub claimed_dollars: f64,
}

/// Agents whose deployment runs or is being deployed, unclaimed.
fn running_stock(c: &StatusCounts) -> i64 {
    c.idle + c.starting + c.parking + c.waking
}

fn handed_out(c: &StatusCounts) -> i64 {
    c.claiming + c.claimed + c.pending_acceptance
}

fn agents(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl MonthlyCost {
    /// The cost of these counts at `size`, rounded to cents.
    pub fn of(counts: &StatusCounts, size: &AgentSize) -> Self {
        let cents = |dollars: f64| (dollars * 100.0).round() / 100.0;
        let running = size.monthly(agents(running_stock(counts)), 0);
        let parked = size.monthly(0, agents(counts.parked));
        Self {
            stock_dollars: cents(running + parked),
            running_dollars: cents(running),
            parked_dollars: cents(parked),
            claimed_dollars: cents(size.monthly(agents(handed_out(counts)), 0)),
        }
    }
}

/// The assumptions behind every [`MonthlyCost`], said in the answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CostAssumptions {
    /// Memory one agent holds, GB (an assumption, not measured).
    pub agent_memory_gb: f64,
    /// CPU one agent uses on average, vCPU (an assumption, not measured).
    pub agent_vcpu: f64,
    /// Used storage of one agent's volume, GB (an assumption, not measured).
    pub agent_volume_gb: f64,
    /// Railway Pro: dollars per GB-minute of memory.
    pub memory_per_gb_minute: f64,
    /// Railway Pro: dollars per vCPU-minute.
    pub cpu_per_vcpu_minute: f64,
    /// Railway Pro: dollars per GB-month of volume.
    pub volume_per_gb_month: f64,
    /// Hours in the billing month.
    pub hours_per_month: f64,
    /// What is counted, in words.
    pub counted: &'static str,
}

impl CostAssumptions {
    /// The assumptions of `size`.
    pub fn of(size: &AgentSize) -> Self {
        Self {
            agent_memory_gb: size.memory_gb,
            agent_vcpu: size.vcpu,
            agent_volume_gb: size.volume_gb,
            memory_per_gb_minute: MEMORY_PER_GB_MINUTE,
            cpu_per_vcpu_minute: CPU_PER_VCPU_MINUTE,
            volume_per_gb_month: VOLUME_PER_GB_MONTH,
            hours_per_month: HOURS_PER_MONTH,
            counted: "the current stock kept for a month at Railway Pro prices: idle, starting, parking and \
                      waking agents pay compute and volume, parked agents their volume only; claimed agents \
                      are not stock (claimedDollars, apart); creating, crashed and deleting agents are not counted",
        }
    }
}

/// One runtime's stock.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStock {
    /// Its agents by status.
    pub counts: Counts,
    /// Its tiers.
    pub tiers: Tiers,
    /// What its stock costs a month.
    pub monthly_cost: MonthlyCost,
    /// Warm agents its sizing wants (the leader's last sample of it, in the last 10 minutes).
    pub target: Option<i32>,
    /// Why, in words.
    pub target_reason: Option<String>,
    /// Claims waiting for an agent of this runtime.
    pub waiting: i64,
    /// Its creation brake is engaged.
    pub brake_engaged: bool,
}

/// The stock of every runtime, and the whole pool's.
#[derive(Debug, Clone)]
pub struct Stock {
    /// By runtime: every configured one, and any other the agents' rows name (a runtime no
    /// longer configured whose agents still live).
    pub runtimes: BTreeMap<String, RuntimeStock>,
    /// The runtimes in the order configured (then the others).
    pub order: Vec<String>,
    /// The whole pool's counts.
    pub total: StatusCounts,
    /// The whole pool's tiers.
    pub tiers: Tiers,
    /// The whole pool's cost.
    pub monthly_cost: MonthlyCost,
}

/// Live agents by status per runtime: every configured runtime (zeros when it has none) and
/// any other the rows name, in the order configured.
pub async fn counts_by_runtime(
    store: &Store,
    configured: &[String],
) -> pool_store::Result<Vec<(String, StatusCounts)>> {
    let mut found = store.counts_by_shape().await?;
    let mut list: Vec<(String, StatusCounts)> = configured
        .iter()
        .map(|name| (name.clone(), found.remove(name).unwrap_or_default()))
        .collect();
    list.extend(found);
    Ok(list)
}

/// The names of the configured runtimes, in order.
pub fn configured(state: &crate::AppState) -> Vec<String> {
    state
        .provisioner
        .config()
        .shapes
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

impl Stock {
    /// Reads the stock now: counts per runtime, samples newer than `samples_since`, waiting
    /// claims and brakes.
    pub async fn read(state: &crate::AppState, samples_since: DateTime<Utc>) -> pool_store::Result<Self> {
        let store = state.provisioner.store();
        let size = AgentSize::ASSUMED;
        let counts = counts_by_runtime(store, &configured(state)).await?;
        let mut samples = store.latest_samples_by_shape(samples_since).await?;
        let mut total = StatusCounts::default();
        let mut runtimes = BTreeMap::new();
        let mut order = Vec::new();
        for (name, c) in counts {
            total.add_all(&c);
            let sample = samples.remove(&name);
            runtimes.insert(
                name.clone(),
                RuntimeStock {
                    counts: Counts::from(&c),
                    tiers: Tiers::from(&c),
                    monthly_cost: MonthlyCost::of(&c, &size),
                    target: sample.as_ref().map(|s| s.target),
                    target_reason: sample.map(|s| s.reason),
                    waiting: store.waiting_claims_of(&name).await?,
                    brake_engaged: store.shape_brake(&name).await?.engaged(),
                },
            );
            order.push(name);
        }
        Ok(Self {
            runtimes,
            order,
            tiers: Tiers::from(&total),
            monthly_cost: MonthlyCost::of(&total, &size),
            total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stock_pays_compute_while_it_runs_and_only_its_volume_when_parked() {
        let counts = StatusCounts {
            idle: 2,
            starting: 1,
            waking: 1,
            parked: 10,
            claimed: 3,
            crashed: 4,
            ..StatusCounts::default()
        };
        let size = AgentSize::ASSUMED;
        let cost = MonthlyCost::of(&counts, &size);
        // 4 running at $12.30 a month each ((1 GB × $0.000231 + 0.1 vCPU × $0.000463) × 60
        // × 730 + $0.15 of volume), 10 parked at $0.15; crashed agents are not counted.
        assert!((cost.running_dollars - 49.18).abs() < 0.006, "{cost:?}");
        assert!((cost.parked_dollars - 1.50).abs() < 1e-9, "{cost:?}");
        assert!((cost.stock_dollars - 50.68).abs() < 0.006, "{cost:?}");
        assert!((cost.claimed_dollars - 36.89).abs() < 0.006, "{cost:?}");
        assert_eq!(
            Tiers::from(&counts),
            Tiers {
                warm: 2,
                parked: 10,
                parking: 0,
                waking: 1
            }
        );
    }
}
