"""Scenario files (TOML) and the request stream they determine.

A scenario fixes everything about a run: fleet (device mix, size, eligibility rule), catalog and its changes,
user and state distributions, the QoE function, noise, rounds and seed. ``build_stream`` turns it into arrays
that every policy is run against, so all policies see the same devices, states, users and the same noise per
(round, model). See docs/simulator.md for the format.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray

from edgesel_server import toml as tomllib
from edgesel_tools.sim.catalog import ModelSpec, model_features, resolve_model
from edgesel_tools.sim.devices import DeviceSpec, device_static_features, resolve_device
from edgesel_tools.sim.drift import Drift, drift_masks, parse_drifts
from edgesel_tools.sim.ground_truth import GroundTruth, QoEParams
from edgesel_tools.sim.users import StateModel, UserModel, draw_states, draw_users

if TYPE_CHECKING:
    from edgesel_tools.sim.measured import MeasuredFeedback, MeasuredScenario

ELIGIBILITY_MODES = ("all", "ram_filter")


class ScenarioError(ValueError):
    """A scenario file is invalid; the message names the field."""


@dataclass(frozen=True)
class CatalogChange:
    round: int
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class Noise:
    rating_sd: float = 0.05  # Gaussian noise on a reported QoE
    latency_jitter_sd: float = 0.10  # log-normal jitter of a request's measured latency (and energy)
    device_sd: float = 0.15  # hidden per-device-type efficiency (log-normal, fixed per seed)
    device_model_sd: float = 0.15  # hidden per-(device type, model) efficiency


@dataclass(frozen=True)
class Scenario:
    name: str
    rounds: int
    seed: int
    devices: tuple[DeviceSpec, ...]
    device_weights: tuple[float, ...]
    models: tuple[ModelSpec, ...]  # initial catalog
    changes: tuple[CatalogChange, ...] = ()
    fleet_size: int = 2000
    eligibility: str = "all"
    eligibility_ram_fraction: float = 0.25
    users: UserModel = field(default_factory=UserModel)
    state: StateModel = field(default_factory=StateModel)
    qoe: QoEParams = field(default_factory=QoEParams)
    noise: Noise = field(default_factory=Noise)
    drifts: tuple[Drift, ...] = ()  # the ground truth changing mid-run (sim/drift.py)
    description: str = ""
    source: str = ""

    def all_models(self) -> list[ModelSpec]:
        """Initial catalog, then models added by changes, each once, in order of appearance."""
        return all_models(self.models, self.changes, resolve_model)


class _HasArmId(Protocol):
    @property
    def arm_id(self) -> str: ...


_M = TypeVar("_M", bound=_HasArmId)


def all_models(
    initial: Sequence[_M], changes: Sequence[CatalogChange], resolve: Callable[[str], _M]
) -> list[_M]:
    out = list(initial)
    seen = {m.arm_id for m in out}
    for ch in changes:
        for a in ch.add:
            if a not in seen:
                seen.add(a)
                out.append(resolve(a))
    return out


# ---------------------------------------------------------------- parsing & validation


def _err(field_name: str, problem: str) -> ScenarioError:
    return ScenarioError(f"scenario field {field_name!r}: {problem}")


def _check_keys(
    table: Any, where: str, allowed: set[str], required: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _err(where or "<root>", f"must be a table, got {type(table).__name__}")
    for k in table:
        if k not in allowed:
            name = f"{where}.{k}" if where else k
            raise _err(name, f"unknown field (allowed here: {sorted(allowed)})")
    for k in required:
        if k not in table:
            raise _err(f"{where}.{k}" if where else k, "is required")
    return table


def _num(v: Any, name: str, lo: float = -math.inf, hi: float = math.inf, *, integer: bool = False) -> float:
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok:
        raise _err(name, f"must be {'an integer' if integer else 'a number'}, got {v!r}")
    if not math.isfinite(v) or not lo <= v <= hi:
        raise _err(name, f"must be in [{lo}, {hi}], got {v!r}")
    return v


def _pair(v: Any, name: str, lo: float, hi: float, *, ordered: bool = False) -> tuple[float, float]:
    if not isinstance(v, list) or len(v) != 2:
        raise _err(name, f"must be a list of two numbers, got {v!r}")
    a, b = (float(_num(x, name, lo, hi)) for x in v)
    if ordered and a > b:
        raise _err(name, f"low end {a} is above high end {b}")
    return a, b


def _str_list(v: Any, name: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise _err(name, f"must be a list of strings, got {v!r}")
    return v


def parse_catalog_changes(
    raw_changes: Any, present: set[str], resolve: Callable[[str], object]
) -> list[CatalogChange]:
    """``[[catalog.changes]]``, validated against the catalog at each round (``present``: the initial one;
    ``resolve`` raises KeyError with a message for an unknown model id)."""
    if not isinstance(raw_changes, list):
        raise _err("catalog.changes", "must be an array of tables ([[catalog.changes]])")
    changes, last_round = [], 0
    for i, ch in enumerate(raw_changes):
        where = f"catalog.changes[{i}]"
        _check_keys(ch, where, {"round", "add", "remove"}, {"round"})
        r = int(_num(ch["round"], f"{where}.round", 1, 10_000_000, integer=True))
        if r < last_round:
            raise _err(f"{where}.round", "changes must be listed in round order")
        last_round = r
        add = _str_list(ch.get("add", []), f"{where}.add")
        remove = _str_list(ch.get("remove", []), f"{where}.remove")
        if not add and not remove:
            raise _err(where, "needs 'add' and/or 'remove'")
        for j, a in enumerate(add):
            try:
                resolve(a)
            except KeyError as e:
                raise _err(f"{where}.add[{j}]", e.args[0]) from None
            if a in present:
                raise _err(f"{where}.add[{j}]", f"{a!r} is already in the catalog at that round")
            present.add(a)
        for j, a in enumerate(remove):
            if a not in present:
                raise _err(f"{where}.remove[{j}]", f"{a!r} is not in the catalog at that round")
            present.discard(a)
        if len(present) < 1:
            raise _err(where, "would leave the catalog empty")
        changes.append(CatalogChange(r, tuple(add), tuple(remove)))
    return changes


_N = TypeVar("_N")


def parse_noise(root: dict[str, Any], cls: Callable[..., _N]) -> _N:
    """The ``[noise]`` table: every field of the dataclass ``cls`` is a standard deviation in [0, 5]."""
    defaults = cls()
    names = list(defaults.__dataclass_fields__)  # type: ignore[attr-defined]
    nz = _check_keys(root.get("noise", {}), "noise", set(names))
    return cls(**{k: float(_num(nz.get(k, getattr(defaults, k)), f"noise.{k}", 0.0, 5.0)) for k in names})


def description(root: dict[str, Any]) -> str:
    text = root.get("description", "")
    if not isinstance(text, str):
        raise _err("description", "must be a string")
    return text


def parse_scenario(data: dict[str, Any], source: str = "") -> Scenario:
    root = _check_keys(
        data,
        "",
        {"name", "description", "kind", "rounds", "seed", "fleet", "catalog", "users", "state", "qoe"}
        | {"noise", "drift"},
        {"name", "fleet", "catalog"},
    )
    if root.get("kind", "formula") not in ("formula", "measured"):
        raise _err("kind", f"must be 'formula' or 'measured', got {root.get('kind')!r}")
    if not isinstance(root["name"], str) or not root["name"]:
        raise _err("name", "must be a non-empty string")
    rounds = int(_num(root.get("rounds", 10000), "rounds", 1, 10_000_000, integer=True))
    seed = int(_num(root.get("seed", 0), "seed", 0, 2**63 - 1, integer=True))

    fleet = _check_keys(
        root["fleet"], "fleet", {"size", "devices", "eligibility", "eligibility_ram_fraction"}, {"devices"}
    )
    dev_table = fleet["devices"]
    if not isinstance(dev_table, dict) or not dev_table:
        raise _err("fleet.devices", "must be a non-empty table of device name = weight")
    devices, weights = [], []
    for name, w in dev_table.items():
        try:
            devices.append(resolve_device(name))
        except KeyError as e:
            raise _err(f"fleet.devices.{name}", e.args[0]) from None
        weights.append(float(_num(w, f"fleet.devices.{name}", 0.0)))
    if sum(weights) <= 0:
        raise _err("fleet.devices", "weights must not all be zero")
    eligibility = fleet.get("eligibility", "all")
    if eligibility not in ELIGIBILITY_MODES:
        raise _err("fleet.eligibility", f"must be one of {list(ELIGIBILITY_MODES)}, got {eligibility!r}")

    catalog = _check_keys(root["catalog"], "catalog", {"models", "changes"}, {"models"})
    model_names = _str_list(catalog["models"], "catalog.models")
    if len(model_names) < 2:
        raise _err("catalog.models", "needs at least two models")
    models = []
    for i, n in enumerate(model_names):
        try:
            models.append(resolve_model(n))
        except KeyError as e:
            raise _err(f"catalog.models[{i}]", e.args[0]) from None
    if len({m.arm_id for m in models}) != len(models):
        raise _err("catalog.models", "lists a model twice")
    changes = parse_catalog_changes(catalog.get("changes", []), {m.arm_id for m in models}, resolve_model)

    users = _check_keys(root.get("users", {}), "users", {"preference_concentration", "rating_bias_sd"})
    conc = users.get("preference_concentration", list(UserModel.preference_concentration))
    if not isinstance(conc, list) or len(conc) != 3:
        raise _err(
            "users.preference_concentration", "must be three positive numbers (accuracy, latency, energy)"
        )
    conc_t = tuple(float(_num(c, "users.preference_concentration", 1e-3, 1e6)) for c in conc)
    user_model = UserModel(
        conc_t,  # type: ignore[arg-type]
        float(_num(users.get("rating_bias_sd", UserModel.rating_bias_sd), "users.rating_bias_sd", 0.0, 1.0)),
    )

    st = _check_keys(root.get("state", {}), "state", {"battery_range", "thermal_beta", "load_beta"})
    state = StateModel(
        _pair(
            st.get("battery_range", list(StateModel.battery_range)), "state.battery_range", 0, 1, ordered=True
        ),
        _pair(st.get("thermal_beta", list(StateModel.thermal_beta)), "state.thermal_beta", 1e-3, 1e6),
        _pair(st.get("load_beta", list(StateModel.load_beta)), "state.load_beta", 1e-3, 1e6),
    )

    qd = QoEParams()
    q = _check_keys(root.get("qoe", {}), "qoe", set(qd.__dataclass_fields__))
    qoe = QoEParams(
        latency_half_ms=float(
            _num(q.get("latency_half_ms", qd.latency_half_ms), "qoe.latency_half_ms", 1e-3)
        ),
        latency_steepness=float(
            _num(q.get("latency_steepness", qd.latency_steepness), "qoe.latency_steepness", 0.1, 20)
        ),
        latency_limit_ms=float(
            _num(q.get("latency_limit_ms", qd.latency_limit_ms), "qoe.latency_limit_ms", 1e-3)
        ),
        energy_half_mj=float(_num(q.get("energy_half_mj", qd.energy_half_mj), "qoe.energy_half_mj", 1e-3)),
        accuracy_floor=float(_num(q.get("accuracy_floor", qd.accuracy_floor), "qoe.accuracy_floor", 0, 100)),
        accuracy_ceiling=float(
            _num(q.get("accuracy_ceiling", qd.accuracy_ceiling), "qoe.accuracy_ceiling", 0, 100)
        ),
    )
    if qoe.accuracy_ceiling <= qoe.accuracy_floor:
        raise _err("qoe.accuracy_ceiling", "must be above qoe.accuracy_floor")

    noise = parse_noise(root, Noise)
    sc = Scenario(
        name=root["name"],
        rounds=rounds,
        seed=seed,
        devices=tuple(devices),
        device_weights=tuple(weights),
        models=tuple(models),
        changes=tuple(changes),
        fleet_size=int(_num(fleet.get("size", 2000), "fleet.size", 1, 10_000_000, integer=True)),
        eligibility=eligibility,
        eligibility_ram_fraction=float(
            _num(fleet.get("eligibility_ram_fraction", 0.25), "fleet.eligibility_ram_fraction", 1e-3, 1.0)
        ),
        users=user_model,
        state=state,
        qoe=qoe,
        noise=noise,
        description=description(root),
        source=source,
    )
    if "drift" not in root:
        return sc
    drifts = parse_drifts(
        root["drift"],
        [d.name for d in sc.devices],
        [d.kind for d in sc.devices],
        [m.arm_id for m in sc.all_models()],
        _err,
        _num,
    )
    return replace(sc, drifts=drifts)


def load_scenario(path: str | Path) -> Scenario | MeasuredScenario:
    """A scenario file: ``kind = "formula"`` (the default: the documented latency model) or ``"measured"``
    (ground truth from a measurement data set, sim/measured.py)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {str(p)!r}: {e.strerror or e}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"scenario {str(p)!r} is not valid TOML: {e}") from None
    try:
        if data.get("kind", "formula") == "measured":
            from edgesel_tools.sim.measured import parse_measured

            return parse_measured(data, source=str(p), base_dir=p.parent)
        return parse_scenario(data, source=str(p))
    except ScenarioError as e:
        raise ScenarioError(f"{p}: {e}") from None


