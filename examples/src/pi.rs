//! Monte-carlo estimation of pi: the kernel behind the `pi` program.
//!
//! Throw darts uniformly at the unit square; the fraction that lands inside
//! the quarter circle `x^2 + y^2 < 1` tends to pi/4. A run is split into
//! batches; batch `i` draws from its own generator seeded with
//! [`stream_seed(seed, i)`](crate::rng::stream_seed), so the total depends
//! on the seed and the batch sizes only: not on how many workers there are
//! nor on which of them ran which batch. [`throw_darts`] is the kernel as a
//! pool task.

use serde::{Deserialize, Serialize};

use crate::rng::{stream_seed, SplitMix64};

/// One batch of darts: how many, and the seed of its own generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The generator's seed for this batch.
    pub seed: u64,
    /// How many darts to throw.
    pub darts: u64,
}

/// The batches of a run of `darts` darts split into `batches` batches of
/// nearly equal size (fewer if there are fewer darts), seeded from `seed`.
///
/// The same arguments always give the same batches; a different number of
/// batches splits the darts differently, and so gives a different (equally
/// good) estimate.
///
/// # Examples
///
/// ```
/// let plan = examples::pi::plan(42, 1000, 3);
/// let sizes: Vec<u64> = plan.iter().map(|b| b.darts).collect();
/// assert_eq!(sizes, [334, 333, 333]);
/// assert_eq!(plan, examples::pi::plan(42, 1000, 3));
/// ```
pub fn plan(seed: u64, darts: u64, batches: u64) -> Vec<Batch> {
    let batches = batches.clamp(1, darts.max(1));
    let (size, extra) = (darts / batches, darts % batches);
    (0..batches)
        .map(|i| Batch {
            seed: stream_seed(seed, i),
            darts: size + u64::from(i < extra),
        })
        .collect()
}

/// Throws the batch's darts and returns how many landed inside the quarter
/// circle.
///
/// # Examples
///
/// ```
/// use examples::pi::{hits, Batch};
///
/// let batch = Batch { seed: 1, darts: 100_000 };
/// let estimate = 4.0 * hits(batch) as f64 / 100_000.0;
/// assert!((estimate - std::f64::consts::PI).abs() < 0.05);
/// assert_eq!(hits(batch), hits(batch));
/// ```
pub fn hits(batch: Batch) -> u64 {
    let mut rng = SplitMix64::new(batch.seed);
    let mut inside = 0;
    for _ in 0..batch.darts {
        let (x, y) = (rng.next_f64(), rng.next_f64());
        inside += u64::from(x * x + y * y < 1.0);
    }
    inside
}

pool::task! {
    /// [`hits`] as a pool task: `pool.apply_async(throw_darts, batch)`.
    pub fn throw_darts(batch: Batch) -> u64 {
        hits(batch)
    }
}

/// The estimate of pi from `inside` hits out of `darts` darts.
pub fn estimate(inside: u64, darts: u64) -> f64 {
    4.0 * inside as f64 / darts as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_converges_and_batches_differ() {
        let plan = plan(2024, 8 * 50_000, 8);
        let counts: Vec<u64> = plan.iter().copied().map(hits).collect();
        // Distinct seeds give distinct streams, so the counts differ.
        assert!(counts.windows(2).any(|w| w[0] != w[1]), "{counts:?}");
        let pi = estimate(counts.iter().sum(), 8 * 50_000);
        // 400k darts: the standard error is about 0.0026.
        assert!((pi - std::f64::consts::PI).abs() < 0.02, "{pi}");
    }

    #[test]
    fn plan_throws_exactly_the_darts_asked_for() {
        assert_eq!(plan(1, 10, 4).iter().map(|b| b.darts).sum::<u64>(), 10);
        assert_eq!(plan(1, 2, 5).len(), 2, "no empty batches");
        assert_eq!(plan(1, 0, 5).iter().map(|b| b.darts).sum::<u64>(), 0);
    }

    #[test]
    fn every_batch_has_its_own_seed() {
        let seeds: std::collections::HashSet<u64> =
            plan(5, 1 << 20, 1000).iter().map(|b| b.seed).collect();
        assert_eq!(seeds.len(), 1000);
    }

    #[test]
    fn seed_changes_the_result() {
        let total = |seed| plan(seed, 40_000, 4).into_iter().map(hits).sum::<u64>();
        assert_eq!(total(1), total(1));
        assert_ne!(total(1), total(2));
    }
}
