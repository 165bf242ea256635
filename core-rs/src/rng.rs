//! Counter-based SplitMix64 with Box-Muller normals (docs/core.md, "Exploration").
//!
//! SplitMix64's state advances by the constant `GAMMA` per draw, so draw number `t` (1-based) after
//! state `s0` is `mix(s0 + t·GAMMA)`. That makes the generator safe to share under a read lock: a call
//! that needs `n` draws reserves them with one atomic `fetch_add(n·GAMMA)` and then computes them
//! without further synchronization.
//!
//! Draw order: a call that scores arms `a_0, a_1, …, a_{n-1}` (in the order they are scored) reserves
//! `2n` draws; arm `a_i` gets draws `2i` (u1) and `2i+1` (u2) of the block and
//! `ε_i = sqrt(−2 ln u1)·cos(2π u2)`. Concurrent calls get disjoint blocks; calls made one after the
//! other from the same seed reproduce exactly.

use std::sync::atomic::{AtomicU64, Ordering};

pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function.
#[inline]
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform `((u >> 11) + 0.5)·2⁻⁵³` evaluated in f64, so in (0, 1] (never 0, so `ln` is finite).
#[inline]
pub fn uniform(u: u64) -> f64 {
    ((u >> 11) as f64 + 0.5) * (1.0 / 9_007_199_254_740_992.0)
}

/// Uniform `(u >> 11)·2⁻⁵³` in [0, 1) (so `< ε` is never true for ε = 0 and always for ε = 1).
#[inline]
pub fn unit_interval(u: u64) -> f64 {
    (u >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// An integer in `0..n` from one draw (Lemire's multiply-shift: `⌊u·n / 2⁶⁴⌋`).
#[inline]
pub fn uniform_below(u: u64, n: usize) -> usize {
    ((u as u128 * n as u128) >> 64) as usize
}

/// Standard normal from two uniforms (Box-Muller, cosine branch).
#[inline]
pub fn normal(u1: f64, u2: f64) -> f64 {
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A reserved block of draws.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    start: u64,
}

impl Block {
    /// Draw number `t` (0-based) of the block.
    #[inline]
    pub fn draw(&self, t: u64) -> u64 {
        mix(self
            .start
            .wrapping_add(t.wrapping_add(1).wrapping_mul(GAMMA)))
    }

    /// The `i`-th standard normal of the block (uses draws `2i` and `2i+1`).
    #[inline]
    pub fn normal(&self, i: u64) -> f64 {
        normal(uniform(self.draw(2 * i)), uniform(self.draw(2 * i + 1)))
    }
}

/// Shared generator state.
#[derive(Debug)]
pub struct SplitMix64 {
    state: AtomicU64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self {
            state: AtomicU64::new(seed),
        }
    }

    pub fn state(&self) -> u64 {
        self.state.load(Ordering::SeqCst)
    }

    /// Reserves `n_normals` normals (`2·n_normals` draws).
    pub fn reserve_normals(&self, n_normals: usize) -> Block {
        self.reserve_draws((n_normals as u64).wrapping_mul(2))
    }

    /// Reserves `n` raw draws.
    pub fn reserve_draws(&self, n: u64) -> Block {
        let start = self
            .state
            .fetch_add(n.wrapping_mul(GAMMA), Ordering::SeqCst);
        Block { start }
    }

    /// Next raw 64-bit output (sequential use).
    pub fn next_u64(&self) -> u64 {
        let start = self.state.fetch_add(GAMMA, Ordering::SeqCst);
        mix(start.wrapping_add(GAMMA))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // Reference outputs of SplitMix64 seeded with 1234567 (Vigna's splitmix64.c).
        let r = SplitMix64::new(1_234_567);
        let expected = [
            6_457_827_717_110_365_317u64,
            3_203_168_211_198_807_973,
            9_817_491_932_198_370_423,
            4_593_380_528_125_082_431,
            16_408_922_859_458_223_821,
        ];
        for e in expected {
            assert_eq!(r.next_u64(), e);
        }
    }

    #[test]
    fn blocks_continue_the_sequence() {
        let a = SplitMix64::new(42);
        let seq: Vec<u64> = (0..6).map(|_| a.next_u64()).collect();
        let b = SplitMix64::new(42);
        let b1 = b.reserve_normals(1);
        let b2 = b.reserve_normals(2);
        assert_eq!([b1.draw(0), b1.draw(1)], [seq[0], seq[1]]);
        assert_eq!(
            [b2.draw(0), b2.draw(1), b2.draw(2), b2.draw(3)],
            [seq[2], seq[3], seq[4], seq[5]]
        );
        assert_eq!(a.state(), b.state());
    }

    #[test]
    fn normals_look_normal() {
        let r = SplitMix64::new(0);
        let n = 20_000;
        let blk = r.reserve_normals(n);
        let xs: Vec<f64> = (0..n as u64).map(|i| blk.normal(i)).collect();
        assert!(xs.iter().all(|x| x.is_finite()));
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
        // In f64 arithmetic the uniform lies in (0, 1]: `(2^53 − 1) + 0.5` rounds to 2^53.
        assert!(uniform(0) > 0.0 && uniform(u64::MAX) == 1.0);
        assert_eq!(normal(uniform(u64::MAX), 0.3), 0.0);
        assert!(normal(uniform(0), 0.0).is_finite());
    }
}
