//! [`SampleRng`]: the random numbers of one sample's augmentation, a pure function of
//! (seed, epoch, sample index). No thread, worker or timing can change them, so batches are
//! bit-identical whatever the worker count.

/// xoshiro256** (Blackman and Vigna), seeded from a key through SplitMix64. Its own code, so the
/// numbers never change with a dependency's version.
#[derive(Debug, Clone)]
pub struct SampleRng {
    state: [u64; 4],
}

/// The SplitMix64 finaliser.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SampleRng {
    /// The generator of sample `index` of `epoch` in a run seeded with `seed`.
    pub fn for_sample(seed: u64, epoch: u64, index: u64) -> Self {
        // Chain the key words through the mixer so that (a, b) and (b, a) differ.
        let mut key = mix64(seed ^ 0x5348_5244_4645_4544); // "SHRDFEED"
        key = mix64(key ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        key = mix64(key ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03));
        Self::from_seed(key)
    }

    /// A generator seeded with one word (expanded with SplitMix64, as the authors advise).
    pub fn from_seed(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            mix64(x)
        };
        SampleRng {
            state: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
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

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform float in `[low, high)` (as `torch.empty(1).uniform_(low, high)`).
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// A uniform integer in `0..n` for `n > 0` (Lemire's method, no modulo bias); 0 when `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoshiro_matches_the_reference_output() {
        // Reference: the authors' xoshiro256starstar.c with s = {1, 2, 3, 4}.
        let mut rng = SampleRng {
            state: [1, 2, 3, 4],
        };
        let first: Vec<u64> = (0..4).map(|_| rng.next_u64()).collect();
        assert_eq!(
            first,
            [11520, 0, 1509978240, 1215971899390074240],
            "xoshiro256** reference sequence"
        );
    }

    #[test]
    fn every_key_word_matters_and_order_matters() {
        let base = SampleRng::for_sample(1, 2, 3).next_u64();
        assert_eq!(base, SampleRng::for_sample(1, 2, 3).next_u64());
        for other in [(0, 2, 3), (1, 0, 3), (1, 2, 0), (1, 3, 2), (2, 1, 3)] {
            assert_ne!(
                base,
                SampleRng::for_sample(other.0, other.1, other.2).next_u64(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn floats_and_integers_stay_in_range() {
        let mut rng = SampleRng::from_seed(42);
        let mut seen = [false; 7];
        for _ in 0..10_000 {
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
            let u = rng.uniform(0.08, 1.0);
            assert!((0.08..1.0).contains(&u));
            seen[rng.below(7) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(rng.below(0), 0);
        assert_eq!(rng.below(1), 0);
    }
}
