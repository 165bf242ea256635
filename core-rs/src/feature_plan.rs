//! The common case of a Select's device features: every numeric feature a finite number in its range (or
//! its default), every categorical one a declared value (or its default). `server/edgesel_server/schema.py`
//! `FeatureSchema.vector` is the whole contract and the reference; anything this module answers `None` for
//! (a missing feature without default, NaN, out of range, an undeclared label, a feature in the wrong map)
//! goes back to it, so its errors and rare cases stay in one place. `python_schema.rs` binds it.

/// A numeric feature, with the transformed range the server computed (`FeatureSpec._lo`, `._span`).
#[derive(Clone, Debug, PartialEq)]
pub struct Numeric {
    pub min: f64,
    pub max: f64,
    pub transform: Transform,
    pub lo: f64,
    pub span: f64,
    pub default: Option<f64>,
    pub clip: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transform {
    Linear,
    Log,
    /// Already normalized by the sender: only range-checked.
    None,
}

impl Numeric {
    /// The normalized value of `raw`, or `None` where `FeatureSchema.vector` decides (non-finite, or out of
    /// range without `clip`). The same operations in the same order as `FeatureSpec.normalize`, so the same
    /// bits (`ln` and Python's `math.log` are both the C library's `log`).
    pub fn normalize(&self, raw: f64) -> Option<f64> {
        if !raw.is_finite() {
            return None;
        }
        let mut v = raw;
        if !(self.min <= v && v <= self.max) {
            if !self.clip {
                return None;
            }
            v = self.max.min(self.min.max(v)); // Python's min(max, max(min, raw)) for finite numbers
        }
        Some(match self.transform {
            Transform::None => v,
            Transform::Log => (v.ln() - self.lo) / self.span,
            Transform::Linear => (v - self.lo) / self.span,
        })
    }
}

/// A categorical feature: its declared values in column order, and whether an undeclared one goes to the
/// `other` column after them.
#[derive(Clone, Debug, PartialEq)]
pub struct Categorical {
    pub values: Vec<String>,
    pub default: Option<String>,
    pub other: bool,
}

impl Categorical {
    /// The column (within this feature's) of the 1 for `label`; `None` for an undeclared label without
    /// an `other` column (an error the server words).
    pub fn column_of(&self, label: &str) -> Option<usize> {
        match self.values.iter().position(|v| v == label) {
            Some(i) => Some(i),
            None if self.other => Some(self.values.len()),
            None => None,
        }
    }

    pub fn width(&self) -> usize {
        self.values.len() + usize::from(self.other)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Feature {
    Numeric(Numeric),
    Categorical(Categorical),
}

impl Feature {
    pub fn width(&self) -> usize {
        match self {
            Feature::Numeric(_) => 1,
            Feature::Categorical(c) => c.width(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(transform: Transform, clip: bool) -> Numeric {
        let (lo, hi) = match transform {
            Transform::Log => (1f64.ln(), 100f64.ln()),
            _ => (1.0, 100.0),
        };
        Numeric {
            min: 1.0,
            max: 100.0,
            transform,
            lo,
            span: hi - lo,
            default: None,
            clip,
        }
    }

    #[test]
    fn numbers_in_range_normalize_like_the_server() {
        let lin = numeric(Transform::Linear, false);
        assert_eq!(lin.normalize(1.0), Some(0.0));
        assert_eq!(lin.normalize(100.0), Some(1.0));
        assert_eq!(lin.normalize(50.5), Some((50.5 - 1.0) / 99.0));
        let log = numeric(Transform::Log, false);
        assert_eq!(log.normalize(10.0), Some(10f64.ln() / 100f64.ln()));
        assert_eq!(numeric(Transform::None, false).normalize(42.0), Some(42.0));
    }

    #[test]
    fn what_the_server_must_word_is_left_to_it() {
        let strict = numeric(Transform::Linear, false);
        for raw in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.5, 100.5] {
            assert_eq!(strict.normalize(raw), None, "{raw}");
        }
        let clip = numeric(Transform::Log, true);
        assert_eq!(clip.normalize(0.5), Some(0.0));
        assert_eq!(clip.normalize(1e9), Some((100f64.ln() - 0.0) / 100f64.ln()));
        assert_eq!(clip.normalize(f64::NAN), None);
        let c = Categorical {
            values: vec!["a".into(), "b".into()],
            default: None,
            other: false,
        };
        assert_eq!(
            (c.column_of("b"), c.column_of("z"), c.width()),
            (Some(1), None, 2)
        );
        let o = Categorical { other: true, ..c };
        assert_eq!((o.column_of("z"), o.width()), (Some(2), 3));
    }
}
