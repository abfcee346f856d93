//! # shardfeed-rng
//!
//! The project's one implementation of seeded random numbers. Every random choice shardfeed makes
//! (shard order at ingest, the epoch order of the sampler, each sample's crop and flip, the
//! synthetic images, the trainer's synthetic batches) comes from here, so "the same seed gives
//! the same bytes" is a property of this crate alone and holds forever: the algorithms are our
//! own code, specified bit for bit by their authors' reference C, and the tests below pin their
//! outputs (golden values) so no refactoring can change them unnoticed.
//!
//! - [`SplitMix64`]: a one-word generator (Steele, Lea, Flood 2014), for orders and keyed streams.
//! - [`Xoshiro256`]: xoshiro256\*\* (Blackman, Vigna), seeded through SplitMix64; the generator
//!   of a sample's augmentation ([`Xoshiro256::for_sample`]) and of synthetic data.
//! - [`mix64`], [`derive_seed`]: derive independent seeds from tuples of words.
//! - [`shuffle`]: a seeded Fisher–Yates permutation.
//!
//! Both generators share one integer rule: [`SplitMix64::below`] and [`Xoshiro256::below`] draw a
//! uniform integer in `0..n` by Lemire's multiply-and-reject (no modulo bias), and `below(0)` is
//! `0` without drawing anything (an empty range has one answer, and callers stay panic-free).
//!
//! ```
//! use shardfeed_rng::{shuffle, Xoshiro256};
//! let mut rng = Xoshiro256::for_sample(0, 1, 42); // seed 0, epoch 1, sample 42
//! let crop_fraction = rng.uniform(0.08, 1.0);
//! assert!((0.08..1.0).contains(&crop_fraction));
//! let mut order: Vec<u32> = (0..10).collect();
//! shuffle(&mut order, 7);
//! assert_eq!(order.len(), 10);
//! ```
//!
//! Not for cryptography.

/// SplitMix64's increment: 2^64 divided by the golden ratio.
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijection on `u64` with strong avalanche, also used to derive
/// independent seeds from tuples such as (seed, epoch, index).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of words into one seed; different sequences give unrelated seeds
/// (`derive_seed(&[a, b])` and `derive_seed(&[b, a])` differ, and so do `[a]` and `[a, 0]`).
pub fn derive_seed(words: &[u64]) -> u64 {
    let mut h: u64 = 0x6A09_E667_F3BC_C908; // sqrt(2)'s fraction, an arbitrary start
    for &w in words {
        h = mix64(h.wrapping_add(GAMMA) ^ w);
    }
    h
}

/// A uniform integer in `0..n` from a source of 64-bit words (Lemire's multiply-and-reject);
/// `0` without drawing when `n == 0`.
fn below_with(n: u64, mut next_u64: impl FnMut() -> u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let threshold = n.wrapping_neg() % n;
    loop {
        let m = u128::from(next_u64()) * u128::from(n);
        if (m as u64) >= threshold {
            return (m >> 64) as u64;
        }
    }
}

/// A uniform `f64` in `[0, 1)` with 53 random bits.
fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform `f32` in `[0, 1)` with 24 random bits.
fn unit_f32(bits: u64) -> f32 {
    (bits >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
}

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit counter passed through [`mix64`].
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose first output is `mix64(seed + GAMMA)`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator keyed by several numbers (seed, rank, epoch, ...), mixed into the state one
    /// after the other, so `[a, b]` and `[b, a]` differ.
    pub fn keyed(keys: &[u64]) -> Self {
        let mut rng = SplitMix64(0x5eed_5eed_5eed_5eed);
        for &key in keys {
            rng.0 ^= key;
            rng.next_u64();
        }
        rng
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        mix64(self.0)
    }

    /// A uniform integer in `0..n` without modulo bias; `0` (and no draw) when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        below_with(n, || self.next_u64())
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// A uniform `f32` in `[0, 1)` with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        unit_f32(self.next_u64())
    }
}

/// xoshiro256\*\* (Blackman and Vigna): 256 bits of state, period 2^256 − 1.
#[derive(Debug, Clone)]
pub struct Xoshiro256 {
    state: [u64; 4],
}

