//! The building block both layouts share: a ridge regression `A = λI + Σ v vᵀ`, `b = Σ r v` whose inverse
//! is kept by Sherman-Morrison and re-factored by Cholesky every `refactor_every` updates, and its
//! forgetting (docs/core.md, "Forgetting"): [`Forgetting`] is the clock and the powers of `γ`,
//! [`discount`] brings one matrix from its last update to now (scalar discount + prior top-up).

use crate::error::{CoreError, CoreResult};
use crate::linalg::{
    add_outer, cholesky_inverse, scaled_identity, sherman_morrison, sherman_morrison_coord,
};
use crate::simd::{self, Simd};
use crate::snapshot::{Reader, Writer};

/// Discounting by `γ = 2^(−1/half_life)` per event of a matrix's clock (`half_life = 0`: none, `γ = 1`),
/// and the layout's event clock (applied events, for statistics every event updates, like the hybrid shared
/// part; per-arm statistics count their own updates). Every matrix keeps the clock value of its last
/// update (`stamp`), and [`discount`] applies the events since, `Δ ≥ 1`, at its next update.
#[derive(Clone, Debug)]
pub struct Forgetting {
    pub half_life: u64,
    pub gamma: f64,
    /// `γ^(2^b)` for `b = 0..64` (repeated squaring), so that `γ^n` is a fixed product of table entries:
    /// the same bits on every replica and in every replay, whatever the batching.
    pow2: Vec<f64>,
    /// Applied events (observations) so far; equals the bandit's `n_updates`.
    pub clock: u64,
}

impl Forgetting {
    pub fn new(half_life: u64, clock: u64) -> Self {
        let gamma = if half_life == 0 {
            1.0
        } else {
            (-1.0 / half_life as f64).exp2()
        };
        let mut pow2 = vec![gamma; 64];
        for b in 1..64 {
            pow2[b] = pow2[b - 1] * pow2[b - 1];
        }
        Forgetting {
            half_life,
            gamma,
            pow2,
            clock,
        }
    }

    pub fn is_on(&self) -> bool {
        self.half_life > 0
    }

    /// `γ^n` as the product of the table entries of `n`'s set bits, lowest first (underflows to 0).
    pub fn pow(&self, mut n: u64) -> f64 {
        let mut r = 1.0;
        let mut b = 0;
        while n > 0 {
            if n & 1 == 1 {
                r *= self.pow2[b];
            }
            n >>= 1;
            b += 1;
        }
        r
    }

    /// Starts the next applied event and returns its number (1-based).
    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// One matrix's ridge statistics, borrowed for [`discount`]: `A`, `A⁻¹`, the prior diagonal `P` (the part
/// of `A` that is regularization, `λ` on every coordinate without forgetting), the clock value of its last
/// update and its refactorization counter.
pub struct Ridge<'a> {
    pub a: &'a mut [f64],
    pub a_inv: &'a mut Vec<f64>,
    pub prior: &'a mut [f64],
    pub stamp: &'a mut u64,
    pub since_refactor: &'a mut u64,
}

