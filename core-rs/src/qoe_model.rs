//! `qoe_model`: learns what devices measure and composes each request's QoE from it (docs/core.md,
//! "The QoE model").
//!
//! Four targets, each a ridge regression with the hybrid layout of [`Bandit`] (shared over
//! `z = x' ⊗ m'` plus per arm over `x`), kept by a `hybrid_linucb` [`Bandit`] with `α = 1` so that its
//! scan yields `(mean, sqrt(var))`: the statistics, Sherman-Morrison/Cholesky upkeep and snapshot code are
//! the bandit's own. What this type adds is the noise scale of each target (so the confidence width is in
//! the target's units), and the decision: for every eligible arm the expected and the optimistic QoE
//! under this request's preferences, computed with the space's [`QoeSpec`].

use std::sync::Arc;

use crate::bandit::Bandit;
use crate::error::{CoreError, CoreResult};
use crate::params::{Params, Policy};
use crate::qoe_spec::{Prefs, QoeSpec, Shape, ACCURACY, ENERGY, LATENCY, N_TERMS, RATING};
use crate::snapshot::{self, Reader, Writer};

/// Targets, in index order: `ln(latency / latency_budget)`, `ln(energy / energy_budget)`,
/// `rating_norm − measured value` (what the user says beyond the measured terms), `ran − 1` (so every
/// prediction starts at 0 = "on budget, as measured, runs").
pub const TARGET_NAMES: [&str; 4] = ["log_latency", "log_energy", "rating", "runs"];
pub const T_LATENCY: usize = 0;
pub const T_ENERGY: usize = 1;
pub const T_RATING: usize = 2;
pub const T_RUNS: usize = 3;
const N_TARGETS: usize = 4;

/// Prior residual standard deviation per target, worth `NOISE_PRIOR_N` observations: what the
/// confidence widths use before any residual is seen (log units for latency/energy: ±50 %; the rating
/// target is a correction to the measured value, so its prior spread is small).
pub const NOISE_PRIOR_SD: [f64; N_TARGETS] = [0.5, 0.5, 0.1, 0.5];
pub const NOISE_PRIOR_N: f64 = 2.0;
/// Latencies and energies below this are read as this (their logarithm must be finite).
pub const MIN_COST: f64 = 1e-3;

pub const MAGIC: &[u8; 8] = b"EDGESELQ";
/// Version 2 added `half_life` to the header (version 1 reads as 0, no forgetting).
pub const VERSION: u32 = 2;

/// Exploration width in units of each target's standard error: `α · c(K)` for `K` arms in the catalog,
/// `c(K) = sqrt(2 ln(1 + K)) / 8`. It grows with the catalog like a union bound over the arms
/// (`sqrt(2 ln K)`); the factor 1/8 (≈ 0.38 standard errors at K = 100) is what measured best on both the
/// formula fleet and the AI Hub measurements (docs/core.md, "Composition"), so the default α = 1 is it.
pub fn exploration_width(alpha: f64, n_arms: usize) -> f64 {
    alpha * (2.0 * (1.0 + n_arms as f64).ln()).sqrt() / 8.0
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QoeParams {
    pub device_dim: usize,
    pub model_dim: usize,
    pub alpha: f64,
    pub lam: f64,
    pub refactor_every: u64,
    /// Forgetting of every target's statistics, exactly as in the hybrid layout (docs/core.md,
    /// "Forgetting"): each target's shared part on that target's updates, each arm on its own; 0 = none.
    pub half_life: u64,
}

impl QoeParams {
    pub fn new(
        device_dim: i64,
        model_dim: i64,
        alpha: f64,
        lam: f64,
        refactor_every: i64,
        half_life: i64,
    ) -> CoreResult<Self> {
        // The target statistics validate dimensions, λ, refactor_every (hybrid limits included) and half_life.
        let p = Params::new(
            "hybrid_linucb",
            device_dim,
            model_dim,
            1.0,
            lam,
            refactor_every,
            0,
        )?
        .with_half_life(half_life)?;
        if !(alpha.is_finite() && alpha >= 0.0) {
            return Err(CoreError::invalid(format!(
                "alpha must be a finite number >= 0, got {alpha}"
            )));
        }
        Ok(QoeParams {
            device_dim: p.device_dim,
            model_dim: p.model_dim,
            alpha,
            lam,
            refactor_every: p.refactor_every,
            half_life: p.half_life,
        })
    }

    fn target_params(&self) -> Params {
        Params {
            policy: Policy::parse("hybrid_linucb").expect("hybrid_linucb is in the policy table"),
            device_dim: self.device_dim,
            model_dim: self.model_dim,
            alpha: 1.0,
            lam: self.lam,
            refactor_every: self.refactor_every,
            seed: 0,
            forced_sampling: 0.0,
            half_life: self.half_life,
        }
    }
}

/// Prequential residuals of one target: `Σ (y − ŷ)²` with `ŷ` predicted just before each update.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Noise {
    pub n: u64,
    pub sum_sq: f64,
}

