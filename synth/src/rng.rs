//! A small seeded random number generator, written here so that synthetic
//! images never change because a crate changed its algorithm.
//!
//! [`SplitMix64`] turns any `u64` (including 0) into well-mixed seeds;
//! [`Rng`] is xoshiro256** (Blackman and Vigna), seeded from SplitMix64.
//! Both are specified bit for bit by their reference C code, and the tests
//! below pin their first outputs against it.
//!
//! All helpers use integer arithmetic or exact IEEE operations only, so a
//! given seed yields the same values on every platform.

/// SplitMix64 (Steele, Lea and Flood): a 64-bit counter passed through a
/// bijective mixer. Used to seed [`Rng`] and to derive independent streams.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// The increment of the counter: 2^64 divided by the golden ratio.
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

    /// A generator whose first output is `mix(seed + GAMMA)`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next output.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(Self::GAMMA);
        mix64(self.state)
    }
}

/// SplitMix64's output function: a bijection on `u64` with good avalanche.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hashes a sequence of words into one seed; different sequences give
/// unrelated seeds (`derive_seed(&[a, b])` and `derive_seed(&[b, a])` differ).
pub fn derive_seed(words: &[u64]) -> u64 {
    let mut h: u64 = 0x6A09_E667_F3BC_C908; // sqrt(2) fraction, an arbitrary start
    for &w in words {
        h = mix64(h.wrapping_add(SplitMix64::GAMMA) ^ w);
    }
    h
}

/// xoshiro256**: 256 bits of state, period 2^256 - 1, fast and statistically
/// strong. Not for cryptography.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// Seeds the four state words from [`SplitMix64`], as the authors advise;
    /// every `seed` (0 included) gives a valid, non-zero state.
    pub fn new(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        let s = [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()];
        Self::from_state(s)
    }

    /// A generator with exactly this state (used to check the reference
    /// outputs). An all-zero state is replaced by `Rng::new(0)`'s state.
    pub fn from_state(s: [u64; 4]) -> Self {
        if s == [0; 4] {
            return Self::new(0);
        }
        Self { s }
    }

    /// The next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
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

    /// Uniform in `[0, 1)` with 53 bits of precision.
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, 1)` with 24 bits of precision.
    #[inline]
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    #[inline]
    pub fn range_f32(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.next_f32()
    }

    /// Uniform integer in `[0, n)`; `n` must be non-zero. Unbiased
    /// (Lemire's multiply-and-reject).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform integer in `[lo, hi]` (both inclusive); `lo <= hi`.
    pub fn range_u32(&mut self, lo: u32, hi: u32) -> u32 {
        assert!(lo <= hi, "Rng::range_u32({lo}, {hi})");
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }

    /// `true` with probability `p`.
    #[inline]
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_reference() {
        // Reference C implementation, seed 0.
        let mut sm = SplitMix64::new(0);
        assert_eq!(sm.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(sm.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(sm.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro256starstar_matches_reference() {
        // Reference C implementation with state {1, 2, 3, 4}.
        let mut r = Rng::from_state([1, 2, 3, 4]);
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
    }

    #[test]
    fn new_is_deterministic_and_seed_sensitive() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..8).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::new(43);
            (0..8).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Seed 0 must not give a stuck generator.
        let mut z = Rng::new(0);
        assert!((0..4).any(|_| z.next_u64() != 0));
        assert_eq!(Rng::from_state([0; 4]).next_u64(), Rng::new(0).next_u64());
    }

    #[test]
    fn floats_stay_in_range_and_look_uniform() {
        let mut r = Rng::new(7);
        let n = 100_000;
        let mut sum64 = 0.0;
        let mut sum32 = 0.0f64;
        for _ in 0..n {
            let x = r.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum64 += x;
            let y = r.next_f32();
            assert!((0.0..1.0).contains(&y));
            sum32 += f64::from(y);
            let z = r.range_f32(-2.0, 3.0);
            assert!((-2.0..3.0).contains(&z));
        }
        assert!((sum64 / n as f64 - 0.5).abs() < 0.01);
        assert!((sum32 / n as f64 - 0.5).abs() < 0.01);
    }

    #[test]
    fn below_is_in_range_and_hits_every_value() {
        let mut r = Rng::new(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = r.below(7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800 && c < 1200), "{seen:?}");
        for _ in 0..1000 {
            let v = r.range_u32(150, 1200);
            assert!((150..=1200).contains(&v));
        }
        assert_eq!(r.range_u32(5, 5), 5);
        assert_eq!(r.below(1), 0);
        // The largest range must not overflow.
        let _ = r.range_u32(0, u32::MAX);
    }

    #[test]
    fn derive_seed_depends_on_order_and_every_word() {
        let base = derive_seed(&[1, 2, 3]);
        assert_eq!(base, derive_seed(&[1, 2, 3]));
        assert_ne!(base, derive_seed(&[3, 2, 1]));
        assert_ne!(base, derive_seed(&[1, 2, 4]));
        assert_ne!(base, derive_seed(&[1, 2]));
        assert_ne!(derive_seed(&[0]), derive_seed(&[0, 0]));
    }
}