/// Brings one matrix from its last update (`stamp`) to event `t` of its clock before that event's
/// observation is added: with `g = γ^Δ` (Δ = t − stamp), `A ← gA`, `A⁻¹ ← A⁻¹/g`, `v ← g v` for each of
/// `vectors` (b, s, …), `P ← gP`, then the prior top-ups of the Δ events: event `s` adds
/// `c = λ(1 − γ^n)` on coordinate `(s − 1) mod n` (n = dimension), discounted to `t`. Per coordinate that
/// is a geometric sum with the closed form `λ γ^q (1 − γ^(n·k))` (q = t − its latest event, k = how many
/// of its events lie in the Δ). Applied as coordinate Sherman-Morrison updates when Δ < n and `g ≥ 1/2`
/// (at most Δ of them, O(Δ n²)), else as one Cholesky refactorization of the exact `A` (O(n³); then the
/// scaled inverse would also lose digits). Without forgetting, or when Δ = 0, nothing changes.
pub fn discount(
    f: &Forgetting,
    lam: f64,
    n: usize,
    t: u64,
    m: Ridge<'_>,
    vectors: &mut [&mut [f64]],
    scratch: &mut [f64],
) {
    let delta = t.saturating_sub(*m.stamp);
    if !f.is_on() || delta == 0 {
        *m.stamp = t;
        return;
    }
    let g = f.pow(delta);
    for v in m.a.iter_mut() {
        *v *= g;
    }
    for v in m.prior.iter_mut() {
        *v *= g;
    }
    for vec in vectors.iter_mut() {
        for v in vec.iter_mut() {
            *v *= g;
        }
    }
    let n64 = n as u64;
    let tops = delta.min(n64);
    let by_sm = delta < n64 && g >= 0.5;
    if by_sm {
        let inv_g = 1.0 / g;
        for v in m.a_inv.iter_mut() {
            *v *= inv_g;
        }
    }
    let mut gq = 1.0;
    for q in 0..tops {
        let s = t - q;
        let j = ((s - 1) % n64) as usize;
        let k = (s - *m.stamp - 1) / n64 + 1;
        let w = lam * gq * (1.0 - f.pow(n64.saturating_mul(k)));
        gq *= f.gamma;
        m.a[j * n + j] += w;
        m.prior[j] += w;
        if by_sm && !sherman_morrison_coord(m.a_inv, n, j, w, &mut scratch[..n]) {
            unreachable_recover(m.a, m.a_inv, n);
        }
    }
    if by_sm {
        *m.since_refactor += tops;
    } else {
        match cholesky_inverse(m.a, n) {
            Some(inv) => {
                *m.a_inv = inv;
                *m.since_refactor = 0;
            }
            // A ⪰ λγⁿ·I is positive definite; keep the scaled inverse if round-off ever says otherwise.
            None => {
                let inv_g = 1.0 / g;
                for v in m.a_inv.iter_mut() {
                    *v *= inv_g;
                }
            }
        }
    }
    *m.stamp = t;
}

/// Recomputes `A⁻¹` from `A` after a Sherman-Morrison step refused (unreachable for a positive definite
/// inverse).
fn unreachable_recover(a: &[f64], a_inv: &mut Vec<f64>, n: usize) {
    if let Some(inv) = cholesky_inverse(a, n) {
        *a_inv = inv;
    }
}

/// Reads the forgetting fields of a matrix (format version ≥ 3: `stamp u64` before the matrices is read
/// by the caller, `P` here); older snapshots have no forgetting: `P = λ`, stamp = the clock.
pub fn decode_prior(r: &mut Reader<'_>, n: usize, lam: f64, what: &str) -> CoreResult<Vec<f64>> {
    if r.version < 3 {
        return Ok(vec![lam; n]);
    }
    let p = r.f64s(n, what)?;
    if p.iter().any(|&v| v <= 0.0) {
        return Err(CoreError::snapshot(format!(
            "snapshot holds a non-positive value in {what}"
        )));
    }
    Ok(p)
}

/// Reads a matrix's stamp (version ≥ 3; older: the clock) and checks it is not after the clock.
pub fn decode_stamp(r: &mut Reader<'_>, clock: u64, what: &str) -> CoreResult<u64> {
    if r.version < 3 {
        return Ok(clock);
    }
    let stamp = r.u64(what)?;
    if stamp > clock {
        return Err(CoreError::snapshot(format!(
            "snapshot's {what} ({stamp}) is after its update count ({clock})"
        )));
    }
    Ok(stamp)
}

/// Exact per-arm statistics over `x` (length d): `A_a`, `A_a⁻¹`, `b_a`, `s_a = Σ x`, the prior diagonal
/// `P_a`, counts, the clock value of its last update, and the arm's model features `m` (length p).
#[derive(Clone, Debug)]
pub struct Arm {
    pub m: Vec<f64>,
    pub a: Vec<f64>,
    pub a_inv: Vec<f64>,
    pub b: Vec<f64>,
    pub s: Vec<f64>,
    pub prior: Vec<f64>,
    pub n: u64,
    pub since_refactor: u64,
    pub stamp: u64,
}

impl Arm {
    /// An arm without history: `A = λI`, `b = s = 0`.
    pub fn fresh(d: usize, lam: f64, m: Vec<f64>) -> Self {
        Arm {
            prior: vec![lam; d],
            stamp: 0,
            m,
            a: scaled_identity(d, lam),
            a_inv: scaled_identity(d, 1.0 / lam),
            b: vec![0.0; d],
            s: vec![0.0; d],
            n: 0,
            since_refactor: 0,
        }
    }

