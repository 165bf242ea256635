//! The pure-Rust bandit: state, scoring, selection, updates, arms (docs/core.md).
//!
//! Storage: each arm keeps its exact statistics (`A_a`, `A_a⁻¹`, `b_a`, `s_a`, counts) in [`Arm`], and a
//! *hot* row of `stride` floats in one contiguous buffer across arms that the scoring loop reads:
//!
//! * disjoint statistics: `[packed upper triangle of A_a⁻¹, off-diagonals doubled | θ_a]`, so
//!   `var = dot(hot, packed_outer(x))` and `mean = θ_a·x` are two contiguous dot products;
//! * hybrid statistics: `[A_a⁻¹ (d×d) | packed outer product of m'_a]`; the shared variance is
//!   `dot(packed G, packed m'm'ᵀ)` with `G` contracted from `A_0⁻¹` and `x'` once per request (from `Q`,
//!   see [`build_q`], in O(k²/4)). The mean is `g_0 + w·h_a` with `w = A_a⁻¹x` and the per-arm pair
//!   `(g_0, h_a)` of [`MeanCache`], which depends on `β` but not on `x`.
//!
//! The hot rows, `β`, `Q` and the mean cache are derived data: they are recomputed from the exact
//! statistics by the same code after every update (the mean cache lazily, at the next scoring) and after
//! a snapshot restore, so a restored bandit scores bit-identically.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use crate::error::{CoreError, CoreResult};
use crate::features;
use crate::linalg::{
    add_outer, axpy, cholesky_inverse, combine_rows, dot, matvec, pack_sym_doubled, packed_len,
    packed_outer, scaled_identity, sherman_morrison,
};
use crate::rng::{Block, SplitMix64};

/// Largest accepted `device_dim`.
pub const MAX_DEVICE_DIM: usize = 1024;
/// Largest accepted `model_dim`.
pub const MAX_MODEL_DIM: usize = 1024;
/// Largest accepted `joint_dim = (d+1)(p+1)` for hybrid statistics (two k×k matrices are kept).
pub const MAX_JOINT_DIM: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    DisjointLinUcb,
    HybridLinUcb,
    LinTs,
}