impl Noise {
    pub fn sd(&self, target: usize) -> f64 {
        let prior = NOISE_PRIOR_SD[target];
        ((NOISE_PRIOR_N * prior * prior + self.sum_sq) / (NOISE_PRIOR_N + self.n as f64)).sqrt()
    }
}

/// What is known about an arm besides the learned targets: its catalog accuracy (NaN if unknown) and the
/// accuracies devices reported for it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArmInfo {
    pub accuracy: f64,
    pub acc_sum: f64,
    pub acc_n: u64,
}

impl ArmInfo {
    /// The catalog accuracy, else the mean reported one, else unknown.
    fn accuracy(&self) -> Option<f64> {
        if self.accuracy.is_finite() {
            Some(self.accuracy)
        } else if self.acc_n > 0 {
            Some(self.acc_sum / self.acc_n as f64)
        } else {
            None
        }
    }
}

/// What one Feedback measured (any subset), or that the model did not run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Observation {
    pub latency_ms: Option<f64>,
    pub energy_mj: Option<f64>,
    pub user_rating: Option<f64>,
    pub accuracy: Option<f64>,
    pub failed: bool,
}

impl Observation {
    fn has_measurement(&self) -> bool {
        self.latency_ms.is_some()
            || self.energy_mj.is_some()
            || self.user_rating.is_some()
            || self.accuracy.is_some()
    }
}

/// One row of [`QoeModel::update_batch`]: the arguments of one [`QoeModel::update`].
#[derive(Clone, Copy, Debug)]
pub struct Feedback<'a> {
    pub arm_id: &'a str,
    pub x: &'a [f64],
    pub reward: f64,
    pub obs: Observation,
    pub prefs: Prefs,
}

/// Conservative exploration (Wu et al. 2016; Kazerouni et al. 2017): explore only while the QoE obtained
/// so far plus the candidate's pessimistic QoE stays ≥ `(1 − max_loss)` × the baseline's estimated QoE
/// over the same requests.
#[derive(Clone, Debug, PartialEq)]
pub struct Conservative {
    pub baseline: String,
    pub max_loss: f64,
    /// Σ reward of every update.
    pub played: f64,
    /// Σ over the same updates of the baseline's expected QoE for that request, estimated just before it.
    pub baseline_total: f64,
}

/// Result of scoring: per scored arm, expected QoE, bonus (optimistic − expected) and optimistic QoE.
#[derive(Clone, Debug, Default)]
pub struct QoeScores {
    pub ids: Vec<Arc<str>>,
    pub expected: Vec<f64>,
    pub bonus: Vec<f64>,
    pub optimistic: Vec<f64>,
    /// Pessimistic QoE (the lower side of the same confidence box), for conservative exploration.
    pub pessimistic: Vec<f64>,
}

#[derive(Clone, Debug)]
pub struct QoeChoice {
    pub id: Arc<str>,
    /// Its position among the scored arms.
    pub index: usize,
    pub expected: f64,
    pub bonus: f64,
    pub optimistic: f64,
    /// True when conservative mode played the baseline instead of the optimistic choice.
    pub conservative_fallback: bool,
    /// True when another scored arm has a higher expected QoE (the choice explores).
    pub exploratory: bool,
}

