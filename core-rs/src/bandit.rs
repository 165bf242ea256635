//! The bandit: arm ids and order, one statistics layout (`stats/`), one exploration (`explore.rs`) and
//! the generator both draw from (docs/core.md). This file validates input and composes the two; the math
//! lives in the layouts.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{CoreError, CoreResult};
use crate::explore::{self, Draws};
use crate::linalg::dot;
use crate::params::Params;
use crate::rng::SplitMix64;
use crate::simd::Simd;
use crate::stats::{dispatch, ArmStats, Forgetting, SharedStats, Statistics, Stats};

/// Per-arm results of [`Bandit::score`], in scoring order.
#[derive(Clone, Debug, Default)]
pub struct Scores {
    pub ids: Vec<Arc<str>>,
    pub mean: Vec<f64>,
    pub bonus: Vec<f64>,
    pub total: Vec<f64>,
}

/// The result of [`Bandit::select`]: the decision and the probability it had.
#[derive(Clone, Debug)]
pub struct Choice {
    pub id: Arc<str>,
    pub mean: f64,
    pub bonus: f64,
    pub total: f64,
    /// Probability that this call returns this arm (see [`explore::propensity`]).
    pub propensity: f64,
    /// The chosen arm's mean is below the best mean among the scored arms (it was picked for its bonus
    /// or by forced sampling).
    pub exploratory: bool,
}

#[derive(Debug)]
pub struct Bandit {
    pub(crate) params: Params,
    ids: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize>,
    pub(crate) stats: Stats,
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

/// Running greedy arm `(index, mean, bonus, total)` (tie rule of [`explore::beats`]) and best mean.
#[inline(always)]
fn track_best(
    ids: &[Arc<str>],
    best: &mut (usize, f64, f64, f64),
    best_mean: &mut f64,
    arm: (usize, f64, f64, f64),
) {
    let (i, m, _, t) = arm;
    if best.0 == usize::MAX || explore::beats(t, best.3, || ids[i] < ids[best.0]) {
        *best = arm;
    }
    if m > *best_mean {
        *best_mean = m;
    }
}

impl Bandit {
    pub fn new(params: Params) -> Self {
        Bandit {
            params,
            ids: Vec::new(),
            index: HashMap::new(),
            stats: Stats::new(&params),
            rng: SplitMix64::new(params.seed),
            n_updates: 0,
        }
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Changes ε of forced-uniform sampling. It is a setting, not learned state: the statistics and the
    /// generator stay as they are (a restored bandit takes its configured ε this way).
    pub fn set_forced_sampling(&mut self, eps: f64) -> CoreResult<()> {
        self.params = self.params.with_forced_sampling(eps)?;
        Ok(())
    }
    /// Changes the forgetting half-life (a setting: the statistics stay as they are, the clock keeps
    /// counting, and from now on the discount is `2^(−1/n)` per applied event; 0 = none). A restored
    /// bandit takes its configured half-life this way.
    pub fn set_half_life(&mut self, n: i64) -> CoreResult<()> {
        self.params = self.params.with_half_life(n)?;
        let clock = self.stats.forgetting().clock;
        *self.stats.forgetting_mut() = Forgetting::new(self.params.half_life, clock);
        Ok(())
    }
    pub fn is_hybrid(&self) -> bool {
        self.params.is_hybrid()
    }
    pub fn joint_dim(&self) -> usize {
        self.params.joint_dim()
    }
    pub fn n_updates(&self) -> u64 {
        self.n_updates
    }
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }
    /// Arm ids in insertion order.
    pub fn arm_ids(&self) -> Vec<Arc<str>> {
        self.ids.clone()
    }
    /// Current generator state (advances with every Thompson scoring and every forced-sampling select).
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
        self.push_id(Arc::from(id));
        self.stats.add_arm(m);
        Ok(())
    }

    /// Appends an id (the layout appends the arm's statistics).
    pub(crate) fn push_id(&mut self, id: Arc<str>) {
        self.index.insert(id.clone(), self.ids.len());
        self.ids.push(id);
    }

