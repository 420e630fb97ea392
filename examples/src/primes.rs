//! Counting primes: the CPU-bound kernel behind the `primes` program.
//!
//! [`count_primes_in`] counts the primes in one range with a segmented sieve
//! of Eratosthenes, so that any range can be counted on its own, in any
//! process, with a few kilobytes of memory. [`split`] cuts `0..limit` into
//! ranges for the workers; the sum of the counts is the answer.
//! [`count_primes`] is the kernel as a pool task.

use std::ops::Range;

/// Numbers are sieved in segments of this many odd numbers (one byte
/// each): 32 KiB stays in a core's L1 cache, which is what makes a segmented
/// sieve fast.
const SEGMENT_ODDS: usize = 32 * 1024;

/// The largest limit the programs accept. The sieve works far beyond it,
/// but a count past 10^12 would take hours, which is no demo.
pub const MAX_LIMIT: u64 = 1_000_000_000_000;

/// Counts the primes `p` with `range.start <= p < range.end`.
///
/// # Examples
///
/// ```
/// assert_eq!(examples::primes::count_primes_in(0..100), 25);
/// assert_eq!(examples::primes::count_primes_in(90..100), 1); // 97
/// ```
pub fn count_primes_in(range: Range<u64>) -> u64 {
    let Range { start, end } = range;
    if end <= start || end <= 2 {
        return 0;
    }
    // Only odd numbers are sieved; 2 is counted by hand.
    let mut count = u64::from(start <= 2);
    // Every composite below `end` has a prime factor at most sqrt(end - 1).
    let base = primes_up_to(isqrt(end - 1));
    let odd_base = base.iter().copied().filter(|&p| p != 2);

    let mut sieve = vec![true; SEGMENT_ODDS];
    let mut low = start.max(3) | 1;
    while low < end {
        // The segment holds the odd numbers low, low + 2, ..., below `high`.
        let odds = ((end - low).div_ceil(2)).min(SEGMENT_ODDS as u64) as usize;
        let high = low + 2 * odds as u64;
        let segment = &mut sieve[..odds];
        segment.fill(true);
        for p in odd_base.clone() {
            if p * p >= high {
                break;
            }
            // Start at p*p (smaller multiples have a smaller factor) or at
            // the first odd multiple of p in the segment.
            let mut first = (p * p).max(low.div_ceil(p) * p);
            if first % 2 == 0 {
                first += p;
            }
            let mut i = ((first - low) / 2) as usize;
            while i < odds {
                segment[i] = false;
                i += p as usize;
            }
        }
        count += segment.iter().filter(|&&is_prime| is_prime).count() as u64;
        low = high;
    }
    count
}

pool::task! {
    /// [`count_primes_in`] as a pool task: `pool.map(count_primes, ranges)`.
    pub fn count_primes(range: Range<u64>) -> u64 {
        count_primes_in(range)
    }
}

/// Splits `0..limit` into `pieces` contiguous ranges of nearly equal length
/// (fewer when `limit` is smaller than `pieces`), in increasing order.
///
/// # Examples
///
/// ```
/// let ranges = examples::primes::split(10, 3);
/// assert_eq!(ranges, [0..4, 4..7, 7..10]);
/// ```
pub fn split(limit: u64, pieces: u64) -> Vec<Range<u64>> {
    let pieces = pieces.clamp(1, limit.max(1));
    let (size, extra) = (limit / pieces, limit % pieces);
    let mut start = 0;
    (0..pieces)
        .map(|i| {
            // The first `extra` ranges take one more number each.
            let end = start + size + u64::from(i < extra);
            let range = start..end;
            start = end;
            range
        })
        .collect()
}

/// All primes `p <= n`, by a plain sieve of Eratosthenes.
fn primes_up_to(n: u64) -> Vec<u64> {
    let n = n as usize;
    let mut composite = vec![false; n + 1];
    let mut primes = Vec::new();
    for i in 2..=n {
        if !composite[i] {
            primes.push(i as u64);
            let mut multiple = i * i;
            while multiple <= n {
                composite[multiple] = true;
                multiple += i;
            }
        }
    }
    primes
}

/// The integer square root, `floor(sqrt(n))`. (`u64::isqrt` needs a newer
/// Rust than this workspace's minimum.)
fn isqrt(n: u64) -> u64 {
    // The float estimate is off by at most one for any u64; fix it up.
    let mut root = (n as f64).sqrt() as u64;
    while root.checked_mul(root).map_or(true, |sq| sq > n) {
        root -= 1;
    }
    while (root + 1).checked_mul(root + 1).is_some_and(|sq| sq <= n) {
        root += 1;
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_prime(n: u64) -> bool {
        n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
    }

    #[test]
    fn matches_trial_division_on_every_small_range() {
        for start in 0..60 {
            for end in start..120 {
                let expected = (start..end).filter(|&n| is_prime(n)).count() as u64;
                assert_eq!(count_primes_in(start..end), expected, "{start}..{end}");
            }
        }
    }

    #[test]
    fn known_counts_across_many_segments() {
        // pi(10^6) = 78498 and pi(10^7) = 664579; the second spans 153
        // segments, so segment boundaries are crossed many times.
        assert_eq!(count_primes_in(0..1_000_000), 78_498);
        assert_eq!(count_primes_in(0..10_000_000), 664_579);
    }

    #[test]
    fn split_ranges_add_up_to_the_whole() {
        for pieces in [1, 2, 7, 64] {
            let total: u64 = split(1_000_003, pieces)
                .into_iter()
                .map(count_primes_in)
                .sum();
            assert_eq!(total, count_primes_in(0..1_000_003), "{pieces} pieces");
        }
    }

    #[test]
    fn split_covers_the_range_without_gaps() {
        for (limit, pieces) in [(0, 4), (3, 8), (10, 3), (1000, 7)] {
            let ranges = split(limit, pieces);
            assert!(!ranges.is_empty());
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges.last().unwrap().end, limit);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
        }
    }

    #[test]
    fn isqrt_is_exact_near_squares_and_at_the_top() {
        for r in [0u64, 1, 2, 3, 1000, 4_294_967_295] {
            assert_eq!(isqrt(r * r), r);
            if r > 0 {
                assert_eq!(isqrt(r * r - 1), r - 1);
            }
        }
        assert_eq!(isqrt(u64::MAX), 4_294_967_295);
    }
}
