//! Gradient buckets for the all-reduce that overlaps backward, as PyTorch DDP makes them: about
//! 25 MB each, a small first one (1 MB) so communication starts as early as possible, filled
//! from the last parameter to the first. Pure: sizes in, ranges out.
//!
//! Each bucket is a contiguous range of the flat gradient buffer (parameters are laid out in name
//! order, [`crate::flat::FlatParams`]), so its all-reduce is one in-place call on a view of that
//! buffer: no bucket copies. Backward produces the gradients of the last layers first, and name
//! order puts `layer4` last, so the first buckets are ready first; the few parameters whose
//! name sorts apart from their layer (`fc`, the stem) only make their bucket wait until
//! backward reaches its other parameters.

use std::ops::Range;

/// DDP's `bucket_cap_mb` default.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;
/// DDP's first-bucket cap.
pub const FIRST_BUCKET_BYTES: usize = 1 << 20;

/// Which bucket each parameter is in, and each bucket's element range of the flat buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPlan {
    /// Per parameter (flat order), its bucket.
    pub bucket_of: Vec<u32>,
    /// Per bucket, in launch order, its elements of the flat buffer.
    pub ranges: Vec<Range<usize>>,
}

/// Buckets for parameters of `numels` elements laid out back to back in this order, of about
/// `cap_bytes` (`elem_bytes` per element) each, the first one `first_cap_bytes`; launch order is
/// from the last parameter back. `cap_bytes == 0` makes one bucket of everything (the
/// all-reduce then starts when backward is done: no overlap).
pub fn plan_buckets(
    numels: &[usize],
    elem_bytes: usize,
    first_cap_bytes: usize,
    cap_bytes: usize,
) -> BucketPlan {
    let n = numels.len();
    let mut starts = Vec::with_capacity(n + 1);
    let mut at = 0usize;
    for &k in numels {
        starts.push(at);
        at += k;
    }
    starts.push(at);
    let mut bucket_of = vec![0u32; n];
    let mut ranges = Vec::new();
    let mut hi = n; // the current bucket holds parameters lo..hi
    let mut bytes = 0usize;
    for i in (0..n).rev() {
        bytes += numels[i] * elem_bytes;
        bucket_of[i] = ranges.len() as u32;
        let cap = if ranges.is_empty() {
            first_cap_bytes
        } else {
            cap_bytes
        };
        if cap_bytes > 0 && bytes >= cap {
            ranges.push(starts[i]..starts[hi]);
            hi = i;
            bytes = 0;
        }
    }
    if hi > 0 || (n > 0 && ranges.is_empty()) {
        ranges.push(0..starts[hi]);
    }
    BucketPlan { bucket_of, ranges }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_fill_from_the_last_parameter_with_a_small_first_one() {
        // 4-byte elements: caps of 8 and 16 bytes = 2 and 4 elements.
        let p = plan_buckets(&[1, 3, 2, 2, 1], 4, 8, 16);
        assert_eq!(p.ranges, vec![6..9, 1..6, 0..1]);
        assert_eq!(p.bucket_of, vec![2, 1, 1, 0, 0]);
    }

    #[test]
    fn cap_zero_is_one_bucket() {
        let p = plan_buckets(&[5, 5, 5], 4, FIRST_BUCKET_BYTES, 0);
        assert_eq!(p.ranges, vec![0..15]);
        assert_eq!(p.bucket_of, vec![0, 0, 0]);
        assert_eq!(
            plan_buckets(&[], 4, 1, 1).ranges,
            Vec::<Range<usize>>::new()
        );
    }

    #[test]
    fn resnet50_sized_buckets() {
        // 25.6 M floats (102 MB): ten of layer4's 2.36 M-element convs among small tensors.
        let mut numels = vec![2_359_296usize; 10];
        numels.extend(std::iter::repeat_n(100_000, 20));
        let p = plan_buckets(&numels, 4, FIRST_BUCKET_BYTES, DEFAULT_BUCKET_BYTES);
        // A 1.2 MB first bucket, then four of 25-35 MB and the rest.
        assert_eq!(p.ranges[0].len(), 300_000);
        assert!(p.ranges.len() >= 4 && p.ranges.len() <= 6, "{:?}", p.ranges);
        for r in &p.ranges[1..p.ranges.len() - 1] {
            assert!(
                r.len() * 4 >= DEFAULT_BUCKET_BYTES && r.len() * 4 < 36 << 20,
                "{r:?}"
            );
        }
    }

    proptest! {
        /// The buckets tile the buffer from the end back, each parameter lies inside its own
        /// bucket's range, and only the last bucket may be under the cap.
        #[test]
        fn buckets_tile_the_buffer(
            numels in prop::collection::vec(1usize..1000, 0..60),
            first in 0usize..3000,
            cap in 0usize..5000,
        ) {
            let p = plan_buckets(&numels, 4, first, cap);
            let total: usize = numels.iter().sum();
            let mut end = total;
            for r in &p.ranges {
                prop_assert_eq!(r.end, end);
                prop_assert!(r.start < r.end);
                end = r.start;
            }
            prop_assert_eq!(end, 0);
            let mut at = 0;
            for (i, &k) in numels.iter().enumerate() {
                let r = &p.ranges[p.bucket_of[i] as usize];
                prop_assert!(r.start <= at && at + k <= r.end);
                at += k;
            }
            for (b, r) in p.ranges.iter().enumerate().take(p.ranges.len().saturating_sub(1)) {
                let want = if b == 0 { first } else { cap };
                prop_assert!(r.len() * 4 >= want);
            }
        }
    }
}
