//! The PyO3 binding `edgesel_server._core`. The methods here only translate between Python objects and
//! the pure-Rust [`Bandit`]; the math lives in the other modules.
//!
//! Concurrency: the state sits behind an `RwLock` (score/select/stats/to_bytes read, the rest write).
//! Inputs are copied out of Python objects while attached to the interpreter, then the lock is taken and
//! the numeric work done inside `Python::detach` (GIL released). No lock holder ever waits for the GIL,
//! so a thread that holds the GIL and waits for the lock cannot deadlock.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use numpy::ndarray::Array2;
use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::bandit::{Bandit, Choice, Scores};
use crate::error::CoreError as RustCoreError;
use crate::params::{Params, Policy};
use crate::{features, snapshot};

create_exception!(
    edgesel_server._core,
    CoreError,
    PyValueError,
    "Base of every error the bandit core raises for a bad argument or state (a ValueError)."
);
create_exception!(
    edgesel_server._core,
    UnknownArmError,
    CoreError,
    "An arm id that the bandit does not have."
);
create_exception!(
    edgesel_server._core,
    SnapshotError,
    CoreError,
    "A blob that is not a valid edgesel snapshot (bad magic, unsupported version, checksum mismatch, malformed)."
);

impl From<RustCoreError> for PyErr {
    fn from(e: RustCoreError) -> PyErr {
        match e {
            RustCoreError::Invalid(m) => CoreError::new_err(m),
            RustCoreError::UnknownArm(m) => UnknownArmError::new_err(m),
            RustCoreError::Snapshot(m) => SnapshotError::new_err(m),
        }
    }
}

pub(crate) fn value_error(msg: String) -> PyErr {
    CoreError::new_err(msg)
}

/// A 1-D vector of floats: a float64 ndarray (read in place, any strides), another numeric ndarray
/// (converted), or a sequence of floats.
pub(crate) fn vec_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<f64>> {
    if let Ok(arr) = obj.cast::<PyArray1<f64>>() {
        let ro = arr
            .try_readonly()
            .map_err(|e| value_error(format!("{name}: cannot read array ({e})")))?;
        return Ok(match ro.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => ro.as_array().iter().copied().collect(),
        });
    }
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        if arr.ndim() != 1 {
            return Err(value_error(format!(
                "{name} must be a 1-D array, got shape {:?}",
                arr.shape()
            )));
        }
        let conv = obj.call_method1("astype", ("float64",)).map_err(|e| {
            value_error(format!("{name} must be a numeric 1-D array (float64): {e}"))
        })?;
        if conv.cast::<PyArray1<f64>>().is_ok() {
            return vec_arg(&conv, name);
        }
        return Err(value_error(format!("{name} must be a float64 array")));
    }
    if obj.is_instance_of::<PyString>() || obj.is_instance_of::<PyBytes>() {
        return Err(value_error(format!(
            "{name} must be a sequence of floats, not a string"
        )));
    }
    obj.extract::<Vec<f64>>().map_err(|_| {
        value_error(format!(
            "{name} must be a 1-D float64 array or a sequence of floats"
        ))
    })
}

