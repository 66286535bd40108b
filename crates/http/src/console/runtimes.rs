//! The fleet view's stock per runtime: one row per runtime and one for the whole pool (tiers,
//! the agents starting and handed out, the target, the monthly cost), and the chart's choice
//! of runtime.

use std::collections::HashMap;

use serde::Serialize;

use crate::stock::{MonthlyCost, RuntimeStock, Stock, Tiers};

/// One row of the runtimes table (the live update sends the same).
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeRow {
    /// The runtime's name; empty for the whole pool.
    pub key: String,
    /// What the row is called.
    pub name: String,
    /// Idle agents.
    pub warm: i64,
    /// Parked agents.
    pub parked: i64,
    /// Being parked.
    pub parking: i64,
    /// Being woken.
    pub waking: i64,
    /// Being created or booting.
    pub starting: i64,
    /// Handed out (claiming, claimed, pending acceptance).
    pub claimed: i64,
    /// The sizing target, `—` before the leader sized it.
    pub target: String,
    /// The stock's monthly cost, with its parts.
    pub cost: String,
}

fn dollars(d: f64) -> String {
    format!("${d:.2}")
}

fn cost(c: &MonthlyCost) -> String {
    format!(
        "{} ({} running + {} parked)",
        dollars(c.stock_dollars),
        dollars(c.running_dollars),
        dollars(c.parked_dollars)
    )
}

fn row(
    key: &str,
    name: String,
    tiers: &Tiers,
    counts: &crate::dto::Counts,
    target: Option<i32>,
    c: &MonthlyCost,
) -> RuntimeRow {
    RuntimeRow {
        key: key.to_string(),
        name,
        warm: tiers.warm,
        parked: tiers.parked,
        parking: tiers.parking,
        waking: tiers.waking,
        starting: counts.creating + counts.starting,
        claimed: counts.claiming + counts.claimed + counts.pending_acceptance,
        target: target.map_or_else(|| "—".into(), |t| t.to_string()),
        cost: cost(c),
    }
}

/// The rows: each runtime in the order configured, then the whole pool (`whole_target`: its
/// last sample's target).
pub fn rows(stock: &Stock, default_runtime: &str, whole_target: Option<i32>) -> Vec<RuntimeRow> {
    let mut rows: Vec<RuntimeRow> = stock
        .order
        .iter()
        .filter_map(|name| {
            let r: &RuntimeStock = stock.runtimes.get(name)?;
            let label = if name == default_runtime {
                format!("{name} (default)")
            } else {
                name.clone()
            };
            Some(row(name, label, &r.tiers, &r.counts, r.target, &r.monthly_cost))
        })
        .collect();
    rows.push(row(
        "",
        "whole pool".into(),
        &stock.tiers,
        &crate::dto::Counts::from(&stock.total),
        whole_target,
        &stock.monthly_cost,
    ));
    rows
}

/// The assumption the cost rests on, in words, for the note under the table.
pub fn cost_note() -> String {
    let size = pool_sizing::AgentSize::ASSUMED;
    format!(
        "Estimated at Railway Pro prices for the current stock kept a month, each agent assumed at {size}. \
         Idle, starting, parking and waking agents pay compute and volume, parked agents their volume only; \
         claimed agents are not counted."
    )
}

/// The runtime the chart shows: the query's `runtime` when it names one of `runtimes`, else
/// the whole pool (`""`).
pub fn chart_runtime(query: &HashMap<String, String>, runtimes: &[String]) -> String {
    query
        .get("runtime")
        .filter(|r| runtimes.contains(r))
        .cloned()
        .unwrap_or_default()
}
