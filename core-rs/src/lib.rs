//! edgesel-core: the numeric core of edgesel (contextual bandits for choosing DNN models per device).
//!
//! A policy is statistics × exploration: `stats/` (one module per statistics layout), `explore.rs` (UCB,
//! Thompson, forced-uniform sampling and the propensity), `params.rs` (the policy table and parameter
//! validation), composed by `bandit.rs`. `simd.rs` dispatches kernels to their AVX2 build. All of it is
//! plain Rust with no Python types; `python.rs` (cargo feature `python`, enabled by maturin) is the thin
//! PyO3 binding exported as `edgesel_server._core`. `log_entry.rs` is not math but the replicas' per-event
//! reading of the Redis log's entries (`python_log.rs` binds it), `feature_plan.rs` the common case of a
//! Select's device features (`python_schema.rs` binds it). The specification is `docs/core.md`.

pub mod bandit;
pub mod error;
pub mod explore;
pub mod feature_plan;
pub mod features;
pub mod linalg;
pub mod log_entry;
pub mod params;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_log;
#[cfg(feature = "python")]
mod python_qoe;
#[cfg(feature = "python")]
mod python_schema;
pub mod qoe_model;
pub mod qoe_spec;
pub mod rng;
pub mod simd;
pub mod snapshot;
pub mod stats;

pub use bandit::{Bandit, Choice, Scores};
pub use error::{CoreError, CoreResult};
pub use params::{Params, Policy, POLICY_TABLE};
pub use qoe_model::{Observation, QoeChoice, QoeModel, QoeParams, QoeScores};
pub use qoe_spec::{Prefs, QoeSpec, Shape};
pub use stats::{ArmStats, Layout, SharedStats};

#[cfg(test)]
mod tests;
