//! The space's QoE function as the core sees it (docs/core.md, "QoE model"): what turns predicted
//! measurements into a QoE under one request's preferences.
//!
//! The server's `[space.qoe]` (`edgesel_server.qoe.QoeFunction`) and the simulator's ground truth are both
//! instances: each measurement becomes a score in [0, 1], the scores present are averaged with the
//! request's weights, an optional latency limit multiplies the result, and it is mapped onto
//! `[reward_min, reward_max]`.

use crate::error::{CoreError, CoreResult};

/// Index of each QoE term in weight arrays.
pub const RATING: usize = 0;
pub const LATENCY: usize = 1;
pub const ENERGY: usize = 2;
pub const ACCURACY: usize = 3;
pub const N_TERMS: usize = 4;
/// Names of the terms (the server's measurement names), in index order.
pub const TERM_NAMES: [&str; N_TERMS] = ["user_rating", "latency_ms", "energy_mj", "accuracy"];

/// How a cost (latency, energy) against a budget `B` becomes a score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// `max(0, 1 − v / (2B))`: meeting the budget scores 0.5, twice the budget 0 (the server's default).
    Linear,
    /// `1 / (1 + (v / B)^steepness)`: `B` is the half-satisfaction point (the simulator's users).
    Logistic,
}

impl Shape {
    pub const NAMES: [&'static str; 2] = ["linear", "logistic"];

    pub fn parse(name: &str, what: &str) -> CoreResult<Self> {
        match name {
            "linear" => Ok(Shape::Linear),
            "logistic" => Ok(Shape::Logistic),
            _ => Err(CoreError::invalid(format!(
                "{what} must be one of {:?}, got {name:?}",
                Self::NAMES
            ))),
        }
    }
    pub fn name(self) -> &'static str {
        Self::NAMES[self.code() as usize]
    }
    pub fn code(self) -> u8 {
        match self {
            Shape::Linear => 0,
            Shape::Logistic => 1,
        }
    }
    pub fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Shape::Linear),
            1 => Some(Shape::Logistic),
            _ => None,
        }
    }

    /// Score in [0, 1] of cost `v ≥ 0` against budget `b > 0` (`b = ∞` scores 1).
    #[inline]
    pub fn score(self, v: f64, b: f64, steepness: f64) -> f64 {
        match self {
            Shape::Linear => (1.0 - v / (2.0 * b)).max(0.0),
            Shape::Logistic => 1.0 / (1.0 + (v / b).powf(steepness)),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct QoeSpec {
    /// Default weights per term (index order [`TERM_NAMES`]); a request may override each.
    pub weights: [f64; N_TERMS],
    pub rating_min: f64,
    pub rating_max: f64,
    pub latency_budget_ms: f64,
    pub latency_shape: Shape,
    pub latency_steepness: f64,
    pub energy_budget_mj: f64,
    pub energy_shape: Shape,
    pub energy_steepness: f64,
    /// Patience: the whole value is multiplied by `1 / (1 + (L / limit)^4)`; `∞` turns it off.
    pub latency_limit_ms: f64,
    /// Accuracy (top-1 as a fraction) scores `clip((a − floor) / (ceiling − floor), 0, 1)`.
    pub accuracy_floor: f64,
    pub accuracy_ceiling: f64,
    pub reward_min: f64,
    pub reward_max: f64,
}

impl Default for QoeSpec {
    /// The server's `QoeFunction()` defaults.
    fn default() -> Self {
        QoeSpec {
            weights: [1.0, 1.0, 0.5, 1.0],
            rating_min: 1.0,
            rating_max: 5.0,
            latency_budget_ms: 100.0,
            latency_shape: Shape::Linear,
            latency_steepness: 1.0,
            energy_budget_mj: 500.0,
            energy_shape: Shape::Linear,
            energy_steepness: 1.0,
            latency_limit_ms: f64::INFINITY,
            accuracy_floor: 0.0,
            accuracy_ceiling: 1.0,
            reward_min: 0.0,
            reward_max: 1.0,
        }
    }
}

/// One request's preferences, resolved against the spec's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Prefs {
    pub latency_budget_ms: f64,
    pub energy_budget_mj: f64,
    pub weights: [f64; N_TERMS],
}

fn finite(v: f64, what: &str) -> CoreResult<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(CoreError::invalid(format!(
            "{what} must be a finite number, got {v}"
        )))
    }
}

