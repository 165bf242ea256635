//! Hybrid statistics: a shared ridge regression over `z = x' ⊗ m'` plus a per-arm one over `x`
//! (docs/core.md, "Hybrid statistics").
//!
//! Scoring reads per arm a *hot* row `[A_a⁻¹ (d×d) | packed outer product of m'_a]`; the shared variance
//! is `dot(packed G, packed m'm'ᵀ)` with `G` contracted from `A_0⁻¹` and `x'` once per request (from `Q`,
//! see [`build_q`], in O(k²/4)). The mean is `g_0 + w·h_a` with `w = A_a⁻¹x` and the per-arm pair
//! `(g_0, h_a)` of [`MeanCache`], which depends on `β` but not on `x`.
//!
//! The hot rows, `β`, `Q` and the mean cache are derived data: they are recomputed from the exact
//! statistics by the same code after every update (the mean cache lazily, at the next scoring) and after
//! a snapshot restore, so a restored bandit scores bit-identically.

use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use super::ridge::{
    decode_prior, decode_stamp, discount, rank_one_update, update_inverse, Arm, Forgetting, Ridge,
};
use super::{ArmStats, SharedStats, Statistics};
use crate::error::{CoreError, CoreResult};
use crate::features;
use crate::linalg::{
    add_outers_symmetric, axpy, combine_rows, dot, matvec, packed_len, packed_outer,
    scaled_identity,
};
use crate::params::Params;
use crate::simd::{self, Simd};
use crate::snapshot::{Reader, Writer};

/// Largest accepted `joint_dim = (d+1)(p+1)` (two k×k matrices are kept).
pub const MAX_JOINT_DIM: usize = 4096;

pub(super) fn check_dims(device_dim: usize, model_dim: usize) -> CoreResult<()> {
    let k = features::joint_dim(device_dim, model_dim);
    if k > MAX_JOINT_DIM {
        return Err(CoreError::invalid(format!(
            "joint_dim (device_dim+1)*(model_dim+1) = {k} exceeds the maximum {MAX_JOINT_DIM}"
        )));
    }
    Ok(())
}

/// Outer products `z zᵀ` that may wait in [`Shared::pending`] before they are added to `A_0` (bounds its
/// memory at `PENDING_MAX · k` numbers).
const PENDING_MAX: usize = 32;

/// Exact shared statistics.
#[derive(Clone, Debug)]
struct Shared {
    /// `A_0`, up to the outer products of `pending`: only a refactorization (Cholesky every
    /// `refactor_every` updates), the forgetting's discount and the snapshot read `A_0` itself — the
    /// updates keep `A_0⁻¹` by Sherman-Morrison — so without forgetting the `z` of each update waits here,
    /// and what waits is added when one of those needs `A_0` or `PENDING_MAX` wait, in one pass over the
    /// upper triangle mirrored (`linalg::add_outers_symmetric`: the same bits as adding each at its
    /// update, half the work). Measured (k = 78, batches of 2,048): 3.7–4.1 → 3.3–3.5 µs per update.
    a: Vec<f64>,
    /// The `z` vectors (k each, concatenated, oldest first) not yet added to `a`.
    pending: Vec<f64>,
    a_inv: Vec<f64>,
    b: Vec<f64>,
    /// Prior diagonal of `A_0` (`λ` per coordinate without forgetting).
    prior: Vec<f64>,
    /// Cached `β = A_0⁻¹ b_0`.
    beta: Vec<f64>,
    n: u64,
    since_refactor: u64,
    /// Clock value of the last update (every update touches the shared statistics, so always the clock).
    stamp: u64,
}

/// Adds the waiting outer products `pending` to `a` (and empties it).
fn add_pending(a: &mut [f64], k: usize, pending: &mut Vec<f64>) {
    if !pending.is_empty() {
        simd::run(
            Simd::Best,
            #[inline(always)]
            || add_outers_symmetric(a, k, pending),
        );
        pending.clear();
    }
}

impl Shared {
    /// Adds the waiting outer products to `a`.
    fn settle(&mut self, k: usize) {
        add_pending(&mut self.a, k, &mut self.pending);
    }