impl Policy {
    pub const NAMES: [&'static str; 3] = ["disjoint_linucb", "hybrid_linucb", "lin_ts"];

    pub fn parse(name: &str) -> CoreResult<Self> {
        match name {
            "disjoint_linucb" => Ok(Policy::DisjointLinUcb),
            "hybrid_linucb" => Ok(Policy::HybridLinUcb),
            "lin_ts" => Ok(Policy::LinTs),
            _ => Err(CoreError::invalid(format!(
                "unknown policy {name:?}; expected one of {:?}",
                Self::NAMES
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        Self::NAMES[self.code() as usize]
    }

    pub fn code(self) -> u8 {
        match self {
            Policy::DisjointLinUcb => 0,
            Policy::HybridLinUcb => 1,
            Policy::LinTs => 2,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Policy::DisjointLinUcb),
            1 => Some(Policy::HybridLinUcb),
            2 => Some(Policy::LinTs),
            _ => None,
        }
    }
}

/// Validated construction parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    pub policy: Policy,
    pub device_dim: usize,
    pub model_dim: usize,
    pub alpha: f64,
    pub lam: f64,
    pub refactor_every: u64,
    pub seed: u64,
}

impl Params {
    /// Validates raw parameters (integers as `i64` so that negative values get a clear message).
    pub fn new(
        policy: &str,
        device_dim: i64,
        model_dim: i64,
        alpha: f64,
        lam: f64,
        refactor_every: i64,
        seed: u64,
    ) -> CoreResult<Self> {
        let policy = Policy::parse(policy)?;
        if device_dim < 1 || device_dim as u64 > MAX_DEVICE_DIM as u64 {
            return Err(CoreError::invalid(format!(
                "device_dim must be in [1, {MAX_DEVICE_DIM}], got {device_dim}"
            )));
        }
        if model_dim < 0 || model_dim as u64 > MAX_MODEL_DIM as u64 {
            return Err(CoreError::invalid(format!(
                "model_dim must be in [0, {MAX_MODEL_DIM}], got {model_dim}"
            )));
        }
        let (device_dim, model_dim) = (device_dim as usize, model_dim as usize);
        let p = Params {
            policy,
            device_dim,
            model_dim,
            alpha,
            lam,
            refactor_every: refactor_every.max(0) as u64,
            seed,
        };
        if p.is_hybrid() && features::joint_dim(device_dim, model_dim) > MAX_JOINT_DIM {
            return Err(CoreError::invalid(format!(
                "joint_dim (device_dim+1)*(model_dim+1) = {} exceeds the maximum {MAX_JOINT_DIM}",
                features::joint_dim(device_dim, model_dim)
            )));
        }
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(CoreError::invalid(format!(
                "alpha must be a finite number >= 0, got {alpha}"
            )));
        }
        if !(lam.is_finite() && lam > 0.0) {
            return Err(CoreError::invalid(format!(
                "lam must be a finite number > 0, got {lam}"
            )));
        }
        if refactor_every < 1 {
            return Err(CoreError::invalid(format!(
                "refactor_every must be >= 1, got {refactor_every}"
            )));
        }
        Ok(p)
    }

    /// Whether the statistics are hybrid (shared over `z` + per arm), as opposed to disjoint.
    pub fn is_hybrid(&self) -> bool {
        match self.policy {
            Policy::DisjointLinUcb => false,
            Policy::HybridLinUcb => true,
            Policy::LinTs => self.model_dim > 0,
        }
    }

    /// `(d+1)(p+1)` for hybrid statistics, 0 for disjoint ones.
    pub fn joint_dim(&self) -> usize {
        if self.is_hybrid() {
            features::joint_dim(self.device_dim, self.model_dim)
        } else {
            0
        }
    }
}

/// Exact per-arm statistics.
#[derive(Clone, Debug)]
pub(crate) struct Arm {
    pub id: Arc<str>,
    /// Model features `m` (length p).
    pub m: Vec<f64>,
    pub a: Vec<f64>,
    pub a_inv: Vec<f64>,
    pub b: Vec<f64>,
    pub s: Vec<f64>,
    pub n: u64,
    pub since_refactor: u64,
}

/// Exact shared statistics (hybrid only).
#[derive(Clone, Debug)]
pub(crate) struct Shared {
    pub a: Vec<f64>,
    pub a_inv: Vec<f64>,
    pub b: Vec<f64>,
    /// Cached `β = A_0⁻¹ b_0`.
    pub beta: Vec<f64>,
    pub n: u64,
    pub since_refactor: u64,
}

/// Per-arm results of [`Bandit::score`], in scoring order.
#[derive(Clone, Debug, Default)]
pub struct Scores {
    pub ids: Vec<Arc<str>>,
    pub mean: Vec<f64>,
    pub bonus: Vec<f64>,
    pub total: Vec<f64>,
}

/// The result of [`Bandit::select`].
#[derive(Clone, Debug)]
pub struct Choice {
    pub id: Arc<str>,
    pub mean: f64,
    pub bonus: f64,
    pub total: f64,
}

/// A copy of one arm's statistics.
#[derive(Clone, Debug)]
pub struct ArmStats {
    pub n_updates: u64,
    pub theta: Vec<f64>,
    pub model_features: Vec<f64>,
    pub a: Vec<f64>,
    pub a_inv: Vec<f64>,
    pub b: Vec<f64>,
}

/// A copy of the shared statistics.
#[derive(Clone, Debug)]
pub struct SharedStats {
    pub n_updates: u64,
    pub beta: Vec<f64>,
    pub a: Vec<f64>,
    pub a_inv: Vec<f64>,
    pub b: Vec<f64>,
}

/// Per-request data, built once per score/select call.
struct Ctx<'x> {
    x: &'x [f64],
    /// Disjoint: packed outer product of `x`. Hybrid: packed `G` (off-diagonals doubled).
    packed: Vec<f64>,
    /// Hybrid scratch: `w = A_a⁻¹ x` (length d).
    w: Vec<f64>,
    /// Hybrid: the rows of [`MeanCache`], fresh for every scored arm.
    means: &'x [f64],
}

/// What scoring reads from a fresh [`MeanCache`] (empty for disjoint statistics).
#[derive(Clone, Copy)]
struct Derived<'c> {
    means: &'c [f64],
    q: &'c [f64],
}

/// Hybrid only: data derived from the shared statistics that scoring needs, computed at the first scoring
/// after a change rather than at every update (updates often come in runs, e.g. a log replay), and then
/// reused by every scoring until the next update: `Q` for the shared variance, and per arm the row `[g_0 | h_a]` (length d+1) with `g = reshape(β, (d+1, p+1)) m'_a` and
/// `h_a = b_a − g_0 s_a + λ g_{1:}`, so that `mean = zᵀβ + xᵀθ_a = g_0 + w·h_a` (docs/core.md; the `x·g_{1:}`
/// terms cancel). It depends on `β` and the arm but not on `x`, so it is computed once per `β` (costing
/// what one scoring pass used to spend on it) instead of at every request. A row is fresh when its stamp
/// equals `Bandit::beta_version`; stale rows are recomputed at the next scoring that needs them, by
/// [`Bandit::mean_row`], which reads only exact statistics and `β`: the values do not depend on when
/// (or in which process) they were computed.
#[derive(Debug, Default)]
struct MeanCache {
    stamp: Vec<u64>,
    rows: Vec<f64>,
    /// Per arm `[m'_a | b_a | s_a]` (length p+1+2d), a contiguous copy of the inputs of a row so that a
    /// refresh streams one buffer (kept up to date with the arm's statistics, like the hot rows).
    src: Vec<f64>,
    /// Every row is fresh for this version (fast path for scoring all arms).
    all_fresh: u64,
    /// `Q` of [`build_q`] (a function of `A_0⁻¹`), fresh when `q_fresh == beta_version`.
    q: Vec<f64>,
    q_fresh: u64,
}

