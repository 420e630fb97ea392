//! A small, seedable random number generator: SplitMix64.
//!
//! The examples need random numbers that are the same on every run and in
//! every process for a given seed, and nothing cryptographic. SplitMix64
//! (Steele, Lea and Flood, 2014; the seeding generator of `java.util` and of
//! the xoshiro family) is a dozen lines, passes BigCrush, and any of its
//! seeds is a good one, so derived seeds can simply be counted up.

/// The SplitMix64 generator.
///
/// # Examples
///
/// ```
/// use examples::rng::SplitMix64;
///
/// let mut a = SplitMix64::new(7);
/// let mut b = SplitMix64::new(7);
/// assert_eq!(a.next_u64(), b.next_u64());
/// let x = a.next_f64();
/// assert!((0.0..1.0).contains(&x));
/// ```
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// A uniform float in `[0, 1)`, from the top 53 bits (a double's
    /// precision) of the next output.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..bound`; `bound` must not be zero.
    pub fn below(&mut self, bound: u64) -> u64 {
        // Lemire's multiply-shift; its bias (at most bound / 2^64) is far
        // below anything these examples could notice.
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }
}

/// An independent seed for stream number `index` of a run seeded with
/// `seed`: each task gets its own generator, and which process runs it does
/// not matter.
///
/// # Examples
///
/// ```
/// use examples::rng::stream_seed;
///
/// assert_eq!(stream_seed(1, 5), stream_seed(1, 5));
/// assert_ne!(stream_seed(1, 5), stream_seed(1, 6));
/// assert_ne!(stream_seed(1, 5), stream_seed(2, 5));
/// ```
pub fn stream_seed(seed: u64, index: u64) -> u64 {
    // Two rounds of the finaliser decorrelate nearby (seed, index) pairs.
    mix(mix(seed) ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The SplitMix64 output function (a variant of MurmurHash3's finaliser).
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_outputs_for_seed_zero() {
        // The published reference sequence of SplitMix64 seeded with 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn below_stays_below_and_covers_the_range() {
        let mut rng = SplitMix64::new(3);
        let mut seen = [false; 10];
        for _ in 0..1000 {
            let x = rng.below(10);
            assert!(x < 10);
            seen[x as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