/// A 2-D matrix of floats with `ncols` columns, returned row-major with its row count.
pub(crate) fn matrix_arg(
    obj: &Bound<'_, PyAny>,
    name: &str,
    ncols: usize,
) -> PyResult<(usize, Vec<f64>)> {
    if let Ok(arr) = obj.cast::<PyArray2<f64>>() {
        let ro = arr
            .try_readonly()
            .map_err(|e| value_error(format!("{name}: cannot read array ({e})")))?;
        let view = ro.as_array();
        let (rows, cols) = view.dim();
        if cols != ncols {
            return Err(value_error(format!(
                "{name} must have shape (n, {ncols}), got ({rows}, {cols})"
            )));
        }
        let flat = match ro.as_slice() {
            Ok(s) => s.to_vec(),
            Err(_) => view.iter().copied().collect(),
        };
        return Ok((rows, flat));
    }
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        if arr.ndim() != 2 {
            return Err(value_error(format!(
                "{name} must be a 2-D array of shape (n, {ncols}), got shape {:?}",
                arr.shape()
            )));
        }
        let conv = obj.call_method1("astype", ("float64",)).map_err(|e| {
            value_error(format!("{name} must be a numeric 2-D array (float64): {e}"))
        })?;
        if conv.cast::<PyArray2<f64>>().is_ok() {
            return matrix_arg(&conv, name, ncols);
        }
        return Err(value_error(format!("{name} must be a float64 array")));
    }
    let rows: Vec<Vec<f64>> = obj.extract().map_err(|_| {
        value_error(format!(
            "{name} must be a 2-D float64 array of shape (n, {ncols}) or a sequence of float sequences"
        ))
    })?;
    let mut flat = Vec::with_capacity(rows.len() * ncols);
    for (i, r) in rows.iter().enumerate() {
        if r.len() != ncols {
            return Err(value_error(format!(
                "{name} row {i} has length {}, expected {ncols}",
                r.len()
            )));
        }
        flat.extend_from_slice(r);
    }
    Ok((rows.len(), flat))
}

/// A sequence of `str` (a single `str` is rejected, it is almost always a mistake).
pub(crate) fn str_seq<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<Vec<Bound<'py, PyString>>> {
    if obj.is_instance_of::<PyString>() {
        return Err(value_error(format!(
            "{name} must be a sequence of str, not a single str"
        )));
    }
    let not_seq = || value_error(format!("{name} must be a sequence of str"));
    let cast_item = |item: Bound<'py, PyAny>| -> PyResult<Bound<'py, PyString>> {
        item.cast_into::<PyString>().map_err(|_| not_seq())
    };
    if let Ok(list) = obj.cast::<PyList>() {
        return list.iter().map(cast_item).collect();
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple.iter().map(cast_item).collect();
    }
    let it = obj.try_iter().map_err(|_| not_seq())?;
    it.map(|item| cast_item(item?)).collect()
}

pub(crate) fn strs<'a>(v: &'a [Bound<'_, PyString>]) -> PyResult<Vec<&'a str>> {
    v.iter().map(|s| s.to_str()).collect()
}

/// Integer argument as i64; too large / too small ints become a ValueError naming the argument.
pub(crate) fn int_arg(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<i64> {
    obj.extract::<i64>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            value_error(format!("{name} is out of range: {obj}"))
        } else {
            PyTypeError::new_err(format!("{name} must be an int"))
        }
    })
}

fn matrix_to_py<'py>(py: Python<'py>, v: Vec<f64>, n: usize) -> PyResult<Bound<'py, PyAny>> {
    let arr = Array2::from_shape_vec((n, n), v)
        .map_err(|e| value_error(format!("internal shape error: {e}")))?;
    Ok(arr.into_pyarray(py).into_any())
}

/// `(ids, mean, bonus, total)`; `ids` are the caller's own `str` objects when it passed a list.
fn scores_to_py<'py>(
    py: Python<'py>,
    s: Scores,
    ids: Option<Vec<Bound<'py, PyString>>>,
) -> PyResult<Bound<'py, PyTuple>> {
    let ids = match ids {
        Some(objs) => PyList::new(py, objs)?,
        None => PyList::new(py, s.ids.iter().map(|i| PyString::new(py, i)))?,
    };
    let out = (
        ids,
        PyArray1::from_vec(py, s.mean),
        PyArray1::from_vec(py, s.bonus),
        PyArray1::from_vec(py, s.total),
    );
    out.into_pyobject(py)
}

/// The result of `Bandit.select` (docs/core.md, "Selection").
#[pyclass(module = "edgesel_server._core", name = "Selection", frozen, get_all)]
pub struct Selection {
    id: String,
    mean: f64,
    bonus: f64,
    total: f64,
    propensity: f64,
    exploratory: bool,
    scores: Option<Py<PyTuple>>,
}

impl Selection {
    fn new(c: Choice, scores: Option<Py<PyTuple>>) -> Self {
        Selection {
            id: c.id.to_string(),
            mean: c.mean,
            bonus: c.bonus,
            total: c.total,
            propensity: c.propensity,
            exploratory: c.exploratory,
            scores,
        }
    }
}