#[derive(Debug)]
pub struct Bandit {
    pub(crate) params: Params,
    hybrid: bool,
    d: usize,
    p1: usize,
    k: usize,
    stride: usize,
    pub(crate) arms: Vec<Arm>,
    index: HashMap<Arc<str>, usize>,
    hot: Vec<f64>,
    pub(crate) shared: Option<Shared>,
    /// Bumped whenever `β` (or any arm's statistics) changes; 0 is never current.
    beta_version: u64,
    mean_cache: RwLock<MeanCache>,
    pub(crate) rng: SplitMix64,
    pub(crate) n_updates: u64,
}

fn check_finite(v: &[f64], what: &str) -> CoreResult<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(CoreError::invalid(format!(
            "{what} contains a non-finite value ({}) at index {i}",
            v[i]
        ))),
    }
}

fn check_len(v: &[f64], expected: usize, what: &str) -> CoreResult<()> {
    if v.len() != expected {
        return Err(CoreError::invalid(format!(
            "{what} has length {}, expected {expected}",
            v.len()
        )));
    }
    Ok(())
}

/// UCB bonus `α·sqrt(var)`, times the `pos`-th normal of the block for Thompson sampling.
#[inline(always)]
fn explore(alpha: f64, var: f64, block: Option<&Block>, pos: usize) -> f64 {
    let bonus = alpha * var.sqrt();
    match block {
        Some(b) => bonus * b.normal(pos as u64),
        None => bonus,
    }
}

/// `Q` for `C = A_0⁻¹` (`k = d1·p1`, blocks `C_ik[j, l] = C[(i, j), (k, l)]` of size `p1 × p1`): one row per
/// pair `i ≤ k` of `0..d1`, in packed order, holding `C_ik` packed like [`pack_sym_doubled`] (diagonal
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

/// Packed upper triangle of `v vᵀ` with off-diagonals doubled (the order of [`pack_sym_doubled`]).
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