impl QoeSpec {
    pub fn validate(&self) -> CoreResult<()> {
        for (w, name) in self.weights.iter().zip(TERM_NAMES) {
            if !(w.is_finite() && *w >= 0.0) {
                return Err(CoreError::invalid(format!(
                    "spec weight {name} must be finite and >= 0, got {w}"
                )));
            }
        }
        let pairs = [
            (self.rating_min, self.rating_max, "rating_min < rating_max"),
            (
                self.accuracy_floor,
                self.accuracy_ceiling,
                "accuracy_floor < accuracy_ceiling",
            ),
            (self.reward_min, self.reward_max, "reward_min < reward_max"),
        ];
        for (lo, hi, what) in pairs {
            finite(lo, what)?;
            finite(hi, what)?;
            if lo >= hi {
                return Err(CoreError::invalid(format!(
                    "spec needs {what}, got {lo} and {hi}"
                )));
            }
        }
        for (v, what) in [
            (self.latency_budget_ms, "latency_budget_ms"),
            (self.energy_budget_mj, "energy_budget_mj"),
            (self.latency_steepness, "latency_steepness"),
            (self.energy_steepness, "energy_steepness"),
        ] {
            if finite(v, what)? <= 0.0 {
                return Err(CoreError::invalid(format!(
                    "spec {what} must be > 0, got {v}"
                )));
            }
        }
        if self.latency_limit_ms.is_nan() || self.latency_limit_ms <= 0.0 {
            return Err(CoreError::invalid(format!(
                "spec latency_limit_ms must be > 0 (or infinite for none), got {}",
                self.latency_limit_ms
            )));
        }
        Ok(())
    }

    /// A request's preferences: budgets must be > 0 (an infinite energy budget means "energy is free",
    /// e.g. a device on mains power), weights finite and ≥ 0; `None` takes the spec's default.
    pub fn resolve(
        &self,
        latency_budget_ms: Option<f64>,
        energy_budget_mj: Option<f64>,
        weights: [Option<f64>; N_TERMS],
    ) -> CoreResult<Prefs> {
        let lat = latency_budget_ms.unwrap_or(self.latency_budget_ms);
        if !(lat.is_finite() && lat > 0.0) {
            return Err(CoreError::invalid(format!(
                "latency_budget_ms must be a positive number, got {lat}"
            )));
        }
        let en = energy_budget_mj.unwrap_or(self.energy_budget_mj);
        if en.is_nan() || en <= 0.0 {
            return Err(CoreError::invalid(format!(
                "energy_budget_mj must be a positive number, got {en}"
            )));
        }
        let mut w = self.weights;
        for (i, o) in weights.iter().enumerate() {
            if let Some(v) = *o {
                if !(v.is_finite() && v >= 0.0) {
                    return Err(CoreError::invalid(format!(
                        "weight {} must be finite and >= 0, got {v}",
                        TERM_NAMES[i]
                    )));
                }
                w[i] = v;
            }
        }
        Ok(Prefs {
            latency_budget_ms: lat,
            energy_budget_mj: en,
            weights: w,
        })
    }

    #[inline]
    pub fn latency_score(&self, p: &Prefs, latency_ms: f64) -> f64 {
        self.latency_shape
            .score(latency_ms, p.latency_budget_ms, self.latency_steepness)
    }
    #[inline]
    pub fn energy_score(&self, p: &Prefs, energy_mj: f64) -> f64 {
        self.energy_shape
            .score(energy_mj, p.energy_budget_mj, self.energy_steepness)
    }
    /// Accuracy (a fraction) as a score in [0, 1].
    #[inline]
    pub fn accuracy_score(&self, accuracy: f64) -> f64 {
        ((accuracy - self.accuracy_floor) / (self.accuracy_ceiling - self.accuracy_floor))
            .clamp(0.0, 1.0)
    }

    /// The weighted mean of the measured terms present (every term but the rating), ½ with none: what the
    /// measurements alone say about the experience, the reference a rating is learned against.
    #[inline]
    pub fn measured_value(&self, p: &Prefs, scores: &[Option<f64>; N_TERMS]) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (t, (s, &w)) in scores.iter().zip(&p.weights).enumerate() {
            if let Some(s) = *s {
                if w > 0.0 && t != RATING {
                    num += w * s;
                    den += w;
                }
            }
        }
        if den > 0.0 {
            num / den
        } else {
            0.5
        }
    }

    /// QoE of a model that ran, from the term scores present (`None`: not part of the average) and the
    /// latency (for the patience factor; `None` skips it). With no score present the value is the middle
    /// of the range (nothing is known).
    #[inline]
    pub fn qoe_from_scores(
        &self,
        p: &Prefs,
        scores: &[Option<f64>; N_TERMS],
        latency_ms: Option<f64>,
    ) -> f64 {
        let (mut num, mut den) = (0.0, 0.0);
        for (s, &w) in scores.iter().zip(&p.weights) {
            if let Some(s) = *s {
                if w > 0.0 {
                    num += w * s;
                    den += w;
                }
            }
        }
        let mut v = if den > 0.0 { num / den } else { 0.5 };
        if let Some(l) = latency_ms {
            if self.latency_limit_ms.is_finite() {
                v /= 1.0 + (l / self.latency_limit_ms).powi(4);
            }
        }
        self.reward_min + (self.reward_max - self.reward_min) * v.clamp(0.0, 1.0)
    }
}
