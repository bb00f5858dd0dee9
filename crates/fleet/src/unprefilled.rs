//! Which routed requests of one instance are not yet prefilled, kept so that an instance's
//! step outputs can be matched against them without a map lookup per output.
//!
//! A fleet's instances take turns on the CPU, so the routed-request map is out of the caches
//! whenever an instance's outputs arrive; looking every output up in it cost a cache miss per
//! output. A counting filter of the unprefilled requests' tags (one counter per bucket of tag
//! hashes, 2 KiB that stay cached) rules out almost every output: with `n` unprefilled
//! requests an output is looked up with a chance of about `n / 512`, and one of them always
//! is.

/// Buckets of the filter.
const BUCKETS: usize = 512;

/// Counts of one instance's routed requests whose prefill has not ended, by tag bucket.
#[derive(Clone, Debug)]
pub(crate) struct Unprefilled {
    counts: [u32; BUCKETS],
}

impl Default for Unprefilled {
    fn default() -> Unprefilled {
        Unprefilled {
            counts: [0; BUCKETS],
        }
    }
}

/// The bucket of `tag` (Fibonacci hashing: the top 9 bits of the tag times 2^64/φ, so that
/// tags in any arithmetic progression spread over the buckets).
fn bucket(tag: u64) -> usize {
    (tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - BUCKETS.trailing_zeros())) as usize
}

impl Unprefilled {
    /// Counts a routed request with `tag`.
    pub(crate) fn insert(&mut self, tag: u64) {
        self.counts[bucket(tag)] += 1;
    }

    /// Uncounts one routed request with `tag` (its prefill ended, or a new request with the
    /// same tag replaced it). Panics if none is counted there (a caller's mistake).
    pub(crate) fn remove(&mut self, tag: u64) {
        let c = &mut self.counts[bucket(tag)];
        *c = c
            .checked_sub(1)
            .expect("an unprefilled request was counted");
    }

    /// Whether an output tagged `tag` may belong to one of them: false only when it surely
    /// does not.
    pub(crate) fn may_hold(&self, tag: u64) -> bool {
        self.counts[bucket(tag)] > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_held_until_removed() {
        let mut u = Unprefilled::default();
        assert!(!u.may_hold(1));
        u.insert(1);
        u.insert(2);
        assert!(u.may_hold(1) && u.may_hold(2));
        u.remove(1);
        assert!(!u.may_hold(1) && u.may_hold(2));
        u.remove(2);
        assert!(!u.may_hold(2));
    }

    #[test]
    fn few_unprefilled_rule_out_almost_every_other_tag() {
        let mut u = Unprefilled::default();
        for t in [3, 10, 1000] {
            u.insert(t);
        }
        let held = (0..100_000u64).filter(|&t| u.may_hold(t)).count();
        // Three buckets of 512: about 0.6 % of all tags, never fewer than the three.
        assert!((3..=1_000).contains(&held), "{held} of 100,000 tags held");
    }

    #[test]
    fn sequential_tags_spread_over_the_buckets() {
        let used: std::collections::HashSet<usize> = (0..128u64).map(bucket).collect();
        assert!(
            used.len() > 100,
            "{} buckets for 128 sequential tags",
            used.len()
        );
        let strided: std::collections::HashSet<usize> =
            (0..128u64).map(|t| bucket(t * 128)).collect();
        assert!(
            strided.len() > 60,
            "{} buckets for 128 tags 128 apart",
            strided.len()
        );
    }

    #[test]
    fn a_replaced_tag_stays_held_once() {
        let mut u = Unprefilled::default();
        u.insert(7);
        u.insert(7);
        u.remove(7);
        assert!(u.may_hold(7));
        u.remove(7);
        assert!(!u.may_hold(7));
    }
}
