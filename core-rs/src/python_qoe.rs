//! The PyO3 binding of [`QoeModel`] (`edgesel_server._core.QoeModel`); same locking and GIL rules as
//! `python.rs`: inputs are copied out first, the numeric work runs detached under the lock.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use numpy::PyArray1;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::error::CoreResult;
use crate::python::{int_arg, matrix_arg, str_seq, strs, value_error, vec_arg};
use crate::qoe_model::{Feedback, Observation, QoeModel, QoeParams, QoeScores, TARGET_NAMES};
use crate::qoe_spec::{Prefs, QoeSpec, Shape, N_TERMS, TERM_NAMES};

const SPEC_KEYS: [&str; 14] = [
    "weights",
    "rating_min",
    "rating_max",
    "latency_budget_ms",
    "latency_shape",
    "latency_steepness",
    "energy_budget_mj",
    "energy_shape",
    "energy_steepness",
    "latency_limit_ms",
    "accuracy_floor",
    "accuracy_ceiling",
    "reward_min",
    "reward_max",
];

/// Weights by measurement name (`user_rating`, `latency_ms`, `energy_mj`, `accuracy`); unknown names fail.
fn weights_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<[Option<f64>; N_TERMS]> {
    let mut out = [None; N_TERMS];
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(out);
    };
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("weights must be a dict of name -> float"))?;
    for (k, v) in dict.iter() {
        let name: String = k.extract()?;
        let i = TERM_NAMES.iter().position(|n| *n == name).ok_or_else(|| {
            value_error(format!(
                "unknown weight {name:?}; known: {}",
                TERM_NAMES.join(", ")
            ))
        })?;
        out[i] = Some(v.extract::<f64>()?);
    }
    Ok(out)
}

fn spec_arg(obj: Option<&Bound<'_, PyAny>>) -> PyResult<QoeSpec> {
    let mut spec = QoeSpec::default();
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(spec);
    };
    let dict = obj
        .cast::<PyDict>()
        .map_err(|_| PyTypeError::new_err("spec must be a dict"))?;
    for (k, v) in dict.iter() {
        let key: String = k.extract()?;
        let num = || -> PyResult<f64> {
            v.extract::<f64>()
                .map_err(|_| PyTypeError::new_err(format!("spec {key} must be a number")))
        };
        match key.as_str() {
            "weights" => {
                for (i, w) in weights_arg(Some(&v))?.iter().enumerate() {
                    if let Some(w) = w {
                        spec.weights[i] = *w;
                    } else {
                        spec.weights[i] = 0.0; // a weights table lists every term that counts
                    }
                }
            }
            "rating_min" => spec.rating_min = num()?,
            "rating_max" => spec.rating_max = num()?,
            "latency_budget_ms" => spec.latency_budget_ms = num()?,
            "latency_steepness" => spec.latency_steepness = num()?,
            "energy_budget_mj" => spec.energy_budget_mj = num()?,
            "energy_steepness" => spec.energy_steepness = num()?,
            "latency_limit_ms" => {
                spec.latency_limit_ms = if v.is_none() { f64::INFINITY } else { num()? }
            }
            "accuracy_floor" => spec.accuracy_floor = num()?,
            "accuracy_ceiling" => spec.accuracy_ceiling = num()?,
            "reward_min" => spec.reward_min = num()?,
            "reward_max" => spec.reward_max = num()?,
            "latency_shape" => spec.latency_shape = Shape::parse(&v.extract::<String>()?, &key)?,
            "energy_shape" => spec.energy_shape = Shape::parse(&v.extract::<String>()?, &key)?,
            _ => {
                return Err(value_error(format!(
                    "unknown spec key {key:?}; known: {}",
                    SPEC_KEYS.join(", ")
                )))
            }
        }
    }
    spec.validate()?;
    Ok(spec)
}

/// The arms a call names (None: every arm), as the caller's own `str` objects, kept to answer with.
fn named_arms<'py>(
    arms: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<Vec<Bound<'py, PyString>>>> {
    arms.filter(|o| !o.is_none())
        .map(|o| str_seq(o, "arms"))
        .transpose()
}

/// The scored arms' ids as a list: the caller's objects when it named them, else new ones.
fn id_list<'py>(
    py: Python<'py>,
    named: Option<Vec<Bound<'py, PyString>>>,
    s: &QoeScores,
) -> PyResult<Bound<'py, PyList>> {
    match named {
        Some(objs) => PyList::new(py, objs),
        None => PyList::new(py, s.ids.iter().map(|i| PyString::new(py, i))),
    }
}