    /// Adds observation `(x, reward)`, after the discount of one event on the arm's own clock (its
    /// update count: per-arm statistics forget per update of that arm, docs/core.md "Forgetting";
    /// `scratch` has length ≥ d).
    pub fn observe(
        &mut self,
        x: &[f64],
        reward: f64,
        f: &Forgetting,
        lam: f64,
        refactor_every: u64,
        scratch: &mut [f64],
    ) {
        let d = x.len();
        discount(
            f,
            lam,
            d,
            self.n + 1,
            Ridge {
                a: &mut self.a,
                a_inv: &mut self.a_inv,
                prior: &mut self.prior,
                stamp: &mut self.stamp,
                since_refactor: &mut self.since_refactor,
            },
            &mut [&mut self.b, &mut self.s],
            &mut scratch[..d],
        );
        rank_one_update(
            &mut self.a,
            &mut self.a_inv,
            &mut self.since_refactor,
            d,
            x,
            refactor_every,
            &mut scratch[..d],
        );
        crate::linalg::axpy(reward, x, &mut self.b);
        crate::linalg::axpy(1.0, x, &mut self.s);
        self.n += 1;
    }

    /// Snapshot layout: `m (p f64), n u64, since_refactor u64, stamp u64, A (d²), A⁻¹ (d²), b (d),
    /// s (d), P (d)`.
    pub fn encode(&self, w: &mut Writer) {
        w.f64s(&self.m);
        w.u64(self.n);
        w.u64(self.since_refactor);
        w.u64(self.stamp);
        w.f64s(&self.a);
        w.f64s(&self.a_inv);
        w.f64s(&self.b);
        w.f64s(&self.s);
        w.f64s(&self.prior);
    }

    /// Inverse of [`Arm::encode`] (format versions before 3: no stamp and prior, see [`decode_prior`]).
    pub fn decode(r: &mut Reader<'_>, d: usize, p: usize, lam: f64) -> CoreResult<Self> {
        let m = r.f64s(p, "model features")?;
        let n = r.u64("arm n_updates")?;
        let since_refactor = r.u64("arm refactor counter")?;
        // The arm's clock is its own update count (so its stamp is `n`; older blobs: `n`).
        let stamp = decode_stamp(r, n, "arm last-update stamp")?;
        Ok(Arm {
            m,
            n,
            since_refactor,
            stamp,
            a: r.f64s(d * d, "arm A")?,
            a_inv: r.f64s(d * d, "arm A inverse")?,
            b: r.f64s(d, "arm b")?,
            s: r.f64s(d, "arm s")?,
            prior: decode_prior(r, d, lam, "arm prior")?,
        })
    }
}

/// Adds `v vᵀ` to `A` and brings `A⁻¹` up to date: Sherman-Morrison, or a Cholesky re-factorization
/// every `refactor_every` updates of this matrix.
pub fn rank_one_update(
    a: &mut [f64],
    a_inv: &mut Vec<f64>,
    since_refactor: &mut u64,
    n: usize,
    v: &[f64],
    refactor_every: u64,
    scratch: &mut [f64],
) {
    // The O(n²) work runs in the AVX2 build when the CPU has it (simd.rs: no FMA, fixed reduction order, so
    // bit-identical to the portable build): the hybrid layout's shared k×k update, k = 78, is what a replica
    // spends most of a hybrid_linucb or qoe_model event on.
    simd::run(
        Simd::Best,
        #[inline(always)]
        || add_outer(a, n, v),
    );
    update_inverse(
        a,
        a_inv,
        since_refactor,
        n,
        v,
        refactor_every,
        scratch,
        |_| {},
    );
}

/// The `A⁻¹` part of [`rank_one_update`], for an `A` that may not hold `v vᵀ` (nor earlier outer products)
/// yet: `settle(a)` adds what is missing, and is called only when a refactorization reads `A` (the hybrid
/// shared `A_0` defers its outer products this way).
#[allow(clippy::too_many_arguments)]
pub fn update_inverse(
    a: &mut [f64],
    a_inv: &mut Vec<f64>,
    since_refactor: &mut u64,
    n: usize,
    v: &[f64],
    refactor_every: u64,
    scratch: &mut [f64],
    mut settle: impl FnMut(&mut [f64]),
) {
    *since_refactor += 1;
    if *since_refactor >= refactor_every {
        settle(a);
        if let Some(inv) = cholesky_inverse(a, n) {
            *a_inv = inv;
            *since_refactor = 0;
            return;
        }
    }
    let updated = simd::run(
        Simd::Best,
        #[inline(always)]
        || sherman_morrison(a_inv, n, v, scratch),
    );
    if !updated {
        // Unreachable for a positive definite inverse; recover from A if it ever happens.
        settle(a);
        if let Some(inv) = cholesky_inverse(a, n) {
            *a_inv = inv;
            *since_refactor = 0;
        }
    }
}
