//! The one error type of the crate. Python mapping lives in `python.rs`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// A bad argument (→ `ValueError`).
    Invalid(String),
    /// An arm id that the bandit does not have (→ `UnknownArmError`, a `ValueError`).
    UnknownArm(String),
    /// A blob that is not a valid edgesel snapshot (→ `SnapshotError`, a `ValueError`).
    Snapshot(String),
}

impl CoreError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        CoreError::Invalid(msg.into())
    }
    pub fn snapshot(msg: impl Into<String>) -> Self {
        CoreError::Snapshot(msg.into())
    }
    pub fn unknown_arm(id: &str) -> Self {
        CoreError::UnknownArm(format!("unknown arm id {id:?}"))
    }
    pub fn message(&self) -> &str {
        match self {
            CoreError::Invalid(m) | CoreError::UnknownArm(m) | CoreError::Snapshot(m) => m,
        }
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;