    /// `A_0` with the waiting outer products added (a copy when some are waiting).
    fn settled_a(&self, k: usize) -> std::borrow::Cow<'_, [f64]> {
        if self.pending.is_empty() {
            return std::borrow::Cow::Borrowed(&self.a);
        }
        let mut a = self.a.clone();
        add_outers_symmetric(&mut a, k, &self.pending);
        std::borrow::Cow::Owned(a)
    }

    /// `ridge::rank_one_update` of the shared statistics by `z`, with `A_0 += z zᵀ` left waiting unless
    /// a refactorization needs `A_0` now: the same bits in `A_0⁻¹` (and in `A_0` once settled).
    fn rank_one_update(&mut self, k: usize, z: &[f64], refactor_every: u64, scratch: &mut [f64]) {
        self.pending.extend_from_slice(z);
        let pending = &mut self.pending;
        update_inverse(
            &mut self.a,
            &mut self.a_inv,
            &mut self.since_refactor,
            k,
            z,
            refactor_every,
            scratch,
            |a| add_pending(a, k, pending),
        );
        if self.pending.len() >= PENDING_MAX * k {
            self.settle(k);
        }
    }
}

/// Data derived from the shared statistics that scoring needs, computed at the first scoring after a
/// change rather than at every update (updates often come in runs, e.g. a log replay), and then reused by
/// every scoring until the next update: `Q` for the shared variance, and per arm the row `[g_0 | h_a]`
/// (length d+1) with `g = reshape(β, (d+1, p+1)) m'_a` and `h_a = b_a − g_0 s_a + P_a ⊙ g_{1:}` (`P_a` the
/// arm's prior diagonal, `λ` everywhere without forgetting), so that
/// `mean = zᵀβ + xᵀθ_a = g_0 + w·h_a` (docs/core.md; the `x·g_{1:}` terms cancel). It depends on `β` and
/// the arm but not on `x`, so it is computed once per `β` instead of at every request. A row is fresh when
/// its stamp equals `HybridStats::version`; stale rows are recomputed at the next scoring that needs them
/// by [`mean_row`], which reads only exact statistics and `β`: the values do not depend on when (or in
/// which process) they were computed.
#[derive(Debug, Default)]
struct MeanCache {
    stamp: Vec<u64>,
    rows: Vec<f64>,
    /// Per arm `[m'_a | b_a | s_a | P_a]` (length p+1+3d), a contiguous copy of the inputs of a row so that a
    /// refresh streams one buffer (kept up to date with the arm's statistics, like the hot rows).
    src: Vec<f64>,
    /// Every row is fresh for this version (fast path for scoring all arms).
    all_fresh: u64,
    /// `Q` of [`build_q`] (a function of `A_0⁻¹`), fresh when `q_fresh == version`.
    q: Vec<f64>,
    q_fresh: u64,
}

#[derive(Debug)]
pub struct HybridStats {
    d: usize,
    p1: usize,
    k: usize,
    lam: f64,
    refactor_every: u64,
    forget: Forgetting,
    stride: usize,
    arms: Vec<Arm>,
    hot: Vec<f64>,
    shared: Shared,
    /// Bumped whenever `β` (or any arm's statistics) changes; 0 is never current.
    version: u64,
    cache: RwLock<MeanCache>,
    scratch: Vec<f64>,
}

/// `Q` for `C = A_0⁻¹` (`k = d1·p1`, blocks `C_ik[j, l] = C[(i, j), (k, l)]` of size `p1 × p1`): one row per
/// pair `i ≤ k` of `0..d1`, in packed order, holding `C_ik` packed like `pack_sym_doubled` (diagonal
/// `C_ik[j, j]`, then `C_ik[j, l] + C_ik[l, j]` for `j < l`; `C_ik[l, j]` is read as `C[(k, j), (i, l)]`,
/// its mirror image, so that both operands are contiguous).
///
/// Why: `G = Σ_{i,k} x'_i x'_k C_ik`, and since `C` is symmetric (`C_ki = C_ikᵀ`) the pair `(k, i)`
/// contributes to the packed-doubled `G` exactly what `(i, k)` does, so packed `G` = `Σ_{i ≤ k} c_ik Q_ik`
/// with `c_ik = x'_i x'_k`, doubled for `i < k`. That reads `(d1(d1+1)/2)·(p1(p1+1)/2) ≈ k²/4` numbers
/// per request instead of the `k²` of contracting `C` directly.
#[inline(always)]
fn build_q(c: &[f64], d1: usize, p1: usize, q: &mut Vec<f64>) {
    let k = d1 * p1;
    let pl = packed_len(p1);
    q.resize(packed_len(d1) * pl, 0.0);
    let mut out = q.chunks_exact_mut(pl);
    for bi in 0..d1 {
        // The p1 rows of C that hold the blocks C_bi,bk for every bk.
        let rows = &c[bi * p1 * k..(bi + 1) * p1 * k];
        for bk in bi..d1 {
            let qr = out.next().expect("packed_len(d1) rows");
            let mut t = 0;
            for j in 0..p1 {
                // C_ik[j, ·] is row (bi, j) of C; C_ik[·, j] is, by symmetry, row (bk, j) of C.
                let r1 = &rows[j * k + bk * p1..j * k + bk * p1 + p1];
                let r2 = &c[(bk * p1 + j) * k + bi * p1..(bk * p1 + j) * k + bi * p1 + p1];
                qr[t] = r1[j];
                let n = p1 - j - 1;
                for ((o, &u), &v) in qr[t + 1..t + 1 + n]
                    .iter_mut()
                    .zip(&r1[j + 1..])
                    .zip(&r2[j + 1..])
                {
                    *o = u + v;
                }
                t += 1 + n;
            }
        }
    }
}

