//! What stock costs on Railway Pro: compute for every deployment that runs (warm agents,
//! agents booting or waking), storage for every volume (parked agents cost only this).
//!
//! Railway bills per minute of use: memory $0.000231 per GB-minute ($10 per GB-month) and CPU
//! $0.000463 per vCPU-minute ($20 per vCPU-month) (docs.railway.com/reference/pricing,
//! "Pricing Rates"); volume storage $0.15 per GB-month (railway.com/pricing; the issue's
//! figure). The agent's size is an assumption, stated in [`AgentSize::ASSUMED`].

use std::fmt;

/// Railway Pro's memory price, dollars per GB-minute.
pub const MEMORY_PER_GB_MINUTE: f64 = 0.000_231;
/// Railway Pro's CPU price, dollars per vCPU-minute.
pub const CPU_PER_VCPU_MINUTE: f64 = 0.000_463;
/// Railway Pro's volume price, dollars per GB-month.
pub const VOLUME_PER_GB_MONTH: f64 = 0.15;
/// Hours in Railway's billing month (365 × 24 / 12).
pub const HOURS_PER_MONTH: f64 = 730.0;

/// What one agent uses, the assumption every cost figure rests on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentSize {
    /// Memory an idle agent holds, in GB.
    pub memory_gb: f64,
    /// CPU an idle agent uses on average, in vCPU.
    pub vcpu: f64,
    /// Used storage of its `/data` volume, in GB.
    pub volume_gb: f64,
}

impl AgentSize {
    /// An idle agent (the runtime's Node gateway and pool server) holding 1 GB of memory and
    /// using a tenth of a vCPU, with 1 GB used on its volume. Rounded up on purpose: parked
    /// stock is argued for by its low cost, so its cost is not flattered.
    pub const ASSUMED: AgentSize = AgentSize {
        memory_gb: 1.0,
        vcpu: 0.1,
        volume_gb: 1.0,
    };

    /// Dollars per hour of compute for one running agent.
    pub fn compute_per_hour(&self) -> f64 {
        60.0 * (self.memory_gb * MEMORY_PER_GB_MINUTE + self.vcpu * CPU_PER_VCPU_MINUTE)
    }

    /// Dollars per hour of storage for one agent (running or parked).
    pub fn storage_per_hour(&self) -> f64 {
        self.volume_gb * VOLUME_PER_GB_MONTH / HOURS_PER_MONTH
    }

    /// Dollars for `warm_hours` of running stock and `parked_hours` of parked stock (running
    /// stock pays for its volume too).
    pub fn dollars(&self, warm_hours: f64, parked_hours: f64) -> f64 {
        warm_hours * (self.compute_per_hour() + self.storage_per_hour())
            + parked_hours * self.storage_per_hour()
    }

    /// Dollars per month for a stock of `warm` running and `parked` parked agents.
    pub fn monthly(&self, warm: u32, parked: u32) -> f64 {
        self.dollars(f64::from(warm), f64::from(parked)) * HOURS_PER_MONTH
    }
}

impl fmt::Display for AgentSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} GB memory, {} vCPU, {} GB used on its volume: ${:.4}/h running, ${:.5}/h parked \
             (${:.2} and ${:.2} a month)",
            self.memory_gb,
            self.vcpu,
            self.volume_gb,
            self.compute_per_hour() + self.storage_per_hour(),
            self.storage_per_hour(),
            self.monthly(1, 0),
            self.monthly(0, 1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn railway_pro_prices_per_month() {
        let size = AgentSize {
            memory_gb: 1.0,
            vcpu: 1.0,
            volume_gb: 1.0,
        };
        // $0.000231 × 60 × 730 ≈ $10.12 per GB-month; $0.000463 × 60 × 730 ≈ $20.28.
        assert!((size.monthly(1, 0) - (10.1178 + 20.2794 + 0.15)).abs() < 0.01);
        assert!((size.monthly(0, 1) - 0.15).abs() < 1e-9);
        // 1 GB + 0.1 vCPU + 1 GB of volume: $0.016843 an hour, $1,229.57 a month for 100.
        assert!((AgentSize::ASSUMED.monthly(100, 0) - 1_229.57).abs() < 0.01);
    }
}