    pub fn remove_arm(&mut self, id: &str) -> CoreResult<()> {
        let i = self.arm_index(id)?;
        self.ids.remove(i);
        self.index.remove(id);
        self.stats.remove_arm(i);
        for (j, arm) in self.ids.iter().enumerate().skip(i) {
            if let Some(slot) = self.index.get_mut(arm) {
                *slot = j;
            }
        }
        Ok(())
    }

    pub(crate) fn check_x(&self, x: &[f64]) -> CoreResult<()> {
        check_len(x, self.params.device_dim, "x")?;
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
        check_len(x, self.params.device_dim, what)?;
        check_finite(x, what)?;
        if !reward.is_finite() {
            return Err(CoreError::invalid(format!(
                "reward must be finite, got {reward} ({what})"
            )));
        }
        if !(self.stats.observation_scale(i, x) * (1.0 + reward * reward)).is_finite() {
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

    /// Calls `f(position, arm index, mean, bonus, total)` for each scored arm, in order: the layout's
    /// `(mean, var)` with the exploration's bonus. The layout `match` runs here, once per call.
    #[inline(always)]
    fn scan(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        draws: Draws,
        simd: Simd,
        mut f: impl FnMut(usize, usize, f64, f64, f64),
    ) {
        let alpha = self.params.alpha;
        dispatch!(&self.stats, s => s.scan(
            x,
            arms,
            simd,
            #[inline(always)]
            |pos, i, mean, var| {
                let bonus = draws.bonus(alpha, var, pos);
                f(pos, i, mean, bonus, mean + bonus);
            }
        ));
    }

    fn draws(&self, arms: Option<&[usize]>) -> Draws {
        let n = arms.map_or(self.ids.len(), |a| a.len());
        self.params.policy.exploration().reserve(&self.rng, n)
    }

    /// Scores with the portable code path only (tests compare it with the dispatched one).
    #[cfg(test)]
    pub(crate) fn score_portable(&self, x: &[f64]) -> Vec<(f64, f64, f64)> {
        let mut out = Vec::new();
        let draws = self.draws(None);
        self.scan(x, None, draws, Simd::Portable, |_, _, m, b, t| {
            out.push((m, b, t))
        });
        out
    }

    /// Calls `f(position, mean, bonus)` for each scored arm without building [`Scores`] (for policies that
    /// compose several bandits' predictions, `qoe_model`).
    pub(crate) fn scan_scores(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        mut f: impl FnMut(usize, f64, f64),
    ) -> CoreResult<()> {
        self.check_x(x)?;
        if arms.map_or(self.ids.len(), |a| a.len()) == 0 {
            return Ok(());
        }
        let draws = self.draws(arms);
        self.scan(x, arms, draws, Simd::Best, |pos, _, m, b, _| f(pos, m, b));
        Ok(())
    }

    /// Arm `i`'s mean at `x` from the exact statistics (no scoring caches, no variance).
    pub(crate) fn predict_mean(&self, i: usize, x: &[f64]) -> f64 {
        self.stats.predict_mean(i, x)
    }

    /// Scores the arms at `arms` (indices from [`Bandit::resolve`]) or all arms.
    pub(crate) fn score_indices(&self, x: &[f64], arms: Option<&[usize]>) -> CoreResult<Scores> {
        self.check_x(x)?;
        let n = arms.map_or(self.ids.len(), |a| a.len());
        let mut out = Scores {
            ids: Vec::with_capacity(n),
            mean: Vec::with_capacity(n),
            bonus: Vec::with_capacity(n),
            total: Vec::with_capacity(n),
        };
        if n == 0 {
            return Ok(out);
        }
        let draws = self.draws(arms);
        self.scan(
            x,
            arms,
            draws,
            Simd::Best,
            #[inline(always)]
            |_, i, m, b, t| {
                out.ids.push(self.ids[i].clone());
                out.mean.push(m);
                out.bonus.push(b);
                out.total.push(t);
            },
        );
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

    /// The decision among `arms` (indices) or all arms: the greedy arm (highest total, ties to the smallest
    /// id) or, with probability `forced_sampling`, a uniformly random position; with its propensity.
    /// `scores`, when given, receives every scored arm (the same draws as the decision).
    pub(crate) fn select_indices(
        &self,
        x: &[f64],
        arms: Option<&[usize]>,
        mut scores: Option<&mut Scores>,
    ) -> CoreResult<Choice> {
        self.check_x(x)?;
        let n = arms.map_or(self.ids.len(), |a| a.len());
        if n == 0 {
            return Err(match arms {
                Some(_) => CoreError::invalid("empty eligible list: no arms to select from"),
                None => CoreError::invalid("the bandit has no arms to select from"),
            });
        }
        let eps = self.params.forced_sampling;
        let forced = explore::forced_position(&self.rng, eps, n);
        let draws = self.draws(arms);
        // (arm index, mean, bonus, total) of the greedy arm and of the forced position.
        let mut best = (usize::MAX, f64::NAN, f64::NAN, f64::NAN);
        let mut picked = best;
        let mut best_mean = f64::NEG_INFINITY;
        let ids = &self.ids[..];
        if forced.is_none() && scores.is_none() {
            // The common case gets its own loop without the bookkeeping below (hybrid K=1000, d=8: 1.03 -> 0.99
            // of the time of the pre-split build, mean of 6 instances).
            self.scan(
                x,
                arms,
                draws,
                Simd::Best,
                #[inline(always)]
                |_, i, m, b, t| track_best(ids, &mut best, &mut best_mean, (i, m, b, t)),
            );
        } else {
            self.scan(
                x,
                arms,
                draws,
                Simd::Best,
                #[inline(always)]
                |pos, i, m, b, t| {
                    track_best(ids, &mut best, &mut best_mean, (i, m, b, t));
                    if forced == Some(pos) {
                        picked = (i, m, b, t);
                    }
                    if let Some(s) = scores.as_deref_mut() {
                        s.ids.push(ids[i].clone());
                        s.mean.push(m);
                        s.bonus.push(b);
                        s.total.push(t);
                    }
                },
            );
        }
        let greedy = best;
        let (i, mean, bonus, total) = if forced.is_some() { picked } else { greedy };
        let multiplicity = arms.map_or(1, |list| list.iter().filter(|&&j| j == i).count());
        Ok(Choice {
            id: self.ids[i].clone(),
            mean,
            bonus,
            total,
            propensity: explore::propensity(
                self.params.policy.exploration(),
                eps,
                i == greedy.0,
                multiplicity,
                n,
            ),
            exploratory: mean < best_mean,
        })
    }

    /// Selects among arms by id (`None`: all arms).
    pub fn select<S: AsRef<str>>(&self, x: &[f64], arms: Option<&[S]>) -> CoreResult<Choice> {
        match arms {
            None => self.select_indices(x, None, None),
            Some(ids) => {
                let idx = self.resolve(ids)?;
                self.select_indices(x, Some(&idx), None)
            }
        }
    }

    /// Adds one observation: `reward` for `arm_id` in context `x`.
    pub fn update(&mut self, arm_id: &str, x: &[f64], reward: f64) -> CoreResult<()> {
        let i = self.arm_index(arm_id)?;
        self.check_observation(i, x, reward, "x")?;
        self.stats.apply(i, x, reward);
        self.n_updates += 1;
        self.stats.refresh();
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
        let d = self.params.device_dim;
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
        for ((&i, x), &r) in idx.iter().zip(xs.chunks_exact(d)).zip(rewards) {
            self.stats.apply(i, x, r);
            self.n_updates += 1;
        }
        if n > 0 {
            self.stats.refresh();
        }
        Ok(())
    }

    pub fn arm_stats(&self, arm_id: &str) -> CoreResult<ArmStats> {
        Ok(self.stats.arm_stats(self.arm_index(arm_id)?))
    }

    pub fn shared_stats(&self) -> CoreResult<SharedStats> {
        self.stats.shared_stats().ok_or_else(|| {
            CoreError::invalid(format!(
                "shared_stats: policy {:?} with model_dim {} keeps no shared statistics (hybrid only)",
                self.params.policy.name(),
                self.params.model_dim
            ))
        })
    }

    /// Id of the arm at position `i` (snapshot encoding).
    pub(crate) fn id_at(&self, i: usize) -> &str {
        &self.ids[i]
    }
}