/// Packed upper triangle of `v vᵀ` with off-diagonals doubled (the order of `pack_sym_doubled`).
fn packed_outer_doubled(v: &[f64], out: &mut [f64]) {
    let mut t = 0;
    for (i, &vi) in v.iter().enumerate() {
        out[t] = vi * vi;
        t += 1;
        for &vj in &v[i + 1..] {
            out[t] = 2.0 * (vi * vj);
            t += 1;
        }
    }
}

/// A [`MeanCache`] row `[g_0 | h]` from its source row `[m' | b | s | P]` (`beta_t` is `reshape(β)ᵀ`,
/// `(p+1) × (d+1)`, so that `g = Σ_j m'_j beta_t[j, :]` with the `d+1` sums in registers), written
/// through `out`. (`B_a β = s_a g_0 + (A_a − diag P_a) g_{1:}`: the data part of `A_a` is `A_a − P_a`.)
#[inline(always)]
fn mean_row(d: usize, p1: usize, src: &[f64], beta_t: &[f64], out: &mut [f64]) {
    let (mp, rest) = src.split_at(p1);
    let (b, rest) = rest.split_at(d);
    let (s, prior) = rest.split_at(d);
    combine_rows(mp, beta_t, d + 1, out);
    let g0 = out[0];
    for (((o, &bj), &sj), &pj) in out[1..].iter_mut().zip(b).zip(s).zip(prior) {
        *o = bj - g0 * sj + pj * *o;
    }
}

impl HybridStats {
    fn mean_src_width(&self) -> usize {
        self.p1 + 3 * self.d
    }

    /// Recomputes arm `i`'s hot row from its exact statistics.
    fn rebuild_hot(&mut self, i: usize) {
        let (d, p1) = (self.d, self.p1);
        let arm = &self.arms[i];
        let row = &mut self.hot[i * self.stride..(i + 1) * self.stride];
        let (ainv, mpack) = row.split_at_mut(d * d);
        ainv.copy_from_slice(&arm.a_inv);
        packed_outer(&features::with_bias(&arm.m), &mut mpack[..packed_len(p1)]);
    }

    /// Copies arm `i`'s `[m' | b | s]` into the mean cache's source buffer.
    fn rebuild_mean_src(&mut self, i: usize) {
        let ws = self.mean_src_width();
        let arm = &self.arms[i];
        let cache = self.cache.get_mut().unwrap_or_else(PoisonError::into_inner);
        let row = &mut cache.src[i * ws..(i + 1) * ws];
        let (mp, rest) = row.split_at_mut(self.p1);
        let (b, rest) = rest.split_at_mut(self.d);
        let (s, prior) = rest.split_at_mut(self.d);
        mp[0] = 1.0;
        mp[1..].copy_from_slice(&arm.m);
        b.copy_from_slice(&arm.b);
        s.copy_from_slice(&arm.s);
        prior.copy_from_slice(&arm.prior);
    }