/// `score`'s result as Python: (ids, expected, bonus, optimistic), the arrays taking the vectors over.
fn scores_tuple<'py>(
    py: Python<'py>,
    ids: Bound<'py, PyList>,
    s: QoeScores,
) -> PyResult<Bound<'py, PyTuple>> {
    (
        ids,
        PyArray1::from_vec(py, s.expected),
        PyArray1::from_vec(py, s.bonus),
        PyArray1::from_vec(py, s.optimistic),
    )
        .into_pyobject(py)
}

fn spec_to_py<'py>(py: Python<'py>, s: &QoeSpec) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let w = PyDict::new(py);
    for (name, v) in TERM_NAMES.iter().zip(s.weights) {
        w.set_item(name, v)?;
    }
    d.set_item("weights", w)?;
    d.set_item("rating_min", s.rating_min)?;
    d.set_item("rating_max", s.rating_max)?;
    d.set_item("latency_budget_ms", s.latency_budget_ms)?;
    d.set_item("latency_shape", s.latency_shape.name())?;
    d.set_item("latency_steepness", s.latency_steepness)?;
    d.set_item("energy_budget_mj", s.energy_budget_mj)?;
    d.set_item("energy_shape", s.energy_shape.name())?;
    d.set_item("energy_steepness", s.energy_steepness)?;
    if s.latency_limit_ms.is_finite() {
        d.set_item("latency_limit_ms", s.latency_limit_ms)?;
    } else {
        d.set_item("latency_limit_ms", py.None())?;
    }
    d.set_item("accuracy_floor", s.accuracy_floor)?;
    d.set_item("accuracy_ceiling", s.accuracy_ceiling)?;
    d.set_item("reward_min", s.reward_min)?;
    d.set_item("reward_max", s.reward_max)?;
    Ok(d)
}

/// Learns latency, energy, rating and "does it run" per device × model and picks the model with the best
/// optimistic QoE under each request's preferences; see docs/core.md, "The QoE model".
#[pyclass(module = "edgesel_server._core", name = "QoeModel", frozen)]
pub struct PyQoeModel {
    params: QoeParams,
    inner: RwLock<QoeModel>,
}

impl PyQoeModel {
    fn wrap(m: QoeModel) -> Self {
        PyQoeModel {
            params: *m.params(),
            inner: RwLock::new(m),
        }
    }
    fn read(&self) -> RwLockReadGuard<'_, QoeModel> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write(&self) -> RwLockWriteGuard<'_, QoeModel> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
    fn prefs(
        &self,
        latency_budget_ms: Option<f64>,
        energy_budget_mj: Option<f64>,
        weights: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Prefs> {
        let w = weights_arg(weights)?;
        Ok(self
            .read()
            .spec()
            .resolve(latency_budget_ms, energy_budget_mj, w)?)
    }
}

#[pymethods]
impl PyQoeModel {
    #[new]
    #[pyo3(
        signature = (device_dim, model_dim = None, spec = None, *, alpha = 1.0, lam = 1.0, refactor_every = None, baseline_model = None, max_loss = 0.05, half_life = None),
        text_signature = "(device_dim, model_dim=0, spec=None, *, alpha=1.0, lam=1.0, refactor_every=1000, baseline_model=None, max_loss=0.05, half_life=0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        device_dim: &Bound<'_, PyAny>,
        model_dim: Option<&Bound<'_, PyAny>>,
        spec: Option<&Bound<'_, PyAny>>,
        alpha: f64,
        lam: f64,
        refactor_every: Option<&Bound<'_, PyAny>>,
        baseline_model: Option<String>,
        max_loss: f64,
        half_life: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let device_dim = int_arg(device_dim, "device_dim")?;
        let half_life = half_life.map_or(Ok(0), |o| int_arg(o, "half_life"))?;
        let model_dim = model_dim.map_or(Ok(0), |o| int_arg(o, "model_dim"))?;
        let refactor_every = refactor_every.map_or(Ok(1000), |o| int_arg(o, "refactor_every"))?;
        let params = QoeParams::new(device_dim, model_dim, alpha, lam, refactor_every, half_life)?;
        let spec = spec_arg(spec)?;
        let m = QoeModel::new(params, spec, baseline_model.map(|b| (b, max_loss)))?;
        Ok(PyQoeModel::wrap(m))
    }

