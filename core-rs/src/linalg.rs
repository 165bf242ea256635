//! Dense linear algebra over plain slices (row-major square matrices).
//!
//! Everything here is deterministic: the same inputs give bit-identical outputs, so a state rebuilt
//! from a snapshot scores exactly like the original. Reductions use eight independent accumulators
//! (combined in a fixed order), which lets the compiler vectorize them with any SIMD width without
//! changing the result.

/// Dot product of two equally long slices (the shorter length is used if they differ).
///
/// Sixteen independent accumulators: with 4-wide SIMD that is four dependency chains, enough to hide
/// the latency of the (non-fused) adds, so long dots run at load bandwidth. A tail of 8 and of 4
/// elements goes into the first accumulators, then the rest is added one by one.
// `inline(always)`: the scoring loop is compiled a second time with AVX2 enabled, and only code
// inlined into it gets the wider instructions (a call would run the baseline SSE2 version).
#[inline(always)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (mut ra, mut rb) = (ca.remainder(), cb.remainder());
    let mut acc = [0.0f64; 16];
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    if ra.len() >= 8 {
        for i in 0..8 {
            acc[i] += ra[i] * rb[i];
        }
        (ra, rb) = (&ra[8..], &rb[8..]);
    }
    if ra.len() >= 4 {
        for i in 0..4 {
            acc[i] += ra[i] * rb[i];
        }
        (ra, rb) = (&ra[4..], &rb[4..]);
    }
    // Halving tree (lane i with lane i + half): maps onto vector halves without shuffles.
    let mut h = [0.0f64; 8];
    for i in 0..8 {
        h[i] = acc[i] + acc[i + 8];
    }
    let q = [h[0] + h[4], h[1] + h[5], h[2] + h[6], h[3] + h[7]];
    let mut s = (q[0] + q[2]) + (q[1] + q[3]);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y += alpha * x`.
#[inline(always)]
pub fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}

/// `out = Σ_j coef[j] · M[j, :]` for a row-major matrix `M` with `ncols` columns (and at least
/// `coef.len()` rows), i.e. `out = Mᵀ coef`. Each output element is summed over `j` in order starting
/// from 0, with blocks of up to 32 columns kept in registers (no store/load chain through `out`; wide
/// blocks give independent add chains). The block width does not change any result.
#[inline(always)]
pub fn combine_rows(coef: &[f64], m: &[f64], ncols: usize, out: &mut [f64]) {
    let out = &mut out[..ncols];
    let mut c = 0;
    while c + 32 <= ncols {
        combine_block::<32>(coef, m, ncols, c, out);
        c += 32;
    }
    if c + 16 <= ncols {
        combine_block::<16>(coef, m, ncols, c, out);
        c += 16;
    }
    if c + 8 <= ncols {
        combine_block::<8>(coef, m, ncols, c, out);
        c += 8;
    }
    if c + 4 <= ncols {
        combine_block::<4>(coef, m, ncols, c, out);
        c += 4;
    }
    while c < ncols {
        combine_block::<1>(coef, m, ncols, c, out);
        c += 1;
    }
}

/// Columns `c..c + W` of [`combine_rows`].
#[inline(always)]
fn combine_block<const W: usize>(coef: &[f64], m: &[f64], ncols: usize, c: usize, out: &mut [f64]) {
    let mut acc = [0.0f64; W];
    for (row, &a) in m.chunks_exact(ncols).zip(coef) {
        let r = &row[c..c + W];
        for t in 0..W {
            acc[t] += a * r[t];
        }
    }
    out[c..c + W].copy_from_slice(&acc);
}

/// `out = M v` for a row-major `n×n` matrix `M`.
#[inline(always)]
pub fn matvec(m: &[f64], n: usize, v: &[f64], out: &mut [f64]) {
    for (o, row) in out.iter_mut().zip(m.chunks_exact(n)) {
        *o = dot(row, v);
    }
}

/// `n×n` identity scaled by `s`.
pub fn scaled_identity(n: usize, s: f64) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = s;
    }
    m
}

/// `A += v vᵀ` (exactly symmetric: `v_i v_j == v_j v_i`).
#[inline(always)]
pub fn add_outer(a: &mut [f64], n: usize, v: &[f64]) {
    for (row, &vi) in a.chunks_exact_mut(n).zip(v) {
        axpy(vi, v, row);
    }
}

/// `A += Σ v vᵀ` over the vectors of `vs` (each of length `n`, concatenated), in their order: bit for bit
/// what [`add_outer`] gives called once per vector (every element gets the same products added in the
/// same order), but each row of `A` is read and written once per call instead of once per vector.
#[inline(always)]
pub fn add_outers(a: &mut [f64], n: usize, vs: &[f64]) {
    for (i, row) in a.chunks_exact_mut(n).enumerate() {
        for v in vs.chunks_exact(n) {
            axpy(v[i], v, row);
        }
    }
}

/// [`add_outers`] for an exactly symmetric `A` (`a_ij == a_ji` bit for bit, checked; otherwise it runs
/// [`add_outers`]): the upper triangle is computed and mirrored, half the work. The same bits, because
/// `v_i v_j == v_j v_i` in floating point and both elements start equal and get the same additions.
#[inline(always)]
pub fn add_outers_symmetric(a: &mut [f64], n: usize, vs: &[f64]) {
    let symmetric =
        (0..n).all(|i| (0..i).all(|j| a[i * n + j].to_bits() == a[j * n + i].to_bits()));
    if !symmetric {
        add_outers(a, n, vs);
        return;
    }
    for (i, row) in a.chunks_exact_mut(n).enumerate() {
        for v in vs.chunks_exact(n) {
            axpy(v[i], &v[i..], &mut row[i..]);
        }
    }
    for i in 1..n {
        for j in 0..i {
            a[i * n + j] = a[j * n + i];
        }
    }
}

/// Sherman-Morrison rank-one update of a symmetric inverse:
/// `C ← C − (Cv)(Cv)ᵀ / (1 + vᵀCv)`, i.e. the inverse of `C⁻¹ + v vᵀ`. O(n²).
///
/// `u` is scratch of length `n`. The update is applied as `C −= ũ ũᵀ` with `ũ = Cv / sqrt(1 + vᵀCv)`,
/// which keeps `C` exactly symmetric. Returns `false` (and leaves `C` unchanged) if the denominator is
/// not a positive finite number, which cannot happen for a positive definite `C`.
#[inline(always)]
pub fn sherman_morrison(c: &mut [f64], n: usize, v: &[f64], u: &mut [f64]) -> bool {
    matvec(c, n, v, u);
    let den = 1.0 + dot(v, u);
    if !(den.is_finite() && den > 0.0) {
        return false;
    }
    let s = 1.0 / den.sqrt();
    for ui in u.iter_mut() {
        *ui *= s;
    }
    for (row, &ui) in c.chunks_exact_mut(n).zip(u.iter()) {
        axpy(-ui, u, row);
    }
    true
}

/// Sherman-Morrison for a coordinate term: `C ← (C⁻¹ + w e_j e_jᵀ)⁻¹ = C − w (C e_j)(C e_j)ᵀ / (1 + w C_jj)`
/// (`w ≥ 0`, `u` scratch of length `n`), applied as `C −= ũ ũᵀ` like [`sherman_morrison`] so `C` stays
/// exactly symmetric. Returns `false` (and leaves `C` unchanged) if the denominator is not positive.
pub fn sherman_morrison_coord(c: &mut [f64], n: usize, j: usize, w: f64, u: &mut [f64]) -> bool {
    u.copy_from_slice(&c[j * n..(j + 1) * n]);
    let den = 1.0 + w * u[j];
    if !(den.is_finite() && den > 0.0) {
        return false;
    }
    let s = (w / den).sqrt();
    for ui in u.iter_mut() {
        *ui *= s;
    }
    for (row, &ui) in c.chunks_exact_mut(n).zip(u.iter()) {
        axpy(-ui, u, row);
    }
    true
}

/// Inverse of a symmetric positive definite `n×n` matrix by Cholesky factorization
/// (`A = L Lᵀ`, `A⁻¹ = L⁻ᵀ L⁻¹`). Returns `None` if `A` is not (numerically) positive definite.
/// The result is exactly symmetric. O(n³).
pub fn cholesky_inverse(a: &[f64], n: usize) -> Option<Vec<f64>> {
    if a.len() != n * n {
        return None;
    }
    // L (lower, row-major).
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s = a[i * n + j] - dot(&l[i * n..i * n + j], &l[j * n..j * n + j]);
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    // M = L⁻¹ (lower), by forward substitution, column by column.
    let mut m = vec![0.0; n * n];
    for j in 0..n {
        m[j * n + j] = 1.0 / l[j * n + j];
        for i in j + 1..n {
            let mut s = 0.0;
            for k in j..i {
                s += l[i * n + k] * m[k * n + j];
            }
            m[i * n + j] = -s / l[i * n + i];
        }
    }
    // A⁻¹ = Mᵀ M: inv[i][j] = Σ_{k ≥ max(i,j)} M[k][i] M[k][j]; fill the upper part and mirror.
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        for j in i..n {
            let mut s = 0.0;
            for k in j..n {
                s += m[k * n + i] * m[k * n + j];
            }
            inv[i * n + j] = s;
            inv[j * n + i] = s;
        }
    }
    Some(inv)
}

/// Length of the packed upper triangle of an `n×n` matrix.
#[inline]
pub const fn packed_len(n: usize) -> usize {
    n * (n + 1) / 2
}

/// Packs the upper triangle of a symmetric `n×n` matrix row by row
/// (`(0,0), (0,1), …, (0,n-1), (1,1), …`), off-diagonal entries as `M[i][j] + M[j][i]`.
/// Then `vᵀMv == dot(packed, packed_outer(v))`.
pub fn pack_sym_doubled(m: &[f64], n: usize, out: &mut [f64]) {
    let mut t = 0;
    for i in 0..n {
        out[t] = m[i * n + i];
        t += 1;
        for j in i + 1..n {
            out[t] = m[i * n + j] + m[j * n + i];
            t += 1;
        }
    }
}

/// Packed upper triangle of `v vᵀ`, in the order of [`pack_sym_doubled`].
pub fn packed_outer(v: &[f64], out: &mut [f64]) {
    let mut t = 0;
    for (i, &vi) in v.iter().enumerate() {
        for &vj in &v[i..] {
            out[t] = vi * vj;
            t += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64) / ((1u64 << 53) as f64) * 2.0 - 1.0
    }

    fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
        let mut c = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    c[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        c
    }

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn dot_matches_naive() {
        let mut s = 1;
        for n in [0usize, 1, 7, 8, 9, 31, 136] {
            let a: Vec<f64> = (0..n).map(|_| lcg(&mut s)).collect();
            let b: Vec<f64> = (0..n).map(|_| lcg(&mut s)).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - naive).abs() < 1e-12);
        }
    }

    #[test]
    fn combine_rows_matches_axpy() {
        let mut s = 5;
        for (nrows, ncols) in [
            (0usize, 3usize),
            (1, 1),
            (3, 4),
            (5, 13),
            (9, 14),
            (17, 15),
            (4, 33),
        ] {
            let m: Vec<f64> = (0..nrows * ncols).map(|_| lcg(&mut s)).collect();
            let coef: Vec<f64> = (0..nrows).map(|_| lcg(&mut s)).collect();
            let mut expected = vec![0.0; ncols];
            for (row, &a) in m.chunks_exact(ncols).zip(&coef) {
                axpy(a, row, &mut expected);
            }
            let mut out = vec![f64::NAN; ncols];
            combine_rows(&coef, &m, ncols, &mut out);
            // Same summation order: bit-identical.
            assert_eq!(out, expected);
        }
    }

    #[test]
    fn sherman_morrison_matches_direct_inverse() {
        let mut s = 7;
        for n in [1usize, 2, 5, 16] {
            let lam = 0.5;
            let mut a = scaled_identity(n, lam);
            let mut c = scaled_identity(n, 1.0 / lam);
            let mut u = vec![0.0; n];
            for _ in 0..200 {
                let v: Vec<f64> = (0..n).map(|_| lcg(&mut s)).collect();
                add_outer(&mut a, n, &v);
                assert!(sherman_morrison(&mut c, n, &v, &mut u));
            }
            let direct = cholesky_inverse(&a, n).expect("spd");
            assert!(max_abs_diff(&c, &direct) < 1e-10, "n={n}");
            // Exactly symmetric.
            for i in 0..n {
                for j in 0..n {
                    assert_eq!(c[i * n + j].to_bits(), c[j * n + i].to_bits());
                }
            }
        }
    }

    /// The update path's kernels in the AVX2 build (what `ridge::rank_one_update` and the hybrid refresh run
    /// when the CPU has it) give bit for bit what the portable build gives, for every size up to the hybrid
    /// layout's joint dimensions: a replica on an AVX2 machine learns exactly what one without AVX2 learns.
    #[test]
    fn update_kernels_are_bit_identical_with_and_without_avx2() {
        use crate::simd::{self, Simd};
        let mut s = 13;
        for n in (1usize..=40).chain([63, 64, 65, 78, 100, 130]) {
            let lam = 0.5 + lcg(&mut s).abs();
            let (mut a_best, mut c_best) = (scaled_identity(n, lam), scaled_identity(n, 1.0 / lam));
            let (mut a_port, mut c_port) = (a_best.clone(), c_best.clone());
            let (mut u_best, mut u_port) = (vec![0.0; n], vec![0.0; n]);
            for _ in 0..20 {
                let v: Vec<f64> = (0..n).map(|_| 3.0 * lcg(&mut s)).collect();
                simd::run(
                    Simd::Best,
                    #[inline(always)]
                    || add_outer(&mut a_best, n, &v),
                );
                add_outer(&mut a_port, n, &v);
                let ok_best = simd::run(
                    Simd::Best,
                    #[inline(always)]
                    || sherman_morrison(&mut c_best, n, &v, &mut u_best),
                );
                assert_eq!(ok_best, sherman_morrison(&mut c_port, n, &v, &mut u_port));
                let (mut mv_best, mut mv_port) = (vec![0.0; n], vec![0.0; n]);
                simd::run(
                    Simd::Best,
                    #[inline(always)]
                    || matvec(&c_best, n, &v, &mut mv_best),
                );
                matvec(&c_port, n, &v, &mut mv_port);
                let bits = |m: &[f64]| m.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a_best), bits(&a_port), "A, n={n}");
                assert_eq!(bits(&c_best), bits(&c_port), "A⁻¹, n={n}");
                assert_eq!(bits(&mv_best), bits(&mv_port), "A⁻¹v, n={n}");
            }
        }
    }

    /// `add_outers` and `add_outers_symmetric` (what the hybrid shared `A_0` is settled with) give bit for
    /// bit what `add_outer` gives once per vector, in both builds, for symmetric and (the fallback) other
    /// matrices.
    #[test]
    fn batched_outer_products_are_bit_identical_to_one_at_a_time() {
        use crate::simd::{self, Simd};
        let bits = |m: &[f64]| m.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut s = 41;
        for n in (1usize..=20).chain([63, 78, 130]) {
            for count in [1usize, 2, 7, 32] {
                let vs: Vec<f64> = (0..n * count).map(|_| 3.0 * lcg(&mut s)).collect();
                let mut sym = scaled_identity(n, 0.5 + lcg(&mut s).abs());
                add_outer(&mut sym, n, &vs[..n]); // symmetric, with off-diagonal values
                let mut other: Vec<f64> = (0..n * n).map(|_| lcg(&mut s)).collect();
                if n > 1 {
                    other[1] += 1.0; // not symmetric
                }
                for start in [sym, other] {
                    let mut expected = start.clone();
                    for v in vs.chunks_exact(n) {
                        add_outer(&mut expected, n, v);
                    }
                    let mut plain = start.clone();
                    add_outers(&mut plain, n, &vs);
                    let mut symmetric = start.clone();
                    add_outers_symmetric(&mut symmetric, n, &vs);
                    let mut best = start.clone();
                    simd::run(
                        Simd::Best,
                        #[inline(always)]
                        || add_outers_symmetric(&mut best, n, &vs),
                    );
                    assert_eq!(
                        bits(&plain),
                        bits(&expected),
                        "add_outers n={n} count={count}"
                    );
                    assert_eq!(
                        bits(&symmetric),
                        bits(&expected),
                        "symmetric n={n} count={count}"
                    );
                    assert_eq!(
                        bits(&best),
                        bits(&expected),
                        "symmetric, AVX2, n={n} count={count}"
                    );
                }
            }
        }
    }

    #[test]
    fn cholesky_inverse_is_inverse() {
        let mut s = 3;
        let n = 12;
        let mut a = scaled_identity(n, 1.0);
        for _ in 0..30 {
            let v: Vec<f64> = (0..n).map(|_| lcg(&mut s)).collect();
            add_outer(&mut a, n, &v);
        }
        let inv = cholesky_inverse(&a, n).expect("spd");
        let prod = matmul(&a, &inv, n);
        assert!(max_abs_diff(&prod, &scaled_identity(n, 1.0)) < 1e-12);
    }

    #[test]
    fn cholesky_rejects_non_pd() {
        assert!(cholesky_inverse(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
        assert!(cholesky_inverse(&[f64::NAN], 1).is_none());
        assert!(cholesky_inverse(&[1.0, 0.0], 2).is_none());
    }

    #[test]
    fn packed_quadratic_form() {
        let mut s = 11;
        let n = 9;
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..=i {
                let r = lcg(&mut s);
                m[i * n + j] = r;
                m[j * n + i] = r;
            }
        }
        let v: Vec<f64> = (0..n).map(|_| lcg(&mut s)).collect();
        let mut mv = vec![0.0; n];
        matvec(&m, n, &v, &mut mv);
        let direct = dot(&v, &mv);
        let mut pm = vec![0.0; packed_len(n)];
        let mut pv = vec![0.0; packed_len(n)];
        pack_sym_doubled(&m, n, &mut pm);
        packed_outer(&v, &mut pv);
        assert!((dot(&pm, &pv) - direct).abs() < 1e-12);
    }
}