    /// Recomputes `Q` if stale and the stale rows among `arms` (all arms if `None`).
    #[inline(always)]
    fn refresh_kernel(&self, c: &mut MeanCache, arms: Option<&[usize]>) {
        let v = self.version;
        let (d, d1, p1) = (self.d, self.d + 1, self.p1);
        if c.q_fresh != v {
            build_q(&self.shared.a_inv, d1, p1, &mut c.q);
            c.q_fresh = v;
        }
        let mut beta_t = vec![0.0; d1 * p1];
        for (i, row) in self.shared.beta.chunks_exact(p1).enumerate() {
            for (j, &bij) in row.iter().enumerate() {
                beta_t[j * d1 + i] = bij;
            }
        }
        let ws = self.mean_src_width();
        // Plain loops rather than a shared closure: the per-arm work must be inlined into the AVX2 build.
        match arms {
            None => {
                for i in 0..self.arms.len() {
                    if c.stamp[i] != v {
                        let src = &c.src[i * ws..(i + 1) * ws];
                        mean_row(d, p1, src, &beta_t, &mut c.rows[i * d1..(i + 1) * d1]);
                        c.stamp[i] = v;
                    }
                }
                c.all_fresh = v;
            }
            Some(list) => {
                for &i in list {
                    if c.stamp[i] != v {
                        let src = &c.src[i * ws..(i + 1) * ws];
                        mean_row(d, p1, src, &beta_t, &mut c.rows[i * d1..(i + 1) * d1]);
                        c.stamp[i] = v;
                    }
                }
            }
        }
    }

    /// Read access to the mean cache with every row in `arms` (all arms if `None`) fresh, recomputing
    /// stale rows first. Callers hold `&self`, so `β` cannot change meanwhile.
    fn fresh_means(&self, arms: Option<&[usize]>, simd: Simd) -> RwLockReadGuard<'_, MeanCache> {
        let v = self.version;
        let all_fresh = |c: &MeanCache| {
            c.q_fresh == v
                && match arms {
                    None => c.all_fresh == v,
                    Some(list) => list.iter().all(|&i| c.stamp[i] == v),
                }
        };
        let read = || self.cache.read().unwrap_or_else(PoisonError::into_inner);
        {
            let c = read();
            if all_fresh(&c) {
                return c;
            }
        }
        let mut c = self.cache.write().unwrap_or_else(PoisonError::into_inner);
        if !all_fresh(&c) {
            simd::run(
                simd,
                #[inline(always)]
                || self.refresh_kernel(&mut c, arms),
            );
        }
        drop(c);
        read()
    }

    /// `(mean, var)` of arm `i` (each variance part clamped at 0 against round-off).
    #[inline(always)]
    fn mean_var(
        &self,
        packed_g: &[f64],
        means: &[f64],
        w: &mut [f64],
        x: &[f64],
        i: usize,
    ) -> (f64, f64) {
        let d = self.d;
        let row = &self.hot[i * self.stride..(i + 1) * self.stride];
        let (ainv, mpack) = row.split_at(d * d);
        // w = A_a⁻¹ x as a combination of rows (A_a⁻¹ is exactly symmetric).
        combine_rows(x, ainv, d, w);
        let var_arm = dot(w, x);
        let var_shared = dot(packed_g, mpack);
        let gh = &means[i * (d + 1)..(i + 1) * (d + 1)];
        let mean = gh[0] + dot(w, &gh[1..]);
        (mean, var_arm.max(0.0) + var_shared.max(0.0))
    }

    /// The scoring kernel (see [`DisjointStats`](super::DisjointStats) for why the loops are spelled out).
    #[inline(always)]
    fn scan_kernel<F: FnMut(usize, usize, f64, f64)>(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        cache: &MeanCache,
        mut f: F,
    ) {
        let d = self.d;
        // packed G (off-diagonals doubled) = Σ_{i ≤ k} c_ik Q_ik with c = packed x'x'ᵀ, off-diagonals
        // doubled (see `build_q`).
        let xp = features::with_bias(x);
        let mut coef = vec![0.0; packed_len(d + 1)];
        packed_outer_doubled(&xp, &mut coef);
        let pl = packed_len(self.p1);
        let mut packed_g = vec![0.0; pl];
        combine_rows(&coef, &cache.q, pl, &mut packed_g);
        let mut w = vec![0.0; d];
        let means = &cache.rows[..];
        match arms {
            None => {
                for i in 0..self.arms.len() {
                    let (mean, var) = self.mean_var(&packed_g, means, &mut w, x, i);
                    f(i, i, mean, var);
                }
            }
            Some(list) => {
                for (pos, &i) in list.iter().enumerate() {
                    let (mean, var) = self.mean_var(&packed_g, means, &mut w, x, i);
                    f(pos, i, mean, var);
                }
            }
        }
    }

    /// `g = reshape(β, (d+1, p+1)) m'` for model features `m`.
    fn beta_times(&self, m: &[f64]) -> Vec<f64> {
        let mp = features::with_bias(m);
        self.shared
            .beta
            .chunks_exact(self.p1)
            .map(|r| dot(r, &mp))
            .collect()
    }
}

