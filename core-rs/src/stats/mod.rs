//! Statistics layouts: what a policy learns and how it turns a context into `(mean, var)` per arm
//! (docs/core.md, "Statistics"). Exploration (`explore.rs`) then turns `var` into a bonus.
//!
//! One module per layout, each implementing [`Statistics`]; [`Stats`] is the enum the bandit holds, and its
//! `match` runs once per call, outside the per-arm loop, so every layout's hot loop is monomorphic (no
//! virtual call per arm). Adding a layout: a module here, a [`Layout`] variant, a [`Stats`] variant with its
//! arms in the `match`es of this file, and one row in `params::POLICY_TABLE` (docs/core.md, "Adding a
//! statistics layout").

pub mod disjoint;
pub mod hybrid;
pub mod ridge;

use crate::error::CoreResult;
use crate::params::Params;
use crate::simd::Simd;
use crate::snapshot::{Reader, Writer};

pub use disjoint::DisjointStats;
pub use hybrid::{HybridStats, MAX_JOINT_DIM};
pub use ridge::{Arm, Forgetting};

/// The statistics layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Per-arm ridge regression over `x` (Li et al. 2010, alg. 1).
    Disjoint,
    /// Shared ridge regression over `z = x' ⊗ m'` plus per-arm ridge over `x` (alg. 2 structure).
    Hybrid,
}

impl Layout {
    /// Checks the dimensions this layout can hold.
    pub fn check_dims(self, device_dim: usize, model_dim: usize) -> CoreResult<()> {
        match self {
            Layout::Disjoint => Ok(()),
            Layout::Hybrid => hybrid::check_dims(device_dim, model_dim),
        }
    }