/// Adds `v vᵀ` to `A` and brings `A⁻¹` up to date: Sherman-Morrison, or a Cholesky re-factorization
/// every `refactor_every` updates of this matrix.
fn rank_one_update(
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

impl Bandit {
    pub fn new(params: Params) -> Self {
        let hybrid = params.is_hybrid();
        let d = params.device_dim;
        let p1 = params.model_dim + 1;
        let k = params.joint_dim();
        let stride = if hybrid {
            d * d + packed_len(p1)
        } else {
            packed_len(d) + d
        };
        let shared = hybrid.then(|| Shared {
            a: scaled_identity(k, params.lam),
            a_inv: scaled_identity(k, 1.0 / params.lam),
            b: vec![0.0; k],
            beta: vec![0.0; k],
            n: 0,
            since_refactor: 0,
        });
        Bandit {
            params,
            hybrid,
            d,
            p1,
            k,
            stride,
            arms: Vec::new(),
            index: HashMap::new(),
            hot: Vec::new(),
            shared,
            beta_version: 1,
            mean_cache: RwLock::new(MeanCache::default()),
            rng: SplitMix64::new(params.seed),
            n_updates: 0,
        }
        .with_shared_derived()
    }

    fn with_shared_derived(mut self) -> Self {
        self.refresh_beta();
        self
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
    pub fn is_hybrid(&self) -> bool {
        self.hybrid
    }
    pub fn joint_dim(&self) -> usize {
        self.k
    }
    pub fn n_updates(&self) -> u64 {
        self.n_updates
    }
    pub fn len(&self) -> usize {
        self.arms.len()
    }
    pub fn is_empty(&self) -> bool {
        self.arms.is_empty()
    }
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }
    /// Arm ids in insertion order.
    pub fn arm_ids(&self) -> Vec<Arc<str>> {
        self.arms.iter().map(|a| a.id.clone()).collect()
    }
    /// Current generator state (advances with every `lin_ts` score/select).
    pub fn rng_state(&self) -> u64 {
        self.rng.state()
    }

    fn arm_index(&self, id: &str) -> CoreResult<usize> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| CoreError::unknown_arm(id))
    }

    /// Validates model features for a new arm.
    fn check_model_features(&self, m: Option<&[f64]>) -> CoreResult<Vec<f64>> {
        let p = self.params.model_dim;
        match m {
            None if p == 0 => Ok(Vec::new()),
            None => Err(CoreError::invalid(format!(
                "model_features are required: model_dim is {p}"
            ))),
            Some(m) => {
                check_len(m, p, "model_features")?;
                check_finite(m, "model_features")?;
                if !dot(m, m).is_finite() {
                    return Err(CoreError::invalid(
                        "model_features are too large (their squared norm overflows)",
                    ));
                }
                Ok(m.to_vec())
            }
        }
    }

    pub fn add_arm(&mut self, id: &str, model_features: Option<&[f64]>) -> CoreResult<()> {
        if id.is_empty() {
            return Err(CoreError::invalid("arm id must be a non-empty string"));
        }
        if self.index.contains_key(id) {
            return Err(CoreError::invalid(format!("duplicate arm id {id:?}")));
        }
        let m = self.check_model_features(model_features)?;
        let d = self.d;
        let lam = self.params.lam;
        self.push_arm(Arm {
            id: Arc::from(id),
            m,
            a: scaled_identity(d, lam),
            a_inv: scaled_identity(d, 1.0 / lam),
            b: vec![0.0; d],
            s: vec![0.0; d],
            n: 0,
            since_refactor: 0,
        });
        Ok(())
    }

    /// Appends an arm whose statistics are already validated.
    pub(crate) fn push_arm(&mut self, arm: Arm) {
        let i = self.arms.len();
        self.index.insert(arm.id.clone(), i);
        self.arms.push(arm);
        self.hot.resize((i + 1) * self.stride, 0.0);
        self.rebuild_hot(i);
        let (w, ws) = (self.mean_width(), self.mean_src_width());
        let cache = self
            .mean_cache
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        cache.stamp.push(0);
        cache.rows.resize((i + 1) * w, 0.0);
        cache.src.resize((i + 1) * ws, 0.0);
        cache.all_fresh = 0;
        self.rebuild_mean_src(i);
    }

    /// Length of a [`MeanCache`] source row (0 for disjoint statistics).
    fn mean_src_width(&self) -> usize {
        if self.hybrid {
            self.p1 + 2 * self.d
        } else {
            0
        }
    }

    /// Copies arm `i`'s `[m' | b | s]` into the mean cache's source buffer.
    fn rebuild_mean_src(&mut self, i: usize) {
        if !self.hybrid {
            return;
        }
        let ws = self.mean_src_width();
        let arm = &self.arms[i];
        let cache = self
            .mean_cache
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let row = &mut cache.src[i * ws..(i + 1) * ws];
        let (mp, rest) = row.split_at_mut(self.p1);
        let (b, s) = rest.split_at_mut(self.d);
        mp[0] = 1.0;
        mp[1..].copy_from_slice(&arm.m);
        b.copy_from_slice(&arm.b);
        s.copy_from_slice(&arm.s);
    }

    /// Length of a [`MeanCache`] row (0 for disjoint statistics).
    fn mean_width(&self) -> usize {
        if self.hybrid {
            self.d + 1
        } else {
            0
        }
    }

    pub fn remove_arm(&mut self, id: &str) -> CoreResult<()> {
        let i = self.arm_index(id)?;
        self.arms.remove(i);
        self.index.remove(id);
        self.hot.drain(i * self.stride..(i + 1) * self.stride);
        let (w, ws) = (self.mean_width(), self.mean_src_width());
        let cache = self
            .mean_cache
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        cache.stamp.remove(i);
        cache.rows.drain(i * w..(i + 1) * w);
        cache.src.drain(i * ws..(i + 1) * ws);
        for (j, arm) in self.arms.iter().enumerate().skip(i) {
            if let Some(slot) = self.index.get_mut(&arm.id) {
                *slot = j;
            }
        }
        Ok(())
    }

    /// Recomputes arm `i`'s hot row from its exact statistics.
    fn rebuild_hot(&mut self, i: usize) {
        let (d, p1) = (self.d, self.p1);
        let arm = &self.arms[i];
        let row = &mut self.hot[i * self.stride..(i + 1) * self.stride];
        if self.hybrid {
            let (ainv, mpack) = row.split_at_mut(d * d);
            ainv.copy_from_slice(&arm.a_inv);
            packed_outer(&features::with_bias(&arm.m), &mut mpack[..packed_len(p1)]);
        } else {
            let (packed, theta) = row.split_at_mut(packed_len(d));
            pack_sym_doubled(&arm.a_inv, d, packed);
            matvec(&arm.a_inv, d, &arm.b, theta);
        }
    }

    /// Recomputes the cached `β = A_0⁻¹ b_0` and `Q`, and marks every mean-cache row stale.
    pub(crate) fn refresh_beta(&mut self) {
        self.beta_version += 1;
        if let Some(sh) = self.shared.as_mut() {
            let k = self.k;
            sh.beta.resize(k, 0.0);
            matvec(&sh.a_inv, k, &sh.b, &mut sh.beta);
        }
    }

    /// A [`MeanCache`] row `[g_0 | h]` from its source row `[m' | b | s]` (`beta_t` is `reshape(β)ᵀ`,
    /// `(p+1) × (d+1)`, so that `g = Σ_j m'_j beta_t[j, :]` with the `d+1` sums in registers), written
    /// through `out`.
    #[inline(always)]
    fn mean_row(&self, src: &[f64], beta_t: &[f64], out: &mut [f64]) {
        let (d, p1, lam) = (self.d, self.p1, self.params.lam);
        let (mp, rest) = src.split_at(p1);
        let (b, s) = rest.split_at(d);
        combine_rows(mp, beta_t, d + 1, out);
        let g0 = out[0];
        for ((o, &bj), &sj) in out[1..].iter_mut().zip(b).zip(s) {
            *o = bj - g0 * sj + lam * *o;
        }
    }

    /// [`Bandit::refresh_body`] compiled with AVX2 (bit-identical results, as for `scan_avx2`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn refresh_avx2(&self, c: &mut MeanCache, arms: Option<&[usize]>) {
        self.refresh_body(c, arms)
    }

    /// Recomputes `Q` if stale and the stale rows among `arms` (all arms if `None`).
    #[inline(always)]
    fn refresh_body(&self, c: &mut MeanCache, arms: Option<&[usize]>) {
        let v = self.beta_version;
        let (d1, p1) = (self.d + 1, self.p1);
        if c.q_fresh != v {
            let c_inv = self.shared.as_ref().map_or(&[][..], |sh| &sh.a_inv[..]);
            build_q(c_inv, d1, p1, &mut c.q);
            c.q_fresh = v;
        }
        let beta = self.shared.as_ref().map_or(&[][..], |sh| &sh.beta[..]);
        let mut beta_t = vec![0.0; d1 * p1];
        for (i, row) in beta.chunks_exact(p1).enumerate() {
            for (j, &bij) in row.iter().enumerate() {
                beta_t[j * d1 + i] = bij;
            }
        }
        let ws = self.mean_src_width();
        // Plain loops rather than a shared closure: closures do not inherit `target_feature`.
        match arms {
            None => {
                for i in 0..self.arms.len() {
                    if c.stamp[i] != v {
                        let src = &c.src[i * ws..(i + 1) * ws];
                        self.mean_row(src, &beta_t, &mut c.rows[i * d1..(i + 1) * d1]);
                        c.stamp[i] = v;
                    }
                }
                c.all_fresh = v;
            }
            Some(list) => {
                for &i in list {
                    if c.stamp[i] != v {
                        let src = &c.src[i * ws..(i + 1) * ws];
                        self.mean_row(src, &beta_t, &mut c.rows[i * d1..(i + 1) * d1]);
                        c.stamp[i] = v;
                    }
                }
            }
        }
    }

    /// Read access to the mean cache with every row in `arms` (all arms if `None`) fresh, recomputing
    /// stale rows first. Callers hold `&self`, so `β` cannot change meanwhile.
    fn fresh_means(&self, arms: Option<&[usize]>) -> RwLockReadGuard<'_, MeanCache> {
        let v = self.beta_version;
        let all_fresh = |c: &MeanCache| {
            c.q_fresh == v
                && match arms {
                    None => c.all_fresh == v,
                    Some(list) => list.iter().all(|&i| c.stamp[i] == v),
                }
        };
        let read = || {
            self.mean_cache
                .read()
                .unwrap_or_else(PoisonError::into_inner)
        };
        {
            let c = read();
            if all_fresh(&c) {
                return c;
            }
        }
        let mut c = self
            .mean_cache
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !all_fresh(&c) {
            self.refresh(&mut c, arms);
        }
        drop(c);
        read()
    }

    /// Dispatches [`Bandit::refresh_body`] to the AVX2 build when the CPU has it (see [`Bandit::scan`]).
    fn refresh(&self, c: &mut MeanCache, arms: Option<&[usize]>) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { self.refresh_avx2(c, arms) };
                return;
            }
        }
        self.refresh_body(c, arms);
    }

    /// Rebuilds every derived quantity (used after a snapshot restore).
    pub(crate) fn rebuild_all(&mut self) {
        self.hot.clear();
        self.hot.resize(self.arms.len() * self.stride, 0.0);
        self.index.clear();
        for i in 0..self.arms.len() {
            self.index.insert(self.arms[i].id.clone(), i);
            self.rebuild_hot(i);
        }
        let (n, w, ws) = (self.arms.len(), self.mean_width(), self.mean_src_width());
        *self
            .mean_cache
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner) = MeanCache {
            stamp: vec![0; n],
            rows: vec![0.0; n * w],
            src: vec![0.0; n * ws],
            all_fresh: 0,
            q: Vec::new(),
            q_fresh: 0,
        };
        for i in 0..n {
            self.rebuild_mean_src(i);
        }
        self.refresh_beta();
    }

    pub(crate) fn check_x(&self, x: &[f64]) -> CoreResult<()> {
        check_len(x, self.d, "x")?;
        check_finite(x, "x")
    }

    /// Validates one observation for arm `i`: finite, right length, and small enough that the
    /// statistics it is added to cannot overflow (so a single absurd value cannot poison the state).
    pub(crate) fn check_observation(
        &self,
        i: usize,
        x: &[f64],
        reward: f64,
        what: &str,
    ) -> CoreResult<()> {
        check_len(x, self.d, what)?;
        check_finite(x, what)?;
        if !reward.is_finite() {
            return Err(CoreError::invalid(format!(
                "reward must be finite, got {reward} ({what})"
            )));
        }
        let xx = 1.0 + dot(x, x);
        let mm = 1.0 + dot(&self.arms[i].m, &self.arms[i].m);
        let zz = if self.hybrid { xx * mm } else { xx };
        if !(zz * (1.0 + reward * reward)).is_finite() {
            return Err(CoreError::invalid(format!(
                "{what} or the reward is too large: the update would overflow"
            )));
        }
        Ok(())
    }

    /// Resolves arm ids to indices.
    pub fn resolve<S: AsRef<str>>(&self, ids: &[S]) -> CoreResult<Vec<usize>> {
        ids.iter().map(|s| self.arm_index(s.as_ref())).collect()
    }

    #[inline(always)]
    fn context<'x>(&self, x: &'x [f64], derived: Derived<'x>) -> Ctx<'x> {
        let means = derived.means;
        let d = self.d;
        if self.hybrid {
            // packed G (off-diagonals doubled) = Σ_{i ≤ k} c_ik Q_ik with c = packed x'x'ᵀ, off-diagonals
            // doubled (see `build_q`).
            let xp = features::with_bias(x);
            let mut coef = vec![0.0; packed_len(d + 1)];
            packed_outer_doubled(&xp, &mut coef);
            let pl = packed_len(self.p1);
            let mut packed = vec![0.0; pl];
            combine_rows(&coef, derived.q, pl, &mut packed);
            Ctx {
                x,
                packed,
                w: vec![0.0; d],
                means,
            }
        } else {
            let mut packed = vec![0.0; packed_len(d)];
            packed_outer(x, &mut packed);
            Ctx {
                x,
                packed,
                w: Vec::new(),
                means,
            }
        }
    }

    /// `(mean, var)` of arm `i` (var clamped at 0 against round-off).
    #[inline(always)]
    fn mean_var(&self, ctx: &mut Ctx<'_>, i: usize) -> (f64, f64) {
        let d = self.d;
        let row = &self.hot[i * self.stride..(i + 1) * self.stride];
        match self.hybrid {
            true => {
                let (ainv, mpack) = row.split_at(d * d);
                let x = ctx.x;
                // w = A_a⁻¹ x as a combination of rows (A_a⁻¹ is exactly symmetric).
                let w = &mut ctx.w;
                combine_rows(x, ainv, d, w);
                let var_arm = dot(w, x);
                let var_shared = dot(&ctx.packed, mpack);
                let gh = &ctx.means[i * (d + 1)..(i + 1) * (d + 1)];
                let mean = gh[0] + dot(w, &gh[1..]);
                (mean, var_arm.max(0.0) + var_shared.max(0.0))
            }
            _ => {
                let (packed, theta) = row.split_at(packed_len(d));
                let var = dot(packed, &ctx.packed);
                (dot(theta, ctx.x), var.max(0.0))
            }
        }
    }

    /// Calls `f(position, arm index, mean, bonus, total)` for each scored arm, in order.
    ///
    /// On x86-64 CPUs with AVX2 the same code is compiled a second time with AVX2 enabled and chosen at
    /// run time. Results are bit-identical: no FMA contraction, and every reduction has a fixed order
    /// (explicit accumulators), so only the SIMD width changes.
    pub(crate) fn scan(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        f: impl FnMut(usize, usize, f64, f64, f64),
    ) -> CoreResult<()> {
        self.check_x(x)?;
        let cache = self.hybrid.then(|| self.fresh_means(arms));
        let derived = cache
            .as_ref()
            .map_or(Derived { means: &[], q: &[] }, |c| Derived {
                means: &c.rows,
                q: &c.q,
            });
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { self.scan_avx2(x, arms, derived, f) };
                return Ok(());
            }
        }
        self.scan_body(x, arms, derived, f);
        Ok(())
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn scan_avx2(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        derived: Derived<'_>,
        f: impl FnMut(usize, usize, f64, f64, f64),
    ) {
        self.scan_body(x, arms, derived, f)
    }

    /// Scores with the portable code path only (tests compare it with the dispatched one).
    #[cfg(test)]
    pub(crate) fn score_portable(&self, x: &[f64]) -> Vec<(f64, f64, f64)> {
        let mut out = Vec::new();
        let cache = self.hybrid.then(|| self.fresh_means(None));
        let derived = cache
            .as_ref()
            .map_or(Derived { means: &[], q: &[] }, |c| Derived {
                means: &c.rows,
                q: &c.q,
            });
        self.scan_body(x, None, derived, |_, _, m, b, t| out.push((m, b, t)));
        out
    }

    #[inline(always)]
    fn scan_body(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        derived: Derived<'_>,
        mut f: impl FnMut(usize, usize, f64, f64, f64),
    ) {
        let n = arms.map_or(self.arms.len(), |a| a.len());
        if n == 0 {
            return;
        }
        let mut ctx = self.context(x, derived);
        let alpha = self.params.alpha;
        let block: Option<Block> =
            (self.params.policy == Policy::LinTs).then(|| self.rng.reserve_normals(n));
        // Plain loops rather than a shared closure: closures do not inherit `target_feature`.
        match arms {
            None => {
                for i in 0..n {
                    let (mean, var) = self.mean_var(&mut ctx, i);
                    let bonus = explore(alpha, var, block.as_ref(), i);
                    f(i, i, mean, bonus, mean + bonus);
                }
            }
            Some(list) => {
                for (pos, &i) in list.iter().enumerate() {
                    let (mean, var) = self.mean_var(&mut ctx, i);
                    let bonus = explore(alpha, var, block.as_ref(), pos);
                    f(pos, i, mean, bonus, mean + bonus);
                }
            }
        }
    }

    /// Scores the arms at `arms` (indices from [`Bandit::resolve`]) or all arms.
    pub(crate) fn score_indices(&self, x: &[f64], arms: Option<&[usize]>) -> CoreResult<Scores> {
        let n = arms.map_or(self.arms.len(), |a| a.len());
        let mut out = Scores {
            ids: Vec::with_capacity(n),
            mean: Vec::with_capacity(n),
            bonus: Vec::with_capacity(n),
            total: Vec::with_capacity(n),
        };
        self.scan(x, arms, |_, i, m, b, t| {
            out.ids.push(self.arms[i].id.clone());
            out.mean.push(m);
            out.bonus.push(b);
            out.total.push(t);
        })?;
        Ok(out)
    }

    /// Scores arms by id (`None`: all arms, in insertion order).
    pub fn score<S: AsRef<str>>(&self, x: &[f64], arms: Option<&[S]>) -> CoreResult<Scores> {
        match arms {
            None => self.score_indices(x, None),
            Some(ids) => {
                if ids.is_empty() {
                    return Err(CoreError::invalid("empty eligible list: no arms to score"));
                }
                let idx = self.resolve(ids)?;
                self.score_indices(x, Some(&idx))
            }
        }
    }

    /// Highest total among `arms` (indices) or all arms; ties go to the smallest id.
    pub(crate) fn select_indices(&self, x: &[f64], arms: Option<&[usize]>) -> CoreResult<Choice> {
        let mut best: Option<(usize, f64, f64, f64)> = None;
        self.scan(x, arms, |_, i, m, b, t| {
            let better = match &best {
                None => true,
                Some((bi, _, _, bt)) => {
                    t > *bt
                        || (t == *bt && self.arms[i].id < self.arms[*bi].id)
                        || (bt.is_nan() && !t.is_nan())
                }
            };
            if better {
                best = Some((i, m, b, t));
            }
        })?;
        match best {
            Some((i, mean, bonus, total)) => Ok(Choice {
                id: self.arms[i].id.clone(),
                mean,
                bonus,
                total,
            }),
            None if arms.is_some() => Err(CoreError::invalid(
                "empty eligible list: no arms to select from",
            )),
            None => Err(CoreError::invalid("the bandit has no arms to select from")),
        }
    }

    /// Selects among arms by id (`None`: all arms).
    pub fn select<S: AsRef<str>>(&self, x: &[f64], arms: Option<&[S]>) -> CoreResult<Choice> {
        match arms {
            None => self.select_indices(x, None),
            Some(ids) => {
                let idx = self.resolve(ids)?;
                self.select_indices(x, Some(&idx))
            }
        }
    }

    /// Applies one validated observation to arm `i` (does not refresh `β`).
    fn apply(&mut self, i: usize, x: &[f64], reward: f64, scratch: &mut Vec<f64>) {
        let (d, k, every) = (self.d, self.k, self.params.refactor_every);
        let arm = &mut self.arms[i];
        scratch.resize(d.max(k), 0.0);
        rank_one_update(
            &mut arm.a,
            &mut arm.a_inv,
            &mut arm.since_refactor,
            d,
            x,
            every,
            &mut scratch[..d],
        );
        axpy(reward, x, &mut arm.b);
        axpy(1.0, x, &mut arm.s);
        arm.n += 1;
        if let Some(sh) = self.shared.as_mut() {
            let xp = features::with_bias(x);
            let mut mp = Vec::with_capacity(self.p1);
            mp.push(1.0);
            mp.extend_from_slice(&arm.m);
            let mut z = vec![0.0; k];
            features::outer_into(&xp, &mp, &mut z);
            rank_one_update(
                &mut sh.a,
                &mut sh.a_inv,
                &mut sh.since_refactor,
                k,
                &z,
                every,
                &mut scratch[..k],
            );
            axpy(reward, &z, &mut sh.b);
            sh.n += 1;
        }
        self.n_updates += 1;
        self.rebuild_hot(i);
        self.rebuild_mean_src(i);
    }

    /// Adds one observation: `reward` for `arm_id` in context `x`.
    pub fn update(&mut self, arm_id: &str, x: &[f64], reward: f64) -> CoreResult<()> {
        let i = self.arm_index(arm_id)?;
        self.check_observation(i, x, reward, "x")?;
        let mut scratch = Vec::new();
        self.apply(i, x, reward, &mut scratch);
        self.refresh_beta();
        Ok(())
    }

    /// Validates every observation, then applies them in order (`xs` is row-major `n × d`).
    pub fn update_batch<S: AsRef<str>>(
        &mut self,
        arm_ids: &[S],
        xs: &[f64],
        rewards: &[f64],
    ) -> CoreResult<()> {
        let n = arm_ids.len();
        let d = self.d;
        if rewards.len() != n {
            return Err(CoreError::invalid(format!(
                "rewards has length {}, expected {n} (one per arm id)",
                rewards.len()
            )));
        }
        if xs.len() != n * d {
            return Err(CoreError::invalid(format!(
                "xs has {} values, expected {n} rows of device_dim {d}",
                xs.len()
            )));
        }
        let idx = self.resolve(arm_ids)?;
        for (row, ((&i, x), &r)) in idx.iter().zip(xs.chunks_exact(d)).zip(rewards).enumerate() {
            self.check_observation(i, x, r, &format!("xs row {row}"))?;
        }
        let mut scratch = Vec::new();
        for ((&i, x), &r) in idx.iter().zip(xs.chunks_exact(d)).zip(rewards) {
            self.apply(i, x, r, &mut scratch);
        }
        if n > 0 {
            self.refresh_beta();
        }
        Ok(())
    }

    /// `g = reshape(β, (d+1, p+1)) m'` for model features `m`.
    fn beta_times(&self, m: &[f64]) -> Vec<f64> {
        let mp = features::with_bias(m);
        match self.shared.as_ref() {
            Some(sh) => sh.beta.chunks_exact(self.p1).map(|r| dot(r, &mp)).collect(),
            None => Vec::new(),
        }
    }

    /// The mean of arm `i` at `x` without the scoring caches (no `Q`, no variance): what a learner needs
    /// to compute a residual just before an update. Same formula as the scoring mean (`g_0 + w·h_a` for
    /// hybrid statistics, `θ_a·x` for disjoint), evaluated directly from the exact statistics and `β`.
    pub(crate) fn predict_mean(&self, i: usize, x: &[f64]) -> f64 {
        let arm = &self.arms[i];
        let d = self.d;
        let mut w = vec![0.0; d];
        matvec(&arm.a_inv, d, x, &mut w);
        if !self.hybrid {
            return dot(&w, &arm.b);
        }
        let g = self.beta_times(&arm.m);
        let (g0, lam) = (g[0], self.params.lam);
        let h: Vec<f64> = (0..d)
            .map(|j| arm.b[j] - g0 * arm.s[j] + lam * g[j + 1])
            .collect();
        g0 + dot(&w, &h)
    }

    pub fn arm_stats(&self, arm_id: &str) -> CoreResult<ArmStats> {
        let i = self.arm_index(arm_id)?;
        let arm = &self.arms[i];
        let d = self.d;
        let theta = if self.hybrid {
            // θ_a = A_a⁻¹ (b_a − s_a g_0 − (A_a − λI) g_{1:})
            let g = self.beta_times(&arm.m);
            let g0 = g.first().copied().unwrap_or(0.0);
            let g1 = g.get(1..).unwrap_or(&[]);
            let mut ag1 = vec![0.0; d];
            matvec(&arm.a, d, g1, &mut ag1);
            let rhs: Vec<f64> = (0..d)
                .map(|j| arm.b[j] - arm.s[j] * g0 - (ag1[j] - self.params.lam * g1[j]))
                .collect();
            let mut theta = vec![0.0; d];
            matvec(&arm.a_inv, d, &rhs, &mut theta);
            theta
        } else {
            let mut theta = vec![0.0; d];
            matvec(&arm.a_inv, d, &arm.b, &mut theta);
            theta
        };
        Ok(ArmStats {
            n_updates: arm.n,
            theta,
            model_features: arm.m.clone(),
            a: arm.a.clone(),
            a_inv: arm.a_inv.clone(),
            b: arm.b.clone(),
        })
    }

    pub fn shared_stats(&self) -> CoreResult<SharedStats> {
        match self.shared.as_ref() {
            Some(sh) => Ok(SharedStats {
                n_updates: sh.n,
                beta: sh.beta.clone(),
                a: sh.a.clone(),
                a_inv: sh.a_inv.clone(),
                b: sh.b.clone(),
            }),
            None => Err(CoreError::invalid(format!(
                "shared_stats: policy {:?} with model_dim {} keeps no shared statistics (hybrid only)",
                self.params.policy.name(),
                self.params.model_dim
            ))),
        }
    }

    /// Builds a bandit from decoded parts (snapshot restore); the caller validated them.
    pub(crate) fn from_parts(
        params: Params,
        rng_state: u64,
        n_updates: u64,
        shared: Option<Shared>,
        arms: Vec<Arm>,
    ) -> Self {
        let mut b = Bandit::new(params);
        b.rng = SplitMix64::new(rng_state);
        b.n_updates = n_updates;
        if shared.is_some() {
            b.shared = shared;
        }
        b.arms = arms;
        b.rebuild_all();
        b
    }

    pub(crate) fn dims(&self) -> (usize, usize, usize) {
        (self.d, self.params.model_dim, self.k)
    }
}