impl Statistics for HybridStats {
    fn new(params: &Params) -> Self {
        let d = params.device_dim;
        let p1 = params.model_dim + 1;
        let k = features::joint_dim(d, params.model_dim);
        let lam = params.lam;
        let mut s = HybridStats {
            d,
            p1,
            k,
            lam,
            refactor_every: params.refactor_every,
            forget: Forgetting::new(params.half_life, 0),
            stride: d * d + packed_len(p1),
            arms: Vec::new(),
            hot: Vec::new(),
            shared: Shared {
                a: scaled_identity(k, lam),
                pending: Vec::new(),
                a_inv: scaled_identity(k, 1.0 / lam),
                b: vec![0.0; k],
                prior: vec![lam; k],
                beta: vec![0.0; k],
                n: 0,
                since_refactor: 0,
                stamp: 0,
            },
            version: 1,
            cache: RwLock::new(MeanCache::default()),
            scratch: vec![0.0; d.max(k)],
        };
        s.refresh();
        s
    }

    fn add_arm(&mut self, m: Vec<f64>) {
        let i = self.arms.len();
        self.arms.push(Arm::fresh(self.d, self.lam, m));
        self.hot.resize((i + 1) * self.stride, 0.0);
        self.rebuild_hot(i);
        let (w, ws) = (self.d + 1, self.mean_src_width());
        let cache = self.cache.get_mut().unwrap_or_else(PoisonError::into_inner);
        cache.stamp.push(0);
        cache.rows.resize((i + 1) * w, 0.0);
        cache.src.resize((i + 1) * ws, 0.0);
        cache.all_fresh = 0;
        self.rebuild_mean_src(i);
    }

    fn remove_arm(&mut self, i: usize) {
        self.arms.remove(i);
        self.hot.drain(i * self.stride..(i + 1) * self.stride);
        let (w, ws) = (self.d + 1, self.mean_src_width());
        let cache = self.cache.get_mut().unwrap_or_else(PoisonError::into_inner);
        cache.stamp.remove(i);
        cache.rows.drain(i * w..(i + 1) * w);
        cache.src.drain(i * ws..(i + 1) * ws);
    }

    fn model_features(&self, i: usize) -> &[f64] {
        &self.arms[i].m
    }

    fn observation_scale(&self, i: usize, x: &[f64]) -> f64 {
        let m = &self.arms[i].m;
        (1.0 + dot(x, x)) * (1.0 + dot(m, m))
    }

    fn apply(&mut self, i: usize, x: &[f64], reward: f64) {
        let (k, every, lam) = (self.k, self.refactor_every, self.lam);
        self.forget.tick();
        let arm = &mut self.arms[i];
        arm.observe(x, reward, &self.forget, lam, every, &mut self.scratch);
        let xp = features::with_bias(x);
        let mp = features::with_bias(&arm.m);
        let mut z = vec![0.0; k];
        features::outer_into(&xp, &mp, &mut z);
        let sh = &mut self.shared;
        // With forgetting every update's discount reads A_0 (scales it, tops its diagonal up): nothing
        // waits, and A_0 is updated at once as before.
        let defer = !self.forget.is_on();
        if !defer {
            sh.settle(k); // (something waits only after the half-life was changed from 0)
        }
        discount(
            &self.forget,
            lam,
            k,
            self.forget.clock,
            Ridge {
                a: &mut sh.a,
                a_inv: &mut sh.a_inv,
                prior: &mut sh.prior,
                stamp: &mut sh.stamp,
                since_refactor: &mut sh.since_refactor,
            },
            &mut [&mut sh.b],
            &mut self.scratch[..k],
        );
        if defer {
            sh.rank_one_update(k, &z, every, &mut self.scratch[..k]);
        } else {
            rank_one_update(
                &mut sh.a,
                &mut sh.a_inv,
                &mut sh.since_refactor,
                k,
                &z,
                every,
                &mut self.scratch[..k],
            );
        }
        axpy(reward, &z, &mut sh.b);
        sh.n += 1;
        self.rebuild_hot(i);
        self.rebuild_mean_src(i);
    }

    /// Recomputes the cached `β = A_0⁻¹ b_0` and marks `Q` and every mean-cache row stale.
    fn refresh(&mut self) {
        self.version += 1;
        let sh = &mut self.shared;
        sh.beta.resize(self.k, 0.0);
        let k = self.k;
        // k×k, once per update (or batch): the AVX2 build when the CPU has it (bit-identical, simd.rs).
        simd::run(
            Simd::Best,
            #[inline(always)]
            || matvec(&sh.a_inv, k, &sh.b, &mut sh.beta),
        );
    }

