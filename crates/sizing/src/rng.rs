//! A small deterministic random number generator (SplitMix64) for the synthetic week and the
//! replay's jitter: both must give the same numbers on every machine and every run, and
//! neither needs more than a few uniform draws, so a dependency on `rand` would buy nothing.

/// SplitMix64: one 64-bit state, good enough statistics for simulation, trivially seeded.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`0` when `n` is 0). The modulo bias is below 2⁻³² for the small `n`
    /// used here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// A Poisson-distributed count with mean `mean` (Knuth's method, fine for small means).
    pub(crate) fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let (mut count, mut product) = (0, self.unit());
        while product > limit {
            count += 1;
            product *= self.unit();
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn poisson_draws_have_the_requested_mean() {
        let mut rng = SplitMix64::new(1);
        let n = 20_000;
        let total: u32 = (0..n).map(|_| rng.poisson(0.5)).sum();
        let mean = f64::from(total) / f64::from(n);
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