# ---------------------------------------------------------------- the stream


class _Named(Protocol):
    @property
    def name(self) -> str: ...


@dataclass
class Stream:
    """Everything about a run that does not depend on the policy. Arrays are indexed [round, arm index]."""

    scenario: Scenario | MeasuredScenario
    rounds: int
    seed: int
    arm_ids: list[str]  # every arm that ever exists, initial catalog first
    arm_features: NDArray  # (K, p) normalized model features
    device_index: NDArray  # (T,) index into scenario.devices
    contexts: NDArray  # (T, d) normalized device vectors (static ++ state ++ stated preferences)
    expected: NDArray  # (T, K) noiseless QoE (regret/oracle reference)
    reward: NDArray  # (T, K) the QoE the user would report for each arm
    eligible: NDArray  # (T, K) bool: in the catalog at that round and allowed by the eligibility rule
    fits: NDArray  # (T, K) bool: the model fits in the memory available for that request (else it crashes)
    change_rounds: list[tuple[int, CatalogChange]]
    # Formula scenarios only: per-request state and the hidden model behind `expected`.
    battery: NDArray | None = None
    thermal: NDArray | None = None
    load: NDArray | None = None
    prefs: NDArray | None = None  # (T, 3)
    truth: GroundTruth | None = None
    # Measured scenarios only (sim/measured.py): what each request's Feedback would carry, per arm.
    feedback: MeasuredFeedback | FormulaFeedback | None = None

    @property
    def device_dim(self) -> int:
        return int(self.contexts.shape[1])

    @property
    def model_dim(self) -> int:
        return int(self.arm_features.shape[1])

    def qoe_spec(self) -> dict:
        """The QoE function behind the stream as a `QoeModel` spec. Measured scenarios: the space's
        `[space.qoe]`. Formula scenarios: the ground truth's (docs/simulator.md) — logistic latency and
        energy satisfaction, the patience limit, accuracy between floor and ceiling, and no rating term (the
        simulated rating is noise around this very QoE)."""
        if not isinstance(self.scenario, Scenario):
            from edgesel_server.qoe_policy import core_spec

            return core_spec(self.scenario.space.qoe)
        q = self.scenario.qoe
        return {
            "weights": {"user_rating": 0.0, "latency_ms": 1.0, "energy_mj": 1.0, "accuracy": 1.0},
            "latency_budget_ms": q.latency_half_ms,
            "latency_shape": "logistic",
            "latency_steepness": q.latency_steepness,
            "energy_budget_mj": q.energy_half_mj,
            "energy_shape": "logistic",
            "energy_steepness": 1.0,
            "latency_limit_ms": q.latency_limit_ms,
            "accuracy_floor": q.accuracy_floor / 100.0,
            "accuracy_ceiling": q.accuracy_ceiling / 100.0,
            "reward_min": 0.0,
            "reward_max": 1.0,
        }

    def accuracy(self) -> dict[str, float]:
        """Top-1 of every arm as a fraction (catalog knowledge)."""
        return {m.arm_id: float(m.top1) / 100.0 for m in self.scenario.all_models()}

    def best_expected(self) -> tuple[NDArray, NDArray]:
        """Per round: the oracle's arm index and its expected QoE (over eligible arms)."""
        masked = np.where(self.eligible, self.expected, -np.inf)
        best = masked.argmax(axis=1)
        return best, masked[np.arange(self.rounds), best]

    @property
    def device_names(self) -> list[str]:
        """Name of each device type, in ``device_index`` order."""
        devices: Sequence[_Named] = self.scenario.devices
        return [d.name for d in devices]

    def prefix(self, rounds: int) -> Stream:
        """The first ``rounds`` rounds: what a run of that length on the same draws sees (a policy does not
        know the horizon, so its picks on the prefix are the first picks of the longer run)."""
        if not 1 <= rounds <= self.rounds:
            raise ValueError(f"prefix of {rounds} rounds from a stream of {self.rounds}")
        cut: dict[str, Any] = {
            f.name: v[:rounds]
            for f in fields(self)
            if isinstance(v := getattr(self, f.name), np.ndarray) and f.name != "arm_features"
        }
        feedback = self.feedback.prefix(rounds) if self.feedback is not None else None
        changes = [(r, ch) for r, ch in self.change_rounds if r < rounds]
        return replace(self, rounds=rounds, change_rounds=changes, feedback=feedback, **cut)