    /// Dimension of the shared statistics, 0 if the layout keeps none.
    pub fn shared_dim(self, device_dim: usize, model_dim: usize) -> usize {
        match self {
            Layout::Disjoint => 0,
            Layout::Hybrid => crate::features::joint_dim(device_dim, model_dim),
        }
    }
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

/// What a statistics layout implements. Arms are addressed by position (the bandit keeps ids and order);
/// every method gets validated input (lengths, finiteness, known positions).
pub trait Statistics: Sized {
    fn new(params: &Params) -> Self;
    /// Appends an arm with validated model features `m` (length `model_dim`, possibly unused).
    fn add_arm(&mut self, m: Vec<f64>);
    fn remove_arm(&mut self, i: usize);
    /// Model features of arm `i` (length `model_dim`).
    fn model_features(&self, i: usize) -> &[f64];
    /// Scale of the largest value one observation adds to the statistics, before multiplying by
    /// `1 + reward²` (used to reject observations that would overflow).
    fn observation_scale(&self, i: usize, x: &[f64]) -> f64;
    /// Adds one observation to arm `i`; derived shared data may stay stale until [`Statistics::refresh`].
    fn apply(&mut self, i: usize, x: &[f64], reward: f64);
    /// Brings derived data up to date after one or more [`Statistics::apply`].
    fn refresh(&mut self);
    /// Calls `f(position, arm index, mean, var)` for each scored arm (`arms`: positions, or all arms), in
    /// order, with `var ≥ 0`. Must give bit-identical results for `Simd::Best` and `Simd::Portable`.
    fn scan<F: FnMut(usize, usize, f64, f64)>(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        simd: Simd,
        f: F,
    );
    fn arm_stats(&self, i: usize) -> ArmStats;
    /// The mean of arm `i` at `x` from the exact statistics, without the scoring caches (no variance):
    /// what a learner needs for a residual just before an update.
    fn predict_mean(&self, i: usize, x: &[f64]) -> f64;
    /// `None` when the layout keeps no shared statistics.
    fn shared_stats(&self) -> Option<SharedStats>;
    /// Snapshot: the layout's shared part (written once, before the arms).
    fn encode_shared(&self, w: &mut Writer);
    /// Snapshot: arm `i`'s part (after its id).
    fn encode_arm(&self, i: usize, w: &mut Writer);
    /// Inverse of [`Statistics::encode_shared`] on a fresh `Self::new(params)`.
    fn decode_shared(&mut self, r: &mut Reader<'_>) -> CoreResult<()>;
    /// Inverse of [`Statistics::encode_arm`]: appends the arm.
    fn decode_arm(&mut self, r: &mut Reader<'_>) -> CoreResult<()>;
    /// Rebuilds all derived data after decoding.
    fn rebuild(&mut self);
    /// Refactorization counter of arm `i` (tests).
    fn since_refactor(&self, i: usize) -> u64;
    /// The layout's forgetting and event clock (docs/core.md, "Forgetting"): `apply` ticks the clock and
    /// discounts every matrix it updates through `ridge::discount` before adding the observation.
    fn forgetting(&self) -> &Forgetting;
    /// Mutable access: the snapshot decoder sets the clock, a restore with another half-life replaces it.
    fn forgetting_mut(&mut self) -> &mut Forgetting;
}

/// The statistics a bandit holds: one variant per layout.
#[derive(Debug)]
pub enum Stats {
    Disjoint(DisjointStats),
    /// Boxed: its matrices live on the heap anyway, and this keeps `Stats` small.
    Hybrid(Box<HybridStats>),
}

/// `dispatch!(self, s => expr)`: evaluates `expr` with `s` bound to the layout inside `self` (the one
/// `match` per call).
macro_rules! dispatch {
    ($stats:expr, $s:ident => $e:expr) => {
        match $stats {
            Stats::Disjoint($s) => $e,
            Stats::Hybrid($s) => $e,
        }
    };
}
pub(crate) use dispatch;

impl Stats {
    pub fn new(params: &Params) -> Self {
        match params.layout() {
            Layout::Disjoint => Stats::Disjoint(DisjointStats::new(params)),
            Layout::Hybrid => Stats::Hybrid(Box::new(HybridStats::new(params))),
        }
    }
    pub fn add_arm(&mut self, m: Vec<f64>) {
        dispatch!(self, s => s.add_arm(m))
    }
    pub fn remove_arm(&mut self, i: usize) {
        dispatch!(self, s => s.remove_arm(i))
    }
    pub fn model_features(&self, i: usize) -> &[f64] {
        dispatch!(self, s => s.model_features(i))
    }
    pub fn observation_scale(&self, i: usize, x: &[f64]) -> f64 {
        dispatch!(self, s => s.observation_scale(i, x))
    }
    pub fn apply(&mut self, i: usize, x: &[f64], reward: f64) {
        dispatch!(self, s => s.apply(i, x, reward))
    }
    pub fn refresh(&mut self) {
        dispatch!(self, s => s.refresh())
    }
    pub fn arm_stats(&self, i: usize) -> ArmStats {
        dispatch!(self, s => s.arm_stats(i))
    }
    pub fn predict_mean(&self, i: usize, x: &[f64]) -> f64 {
        dispatch!(self, s => s.predict_mean(i, x))
    }
    pub fn shared_stats(&self) -> Option<SharedStats> {
        dispatch!(self, s => s.shared_stats())
    }
    pub fn encode_shared(&self, w: &mut Writer) {
        dispatch!(self, s => s.encode_shared(w))
    }
    pub fn encode_arm(&self, i: usize, w: &mut Writer) {
        dispatch!(self, s => s.encode_arm(i, w))
    }
    pub fn decode_shared(&mut self, r: &mut Reader<'_>) -> CoreResult<()> {
        dispatch!(self, s => s.decode_shared(r))
    }
    pub fn decode_arm(&mut self, r: &mut Reader<'_>) -> CoreResult<()> {
        dispatch!(self, s => s.decode_arm(r))
    }
    pub fn rebuild(&mut self) {
        dispatch!(self, s => s.rebuild())
    }
    pub fn since_refactor(&self, i: usize) -> u64 {
        dispatch!(self, s => s.since_refactor(i))
    }
    pub fn forgetting(&self) -> &Forgetting {
        dispatch!(self, s => s.forgetting())
    }
    pub fn forgetting_mut(&mut self) -> &mut Forgetting {
        dispatch!(self, s => s.forgetting_mut())
    }
}

/// Snapshot: reads the `has_shared` byte and checks it matches the layout (`1` iff shared statistics).
pub(crate) fn expect_shared_flag(r: &mut Reader<'_>, has_shared: bool) -> CoreResult<()> {
    let flag = r.u8("shared flag")?;
    if flag != u8::from(has_shared) {
        return Err(crate::error::CoreError::snapshot(
            "snapshot's shared-statistics flag does not match its policy",
        ));
    }
    Ok(())
}