    fn scan<F: FnMut(usize, usize, f64, f64)>(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        simd: Simd,
        f: F,
    ) {
        let cache = self.fresh_means(arms, simd);
        simd::run(
            simd,
            #[inline(always)]
            || self.scan_kernel(x, arms, &cache, f),
        )
    }

    fn predict_mean(&self, i: usize, x: &[f64]) -> f64 {
        // g_0 + w·(b_a − g_0 s_a + P_a ⊙ g_{1:}) with w = A_a⁻¹x and g = reshape(β) m'_a, as in the mean
        // cache (P_a the arm's prior diagonal: λ without forgetting, decayed and topped up with it).
        let arm = &self.arms[i];
        let d = self.d;
        let mut w = vec![0.0; d];
        matvec(&arm.a_inv, d, x, &mut w);
        let g = self.beta_times(&arm.m);
        let g0 = g[0];
        let h: Vec<f64> = (0..d)
            .map(|j| arm.b[j] - g0 * arm.s[j] + arm.prior[j] * g[j + 1])
            .collect();
        g0 + dot(&w, &h)
    }

    fn arm_stats(&self, i: usize) -> ArmStats {
        let arm = &self.arms[i];
        let d = self.d;
        // θ_a = A_a⁻¹ (b_a − s_a g_0 − (A_a − diag P_a) g_{1:})
        let g = self.beta_times(&arm.m);
        let (g0, g1) = (g[0], &g[1..]);
        let mut ag1 = vec![0.0; d];
        matvec(&arm.a, d, g1, &mut ag1);
        let rhs: Vec<f64> = (0..d)
            .map(|j| arm.b[j] - arm.s[j] * g0 - (ag1[j] - arm.prior[j] * g1[j]))
            .collect();
        let mut theta = vec![0.0; d];
        matvec(&arm.a_inv, d, &rhs, &mut theta);
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
        let sh = &self.shared;
        Some(SharedStats {
            n_updates: sh.n,
            beta: sh.beta.clone(),
            a: sh.settled_a(self.k).into_owned(),
            a_inv: sh.a_inv.clone(),
            b: sh.b.clone(),
        })
    }

    /// `has_shared = 1, n u64, since_refactor u64, stamp u64, A_0 (k²), A_0⁻¹ (k²), b_0 (k), P_0 (k)`.
    fn encode_shared(&self, w: &mut Writer) {
        let sh = &self.shared;
        w.u8(1);
        w.u64(sh.n);
        w.u64(sh.since_refactor);
        w.u64(sh.stamp);
        w.f64s(&sh.settled_a(self.k));
        w.f64s(&sh.a_inv);
        w.f64s(&sh.b);
        w.f64s(&sh.prior);
    }

    fn encode_arm(&self, i: usize, w: &mut Writer) {
        self.arms[i].encode(w);
    }

    fn decode_shared(&mut self, r: &mut Reader<'_>) -> CoreResult<()> {
        super::expect_shared_flag(r, true)?;
        let k = self.k;
        let sh = &mut self.shared;
        sh.n = r.u64("shared n_updates")?;
        sh.since_refactor = r.u64("shared refactor counter")?;
        sh.stamp = decode_stamp(r, self.forget.clock, "shared last-update stamp")?;
        sh.a = r.f64s(k * k, "shared A")?;
        sh.pending.clear();
        sh.a_inv = r.f64s(k * k, "shared A inverse")?;
        sh.b = r.f64s(k, "shared b")?;
        sh.prior = decode_prior(r, k, self.lam, "shared prior")?;
        Ok(())
    }

    fn decode_arm(&mut self, r: &mut Reader<'_>) -> CoreResult<()> {
        self.arms
            .push(Arm::decode(r, self.d, self.p1 - 1, self.lam)?);
        Ok(())
    }

    fn rebuild(&mut self) {
        let n = self.arms.len();
        self.hot.clear();
        self.hot.resize(n * self.stride, 0.0);
        let (w, ws) = (self.d + 1, self.mean_src_width());
        *self.cache.get_mut().unwrap_or_else(PoisonError::into_inner) = MeanCache {
            stamp: vec![0; n],
            rows: vec![0.0; n * w],
            src: vec![0.0; n * ws],
            ..MeanCache::default()
        };
        for i in 0..n {
            self.rebuild_hot(i);
            self.rebuild_mean_src(i);
        }
        self.refresh();
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