pub struct QoeModel {
    params: QoeParams,
    spec: QoeSpec,
    targets: Vec<Bandit>,
    noise: [Noise; N_TARGETS],
    info: Vec<ArmInfo>,
    n_updates: u64,
    conservative: Option<Conservative>,
}

/// Per-target predictions for the scored arms (`None`: the target is not used for this request).
type Views = [Option<(Vec<f64>, Vec<f64>)>; N_TARGETS];

fn check_finite(v: f64, what: &str) -> CoreResult<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(CoreError::invalid(format!(
            "{what} must be a finite number, got {v}"
        )))
    }
}

impl QoeModel {
    pub fn new(
        params: QoeParams,
        spec: QoeSpec,
        conservative: Option<(String, f64)>,
    ) -> CoreResult<Self> {
        spec.validate()?;
        let conservative = match conservative {
            None => None,
            Some((baseline, max_loss)) => {
                if baseline.is_empty() {
                    return Err(CoreError::invalid(
                        "baseline_model must be a non-empty arm id",
                    ));
                }
                if !(max_loss.is_finite() && (0.0..=1.0).contains(&max_loss)) {
                    return Err(CoreError::invalid(format!(
                        "max_loss must be in [0, 1], got {max_loss}"
                    )));
                }
                Some(Conservative {
                    baseline,
                    max_loss,
                    played: 0.0,
                    baseline_total: 0.0,
                })
            }
        };
        let tp = params.target_params();
        Ok(QoeModel {
            params,
            spec,
            targets: (0..N_TARGETS).map(|_| Bandit::new(tp)).collect(),
            noise: [Noise::default(); N_TARGETS],
            info: Vec::new(),
            n_updates: 0,
            conservative,
        })
    }

