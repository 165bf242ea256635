//! Exploration: how a policy turns each arm's `(mean, var)` into a decision, propensity included
//! (docs/core.md, "Exploration").
//!
//! * [`Exploration::Ucb`]: `bonus = α·sqrt(var)`; the choice is deterministic.
//! * [`Exploration::Thompson`]: `bonus = α·sqrt(var)·ε_a` with one standard normal per scored arm drawn
//!   from the bandit's generator.
//! * Forced-uniform sampling wraps either: with probability `forced_sampling` (ε) the decision is a
//!   uniformly random scored position instead of the greedy arm (μLinUCB's forced sampling). The two draws
//!   it needs come from the same generator, so they are in the snapshot too.
//!
//! The greedy arm is the highest `total`; equal totals go to the smallest id.

use crate::rng::{uniform_below, unit_interval, Block, SplitMix64};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exploration {
    Ucb,
    Thompson,
}

/// Per-call draws of an exploration, reserved before scoring.
#[derive(Clone, Copy, Debug)]
pub struct Draws {
    /// Thompson sampling: the block holding one normal per scored arm.
    normals: Option<Block>,
}

impl Exploration {
    /// Reserves the normals a call scoring `n` arms needs (none for UCB).
    pub fn reserve(self, rng: &SplitMix64, n: usize) -> Draws {
        Draws {
            normals: (self == Exploration::Thompson).then(|| rng.reserve_normals(n)),
        }
    }
}

impl Draws {
    /// The bonus of the arm scored at position `pos`.
    #[inline(always)]
    pub fn bonus(&self, alpha: f64, var: f64, pos: usize) -> f64 {
        let bonus = alpha * var.sqrt();
        match &self.normals {
            Some(b) => bonus * b.normal(pos as u64),
            None => bonus,
        }
    }
}

/// The forced-sampling draw of one `select`: `Some(position)` when this decision is a uniformly random
/// position among `n` scored ones. Takes two draws from `rng` (one atomic step) iff `eps > 0`: `u1 < ε`
/// decides, `u2` picks the position (Lemire's multiply-shift, bias < n/2⁶⁴).
pub fn forced_position(rng: &SplitMix64, eps: f64, n: usize) -> Option<usize> {
    if eps <= 0.0 {
        return None;
    }
    let block = rng.reserve_draws(2);
    (unit_interval(block.draw(0)) < eps).then(|| uniform_below(block.draw(1), n))
}

/// The probability that a `select` over `n` scored positions returns the arm it returned, when
/// `multiplicity` of the positions hold that arm and `greedy` says whether it is the greedy arm:
///
/// * UCB: `(1 − ε)·[greedy] + ε·multiplicity/n`: `1 − ε + ε/n` for the greedy arm, `ε/n` for another,
///   and exactly 1 without forced sampling (the choice is deterministic given the state and `x`);
/// * Thompson: the probability that the sampled arm wins has no closed form, so the propensity is NaN,
///   except with `ε = 1`, where the choice is uniform and the propensity is `multiplicity/n`.
pub fn propensity(
    exploration: Exploration,
    eps: f64,
    greedy: bool,
    multiplicity: usize,
    n: usize,
) -> f64 {
    let uniform = eps * multiplicity as f64 / n as f64;
    match exploration {
        Exploration::Ucb if greedy => (1.0 - eps) + uniform,
        Exploration::Ucb => uniform,
        Exploration::Thompson if eps == 1.0 => uniform,
        Exploration::Thompson => f64::NAN,
    }
}

/// Running argmax of `total` with the tie rule: equal totals go to the smallest id (`id_is_smaller`, only
/// called on a tie); a NaN total never beats a number.
#[inline(always)]
pub fn beats(total: f64, best_total: f64, id_is_smaller: impl FnOnce() -> bool) -> bool {
    total > best_total
        || (total == best_total && id_is_smaller())
        || (best_total.is_nan() && !total.is_nan())
}
