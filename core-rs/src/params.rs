//! The one policy-name table and the validation of every construction parameter (docs/core.md, "Policies").
//!
//! A policy is a pair (statistics layout, exploration); [`POLICY_TABLE`] is the only place that maps a name
//! to that pair, to its snapshot code and to whether its arms carry model features. Python reads the names
//! (`edgesel_server.core.POLICIES`) and "uses model features" from here, so adding a policy is one line.

use crate::error::{CoreError, CoreResult};
use crate::explore::Exploration;
use crate::stats::Layout;

/// Largest accepted `device_dim`.
pub const MAX_DEVICE_DIM: usize = 1024;
/// Largest accepted `model_dim`.
pub const MAX_MODEL_DIM: usize = 1024;

/// Which statistics layout a policy keeps, possibly depending on `model_dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutRule {
    Always(Layout),
    /// `Hybrid` when the arms carry model features (`model_dim > 0`), else `Disjoint`.
    HybridIfModelFeatures,
}

/// One row of the policy table.
#[derive(Debug)]
pub struct PolicySpec {
    pub name: &'static str,
    /// Snapshot code (stable forever: never reuse or renumber).
    pub code: u8,
    pub layout: LayoutRule,
    pub exploration: Exploration,
    /// Whether the server should give arms their model feature vector (`model_dim = len(model schema)`)
    /// or none (`model_dim = 0`).
    pub uses_model_features: bool,
}

/// Every policy, in the order `POLICIES` lists them.
pub const POLICY_TABLE: &[PolicySpec] = &[
    PolicySpec {
        name: "disjoint_linucb",
        code: 0,
        layout: LayoutRule::Always(Layout::Disjoint),
        exploration: Exploration::Ucb,
        uses_model_features: false,
    },
    PolicySpec {
        name: "hybrid_linucb",
        code: 1,
        layout: LayoutRule::Always(Layout::Hybrid),
        exploration: Exploration::Ucb,
        uses_model_features: true,
    },
    PolicySpec {
        name: "lin_ts",
        code: 2,
        layout: LayoutRule::HybridIfModelFeatures,
        exploration: Exploration::Thompson,
        uses_model_features: true,
    },
];

/// A policy: a handle on its row of [`POLICY_TABLE`].
#[derive(Clone, Copy, Debug)]
pub struct Policy(&'static PolicySpec);

impl PartialEq for Policy {
    fn eq(&self, other: &Self) -> bool {
        self.0.code == other.0.code
    }
}
impl Eq for Policy {}

impl Policy {
    /// Policy names in table order.
    pub fn names() -> Vec<&'static str> {
        POLICY_TABLE.iter().map(|s| s.name).collect()
    }

    pub fn parse(name: &str) -> CoreResult<Self> {
        POLICY_TABLE
            .iter()
            .find(|s| s.name == name)
            .map(Policy)
            .ok_or_else(|| {
                CoreError::invalid(format!(
                    "unknown policy {name:?}; expected one of {:?}",
                    Self::names()
                ))
            })
    }

    pub fn from_code(code: u8) -> Option<Self> {
        POLICY_TABLE.iter().find(|s| s.code == code).map(Policy)
    }

    pub fn name(self) -> &'static str {
        self.0.name
    }
    pub fn code(self) -> u8 {
        self.0.code
    }
    pub fn exploration(self) -> Exploration {
        self.0.exploration
    }
    pub fn uses_model_features(self) -> bool {
        self.0.uses_model_features
    }
    pub fn layout(self, model_dim: usize) -> Layout {
        match self.0.layout {
            LayoutRule::Always(l) => l,
            LayoutRule::HybridIfModelFeatures if model_dim > 0 => Layout::Hybrid,
            LayoutRule::HybridIfModelFeatures => Layout::Disjoint,
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
    /// ε of forced-uniform sampling: each `select` picks a uniformly random scored arm with probability ε.
    pub forced_sampling: f64,
}

impl Params {
    /// Validates raw parameters (integers as `i64` so that negative values get a clear message);
    /// `forced_sampling` starts at 0, see [`Params::with_forced_sampling`].
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
            forced_sampling: 0.0,
        };
        p.layout().check_dims(device_dim, model_dim)?;
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

    /// The same parameters with forced-uniform sampling ε (`0 ≤ ε ≤ 1`).
    pub fn with_forced_sampling(mut self, eps: f64) -> CoreResult<Self> {
        if !(0.0..=1.0).contains(&eps) {
            return Err(CoreError::invalid(format!(
                "forced_sampling must be a number in [0, 1], got {eps}"
            )));
        }
        self.forced_sampling = eps;
        Ok(self)
    }

    /// The statistics layout these parameters select.
    pub fn layout(&self) -> Layout {
        self.policy.layout(self.model_dim)
    }

    /// Whether the statistics are hybrid (shared over `z` + per arm), as opposed to disjoint.
    pub fn is_hybrid(&self) -> bool {
        self.layout() == Layout::Hybrid
    }

    /// Dimension of the shared statistics (`(d+1)(p+1)` for hybrid ones), 0 if there are none.
    pub fn joint_dim(&self) -> usize {
        self.layout().shared_dim(self.device_dim, self.model_dim)
    }
}
