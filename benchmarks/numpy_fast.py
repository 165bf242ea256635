"""The fastest plain-numpy implementation of the UCB policies of docs/core.md we could write.

Used by core_bench.py as the baseline the Rust core is compared against, so it is written for speed:

* all per-arm statistics are stacked: ``A_a⁻¹`` in one ``(K, d, d)`` array (so ``A_a⁻¹ x`` for every arm
  is a single BLAS gemv on a ``(K·d, d)`` view), ``θ_a`` (disjoint, cached at update time) in ``(K, d)``;
* updates are Sherman-Morrison rank-one updates of the stored inverses, refactored from the exact
  ``A`` every ``refactor_every`` updates of a matrix, like the core;
* hybrid: ``β = A_0⁻¹ b_0`` is cached at update time; per request the shared inverse is contracted with
  ``x' = [1, x]`` once, ``G = (x'⊗I)ᵀ A_0⁻¹ (x'⊗I)`` of size ``(p+1)²`` (O(k²)), so each arm's shared variance
  is ``m'ᵀ G m'``, and ``g_a = reshape(β) m'_a`` gives both the shared mean ``x'·g_a`` and the per-arm
  mean term; with ``w = A_a⁻¹ x`` the total mean collapses to ``g_a0 + w·(b_a − s_a g_a0 + λ g_a,1:)``.

Only what the benchmark needs: scoring all arms, select, update.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


class FastBandit:
    def __init__(
        self,
        policy: str,
        device_dim: int,
        model_dim: int = 0,
        *,
        alpha: float = 1.0,
        lam: float = 1.0,
        refactor_every: int = 1000,
    ) -> None:
        if policy not in ("disjoint_linucb", "hybrid_linucb"):
            raise ValueError(f"unsupported policy {policy!r}")
        self.policy = policy
        self.hybrid = policy == "hybrid_linucb"
        self.d = d = device_dim
        self.p = p = model_dim
        self.k = k = (d + 1) * (p + 1) if self.hybrid else 0
        self.alpha = float(alpha)
        self.lam = float(lam)
        self.refactor_every = refactor_every
        self.ids: list[str] = []
        self.index: dict[str, int] = {}
        self.ainv = np.zeros((0, d, d))
        self.a = np.zeros((0, d, d))
        self.b = np.zeros((0, d))
        self.s = np.zeros((0, d))
        self.theta = np.zeros((0, d))  # disjoint only: cached A_a⁻¹ b_a
        self.mp = np.zeros((0, p + 1))  # m' = [1, m]
        self.n = np.zeros(0, dtype=np.int64)
        if self.hybrid:
            self.a0 = self.lam * np.eye(k)
            self.c0 = np.eye(k) / self.lam
            self.b0 = np.zeros(k)
            self.beta = np.zeros(k)
            self.n0 = 0

    def add_arms(self, ids: list[str], feats: NDArray[np.float64] | None = None) -> None:
        """Adds many arms at once (the arrays are reallocated once)."""
        n, d, p = len(ids), self.d, self.p
        for i, a in enumerate(ids):
            if a in self.index:
                raise ValueError(f"duplicate arm id {a!r}")
            self.index[a] = len(self.ids) + i
        self.ids.extend(ids)
        eye = np.broadcast_to(np.eye(d), (n, d, d))
        self.ainv = np.concatenate([self.ainv, eye / self.lam])
        self.a = np.concatenate([self.a, eye * self.lam])
        self.b = np.concatenate([self.b, np.zeros((n, d))])
        self.s = np.concatenate([self.s, np.zeros((n, d))])
        self.theta = np.concatenate([self.theta, np.zeros((n, d))])
        m = np.zeros((n, p)) if feats is None else np.asarray(feats, dtype=np.float64).reshape(n, p)
        self.mp = np.concatenate([self.mp, np.hstack([np.ones((n, 1)), m])])
        self.n = np.concatenate([self.n, np.zeros(n, dtype=np.int64)])

    # ---- scoring ------------------------------------------------------------------------------------
    def score(self, x: NDArray[np.float64]) -> tuple[list[str], NDArray, NDArray, NDArray]:
        K, d = len(self.ids), self.d
        w = (self.ainv.reshape(K * d, d) @ x).reshape(K, d)  # A_a⁻¹ x for every arm: one gemv
        var = w @ x
        if self.hybrid:
            d1, p1 = d + 1, self.p + 1
            x1 = np.empty(d1)
            x1[0] = 1.0
            x1[1:] = x
            # G[j,l] = Σ_ik x'_i x'_k C0[(i,j),(k,l)]: contract the row index, then the column index
            t = (x1 @ self.c0.reshape(d1, p1 * self.k)).reshape(p1, d1, p1)
            g_mat = np.einsum("jkl,k->jl", t, x1)
            mp = self.mp
            var = var + np.einsum("aj,aj->a", mp @ g_mat, mp)
            g = mp @ self.beta.reshape(d1, p1).T  # (K, d+1): reshape(β) m'_a
            g0 = g[:, 0]
            h = self.b - self.s * g0[:, None]
            h += self.lam * g[:, 1:]
            mean = g0 + np.einsum("ij,ij->i", w, h)
        else:
            mean = self.theta @ x
        bonus = self.alpha * np.sqrt(np.maximum(var, 0.0))
        return self.ids, mean, bonus, mean + bonus

    def select(self, x: NDArray[np.float64]) -> tuple[str, float, float, float]:
        ids, mean, bonus, total = self.score(x)
        i = int(np.argmax(total))
        ties = np.flatnonzero(total == total[i])
        if len(ties) > 1:  # equal totals go to the lexicographically smallest id
            i = int(min(ties, key=lambda j: ids[j]))
        return ids[i], float(mean[i]), float(bonus[i]), float(total[i])

    # ---- updates -----------------------------------------------------------------------------------
    def update(self, arm_id: str, x: NDArray[np.float64], reward: float) -> None:
        i = self.index[arm_id]
        c = self.ainv[i]  # view: updated in place
        cx = c @ x
        c -= np.multiply.outer(cx, cx / (1.0 + x @ cx))
        a = self.a[i]
        a += np.multiply.outer(x, x)
        self.b[i] += reward * x
        n = self.n[i] = self.n[i] + 1
        if n % self.refactor_every == 0:
            c[...] = _spd_inverse(a)
        if self.hybrid:
            self.s[i] += x
            x1 = np.empty(self.d + 1)
            x1[0] = 1.0
            x1[1:] = x
            z = np.multiply.outer(x1, self.mp[i]).ravel()
            cz = self.c0 @ z
            self.c0 -= np.multiply.outer(cz, cz / (1.0 + z @ cz))
            self.a0 += np.multiply.outer(z, z)
            self.b0 += reward * z
            self.n0 += 1
            if self.n0 % self.refactor_every == 0:
                self.c0 = _spd_inverse(self.a0)
            self.beta = self.c0 @ self.b0
        else:
            self.theta[i] = c @ self.b[i]

    def update_batch(self, arm_ids, xs, rewards) -> None:
        for a, x, r in zip(arm_ids, xs, rewards, strict=True):
            self.update(a, x, float(r))


def _spd_inverse(a: NDArray[np.float64]) -> NDArray[np.float64]:
    """Inverse of a symmetric positive definite matrix through its Cholesky factor."""
    lower_inv = np.linalg.inv(np.linalg.cholesky(a))
    return lower_inv.T @ lower_inv


class FastQoeModel:
    """`qoe_model` (docs/core.md, "The QoE model") with the server's spec (linear latency/energy scores),
    vectorized over the arms: four hybrid FastBandit targets (α = 1, so the bonus is the standard error)
    and the composition as array expressions. Only what the benchmark needs: score, select, update with
    latency and rating measured."""

    PRIOR_SD = (0.5, 0.5, 0.1, 0.5)
    PRIOR_N = 2.0

    def __init__(self, device_dim: int, model_dim: int, *, alpha: float = 1.0, lam: float = 1.0) -> None:
        self.targets = [
            FastBandit("hybrid_linucb", device_dim, model_dim, alpha=1.0, lam=lam) for _ in range(4)
        ]
        self.alpha = alpha
        self.noise_n = np.zeros(4)
        self.noise_sq = np.zeros(4)
        self.w = {"user_rating": 1.0, "latency_ms": 1.0, "energy_mj": 0.5, "accuracy": 1.0}
        self.budget_ms, self.rating = 100.0, (1.0, 5.0)
        self.accuracy = np.zeros(0)

    def add_arms(self, ids: list[str], feats: NDArray[np.float64], accuracy: NDArray[np.float64]) -> None:
        for t in self.targets:
            t.add_arms(ids, feats)
        self.accuracy = np.concatenate([self.accuracy, accuracy])

    def _sd(self, t: int) -> float:
        return float(
            np.sqrt(
                (self.PRIOR_N * self.PRIOR_SD[t] ** 2 + self.noise_sq[t]) / (self.PRIOR_N + self.noise_n[t])
            )
        )

    def score(self, x: NDArray[np.float64]) -> tuple[list[str], NDArray, NDArray, NDArray]:
        k = len(self.accuracy)
        width = self.alpha * np.sqrt(2.0 * np.log(1.0 + k)) / 8.0
        used = [t for t in (0, 2, 3) if self.targets[t].n0 > 0]  # energy is never measured here
        pred = {t: self.targets[t].score(x)[1:3] for t in used}
        w_lat, w_r, w_acc = self.w["latency_ms"], self.w["user_rating"], self.w["accuracy"]

        def qoe(z: float) -> NDArray:
            num = w_acc * self.accuracy
            den = np.full(k, w_acc)
            if 0 in pred:
                m, s = pred[0]
                lat = self.budget_ms * np.exp(m - z * self._sd(0) * s)
                num = num + w_lat * np.maximum(0.0, 1.0 - lat / (2.0 * self.budget_ms))
                den = den + w_lat
            if 2 in pred:  # the rating is learned relative to the measured value num / den
                m, s = pred[2]
                num, den = num + w_r * np.clip(num / den + m + z * self._sd(2) * s, 0.0, 1.0), den + w_r
            q = np.clip(num / den, 0.0, 1.0)
            if 3 in pred:
                m, s = pred[3]
                q = np.clip(1.0 + m + z * self._sd(3) * s, 0.0, 1.0) * q
            return q

        exp, opt = qoe(0.0), qoe(width)
        return self.targets[0].ids, exp, opt - exp, opt

    def select(self, x: NDArray[np.float64]) -> tuple[str, float, float, float]:
        ids, exp, bonus, opt = self.score(x)
        i = int(np.argmax(opt))
        ties = np.flatnonzero(opt == opt[i])
        if len(ties) > 1:
            i = int(min(ties, key=lambda j: ids[j]))
        return ids[i], float(exp[i]), float(bonus[i]), float(opt[i])

    def update(
        self, arm_id: str, x: NDArray[np.float64], reward: float, latency_ms: float, user_rating: float
    ) -> None:
        lo, hi = self.rating
        # The rating is learned relative to the measured value of what was reported (latency) and the
        # arm's known accuracy.
        w_lat, w_acc = self.w["latency_ms"], self.w["accuracy"]
        s_lat = max(0.0, 1.0 - latency_ms / (2.0 * self.budget_ms))
        measured = (w_lat * s_lat + w_acc * self.accuracy[self.targets[0].index[arm_id]]) / (w_lat + w_acc)
        ys = (
            (0, np.log(max(latency_ms, 1e-3) / self.budget_ms)),
            (2, (user_rating - lo) / (hi - lo) - measured),
            (3, 0.0),
        )
        for t, y in ys:
            target = self.targets[t]
            i = target.index[arm_id]
            # prequential residual: the arm's mean before the update (the collapsed hybrid mean formula)
            w = target.ainv[i] @ x
            g = target.beta.reshape(target.d + 1, target.p + 1) @ target.mp[i]
            mean = g[0] + w @ (target.b[i] - target.s[i] * g[0] + target.lam * g[1:])
            self.noise_n[t] += 1
            self.noise_sq[t] += (y - mean) ** 2
            target.update(arm_id, x, y)
