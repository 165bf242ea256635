//! `FeaturePlan`: a schema's features for [`crate::feature_plan`], and the Python mappings (a proto map or a
//! dict) read into a vector. Only translation and lookups; the rules are in `feature_plan.rs`.

use numpy::PyArray1;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyString, PyTuple};

use crate::feature_plan::{Categorical, Feature, Numeric, Transform};
use crate::python::value_error;

#[pyclass(name = "FeaturePlan", module = "edgesel_server._core", frozen)]
pub struct PyFeaturePlan {
    features: Vec<(Py<PyString>, Feature)>,
    width: usize,
}

/// `mapping.get(name)`, `None` for a missing key or a value of None; an error reading it is `Err(())`.
fn lookup<'py>(
    mapping: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> Result<Option<Bound<'py, PyAny>>, ()> {
    let found = match mapping.cast::<PyDict>() {
        Ok(d) => d.get_item(name).map_err(|_| ())?,
        Err(_) => Some(
            mapping
                .call_method1(intern!(mapping.py(), "get"), (name,))
                .map_err(|_| ())?,
        ),
    };
    Ok(found.filter(|v| !v.is_none()))
}

impl PyFeaturePlan {
    /// The vector, or `None` when the schema's Python code must decide (see `feature_plan.rs`).
    fn fill(
        &self,
        py: Python<'_>,
        values: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
    ) -> Result<Vec<f64>, ()> {
        let mut out = vec![0.0; self.width];
        let mut at = 0;
        for (name, feature) in &self.features {
            let name = name.bind(py);
            match feature {
                Feature::Numeric(n) => {
                    if labels.contains(name).map_err(|_| ())? {
                        return Err(()); // sent in the wrong map
                    }
                    let raw = match lookup(values, name)? {
                        Some(v) => v.cast::<PyFloat>().map_err(|_| ())?.value(),
                        None => n.default.ok_or(())?,
                    };
                    out[at] = n.normalize(raw).ok_or(())?;
                }
                Feature::Categorical(c) => {
                    if values.contains(name).map_err(|_| ())? {
                        return Err(());
                    }
                    let column = match lookup(labels, name)? {
                        Some(v) => c.column_of(
                            v.cast::<PyString>()
                                .map_err(|_| ())?
                                .to_str()
                                .map_err(|_| ())?,
                        ),
                        None => c.default.as_deref().and_then(|d| c.column_of(d)),
                    };
                    out[at + column.ok_or(())?] = 1.0;
                }
            }
            at += feature.width();
        }
        Ok(out)
    }
}

#[pymethods]
impl PyFeaturePlan {
    /// `features`: per feature in column order, `("numeric", name, min, max, transform, lo, span, default,
    /// clip)` or `("categorical", name, values, default, other)`.
    #[new]
    fn new(features: Vec<Bound<'_, PyTuple>>) -> PyResult<Self> {
        let mut out = Vec::with_capacity(features.len());
        for t in features {
            let kind: String = t.get_item(0)?.extract()?;
            let name = t.get_item(1)?.cast_into::<PyString>()?.unbind();
            let feature = match kind.as_str() {
                "numeric" => {
                    let transform: String = t.get_item(4)?.extract()?;
                    Feature::Numeric(Numeric {
                        min: t.get_item(2)?.extract()?,
                        max: t.get_item(3)?.extract()?,
                        transform: match transform.as_str() {
                            "linear" => Transform::Linear,
                            "log" => Transform::Log,
                            "none" => Transform::None,
                            other => {
                                return Err(value_error(format!("unknown transform {other:?}")))
                            }
                        },
                        lo: t.get_item(5)?.extract()?,
                        span: t.get_item(6)?.extract()?,
                        default: t.get_item(7)?.extract()?,
                        clip: t.get_item(8)?.extract()?,
                    })
                }
                "categorical" => Feature::Categorical(Categorical {
                    values: t.get_item(2)?.extract()?,
                    default: t.get_item(3)?.extract()?,
                    other: t.get_item(4)?.extract()?,
                }),
                other => return Err(value_error(format!("unknown feature kind {other:?}"))),
            };
            out.push((name, feature));
        }
        let width = out.iter().map(|(_, f)| f.width()).sum();
        Ok(Self {
            features: out,
            width,
        })
    }

    /// The normalized vector of `values` (numeric features) and `labels` (categorical ones), or None when
    /// any feature is not the plain case: then `FeatureSchema.vector` decides (and words any error).
    fn vector<'py>(
        &self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
        labels: &Bound<'py, PyAny>,
    ) -> Option<Bound<'py, PyArray1<f64>>> {
        self.fill(py, values, labels)
            .ok()
            .map(|v| PyArray1::from_vec(py, v))
    }

    fn __len__(&self) -> usize {
        self.width
    }
}