    #[getter]
    fn policy(&self) -> &'static str {
        "qoe_model"
    }
    #[getter]
    fn device_dim(&self) -> usize {
        self.params.device_dim
    }
    #[getter]
    fn model_dim(&self) -> usize {
        self.params.model_dim
    }
    #[getter]
    fn alpha(&self) -> f64 {
        self.params.alpha
    }
    #[getter]
    fn lam(&self) -> f64 {
        self.params.lam
    }
    #[getter]
    fn refactor_every(&self) -> u64 {
        self.params.refactor_every
    }
    /// Forgetting half-life of every target, in that target's applied events (0 = none).
    #[getter]
    fn half_life(&self) -> u64 {
        self.params.half_life
    }
    #[getter]
    fn n_updates(&self) -> u64 {
        self.read().n_updates()
    }
    /// The QoE function the model composes with, as a dict (the constructor's `spec`, completed).
    #[getter]
    fn spec<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        spec_to_py(py, self.read().spec())
    }

    #[pyo3(signature = (arm_id, model_features = None, *, accuracy = None))]
    fn add_arm(
        &self,
        py: Python<'_>,
        arm_id: &str,
        model_features: Option<&Bound<'_, PyAny>>,
        accuracy: Option<f64>,
    ) -> PyResult<()> {
        let m = model_features
            .filter(|o| !o.is_none())
            .map(|o| vec_arg(o, "model_features"))
            .transpose()?;
        py.detach(|| self.write().add_arm(arm_id, m.as_deref(), accuracy))?;
        Ok(())
    }

    fn remove_arm(&self, py: Python<'_>, arm_id: &str) -> PyResult<()> {
        py.detach(|| self.write().remove_arm(arm_id))?;
        Ok(())
    }

    fn arm_ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let ids = py.detach(|| self.read().arm_ids());
        PyList::new(py, ids.iter().map(|s| PyString::new(py, s)))
    }

    fn __len__(&self) -> usize {
        self.read().len()
    }

    fn __contains__(&self, arm_id: &Bound<'_, PyAny>) -> PyResult<bool> {
        match arm_id.cast::<PyString>() {
            Ok(s) => Ok(self.read().contains(s.to_str()?)),
            Err(_) => Ok(false),
        }
    }

    fn __repr__(&self) -> String {
        let m = self.read();
        format!(
            "QoeModel(device_dim={}, model_dim={}, alpha={}, lam={}, arms={}, n_updates={})",
            self.params.device_dim,
            self.params.model_dim,
            self.params.alpha,
            self.params.lam,
            m.len(),
            m.n_updates()
        )
    }

    /// Per-arm (ids, expected QoE, bonus, optimistic QoE) for context x under this request's preferences.
    #[pyo3(signature = (x, arms = None, *, latency_budget_ms = None, energy_budget_mj = None, weights = None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        arms: Option<&Bound<'py, PyAny>>,
        latency_budget_ms: Option<f64>,
        energy_budget_mj: Option<f64>,
        weights: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let x = vec_arg(x, "x")?;
        let p = self.prefs(latency_budget_ms, energy_budget_mj, weights)?;
        let named = named_arms(arms)?;
        let names = named.as_deref().map(strs).transpose()?;
        let s = py.detach(|| self.read().score(&x, names.as_deref(), &p))?;
        scores_tuple(py, id_list(py, named, &s)?, s)
    }

    /// `select` for a server: (arm id, expected, bonus, optimistic, exploratory, scores) in one scoring
    /// pass, where exploratory says another scored arm has a higher expected QoE and scores is `score`'s
    /// tuple with `with_scores`, else None (building it costs more than the choice).
    #[pyo3(signature = (x, arms = None, *, latency_budget_ms = None, energy_budget_mj = None, weights = None, with_scores = false))]
    #[allow(clippy::too_many_arguments)]
    fn choose<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        arms: Option<&Bound<'py, PyAny>>,
        latency_budget_ms: Option<f64>,
        energy_budget_mj: Option<f64>,
        weights: Option<&Bound<'py, PyAny>>,
        with_scores: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let x = vec_arg(x, "x")?;
        let p = self.prefs(latency_budget_ms, energy_budget_mj, weights)?;
        let named = named_arms(arms)?;
        let names = named.as_deref().map(strs).transpose()?;
        let (c, s) = py.detach(|| self.read().choose(&x, names.as_deref(), &p))?;
        // The caller's own string object when it named the arms: no copy of the id.
        let id = match &named {
            Some(objs) => objs[c.index].clone().into_any(),
            None => PyString::new(py, &c.id).into_any(),
        };
        let scores = if with_scores {
            scores_tuple(py, id_list(py, named, &s)?, s)?.into_any()
        } else {
            py.None().into_bound(py)
        };
        (id, c.expected, c.bonus, c.optimistic, c.exploratory, scores).into_pyobject(py)
    }

    /// (arm id, expected, bonus, optimistic, conservative_fallback): the highest optimistic QoE (ties to
    /// the smallest id), or the baseline when conservative mode holds exploration back.
    #[pyo3(signature = (x, arms = None, *, latency_budget_ms = None, energy_budget_mj = None, weights = None))]
    #[allow(clippy::too_many_arguments)]
    fn select<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        arms: Option<&Bound<'py, PyAny>>,
        latency_budget_ms: Option<f64>,
        energy_budget_mj: Option<f64>,
        weights: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyString>, f64, f64, f64, bool)> {
        let x = vec_arg(x, "x")?;
        let p = self.prefs(latency_budget_ms, energy_budget_mj, weights)?;
        let named = named_arms(arms)?;
        let names = named.as_deref().map(strs).transpose()?;
        let c = py.detach(|| self.read().select(&x, names.as_deref(), &p))?;
        Ok((
            PyString::new(py, &c.id),
            c.expected,
            c.bonus,
            c.optimistic,
            c.conservative_fallback,
        ))
    }

    /// Learns one Feedback (see docs/core.md): `reward` is the decision's QoE, the keywords what the device
    /// measured (or `failed=True`) and the decision's preferences.
    #[pyo3(signature = (arm_id, x, reward, *, latency_ms = None, energy_mj = None, user_rating = None, accuracy = None, failed = false, latency_budget_ms = None, energy_budget_mj = None, weights = None))]
    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        py: Python<'_>,
        arm_id: &str,
        x: &Bound<'_, PyAny>,
        reward: f64,
        latency_ms: Option<f64>,
        energy_mj: Option<f64>,
        user_rating: Option<f64>,
        accuracy: Option<f64>,
        failed: bool,
        latency_budget_ms: Option<f64>,
        energy_budget_mj: Option<f64>,
        weights: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let x = vec_arg(x, "x")?;
        let p = self.prefs(latency_budget_ms, energy_budget_mj, weights)?;
        let obs = Observation {
            latency_ms,
            energy_mj,
            user_rating,
            accuracy,
            failed,
        };
        py.detach(|| self.write().update(arm_id, &x, reward, &obs, &p))?;
        Ok(())
    }

    /// Learns n Feedbacks in order, each exactly as `update` with that row's arguments (a replica applying
    /// the log): `xs` is (n, device_dim); `latency_ms`, `energy_mj`, `user_rating`, `accuracy`,
    /// `latency_budget_ms` and `energy_budget_mj` hold one float per row, NaN where the Feedback did not give
    /// it (`None` for `update`); `failed` one bool per row; `weights` one dict or None per row (or None for
    /// every row).
    /// Returns how many rows were learned: n, or the rows before the first one `update` would refuse
    /// (that row is not learned; `update` with its arguments raises the error).
    #[pyo3(signature = (arm_ids, xs, rewards, *, latency_ms, energy_mj, user_rating, accuracy, failed, latency_budget_ms, energy_budget_mj, weights = None))]
    #[allow(clippy::too_many_arguments)]
    fn update_batch(
        &self,
        py: Python<'_>,
        arm_ids: &Bound<'_, PyAny>,
        xs: &Bound<'_, PyAny>,
        rewards: &Bound<'_, PyAny>,
        latency_ms: &Bound<'_, PyAny>,
        energy_mj: &Bound<'_, PyAny>,
        user_rating: &Bound<'_, PyAny>,
        accuracy: &Bound<'_, PyAny>,
        failed: Vec<bool>,
        latency_budget_ms: &Bound<'_, PyAny>,
        energy_budget_mj: &Bound<'_, PyAny>,
        weights: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<usize> {
        let objs = str_seq(arm_ids, "arm_ids")?;
        let names = strs(&objs)?;
        let n = names.len();
        let (rows, flat) = matrix_arg(xs, "xs", self.params.device_dim)?;
        let columns = [
            ("rewards", vec_arg(rewards, "rewards")?),
            ("latency_ms", vec_arg(latency_ms, "latency_ms")?),
            ("energy_mj", vec_arg(energy_mj, "energy_mj")?),
            ("user_rating", vec_arg(user_rating, "user_rating")?),
            ("accuracy", vec_arg(accuracy, "accuracy")?),
            (
                "latency_budget_ms",
                vec_arg(latency_budget_ms, "latency_budget_ms")?,
            ),
            (
                "energy_budget_mj",
                vec_arg(energy_budget_mj, "energy_budget_mj")?,
            ),
        ];
        let weights: Option<Vec<Bound<'_, PyAny>>> = weights
            .filter(|o| !o.is_none())
            .map(|o| {
                o.cast::<PyList>().map(|l| l.iter().collect()).map_err(|_| {
                    PyTypeError::new_err("weights must be a list of dict or None per row")
                })
            })
            .transpose()?;
        let lengths = [rows, failed.len(), weights.as_ref().map_or(n, Vec::len)];
        if let Some((name, col)) = columns.iter().find(|(_, c)| c.len() != n) {
            return Err(value_error(format!(
                "{name} has {} entries but arm_ids has {n}",
                col.len()
            )));
        }
        if lengths.iter().any(|&l| l != n) {
            return Err(value_error(format!(
                "xs rows, failed and weights must have one entry per arm id ({n}), got {lengths:?}"
            )));
        }
        let [rewards, latency, energy, rating, acc, latency_budget, energy_budget] =
            columns.map(|(_, c)| c);
        let given = |v: f64| if v.is_nan() { None } else { Some(v) };
        // Preferences first (they need the GIL for the weights dicts): a row whose preferences `update` would
        // refuse ends the batch there, like any other refused row.
        let mut prefs = Vec::with_capacity(n);
        for j in 0..n {
            let w = weights.as_ref().map(|w| &w[j]);
            match self.prefs(given(latency_budget[j]), given(energy_budget[j]), w) {
                Ok(p) => prefs.push(p),
                Err(_) => break,
            }
        }
        let d = self.params.device_dim;
        let feedback: Vec<Feedback<'_>> = prefs
            .iter()
            .enumerate()
            .map(|(j, p)| Feedback {
                arm_id: names[j],
                x: &flat[j * d..(j + 1) * d],
                reward: rewards[j],
                obs: Observation {
                    latency_ms: given(latency[j]),
                    energy_mj: given(energy[j]),
                    user_rating: given(rating[j]),
                    accuracy: given(acc[j]),
                    failed: failed[j],
                },
                prefs: *p,
            })
            .collect();
        let (learned, _) = py.detach(|| self.write().update_batch(&feedback));
        Ok(learned)
    }

    /// Per target (log_latency, log_energy, rating, runs): n_updates and the residual sd in use.
    fn target_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.read().target_stats();
        let d = PyDict::new(py);
        for (name, (n, sd)) in TARGET_NAMES.iter().zip(stats) {
            let t = PyDict::new(py);
            t.set_item("n_updates", n)?;
            t.set_item("noise_sd", sd)?;
            d.set_item(name, t)?;
        }
        Ok(d)
    }

    /// Conservative mode's state (baseline_model, max_loss, played, baseline_total), or None when off.
    fn conservative_state<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let m = self.read();
        let Some(c) = m.conservative() else {
            return Ok(None);
        };
        let d = PyDict::new(py);
        d.set_item("baseline_model", &c.baseline)?;
        d.set_item("max_loss", c.max_loss)?;
        d.set_item("played", c.played)?;
        d.set_item("baseline_total", c.baseline_total)?;
        Ok(Some(d))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let blob = py.detach(|| self.read().to_bytes());
        PyBytes::new(py, &blob)
    }

    /// Restores a snapshot; with `half_life`, the restored model forgets with that half-life from now on
    /// instead of the snapshot's (a setting, like `Bandit.from_bytes`).
    #[staticmethod]
    #[pyo3(signature = (data, *, half_life = None))]
    fn from_bytes(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        half_life: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let half_life = half_life.map(|o| int_arg(o, "half_life")).transpose()?;
        let raw = if let Ok(bytes) = data.cast::<PyBytes>() {
            bytes.as_bytes().to_vec()
        } else if let Ok(ba) = data.cast::<PyByteArray>() {
            ba.to_vec()
        } else {
            return Err(PyTypeError::new_err("data must be bytes"));
        };
        let m = py.detach(|| -> CoreResult<QoeModel> {
            let mut m = QoeModel::from_bytes(&raw)?;
            if let Some(n) = half_life {
                m.set_half_life(n)?;
            }
            Ok(m)
        })?;
        Ok(PyQoeModel::wrap(m))
    }
}