def catalog_over_time(
    arm_ids: list[str], initial: list[str], changes: Sequence[CatalogChange], rounds: int
) -> tuple[NDArray, list[tuple[int, CatalogChange]]]:
    """(T, K) bool: arm in the catalog at that round; and the changes that happen within ``rounds``."""
    col = {a: i for i, a in enumerate(arm_ids)}
    in_catalog = np.zeros((rounds, len(arm_ids)), dtype=bool)
    in_catalog[:, [col[a] for a in initial]] = True
    change_rounds = []
    for ch in changes:
        if ch.round >= rounds:
            continue
        change_rounds.append((ch.round, ch))
        for a in ch.add:
            in_catalog[ch.round :, col[a]] = True
        for a in ch.remove:
            in_catalog[ch.round :, col[a]] = False
    return in_catalog, change_rounds


def build_stream(
    scenario: Scenario | MeasuredScenario, rounds: int | None = None, seed: int | None = None
) -> Stream:
    if not isinstance(scenario, Scenario):
        from edgesel_tools.sim.measured import build_measured_stream

        return build_measured_stream(scenario, rounds, seed)
    rounds = scenario.rounds if rounds is None else rounds
    seed = scenario.seed if seed is None else seed
    hidden_ss, fleet_ss, round_ss, noise_ss = np.random.SeedSequence(seed).spawn(4)
    models = scenario.all_models()
    arm_ids = [m.arm_id for m in models]
    n_arms = len(models)
    truth = GroundTruth(
        list(scenario.devices),
        models,
        scenario.qoe,
        np.random.default_rng(hidden_ss),
        scenario.noise.device_sd,
        scenario.noise.device_model_sd,
    )

    fleet_rng = np.random.default_rng(fleet_ss)
    w = np.asarray(scenario.device_weights, dtype=float)
    inst_device = fleet_rng.choice(len(scenario.devices), size=scenario.fleet_size, p=w / w.sum())
    inst_prefs, inst_bias = draw_users(fleet_rng, scenario.fleet_size, scenario.users)

    rng = np.random.default_rng(round_ss)
    inst = rng.integers(0, scenario.fleet_size, size=rounds)
    dev = inst_device[inst]
    prefs = inst_prefs[inst]
    battery, thermal, load = draw_states(rng, truth.battery_powered[dev], scenario.state)

    noise_rng = np.random.default_rng(noise_ss)
    jitter = np.exp(noise_rng.normal(0.0, scenario.noise.latency_jitter_sd, size=(rounds, n_arms)))
    rating = noise_rng.normal(0.0, scenario.noise.rating_sd, size=(rounds, n_arms)) + inst_bias[inst][:, None]

    names, kinds = [d.name for d in scenario.devices], [d.kind for d in scenario.devices]
    factor, drift_fails = drift_masks(scenario.drifts, rounds, dev, names, kinds, arm_ids)
    expected = truth.expected_qoe(dev, thermal, load, battery, prefs, factor)
    reward = truth.reported_qoe(dev, thermal, load, battery, prefs, jitter, rating, factor)
    fits = truth.fits(dev, load) & ~drift_fails
    expected = np.where(drift_fails, 0.0, expected)  # a failing model crashes, like one that does not fit
    reward = np.where(drift_fails, 0.0, reward)
    latency_ms = truth.request_latency(dev, thermal, load) * jitter * factor  # what the device measures
    energy_mj = latency_ms * truth.power_w[dev]

    static = np.array([device_static_features(d) for d in scenario.devices])
    contexts = np.ascontiguousarray(
        np.hstack([static[dev], battery[:, None], thermal[:, None], load[:, None], prefs])
    )

    in_catalog, change_rounds = catalog_over_time(
        arm_ids, [m.arm_id for m in scenario.models], scenario.changes, rounds
    )
    eligible = in_catalog
    if scenario.eligibility == "ram_filter":
        # What the device announces (its RAM) against what the catalog knows (file size): a coarse filter.
        ram_mb = np.array([d.ram_gb * 1024.0 for d in scenario.devices])
        sizes = np.array([m.file_size_mb for m in models])
        allowed = sizes[None, :] <= scenario.eligibility_ram_fraction * ram_mb[:, None]
        eligible = in_catalog & allowed[dev]
        empty = ~eligible.any(axis=1)
        eligible[empty] = in_catalog[empty]  # a device too small for everything still gets the full catalog

    return Stream(
        scenario=scenario,
        rounds=rounds,
        seed=seed,
        arm_ids=arm_ids,
        arm_features=np.array([model_features(m) for m in models]),
        device_index=dev,
        contexts=contexts,
        battery=battery,
        thermal=thermal,
        load=load,
        prefs=prefs,
        expected=expected,
        reward=reward,
        eligible=eligible,
        fits=fits,
        change_rounds=change_rounds,
        truth=truth,
        feedback=FormulaFeedback(
            latency_ms,
            energy_mj,
            ~fits,
            prefs,
            np.where(
                truth.battery_powered[dev], scenario.qoe.energy_half_mj * (0.25 + 0.75 * battery), math.inf
            ),
        ),
    )