#[pymethods]
impl Selection {
    fn __repr__(&self) -> String {
        format!(
            "Selection(id={:?}, mean={}, bonus={}, total={}, propensity={}, exploratory={})",
            self.id,
            self.mean,
            self.bonus,
            self.total,
            self.propensity,
            if self.exploratory { "True" } else { "False" }
        )
    }
}

/// Whether `policy` gives arms their model feature vector (the server then passes
/// `model_dim = len(model schema)`, else 0).
#[pyfunction]
fn uses_model_features(policy: &str) -> PyResult<bool> {
    Ok(Policy::parse(policy)?.uses_model_features())
}

/// A contextual bandit (disjoint LinUCB, hybrid LinUCB or linear Thompson sampling); see docs/core.md.
#[pyclass(module = "edgesel_server._core", name = "Bandit", frozen)]
pub struct PyBandit {
    params: Params,
    joint_dim: usize,
    inner: RwLock<Bandit>,
}

impl PyBandit {
    fn wrap(b: Bandit) -> Self {
        PyBandit {
            params: *b.params(),
            joint_dim: b.joint_dim(),
            inner: RwLock::new(b),
        }
    }
    fn read(&self) -> RwLockReadGuard<'_, Bandit> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn write(&self) -> RwLockWriteGuard<'_, Bandit> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl PyBandit {
    #[new]
    #[pyo3(
        signature = (policy, device_dim, model_dim = None, *, alpha = 1.0, lam = 1.0, refactor_every = None, seed = None, forced_sampling = 0.0, half_life = None),
        text_signature = "(policy, device_dim, model_dim=0, *, alpha=1.0, lam=1.0, refactor_every=1000, seed=0, forced_sampling=0.0, half_life=0)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        policy: &str,
        device_dim: &Bound<'_, PyAny>,
        model_dim: Option<&Bound<'_, PyAny>>,
        alpha: f64,
        lam: f64,
        refactor_every: Option<&Bound<'_, PyAny>>,
        seed: Option<&Bound<'_, PyAny>>,
        forced_sampling: f64,
        half_life: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let device_dim = int_arg(device_dim, "device_dim")?;
        let half_life = half_life.map_or(Ok(0), |o| int_arg(o, "half_life"))?;
        let model_dim = model_dim.map_or(Ok(0), |o| int_arg(o, "model_dim"))?;
        let refactor_every = refactor_every.map_or(Ok(1000), |o| int_arg(o, "refactor_every"))?;
        let seed = match seed {
            None => 0,
            Some(o) => o.extract::<u64>().map_err(|e| {
                if e.is_instance_of::<PyOverflowError>(o.py()) {
                    value_error(format!("seed must be an int in [0, 2**64), got {o}"))
                } else {
                    PyTypeError::new_err("seed must be an int")
                }
            })?,
        };
        let params = Params::new(
            policy,
            device_dim,
            model_dim,
            alpha,
            lam,
            refactor_every,
            seed,
        )?
        .with_forced_sampling(forced_sampling)?
        .with_half_life(half_life)?;
        Ok(PyBandit::wrap(Bandit::new(params)))
    }

    #[getter]
    fn policy(&self) -> &'static str {
        self.params.policy.name()
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
    fn joint_dim(&self) -> usize {
        self.joint_dim
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
    #[getter]
    fn forced_sampling(&self) -> f64 {
        self.params.forced_sampling
    }
    #[getter]
    fn half_life(&self) -> u64 {
        self.params.half_life
    }
    #[getter]
    fn uses_model_features(&self) -> bool {
        self.params.policy.uses_model_features()
    }
    #[getter]
    fn n_updates(&self) -> u64 {
        self.read().n_updates()
    }

    /// Adds an arm (a catalog model) with its normalized feature vector (length model_dim).
    #[pyo3(signature = (arm_id, model_features = None))]
    fn add_arm(
        &self,
        py: Python<'_>,
        arm_id: &str,
        model_features: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let m = model_features
            .filter(|o| !o.is_none())
            .map(|o| vec_arg(o, "model_features"))
            .transpose()?;
        py.detach(|| self.write().add_arm(arm_id, m.as_deref()))?;
        Ok(())
    }

    /// Removes an arm and forgets its own statistics (shared statistics stay).
    fn remove_arm(&self, py: Python<'_>, arm_id: &str) -> PyResult<()> {
        py.detach(|| self.write().remove_arm(arm_id))?;
        Ok(())
    }

    /// Arm ids in insertion order.
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
        let b = self.read();
        format!(
            "Bandit(policy={:?}, device_dim={}, model_dim={}, alpha={}, lam={}, forced_sampling={}, arms={}, n_updates={})",
            self.params.policy.name(),
            self.params.device_dim,
            self.params.model_dim,
            self.params.alpha,
            self.params.lam,
            self.params.forced_sampling,
            b.len(),
            b.n_updates()
        )
    }