    pub fn params(&self) -> &QoeParams {
        &self.params
    }
    pub fn spec(&self) -> &QoeSpec {
        &self.spec
    }
    pub fn n_updates(&self) -> u64 {
        self.n_updates
    }
    pub fn len(&self) -> usize {
        self.info.len()
    }
    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }
    pub fn contains(&self, id: &str) -> bool {
        self.targets[0].contains(id)
    }
    pub fn arm_ids(&self) -> Vec<Arc<str>> {
        self.targets[0].arm_ids()
    }
    pub fn conservative(&self) -> Option<&Conservative> {
        self.conservative.as_ref()
    }
    /// `(n_updates, residual sd)` of every target, in [`TARGET_NAMES`] order.
    pub fn target_stats(&self) -> [(u64, f64); N_TARGETS] {
        std::array::from_fn(|t| (self.targets[t].n_updates(), self.noise[t].sd(t)))
    }
    /// The statistics of one target (for tests and explanations).
    pub fn target(&self, t: usize) -> &Bandit {
        &self.targets[t]
    }
    /// Changes the forgetting half-life of every target (a setting, like [`Bandit::set_half_life`]: the
    /// statistics stay as they are and the clocks keep counting); a restored model takes its configured
    /// half-life this way.
    pub fn set_half_life(&mut self, n: i64) -> CoreResult<()> {
        let p = self.params.target_params().with_half_life(n)?;
        for t in &mut self.targets {
            t.set_half_life(n)?;
        }
        self.params.half_life = p.half_life;
        Ok(())
    }
    pub fn arm_info(&self, id: &str) -> CoreResult<ArmInfo> {
        Ok(self.info[self.index(id)?])
    }

    fn index(&self, id: &str) -> CoreResult<usize> {
        let idx = self.targets[0].resolve(&[id])?;
        Ok(idx[0])
    }

    pub fn resolve<S: AsRef<str>>(&self, ids: &[S]) -> CoreResult<Vec<usize>> {
        self.targets[0].resolve(ids)
    }

    pub fn add_arm(
        &mut self,
        id: &str,
        model_features: Option<&[f64]>,
        accuracy: Option<f64>,
    ) -> CoreResult<()> {
        let accuracy = match accuracy {
            None => f64::NAN,
            Some(a) if a.is_finite() && (0.0..=1.0).contains(&a) => a,
            Some(a) => {
                return Err(CoreError::invalid(format!(
                    "accuracy must be a fraction in [0, 1], got {a}"
                )))
            }
        };
        // The first target validates; the others hold the same arms, so they cannot fail differently.
        self.targets[0].add_arm(id, model_features)?;
        for t in &mut self.targets[1..] {
            t.add_arm(id, model_features)?;
        }
        self.info.push(ArmInfo {
            accuracy,
            acc_sum: 0.0,
            acc_n: 0,
        });
        Ok(())
    }

    pub fn remove_arm(&mut self, id: &str) -> CoreResult<()> {
        let i = self.index(id)?;
        for t in &mut self.targets {
            t.remove_arm(id)?;
        }
        self.info.remove(i);
        Ok(())
    }

    /// Whether target `t` takes part in this request's QoE: it has data and its term has weight.
    fn uses(&self, t: usize, p: &Prefs) -> bool {
        if self.targets[t].n_updates() == 0 {
            return false;
        }
        match t {
            T_LATENCY => p.weights[LATENCY] > 0.0 || self.spec.latency_limit_ms.is_finite(),
            T_ENERGY => p.weights[ENERGY] > 0.0,
            T_RATING => p.weights[RATING] > 0.0,
            _ => true,
        }
    }

    fn views(&self, x: &[f64], arms: Option<&[usize]>, p: &Prefs) -> CoreResult<Views> {
        let n = arms.map_or(self.len(), |a| a.len());
        let mut out: Views = Default::default();
        self.targets[0].check_x(x)?;
        for (t, slot) in out.iter_mut().enumerate() {
            if !self.uses(t, p) {
                continue;
            }
            let (mut mean, mut sd) = (Vec::with_capacity(n), Vec::with_capacity(n));
            self.targets[t].scan_scores(x, arms, |_, m, b| {
                mean.push(m);
                sd.push(b);
            })?;
            *slot = Some((mean, sd));
        }
        Ok(out)
    }

    /// Scores of the measured terms (latency, energy, accuracy) of arm `i` at scored position `pos`, with
    /// latency and energy moved by `z` standard errors in the direction that raises QoE, and the latency.
    fn measured_scores(
        &self,
        p: &Prefs,
        views: &Views,
        pos: usize,
        i: usize,
        z: f64,
    ) -> ([Option<f64>; N_TERMS], Option<f64>) {
        let spec = &self.spec;
        let cost = |t: usize, budget: f64| {
            views[t].as_ref().map(|(m, s)| {
                let lo = m[pos] - z * self.noise[t].sd(t) * s[pos];
                budget * lo.exp()
            })
        };
        let mut scores: [Option<f64>; N_TERMS] = [None; N_TERMS];
        let latency = cost(T_LATENCY, spec.latency_budget_ms);
        scores[LATENCY] = latency.map(|l| spec.latency_score(p, l));
        scores[ENERGY] = cost(T_ENERGY, spec.energy_budget_mj).map(|e| spec.energy_score(p, e));
        scores[ACCURACY] = self.info[i].accuracy().map(|a| spec.accuracy_score(a));
        (scores, latency)
    }

    /// QoE of arm `i` (catalog index) at scored position `pos`, with every target moved by `z` standard
    /// errors in the direction that raises QoE (`z > 0` optimistic, `0` expected, `< 0` pessimistic).
    fn arm_qoe(&self, p: &Prefs, views: &Views, pos: usize, i: usize, z: f64) -> f64 {
        let spec = &self.spec;
        let shift = |t: usize| -> Option<f64> {
            views[t]
                .as_ref()
                .map(|(m, s)| m[pos] + z * self.noise[t].sd(t) * s[pos])
        };
        let (mut scores, latency) = self.measured_scores(p, views, pos, i, z);
        // The rating target is what users say beyond what the measured terms give under their preferences.
        let base = spec.measured_value(p, &scores);
        scores[RATING] = shift(T_RATING).map(|r| (base + r).clamp(0.0, 1.0));
        let runs = shift(T_RUNS).map_or(1.0, |r| (1.0 + r).clamp(0.0, 1.0));
        let q = spec.qoe_from_scores(p, &scores, latency);
        runs * q + (1.0 - runs) * spec.reward_min
    }

    /// The reference a rating is learned against (see `arm_qoe`): the measured value of what this Feedback
    /// reported (with the arm's known accuracy when it did not report one), or, when it reported no
    /// measurement, the value the model predicts for it.
    fn rating_reference(
        &self,
        i: usize,
        x: &[f64],
        obs: &Observation,
        p: &Prefs,
    ) -> CoreResult<f64> {
        let spec = &self.spec;
        if obs.latency_ms.is_some() || obs.energy_mj.is_some() || obs.accuracy.is_some() {
            let mut s: [Option<f64>; N_TERMS] = [None; N_TERMS];
            s[LATENCY] = obs.latency_ms.map(|l| spec.latency_score(p, l));
            s[ENERGY] = obs.energy_mj.map(|e| spec.energy_score(p, e));
            s[ACCURACY] = obs
                .accuracy
                .or_else(|| self.info[i].accuracy())
                .map(|a| spec.accuracy_score(a));
            return Ok(spec.measured_value(p, &s));
        }
        let views = self.views(x, Some(&[i]), p)?;
        let (s, _) = self.measured_scores(p, &views, 0, i, 0.0);
        Ok(spec.measured_value(p, &s))
    }

    pub(crate) fn score_indices(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        p: &Prefs,
    ) -> CoreResult<QoeScores> {
        let views = self.views(x, arms, p)?;
        let width = exploration_width(self.params.alpha, self.len());
        let all: Vec<usize>;
        let list = match arms {
            Some(a) => a,
            None => {
                all = (0..self.len()).collect();
                &all
            }
        };
        let ids = self.arm_ids();
        let mut out = QoeScores::default();
        for (pos, &i) in list.iter().enumerate() {
            let e = self.arm_qoe(p, &views, pos, i, 0.0);
            let o = self.arm_qoe(p, &views, pos, i, width);
            let l = self.arm_qoe(p, &views, pos, i, -width);
            out.ids.push(ids[i].clone());
            out.expected.push(e);
            out.bonus.push(o - e);
            out.optimistic.push(o);
            out.pessimistic.push(l);
        }
        Ok(out)
    }

    pub fn score<S: AsRef<str>>(
        &self,
        x: &[f64],
        arms: Option<&[S]>,
        p: &Prefs,
    ) -> CoreResult<QoeScores> {
        match arms {
            None => self.score_indices(x, None, p),
            Some(ids) => {
                if ids.is_empty() {
                    return Err(CoreError::invalid("empty eligible list: no arms to score"));
                }
                let idx = self.resolve(ids)?;
                self.score_indices(x, Some(&idx), p)
            }
        }
    }

    /// The arm with the highest optimistic QoE (ties to the smallest id), or the baseline when
    /// conservative mode says exploring now could break the loss budget.
    pub fn select<S: AsRef<str>>(
        &self,
        x: &[f64],
        arms: Option<&[S]>,
        p: &Prefs,
    ) -> CoreResult<QoeChoice> {
        self.choose(x, arms, p).map(|(c, _)| c)
    }

    /// `select`'s choice and the scores it was made from (one scoring pass for a server that also ranks).
    pub fn choose<S: AsRef<str>>(
        &self,
        x: &[f64],
        arms: Option<&[S]>,
        p: &Prefs,
    ) -> CoreResult<(QoeChoice, QoeScores)> {
        if self.is_empty() && arms.is_none() {
            return Err(CoreError::invalid("the bandit has no arms to select from"));
        }
        let s = match arms {
            Some([]) => {
                return Err(CoreError::invalid(
                    "empty eligible list: no arms to select from",
                ))
            }
            _ => self.score(x, arms, p)?,
        };
        let mut best = 0;
        for j in 1..s.ids.len() {
            let (t, bt) = (s.optimistic[j], s.optimistic[best]);
            if t > bt || (t == bt && s.ids[j] < s.ids[best]) || (bt.is_nan() && !t.is_nan()) {
                best = j;
            }
        }
        let mut fallback = false;
        if let Some(c) = &self.conservative {
            if let Some(b) = s.ids.iter().position(|id| **id == *c.baseline) {
                let budget = c.played + s.pessimistic[best]
                    - (1.0 - c.max_loss) * (c.baseline_total + s.optimistic[b]);
                if b != best && budget < 0.0 {
                    best = b;
                    fallback = true;
                }
            }
        }
        // numpy's max: NaN if any expected QoE is NaN (and then nothing compares below it).
        let top = s.expected.iter().fold(f64::NEG_INFINITY, |m, &v| {
            if m.is_nan() || v.is_nan() {
                f64::NAN
            } else {
                m.max(v)
            }
        });
        let choice = QoeChoice {
            id: s.ids[best].clone(),
            index: best,
            expected: s.expected[best],
            bonus: s.bonus[best],
            optimistic: s.optimistic[best],
            conservative_fallback: fallback,
            exploratory: s.expected[best] < top,
        };
        Ok((choice, s))
    }

    /// Checks an observation and returns the `(target, y)` pairs it teaches.
    fn targets_of(&self, reward: f64, obs: &Observation) -> CoreResult<Vec<(usize, f64)>> {
        let spec = &self.spec;
        check_finite(reward, "reward")?;
        if !(spec.reward_min..=spec.reward_max).contains(&reward) {
            return Err(CoreError::invalid(format!(
                "reward {reward} is outside [{}, {}]",
                spec.reward_min, spec.reward_max
            )));
        }
        if obs.failed {
            if let Some(name) = [
                (obs.latency_ms, "latency_ms"),
                (obs.energy_mj, "energy_mj"),
                (obs.user_rating, "user_rating"),
                (obs.accuracy, "accuracy"),
            ]
            .iter()
            .find_map(|(v, n)| v.map(|_| *n))
            {
                return Err(CoreError::invalid(format!(
                    "failed: a model that did not run cannot report {name}"
                )));
            }
            return Ok(vec![(T_RUNS, -1.0)]);
        }
        let mut out = Vec::with_capacity(N_TARGETS);
        for (v, name, t, budget) in [
            (
                obs.latency_ms,
                "latency_ms",
                T_LATENCY,
                spec.latency_budget_ms,
            ),
            (obs.energy_mj, "energy_mj", T_ENERGY, spec.energy_budget_mj),
        ] {
            if let Some(v) = v {
                if check_finite(v, name)? < 0.0 {
                    return Err(CoreError::invalid(format!("{name} is negative: {v}")));
                }
                out.push((t, (v.max(MIN_COST) / budget).ln()));
            }
        }
        if let Some(r) = obs.user_rating {
            check_finite(r, "user_rating")?;
            if !(spec.rating_min..=spec.rating_max).contains(&r) {
                return Err(CoreError::invalid(format!(
                    "user_rating {r} is outside [{}, {}]",
                    spec.rating_min, spec.rating_max
                )));
            }
            out.push((
                T_RATING,
                (r - spec.rating_min) / (spec.rating_max - spec.rating_min),
            ));
        }
        if let Some(a) = obs.accuracy {
            if !(0.0..=1.0).contains(&check_finite(a, "accuracy")?) {
                return Err(CoreError::invalid(format!(
                    "accuracy {a} is outside [0, 1]"
                )));
            }
        }
        if obs.has_measurement() {
            out.push((T_RUNS, 0.0));
        } else {
            // A scalar reward alone is read as the user's overall verdict on the rating scale.
            out.push((
                T_RATING,
                (reward - spec.reward_min) / (spec.reward_max - spec.reward_min),
            ));
        }
        Ok(out)
    }

    /// Learns one Feedback: `reward` is the QoE the decision got (what the server's QoE function made of
    /// it; `reward_min` for a model that failed), `obs` what the device measured, `p` the decision's
    /// preferences (used by conservative mode's accounting only). Validates everything first: on error
    /// nothing changes.
    pub fn update(
        &mut self,
        arm_id: &str,
        x: &[f64],
        reward: f64,
        obs: &Observation,
        p: &Prefs,
    ) -> CoreResult<()> {
        let i = self.index(arm_id)?;
        self.targets[0].check_x(x)?;
        let mut ys = self.targets_of(reward, obs)?;
        for (t, y) in ys.iter_mut() {
            if *t == T_RATING {
                *y -= self.rating_reference(i, x, obs, p)?;
            }
        }
        for &(t, y) in &ys {
            self.targets[t].check_observation(i, x, y, "x")?;
        }
        let reward = if obs.failed {
            self.spec.reward_min
        } else {
            reward
        };
        if let Some(c) = &self.conservative {
            if let Ok(b) = self.index(&c.baseline) {
                let views = self.views(x, Some(&[b]), p)?;
                let base = self.arm_qoe(p, &views, 0, b, 0.0);
                let c = self.conservative.as_mut().expect("checked above");
                c.played += reward;
                c.baseline_total += base;
            }
        }
        for (t, y) in ys {
            let r = y - self.targets[t].predict_mean(i, x);
            self.noise[t].n += 1;
            self.noise[t].sum_sq += r * r;
            self.targets[t].update(arm_id, x, y)?;
        }
        if let Some(a) = obs.accuracy {
            let info = &mut self.info[i];
            info.acc_sum += a;
            info.acc_n += 1;
        }
        self.n_updates += 1;
        Ok(())
    }

    /// Learns Feedbacks in order, each exactly as [`QoeModel::update`] learns it (every row reads the model
    /// as the rows before it left it: residuals, rating references), in one call: what a replica catching up
    /// on the log does. Stops before the first row `update` would refuse, which changes nothing; returns how
    /// many rows were learned and that row's error.
    pub fn update_batch(&mut self, rows: &[Feedback<'_>]) -> (usize, Option<CoreError>) {
        for (n, r) in rows.iter().enumerate() {
            if let Err(e) = self.update(r.arm_id, r.x, r.reward, &r.obs, &r.prefs) {
                return (n, Some(e));
            }
        }
        (rows.len(), None)
    }

    // -- snapshot ------------------------------------------------------------------------------------

    /// The full state as a versioned, CRC-checked blob (docs/core.md, "QoE model snapshot").
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(MAGIC);
        w.u32(VERSION);
        let p = &self.params;
        w.u32(p.device_dim as u32);
        w.u32(p.model_dim as u32);
        w.f64(p.alpha);
        w.f64(p.lam);
        w.u64(p.refactor_every);
        w.u64(p.half_life);
        let s = &self.spec;
        w.f64s(&s.weights);
        for v in [s.rating_min, s.rating_max, s.latency_budget_ms] {
            w.f64(v);
        }
        w.u8(s.latency_shape.code());
        w.f64(s.latency_steepness);
        w.f64(s.energy_budget_mj);
        w.u8(s.energy_shape.code());
        for v in [
            s.energy_steepness,
            s.latency_limit_ms,
            s.accuracy_floor,
            s.accuracy_ceiling,
            s.reward_min,
            s.reward_max,
        ] {
            w.f64(v);
        }
        w.u64(self.n_updates);
        for n in &self.noise {
            w.u64(n.n);
            w.f64(n.sum_sq);
        }
        match &self.conservative {
            None => w.u8(0),
            Some(c) => {
                w.u8(1);
                w.u32(c.baseline.len() as u32);
                w.0.extend_from_slice(c.baseline.as_bytes());
                w.f64(c.max_loss);
                w.f64(c.played);
                w.f64(c.baseline_total);
            }
        }
        w.u32(self.info.len() as u32);
        for a in &self.info {
            w.f64(a.accuracy);
            w.f64(a.acc_sum);
            w.u64(a.acc_n);
        }
        for t in &self.targets {
            let blob = snapshot::encode(t);
            w.u64(blob.len() as u64);
            w.0.extend_from_slice(&blob);
        }
        w.seal()
    }

    pub fn from_bytes(data: &[u8]) -> CoreResult<Self> {
        let (version, body) = snapshot::checked_body(data, MAGIC, &[1, VERSION])?;
        let mut r = Reader::after_header(body, version);
        let bad =
            |e: CoreError| CoreError::snapshot(format!("snapshot holds invalid parameters: {e}"));
        let d = r.u32("device_dim")?;
        let pd = r.u32("model_dim")?;
        let alpha = r.f64("alpha")?;
        let lam = r.f64("lam")?;
        let every = r.u64("refactor_every")?;
        let half_life = if version >= 2 { r.u64("half_life")? } else { 0 };
        let params = QoeParams::new(
            i64::from(d),
            i64::from(pd),
            alpha,
            lam,
            i64::try_from(every).unwrap_or(-1),
            i64::try_from(half_life).unwrap_or(-1),
        )
        .map_err(bad)?;
        let weights = r.f64s(N_TERMS, "spec weights")?;
        let shape = |r: &mut Reader<'_>, what: &str| -> CoreResult<Shape> {
            let c = r.u8(what)?;
            Shape::from_code(c)
                .ok_or_else(|| CoreError::snapshot(format!("snapshot has unknown {what} {c}")))
        };
        let spec = QoeSpec {
            weights: [weights[0], weights[1], weights[2], weights[3]],
            rating_min: r.f64("rating_min")?,
            rating_max: r.f64("rating_max")?,
            latency_budget_ms: r.f64("latency_budget_ms")?,
            latency_shape: shape(&mut r, "latency shape")?,
            latency_steepness: r.f64("latency_steepness")?,
            energy_budget_mj: r.f64("energy_budget_mj")?,
            energy_shape: shape(&mut r, "energy shape")?,
            energy_steepness: r.f64("energy_steepness")?,
            latency_limit_ms: r.f64("latency_limit_ms")?,
            accuracy_floor: r.f64("accuracy_floor")?,
            accuracy_ceiling: r.f64("accuracy_ceiling")?,
            reward_min: r.f64("reward_min")?,
            reward_max: r.f64("reward_max")?,
        };
        spec.validate().map_err(bad)?;
        let n_updates = r.u64("n_updates")?;
        let mut noise = [Noise::default(); N_TARGETS];
        for n in &mut noise {
            n.n = r.u64("noise count")?;
            n.sum_sq = r.f64s(1, "noise sum")?[0];
        }
        let conservative = match r.u8("conservative flag")? {
            0 => None,
            1 => {
                let len = r.u32("baseline id length")? as usize;
                let id = std::str::from_utf8(r.take(len, "baseline id")?)
                    .map_err(|_| CoreError::snapshot("baseline id is not UTF-8"))?
                    .to_owned();
                let v = r.f64s(3, "conservative state")?;
                Some(Conservative {
                    baseline: id,
                    max_loss: v[0],
                    played: v[1],
                    baseline_total: v[2],
                })
            }
            f => {
                return Err(CoreError::snapshot(format!(
                    "snapshot has an invalid conservative flag {f}"
                )))
            }
        };
        let n_arms = r.u32("arm count")? as usize;
        let mut info = Vec::new();
        for _ in 0..n_arms {
            let accuracy = r.f64("arm accuracy")?;
            let v = r.f64s(1, "arm accuracy sum")?;
            info.push(ArmInfo {
                accuracy,
                acc_sum: v[0],
                acc_n: r.u64("arm accuracy count")?,
            });
        }
        let mut targets = Vec::with_capacity(N_TARGETS);
        for name in TARGET_NAMES {
            let len = usize::try_from(r.u64("target length")?).unwrap_or(usize::MAX);
            let blob = r.take(len, name)?;
            let t = snapshot::decode(blob)
                .map_err(|e| CoreError::snapshot(format!("target {name}: {}", e.message())))?;
            targets.push(t);
        }
        r.finish()?;
        let ids = targets[0].arm_ids();
        let tp = params.target_params();
        for (name, t) in TARGET_NAMES.iter().zip(&targets) {
            if *t.params() != tp || t.arm_ids() != ids {
                return Err(CoreError::snapshot(format!(
                    "target {name} does not match the model's parameters or arms"
                )));
            }
        }
        if ids.len() != info.len() {
            return Err(CoreError::snapshot(
                "arm information does not match the arms",
            ));
        }
        let mut m = QoeModel::new(
            params,
            spec,
            conservative
                .as_ref()
                .map(|c| (c.baseline.clone(), c.max_loss)),
        )
        .map_err(bad)?;
        m.targets = targets;
        m.noise = noise;
        m.info = info;
        m.n_updates = n_updates;
        if let (Some(dst), Some(src)) = (m.conservative.as_mut(), conservative) {
            dst.played = src.played;
            dst.baseline_total = src.baseline_total;
        }
        Ok(m)
    }
}
