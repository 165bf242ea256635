//! The joint feature map of the hybrid models (docs/core.md, "Joint feature map").
//!
//! `x' = [1, x]`, `m' = [1, m]` and `z = x' ⊗ m'` flattened row-major:
//! `z[i*(p+1) + j] = x'[i] * m'[j]`, so `z` has length `(d+1)(p+1)` and holds a bias, every device
//! feature, every model feature and every device×model interaction.

/// `[1, v...]`.
pub fn with_bias(v: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(v.len() + 1);
    out.push(1.0);
    out.extend_from_slice(v);
    out
}

/// Writes `z = x' ⊗ m'` into `out` (length `x_prime.len() * m_prime.len()`), where both inputs already
/// carry their leading 1.
pub fn outer_into(x_prime: &[f64], m_prime: &[f64], out: &mut [f64]) {
    let p1 = m_prime.len();
    for (row, &xi) in out.chunks_exact_mut(p1).zip(x_prime) {
        for (o, &mj) in row.iter_mut().zip(m_prime) {
            *o = xi * mj;
        }
    }
}

/// The joint feature vector of device vector `x` (length d) and model vector `m` (length p).
pub fn joint_features(x: &[f64], m: &[f64]) -> Vec<f64> {
    let xp = with_bias(x);
    let mp = with_bias(m);
    let mut z = vec![0.0; xp.len() * mp.len()];
    outer_into(&xp, &mp, &mut z);
    z
}

/// Joint dimension `(d+1)(p+1)`.
pub const fn joint_dim(d: usize, p: usize) -> usize {
    (d + 1) * (p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let z = joint_features(&[2.0, 3.0], &[5.0]);
        // x' = [1,2,3], m' = [1,5]
        assert_eq!(z, vec![1.0, 5.0, 2.0, 10.0, 3.0, 15.0]);
        assert_eq!(z.len(), joint_dim(2, 1));
        assert_eq!(joint_features(&[4.0], &[]), vec![1.0, 4.0]);
    }
}
