//! Disjoint statistics: one ridge regression per arm over `x` (docs/core.md, "Disjoint statistics").
//!
//! Scoring reads one *hot* row of `stride = packed_len(d) + d` floats per arm from a contiguous buffer:
//! `[packed upper triangle of A_a⁻¹, off-diagonals doubled | θ_a]`, so `var = dot(hot, packed_outer(x))`
//! and `mean = θ_a·x` are two contiguous dot products. The hot rows are derived from the exact statistics
//! after every update and on restore, by the same code, so a restored bandit scores bit-identically.

use super::ridge::{Arm, Forgetting};
use super::{ArmStats, SharedStats, Statistics};
use crate::error::CoreResult;
use crate::linalg::{dot, matvec, pack_sym_doubled, packed_len, packed_outer};
use crate::params::Params;
use crate::simd::{self, Simd};
use crate::snapshot::{Reader, Writer};

#[derive(Debug)]
pub struct DisjointStats {
    d: usize,
    model_dim: usize,
    lam: f64,
    refactor_every: u64,
    forget: Forgetting,
    stride: usize,
    arms: Vec<Arm>,
    hot: Vec<f64>,
    scratch: Vec<f64>,
}

impl DisjointStats {
    /// Recomputes arm `i`'s hot row from its exact statistics.
    fn rebuild_hot(&mut self, i: usize) {
        let d = self.d;
        let arm = &self.arms[i];
        let row = &mut self.hot[i * self.stride..(i + 1) * self.stride];
        let (packed, theta) = row.split_at_mut(packed_len(d));
        pack_sym_doubled(&arm.a_inv, d, packed);
        matvec(&arm.a_inv, d, &arm.b, theta);
    }

    #[inline(always)]
    fn mean_var(&self, packed_x: &[f64], x: &[f64], i: usize) -> (f64, f64) {
        let row = &self.hot[i * self.stride..(i + 1) * self.stride];
        let (packed, theta) = row.split_at(packed_len(self.d));
        let var = dot(packed, packed_x);
        (dot(theta, x), var.max(0.0))
    }

    /// The scoring kernel. Plain loops rather than a shared closure: the per-arm work must be inlined
    /// into the AVX2 build.
    #[inline(always)]
    fn scan_kernel<F: FnMut(usize, usize, f64, f64)>(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        mut f: F,
    ) {
        let mut packed_x = vec![0.0; packed_len(self.d)];
        packed_outer(x, &mut packed_x);
        match arms {
            None => {
                for i in 0..self.arms.len() {
                    let (mean, var) = self.mean_var(&packed_x, x, i);
                    f(i, i, mean, var);
                }
            }
            Some(list) => {
                for (pos, &i) in list.iter().enumerate() {
                    let (mean, var) = self.mean_var(&packed_x, x, i);
                    f(pos, i, mean, var);
                }
            }
        }
    }
}

impl Statistics for DisjointStats {
    fn new(params: &Params) -> Self {
        let d = params.device_dim;
        DisjointStats {
            d,
            model_dim: params.model_dim,
            lam: params.lam,
            refactor_every: params.refactor_every,
            forget: Forgetting::new(params.half_life, 0),
            stride: packed_len(d) + d,
            arms: Vec::new(),
            hot: Vec::new(),
            scratch: vec![0.0; d],
        }
    }

    fn add_arm(&mut self, m: Vec<f64>) {
        let i = self.arms.len();
        self.arms.push(Arm::fresh(self.d, self.lam, m));
        self.hot.resize((i + 1) * self.stride, 0.0);
        self.rebuild_hot(i);
    }

    fn remove_arm(&mut self, i: usize) {
        self.arms.remove(i);
        self.hot.drain(i * self.stride..(i + 1) * self.stride);
    }

    fn model_features(&self, i: usize) -> &[f64] {
        &self.arms[i].m
    }

    fn observation_scale(&self, _i: usize, x: &[f64]) -> f64 {
        1.0 + dot(x, x)
    }

    fn apply(&mut self, i: usize, x: &[f64], reward: f64) {
        let every = self.refactor_every;
        self.forget.tick();
        self.arms[i].observe(x, reward, &self.forget, self.lam, every, &mut self.scratch);
        self.rebuild_hot(i);
    }

    fn refresh(&mut self) {}

    fn scan<F: FnMut(usize, usize, f64, f64)>(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        simd: Simd,
        f: F,
    ) {
        simd::run(
            simd,
            #[inline(always)]
            || self.scan_kernel(x, arms, f),
        )
    }

    fn predict_mean(&self, i: usize, x: &[f64]) -> f64 {
        // θ_a·x = b_a·(A_a⁻¹x) (A_a⁻¹ is symmetric)
        let arm = &self.arms[i];
        let mut w = vec![0.0; self.d];
        matvec(&arm.a_inv, self.d, x, &mut w);
        dot(&w, &arm.b)
    }

    fn arm_stats(&self, i: usize) -> ArmStats {
        let arm = &self.arms[i];
        let mut theta = vec![0.0; self.d];
        matvec(&arm.a_inv, self.d, &arm.b, &mut theta);
        ArmStats {
            n_updates: arm.n,
            theta,
            model_features: arm.m.clone(),
            a: arm.a.clone(),
            a_inv: arm.a_inv.clone(),
            b: arm.b.clone(),
        }
    }

    fn shared_stats(&self) -> Option<SharedStats> {
        None
    }

    fn encode_shared(&self, w: &mut Writer) {
        w.u8(0); // has_shared
    }

    fn encode_arm(&self, i: usize, w: &mut Writer) {
        self.arms[i].encode(w);
    }

    fn decode_shared(&mut self, r: &mut Reader<'_>) -> CoreResult<()> {
        super::expect_shared_flag(r, false)
    }

    fn decode_arm(&mut self, r: &mut Reader<'_>) -> CoreResult<()> {
        self.arms
            .push(Arm::decode(r, self.d, self.model_dim, self.lam)?);
        Ok(())
    }

    fn rebuild(&mut self) {
        self.hot.clear();
        self.hot.resize(self.arms.len() * self.stride, 0.0);
        for i in 0..self.arms.len() {
            self.rebuild_hot(i);
        }
    }

    fn since_refactor(&self, i: usize) -> u64 {
        self.arms[i].since_refactor
    }

    fn forgetting(&self) -> &Forgetting {
        &self.forget
    }

    fn forgetting_mut(&mut self) -> &mut Forgetting {
        &mut self.forget
    }
}
