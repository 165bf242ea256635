//! edgesel-core: the numeric core of edgesel (contextual bandits for choosing DNN models per device).
//!
//! The math (`linalg`, `features`, `rng`, `bandit`, `snapshot`) is plain Rust with no Python types;
//! `python` holds the thin PyO3 binding exported as `edgesel_server._core`.
//! The specification is `docs/core.md`.

pub mod bandit;
pub mod error;
pub mod features;
pub mod linalg;
mod python;
mod python_qoe;
pub mod qoe_model;
pub mod qoe_spec;
pub mod rng;
pub mod snapshot;

pub use bandit::{ArmStats, Bandit, Choice, Params, Policy, Scores, SharedStats};
pub use error::{CoreError, CoreResult};
pub use qoe_model::{Observation, QoeChoice, QoeModel, QoeParams, QoeScores};
pub use qoe_spec::{Prefs, QoeSpec, Shape};

#[cfg(test)]
mod tests;