impl Xoshiro256 {
    /// A generator seeded with one word, its four state words drawn from [`SplitMix64`] as the
    /// authors advise; every seed (0 included) gives a valid, non-zero state.
    pub fn new(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        Xoshiro256 {
            state: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
        }
    }

    /// The generator of sample `index` of `epoch` in a run seeded with `seed`: the random
    /// numbers of one sample's augmentation, a pure function of the three, so no worker count,
    /// thread or timing can change them.
    pub fn for_sample(seed: u64, epoch: u64, index: u64) -> Self {
        // Chain the key words through the mixer so that (a, b) and (b, a) differ.
        let mut key = mix64(seed ^ 0x5348_5244_4645_4544); // "SHRDFEED"
        key = mix64(key ^ epoch.wrapping_mul(GAMMA));
        key = mix64(key ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Self::new(key)
    }

    /// A generator with exactly this state (to check the reference outputs). The all-zero
    /// state, on which xoshiro is stuck, is replaced by `Xoshiro256::new(0)`'s.
    pub fn from_state(state: [u64; 4]) -> Self {
        if state == [0; 4] {
            return Self::new(0);
        }
        Xoshiro256 { state }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform `f64` in `[0, 1)` with 53 random bits.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// A uniform `f32` in `[0, 1)` with 24 random bits.
    #[inline]
    pub fn next_f32(&mut self) -> f32 {
        unit_f32(self.next_u64())
    }

    /// A uniform `f64` in `[low, high)` (as `torch.empty(1).uniform_(low, high)`).
    #[inline]
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// A uniform `f32` in `[low, high)`, computed in `f32`.
    #[inline]
    pub fn range_f32(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.next_f32()
    }

    /// A uniform integer in `0..n` without modulo bias; `0` (and no draw) when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        below_with(n, || self.next_u64())
    }

    /// A uniform integer in `[low, high]`, both inclusive; `low` (and no draw) when
    /// `high <= low`.
    pub fn range_u32(&mut self, low: u32, high: u32) -> u32 {
        if high <= low {
            return low;
        }
        low + self.below(u64::from(high - low) + 1) as u32
    }

    /// `true` with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

/// Shuffles `items` in place (Fisher–Yates with [`SplitMix64`]), determined by `seed` alone.
pub fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut rng = SplitMix64::new(seed);
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_the_reference_sequence() {
        // The authors' splitmix64.c, seeds 0 and 1234567.
        let mut sm = SplitMix64::new(0);
        assert_eq!(sm.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(sm.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(sm.next_u64(), 0x06C4_5D18_8009_454F);
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
    }

    #[test]
    fn xoshiro_matches_the_reference_sequence() {
        // The authors' xoshiro256starstar.c with s = {1, 2, 3, 4}.
        let mut r = Xoshiro256::from_state([1, 2, 3, 4]);
        let expected = [
            11520,
            0,
            1509978240,
            1215971899390074240,
            1216172134540287360,
            607988272756665600,
        ];
        for e in expected {
            assert_eq!(r.next_u64(), e);
        }
        assert_eq!(
            Xoshiro256::from_state([0; 4]).next_u64(),
            Xoshiro256::new(0).next_u64()
        );
    }

    // Golden values: what the project's seeds have produced since v0.1 (computed with the three
    // generators this crate replaced). A change here changes
    // every shard order, epoch order, crop and synthetic image; it must never happen silently.
    #[test]
    fn golden_for_sample() {
        let draws = |s, e, i| {
            let mut r = Xoshiro256::for_sample(s, e, i);
            [r.next_u64(), r.next_u64()]
        };
        assert_eq!(draws(0, 0, 0), GOLDEN_FOR_SAMPLE_0_0_0);
        assert_eq!(draws(7, 3, 12345), GOLDEN_FOR_SAMPLE_7_3_12345);
    }

    #[test]
    fn golden_keyed_and_new() {
        assert_eq!(SplitMix64::keyed(&[1, 2, 3]).next_u64(), GOLDEN_KEYED_1_2_3);
        assert_eq!(Xoshiro256::new(42).next_u64(), GOLDEN_XOSHIRO_NEW_42);
        assert_eq!(derive_seed(&[1, 2, 3]), GOLDEN_DERIVE_1_2_3);
    }

    #[test]
    fn golden_shuffle() {
        let mut items: Vec<u32> = (0..10).collect();
        shuffle(&mut items, 7);
        assert_eq!(items, GOLDEN_SHUFFLE_10_SEED_7);
    }

    const GOLDEN_FOR_SAMPLE_0_0_0: [u64; 2] = [14015818131898490127, 4503101248901883548];
    const GOLDEN_FOR_SAMPLE_7_3_12345: [u64; 2] = [15652315025849312493, 1938562522921506625];
    const GOLDEN_KEYED_1_2_3: u64 = 5687720764692882327;
    const GOLDEN_XOSHIRO_NEW_42: u64 = 1546998764402558742;
    const GOLDEN_DERIVE_1_2_3: u64 = 17676873732638982405;
    const GOLDEN_SHUFFLE_10_SEED_7: [u32; 10] = [9, 5, 8, 6, 1, 2, 4, 7, 0, 3];

    #[test]
    fn below_agrees_between_generators_and_handles_zero() {
        let mut a = SplitMix64::new(5);
        let mut b = Xoshiro256::new(5);
        assert_eq!(a.below(0), 0);
        assert_eq!(b.below(0), 0);
        // below(0) draws nothing: the next draws are the untouched sequence's.
        assert_eq!(a.next_u64(), SplitMix64::new(5).next_u64());
        assert_eq!(b.next_u64(), Xoshiro256::new(5).next_u64());
        assert_eq!(a.below(1), 0);
        assert_eq!(b.below(1), 0);
        assert_eq!(b.range_u32(5, 5), 5);
        assert_eq!(b.range_u32(9, 3), 9);
        let _ = b.range_u32(0, u32::MAX);
    }

    #[test]
    fn below_is_roughly_uniform() {
        let mut a = SplitMix64::new(3);
        let mut b = Xoshiro256::new(3);
        let mut counts = [[0u32; 6]; 2];
        for _ in 0..60_000 {
            counts[0][a.below(6) as usize] += 1;
            counts[1][b.below(6) as usize] += 1;
        }
        for c in counts.iter().flatten() {
            assert!((9_400..10_600).contains(c), "{counts:?}");
        }
    }

    #[test]
    fn floats_stay_in_range_and_look_uniform() {
        let mut r = Xoshiro256::new(7);
        let mut s = SplitMix64::new(7);
        let n = 100_000;
        let (mut sum64, mut sum32) = (0.0, 0.0f64);
        for _ in 0..n {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum64 += x;
            let y = s.next_f32();
            assert!((0.0..1.0).contains(&y));
            sum32 += f64::from(y);
            assert!((-2.0..3.0).contains(&r.range_f32(-2.0, 3.0)));
            assert!((0.08..1.0).contains(&r.uniform(0.08, 1.0)));
        }
        assert!((sum64 / n as f64 - 0.5).abs() < 0.01);
        assert!((sum32 / n as f64 - 0.5).abs() < 0.01);
    }

    #[test]
    fn keys_depend_on_every_word_and_their_order() {
        let first = |keys: &[u64]| SplitMix64::keyed(keys).next_u64();
        assert_ne!(first(&[1, 2]), first(&[2, 1]));
        assert_ne!(first(&[1, 2]), first(&[1, 3]));
        assert_ne!(first(&[1]), first(&[1, 0]));
        let base = Xoshiro256::for_sample(1, 2, 3).next_u64();
        for (s, e, i) in [(0, 2, 3), (1, 0, 3), (1, 2, 0), (1, 3, 2), (2, 1, 3)] {
            assert_ne!(base, Xoshiro256::for_sample(s, e, i).next_u64());
        }
        let seed = derive_seed(&[1, 2, 3]);
        assert_ne!(seed, derive_seed(&[3, 2, 1]));
        assert_ne!(seed, derive_seed(&[1, 2]));
        assert_ne!(derive_seed(&[0]), derive_seed(&[0, 0]));
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..100).collect();
        let mut b = a.clone();
        shuffle(&mut a, 7);
        shuffle(&mut b, 7);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}