    /// Per-arm (ids, mean, bonus, total) for context x; all arms (insertion order) if arms is None.
    #[pyo3(signature = (x, arms = None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        arms: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let x = vec_arg(x, "x")?;
        match arms.filter(|o| !o.is_none()) {
            None => {
                let s = py.detach(|| self.read().score_indices(&x, None))?;
                scores_to_py(py, s, None)
            }
            Some(obj) => {
                let objs = str_seq(obj, "arms")?;
                let names = strs(&objs)?;
                let s = py.detach(|| self.read().score(&x, Some(&names)))?;
                scores_to_py(py, s, Some(objs))
            }
        }
    }

    /// The decision for context x among arms (all arms if None): the highest total (ties to the smallest
    /// id) or, with probability forced_sampling, a uniformly random arm; with its propensity. With
    /// with_scores, the result also carries every scored arm (the same draws as the decision).
    #[pyo3(signature = (x, arms = None, *, with_scores = false))]
    fn select<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        arms: Option<&Bound<'py, PyAny>>,
        with_scores: bool,
    ) -> PyResult<Selection> {
        let x = vec_arg(x, "x")?;
        let mut scores = with_scores.then(Scores::default);
        let (c, objs) = match arms.filter(|o| !o.is_none()) {
            None => (
                py.detach(|| self.read().select_indices(&x, None, scores.as_mut()))?,
                None,
            ),
            Some(obj) => {
                let objs = str_seq(obj, "arms")?;
                let names = strs(&objs)?;
                if names.is_empty() {
                    return Err(value_error(
                        "empty eligible list: no arms to select from".into(),
                    ));
                }
                let c = py.detach(|| {
                    let b = self.read();
                    let idx = b.resolve(&names)?;
                    b.select_indices(&x, Some(&idx), scores.as_mut())
                })?;
                (c, Some(objs))
            }
        };
        let scores = scores
            .map(|s| scores_to_py(py, s, objs).map(Bound::unbind))
            .transpose()?;
        Ok(Selection::new(c, scores))
    }

    /// Adds one observation (reward of arm_id in context x).
    fn update(
        &self,
        py: Python<'_>,
        arm_id: &str,
        x: &Bound<'_, PyAny>,
        reward: f64,
    ) -> PyResult<()> {
        let x = vec_arg(x, "x")?;
        py.detach(|| self.write().update(arm_id, &x, reward))?;
        Ok(())
    }

    /// Adds n observations; validates all of them before applying any, then applies them in order.
    fn update_batch(
        &self,
        py: Python<'_>,
        arm_ids: &Bound<'_, PyAny>,
        xs: &Bound<'_, PyAny>,
        rewards: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let objs = str_seq(arm_ids, "arm_ids")?;
        let names = strs(&objs)?;
        let (rows, flat) = matrix_arg(xs, "xs", self.params.device_dim)?;
        if rows != names.len() {
            return Err(value_error(format!(
                "xs has {rows} rows but arm_ids has {} entries",
                names.len()
            )));
        }
        let rewards = vec_arg(rewards, "rewards")?;
        py.detach(|| self.write().update_batch(&names, &flat, &rewards))?;
        Ok(())
    }

    /// n_updates, theta (d,), model_features (p,), a (d, d), a_inv (d, d), b (d,) of one arm.
    fn arm_stats<'py>(&self, py: Python<'py>, arm_id: &str) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.read().arm_stats(arm_id))?;
        let d = self.params.device_dim;
        let dict = PyDict::new(py);
        dict.set_item("n_updates", s.n_updates)?;
        dict.set_item("theta", PyArray1::from_vec(py, s.theta))?;
        dict.set_item("model_features", PyArray1::from_vec(py, s.model_features))?;
        dict.set_item("a", matrix_to_py(py, s.a, d)?)?;
        dict.set_item("a_inv", matrix_to_py(py, s.a_inv, d)?)?;
        dict.set_item("b", PyArray1::from_vec(py, s.b))?;
        Ok(dict)
    }

    /// Hybrid statistics only: n_updates, beta (k,), a (k, k), a_inv (k, k), b (k,).
    fn shared_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.read().shared_stats())?;
        let k = self.joint_dim;
        let dict = PyDict::new(py);
        dict.set_item("n_updates", s.n_updates)?;
        dict.set_item("beta", PyArray1::from_vec(py, s.beta))?;
        dict.set_item("a", matrix_to_py(py, s.a, k)?)?;
        dict.set_item("a_inv", matrix_to_py(py, s.a_inv, k)?)?;
        dict.set_item("b", PyArray1::from_vec(py, s.b))?;
        Ok(dict)
    }

    /// The full state as a versioned, CRC-checked blob (see docs/core.md).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let blob = py.detach(|| snapshot::encode(&self.read()));
        PyBytes::new(py, &blob)
    }

    /// Restores a bandit from `to_bytes()` output; raises SnapshotError for anything else. With
    /// forced_sampling (half_life), the restored bandit uses that ε (half-life) instead of the snapshot's
    /// (settings, not state).
    #[staticmethod]
    #[pyo3(signature = (data, *, forced_sampling = None, half_life = None))]
    fn from_bytes(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        forced_sampling: Option<f64>,
        half_life: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut b = if let Ok(bytes) = data.cast::<PyBytes>() {
            let raw = bytes.as_bytes();
            py.detach(|| snapshot::decode(raw))?
        } else if let Ok(ba) = data.cast::<PyByteArray>() {
            let raw = ba.to_vec();
            py.detach(|| snapshot::decode(&raw))?
        } else {
            return Err(PyTypeError::new_err("data must be bytes"));
        };
        if let Some(eps) = forced_sampling {
            b.set_forced_sampling(eps)?;
        }
        if let Some(n) = half_life {
            b.set_half_life(int_arg(n, "half_life")?)?;
        }
        Ok(PyBandit::wrap(b))
    }

    /// The joint feature map z = [1, x] ⊗ [1, m] (row-major), length (len(x)+1)(len(m)+1).
    #[staticmethod]
    fn joint_features<'py>(
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        m: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let x = vec_arg(x, "x")?;
        let m = vec_arg(m, "m")?;
        for (v, name) in [(&x, "x"), (&m, "m")] {
            if let Some(i) = v.iter().position(|a| !a.is_finite()) {
                return Err(value_error(format!(
                    "{name} contains a non-finite value ({}) at index {i}",
                    v[i]
                )));
            }
        }
        Ok(PyArray1::from_vec(py, features::joint_features(&x, &m)))
    }
}

#[pymodule]
#[pyo3(name = "_core")]
fn core_module(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<PyBandit>()?;
    m.add_class::<crate::python_qoe::PyQoeModel>()?;
    m.add_class::<Selection>()?;
    m.add_class::<crate::python_schema::PyFeaturePlan>()?;
    m.add_function(wrap_pyfunction!(uses_model_features, m)?)?;
    m.add_function(wrap_pyfunction!(crate::python_log::log_page_columns, m)?)?;
    m.add("POLICIES", PyTuple::new(py, Policy::names())?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("CoreError", py.get_type::<CoreError>())?;
    m.add("UnknownArmError", py.get_type::<UnknownArmError>())?;
    m.add("SnapshotError", py.get_type::<SnapshotError>())?;
    Ok(())
}