@dataclass
class FormulaFeedback:
    """What a Feedback carries in a formula scenario, for policies that learn measurements (qoe_model): the
    measured (jittered) latency and energy, or that the model did not fit; and what the device states with
    each request (its user's weights, and the energy budget its battery level implies for the ground
    truth's energy satisfaction; none on mains power)."""

    latency_ms: NDArray  # (T, K)
    energy_mj: NDArray  # (T, K)
    failed: NDArray  # (T, K) bool
    weights: NDArray  # (T, 3) accuracy, latency, energy
    energy_budget_mj: NDArray  # (T,) inf on mains power

    def prefix(self, rounds: int) -> FormulaFeedback:
        return FormulaFeedback(
            self.latency_ms[:rounds], self.energy_mj[:rounds], self.failed[:rounds], self.weights[:rounds],
            self.energy_budget_mj[:rounds],
        )  # fmt: skip

    def preferences(self, t: int) -> dict[str, Any]:
        w = self.weights[t]
        return {
            "energy_budget_mj": float(self.energy_budget_mj[t]),
            "qoe_weights": {"accuracy": float(w[0]), "latency_ms": float(w[1]), "energy_mj": float(w[2])},
        }

    def measurements(self, t: int, j: int) -> dict[str, float]:
        if self.failed[t, j]:
            return {}
        return {"latency_ms": float(self.latency_ms[t, j]), "energy_mj": float(self.energy_mj[t, j])}
