//! The building block both layouts share: a ridge regression `A = λI + Σ v vᵀ`, `b = Σ r v` whose inverse
//! is kept by Sherman-Morrison and re-factored by Cholesky every `refactor_every` updates.

use crate::error::CoreResult;
use crate::linalg::{add_outer, cholesky_inverse, scaled_identity, sherman_morrison};
use crate::snapshot::{Reader, Writer};

/// Exact per-arm statistics over `x` (length d): `A_a`, `A_a⁻¹`, `b_a`, `s_a = Σ x`, counts, and the
/// arm's model features `m` (length p).
#[derive(Clone, Debug)]
pub struct Arm {
    pub m: Vec<f64>,
    pub a: Vec<f64>,
    pub a_inv: Vec<f64>,
    pub b: Vec<f64>,
    pub s: Vec<f64>,
    pub n: u64,
    pub since_refactor: u64,
}

impl Arm {
    /// An arm without history: `A = λI`, `b = s = 0`.
    pub fn fresh(d: usize, lam: f64, m: Vec<f64>) -> Self {
        Arm {
            m,
            a: scaled_identity(d, lam),
            a_inv: scaled_identity(d, 1.0 / lam),
            b: vec![0.0; d],
            s: vec![0.0; d],
            n: 0,
            since_refactor: 0,
        }
    }

    /// Adds observation `(x, reward)` (`scratch` has length ≥ d).
    pub fn observe(&mut self, x: &[f64], reward: f64, refactor_every: u64, scratch: &mut [f64]) {
        let d = x.len();
        rank_one_update(
            &mut self.a,
            &mut self.a_inv,
            &mut self.since_refactor,
            d,
            x,
            refactor_every,
            &mut scratch[..d],
        );
        crate::linalg::axpy(reward, x, &mut self.b);
        crate::linalg::axpy(1.0, x, &mut self.s);
        self.n += 1;
    }

    /// Snapshot layout: `m (p f64), n u64, since_refactor u64, A (d²), A⁻¹ (d²), b (d), s (d)`.
    pub fn encode(&self, w: &mut Writer) {
        w.f64s(&self.m);
        w.u64(self.n);
        w.u64(self.since_refactor);
        w.f64s(&self.a);
        w.f64s(&self.a_inv);
        w.f64s(&self.b);
        w.f64s(&self.s);
    }

    pub fn decode(r: &mut Reader<'_>, d: usize, p: usize) -> CoreResult<Self> {
        let m = r.f64s(p, "model features")?;
        let n = r.u64("arm n_updates")?;
        let since_refactor = r.u64("arm refactor counter")?;
        Ok(Arm {
            m,
            n,
            since_refactor,
            a: r.f64s(d * d, "arm A")?,
            a_inv: r.f64s(d * d, "arm A inverse")?,
            b: r.f64s(d, "arm b")?,
            s: r.f64s(d, "arm s")?,
        })
    }
}

/// Adds `v vᵀ` to `A` and brings `A⁻¹` up to date: Sherman-Morrison, or a Cholesky re-factorization
/// every `refactor_every` updates of this matrix.
pub fn rank_one_update(
    a: &mut [f64],
    a_inv: &mut Vec<f64>,
    since_refactor: &mut u64,
    n: usize,
    v: &[f64],
    refactor_every: u64,
    scratch: &mut [f64],
) {
    add_outer(a, n, v);
    *since_refactor += 1;
    if *since_refactor >= refactor_every {
        if let Some(inv) = cholesky_inverse(a, n) {
            *a_inv = inv;
            *since_refactor = 0;
            return;
        }
    }
    if !sherman_morrison(a_inv, n, v, scratch) {
        // Unreachable for a positive definite inverse; recover from A if it ever happens.
        if let Some(inv) = cholesky_inverse(a, n) {
            *a_inv = inv;
            *since_refactor = 0;
        }
    }
}
