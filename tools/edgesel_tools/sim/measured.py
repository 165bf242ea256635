"""Measured scenarios: the ground truth is a table of real on-device measurements, not the formula.

A measurement data set (``data/<name>_devices.csv``, ``_variants.csv``, ``_measurements.csv``; today
``aihub``, derived from the Qualcomm AI Hub model zoo by ``scripts/derive_aihub_scenario.py``) gives, per
(device type, catalog variant), the measured inference latency or "does not run", and per variant its top-1.
A scenario of ``kind = "measured"`` names such a data set and a server config (``space_config``): the
space's feature schema turns each device's and variant's raw features into the vectors the learner sees,
exactly as the server would, and the space's QoE function (``edgesel_server.qoe``) turns each simulated
Feedback's measurements and the request's preferences into the reward, so simulator and server agree.

Per request (docs/simulator.md, "Measured scenarios"): latency = measured × a hidden per-device-instance
factor ``exp(N(0, instance_sd))`` × per-request jitter ``exp(N(0, latency_jitter_sd))`` (log-normal, as
on-device latency spreads); accuracy = the variant's measured top-1 as a fraction; a user rating with
probability ``rating_probability``; a pair that does not run reports ``failed`` and gets the space's minimum
reward. Users send a latency budget and QoE weights with every request (``Preferences``).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from edgesel_server.config import ConfigError, SpaceConfig, load_config
from edgesel_server.qoe import QoeFunction
from edgesel_server.schema import FeatureError, FeatureSchema
from edgesel_tools.sim.scenario import CatalogChange, ScenarioError, Stream, all_models, catalog_over_time

# QoE terms a simulated user weighs (the Dirichlet below is over these, in this order). There is no energy
# in the AI Hub data, so no energy is reported and the space's QoE function renormalizes over what is.
PREFERENCE_TERMS = ("accuracy", "latency_ms", "user_rating")

# One-hot groups of the raw device features (the schema is numeric today). Values outside a group's list
# encode as all zeros.
FORM_FACTORS = ("Phone", "IoT", "Auto", "Compute", "XR")
OS_FAMILIES = {"Android": "android", "Ubuntu": "linux", "Qualcomm Linux": "linux", "Windows": "windows"}
PRECISIONS = ("float", "w8a8", "w8a16", "w8a8_mixed_int16", "w8a16_mixed_int16")


@dataclass(frozen=True)
class MeasuredDevice:
    name: str
    form_factor: str
    os: str
    chipset: str
    htp_version: float
    supports_fp16: bool
    npu_count: float

    def features(self) -> dict[str, float]:
        """Raw device features as a device app would report them (names of examples/edgesel-aihub.toml)."""
        out = {f"form_factor_{f.lower()}": float(self.form_factor == f) for f in FORM_FACTORS}
        family = OS_FAMILIES.get(self.os, "")
        out.update({f"os_{v}": float(family == v) for v in sorted(set(OS_FAMILIES.values()))})
        out.update(
            htp_version=self.htp_version, supports_fp16=float(self.supports_fp16), npu_count=self.npu_count
        )
        return out


@dataclass(frozen=True)
class MeasuredVariant:
    arm_id: str  # "model:precision"
    model: str
    precision: str
    top1: float  # % on the numerics device
    num_params_m: float
    file_size_mb: float
    input_size: int
    quantized: bool
    activation_bits: int

    def features(self) -> dict[str, float]:
        """Raw model features, as the catalog would declare them."""
        return {
            "top1": self.top1,
            "num_params_m": self.num_params_m,
            "file_size_mb": self.file_size_mb,
            "input_size": float(self.input_size),
            "quantized": float(self.quantized),
            "activation_16bit": float(self.activation_bits >= 16),
        }


@dataclass(frozen=True)
class MeasurementTable:
    name: str
    devices: tuple[MeasuredDevice, ...]
    variants: tuple[MeasuredVariant, ...]
    latency_ms: NDArray  # (D, V) measured latency, NaN where the pair does not run
    runs: NDArray  # (D, V) bool

    def device(self, name: str) -> int:
        for i, d in enumerate(self.devices):
            if d.name == name:
                return i
        known = [d.name for d in self.devices]
        raise KeyError(f"unknown device {name!r} in data set {self.name!r} (known: {known})")

    def variant(self, arm_id: str) -> int:
        for j, v in enumerate(self.variants):
            if v.arm_id == arm_id:
                return j
        close = sorted(v.arm_id for v in self.variants if v.model == arm_id.split(":", 1)[0])
        hint = f" (variants of that model: {close})" if close else ""
        raise KeyError(f"unknown variant {arm_id!r} in data set {self.name!r}{hint}")


def _rows(name: str) -> list[dict[str, str]]:
    try:
        fh = resources.files("edgesel_tools.data").joinpath(name).open("r", encoding="utf-8")
    except FileNotFoundError:
        raise KeyError(f"no data file {name!r} in edgesel_tools/data") from None
    with fh:
        return list(csv.DictReader(fh))


@cache
def load_measurements(name: str) -> MeasurementTable:
    """The data set ``name`` from edgesel_tools/data (``<name>_devices.csv`` etc.)."""
    devices = tuple(
        MeasuredDevice(
            name=r["device"],
            form_factor=r["form_factor"],
            os=r["os"],
            chipset=r["chipset"],
            htp_version=float(r["htp_version"]),
            supports_fp16=r["supports_fp16"] == "1",
            npu_count=float(r["npu_count"] or 1),
        )
        for r in _rows(f"{name}_devices.csv")
    )
    variants = tuple(
        MeasuredVariant(
            arm_id=r["variant"],
            model=r["model"],
            precision=r["precision"],
            top1=float(r["top1"]),
            num_params_m=float(r["num_params_m"]),
            file_size_mb=float(r["file_size_mb"]),
            input_size=int(r["input_size"]),
            quantized=r["quantized"] == "1",
            activation_bits=int(r["activation_bits"]),
        )
        for r in _rows(f"{name}_variants.csv")
    )
    d_index = {d.name: i for i, d in enumerate(devices)}
    v_index = {v.arm_id: j for j, v in enumerate(variants)}
    latency = np.full((len(devices), len(variants)), np.nan)
    seen = np.zeros_like(latency, dtype=bool)
    for r in _rows(f"{name}_measurements.csv"):
        i, j = d_index[r["device"]], v_index[r["variant"]]
        seen[i, j] = True
        if r["runs"] == "1":
            latency[i, j] = float(r["latency_ms"])
    if not seen.all():
        raise ValueError(f"data set {name!r}: {int((~seen).sum())} (device, variant) pairs have no row")
    return MeasurementTable(name, devices, variants, latency, ~np.isnan(latency))


# ---------------------------------------------------------------- the scenario


@dataclass(frozen=True)
class MeasuredUsers:
    preference_concentration: tuple[float, float, float] = (1.0, 1.0, 1.0)  # over PREFERENCE_TERMS
    latency_budget_ms: tuple[float, float] = (0.3, 30.0)  # per user, log-uniform
    rating_probability: float = 0.3  # share of requests whose user also gives a rating
    rating_bias_sd: float = 0.03  # per user, on the [0, 1] rating score


@dataclass(frozen=True)
class MeasuredNoise:
    latency_jitter_sd: float = 0.15  # per request, log-normal
    instance_sd: float = 0.10  # per device instance (unit-to-unit, thermal design), log-normal, hidden
    rating_sd: float = 0.05  # on the [0, 1] rating score


@dataclass(frozen=True)
class MeasuredScenario:
    name: str
    rounds: int
    seed: int
    table: MeasurementTable
    space: SpaceConfig
    devices: tuple[MeasuredDevice, ...]
    device_weights: tuple[float, ...]
    models: tuple[MeasuredVariant, ...]  # initial catalog
    changes: tuple[CatalogChange, ...] = ()
    fleet_size: int = 2000
    eligibility: str = "all"
    users: MeasuredUsers = field(default_factory=MeasuredUsers)
    noise: MeasuredNoise = field(default_factory=MeasuredNoise)
    description: str = ""
    source: str = ""
    space_config_file: str = ""

    def all_models(self) -> list[MeasuredVariant]:
        """Initial catalog, then variants added by changes, each once, in order of appearance."""
        return all_models(self.models, self.changes, lambda a: self.table.variants[self.table.variant(a)])


def _err(name: str, problem: str) -> ScenarioError:
    return ScenarioError(f"scenario field {name!r}: {problem}")


def parse_measured(data: dict[str, Any], source: str = "", base_dir: Path = Path(".")) -> MeasuredScenario:
    """A ``kind = "measured"`` scenario table (format in docs/simulator.md, "Measured scenarios")."""
    from edgesel_tools.sim.scenario import (
        _check_keys,
        _num,
        _pair,
        _str_list,
        description,
        parse_catalog_changes,
        parse_noise,
    )

    root = _check_keys(
        data,
        "",
        {"name", "description", "kind", "rounds", "seed", "data", "space_config", "space"}
        | {"fleet", "catalog", "users", "noise"},
        {"name", "data", "space_config", "fleet", "catalog"},
    )
    if not isinstance(root["name"], str) or not root["name"]:
        raise _err("name", "must be a non-empty string")
    rounds = int(_num(root.get("rounds", 10000), "rounds", 1, 10_000_000, integer=True))
    seed = int(_num(root.get("seed", 0), "seed", 0, 2**63 - 1, integer=True))
    if not isinstance(root["data"], str):
        raise _err("data", "must be the name of a measurement data set, e.g. 'aihub'")
    try:
        table = load_measurements(root["data"])
    except KeyError as e:
        raise _err("data", e.args[0]) from None
    if not isinstance(root["space_config"], str):
        raise _err("space_config", "must be a path to a server config (relative to the scenario file)")
    cfg_path = base_dir / root["space_config"]
    try:
        cfg = load_config(cfg_path)
    except ConfigError as e:
        raise _err("space_config", str(e)) from None
    space_name = root.get("space", cfg.spaces[0].name)
    spaces = {s.name: s for s in cfg.spaces}
    if space_name not in spaces:
        raise _err("space", f"{space_name!r} is not a space of {cfg_path} (spaces: {sorted(spaces)})")
    space = spaces[space_name]

    fleet = _check_keys(root["fleet"], "fleet", {"size", "devices", "eligibility"}, {"devices"})
    dev_table = fleet["devices"]
    if dev_table == "all":
        dev_table = {d.name: 1.0 for d in table.devices}
    if not isinstance(dev_table, dict) or not dev_table:
        raise _err("fleet.devices", 'must be "all" or a non-empty table of device name = weight')
    devices, weights = [], []
    for name, w in dev_table.items():
        try:
            devices.append(table.devices[table.device(name)])
        except KeyError as e:
            raise _err(f"fleet.devices.{name}", e.args[0]) from None
        weights.append(float(_num(w, f"fleet.devices.{name}", 0.0)))
    if sum(weights) <= 0:
        raise _err("fleet.devices", "weights must not all be zero")
    if fleet.get("eligibility", "all") != "all":
        raise _err(
            "fleet.eligibility", "must be 'all' here: every variant is offered, the learner finds failures"
        )

    catalog = _check_keys(root["catalog"], "catalog", {"models", "changes"}, {"models"})
    names = [v.arm_id for v in table.variants] if catalog["models"] == "all" else None
    names = names or _str_list(catalog["models"], "catalog.models")
    models = []
    for i, n in enumerate(names):
        try:
            models.append(table.variants[table.variant(n)])
        except KeyError as e:
            raise _err(f"catalog.models[{i}]", e.args[0]) from None
    if len(models) < 2 or len({m.arm_id for m in models}) != len(models):
        raise _err("catalog.models", "needs at least two distinct variants")
    changes = parse_catalog_changes(catalog.get("changes", []), {m.arm_id for m in models}, table.variant)

    ud = MeasuredUsers()
    u = _check_keys(root.get("users", {}), "users", set(ud.__dataclass_fields__))
    conc = u.get("preference_concentration", list(ud.preference_concentration))
    if not isinstance(conc, list) or len(conc) != 3:
        raise _err("users.preference_concentration", f"must be three positive numbers {PREFERENCE_TERMS}")
    budget = u.get("latency_budget_ms", list(ud.latency_budget_ms))
    users = MeasuredUsers(
        tuple(float(_num(c, "users.preference_concentration", 1e-3, 1e6)) for c in conc),  # type: ignore[arg-type]
        _pair(budget, "users.latency_budget_ms", 1e-3, 1e6, ordered=True),
        float(_num(u.get("rating_probability", ud.rating_probability), "users.rating_probability", 0.0, 1.0)),
        float(_num(u.get("rating_bias_sd", ud.rating_bias_sd), "users.rating_bias_sd", 0.0, 1.0)),
    )
    return MeasuredScenario(
        name=root["name"],
        rounds=rounds,
        seed=seed,
        table=table,
        space=space,
        devices=tuple(devices),
        device_weights=tuple(weights),
        models=tuple(models),
        changes=tuple(changes),
        fleet_size=int(_num(fleet.get("size", 2000), "fleet.size", 1, 10_000_000, integer=True)),
        users=users,
        noise=parse_noise(root, MeasuredNoise),
        description=description(root),
        source=source,
        space_config_file=str(cfg_path),
    )


# ---------------------------------------------------------------- the stream


@dataclass
class MeasuredFeedback:
    """What each request's Feedback would carry for each arm ([round, arm]), and the request's preferences."""

    latency_ms: NDArray  # (T, K) sampled latency, NaN where the pair does not run
    accuracy: NDArray  # (K,) measured top-1 as a fraction
    user_rating: NDArray  # (T, K) on the space's rating scale, NaN when the user gave none
    failed: NDArray  # (T, K) bool: the model does not run on this device
    latency_budget_ms: NDArray  # (T,) the request's Preferences.latency_budget_ms
    qoe_weights: NDArray  # (T, 3) the request's Preferences.qoe_weights over PREFERENCE_TERMS
    # Hidden state the ground truth of a live run needs (sim/lift_check.py): which device instance sent each
    # request (its installation id), each instance's own latency per arm (NaN: does not run) and rating bias.
    instance: NDArray | None = None  # (T,) int
    instance_latency_ms: NDArray | None = None  # (fleet, K)
    instance_rating_bias: NDArray | None = None  # (fleet,)

    def prefix(self, rounds: int) -> MeasuredFeedback:
        return MeasuredFeedback(
            self.latency_ms[:rounds], self.accuracy, self.user_rating[:rounds], self.failed[:rounds],
            self.latency_budget_ms[:rounds], self.qoe_weights[:rounds],
            None if self.instance is None else self.instance[:rounds], self.instance_latency_ms,
            self.instance_rating_bias,
        )  # fmt: skip

    def preferences(self, t: int) -> dict[str, Any]:
        return {
            "latency_budget_ms": float(self.latency_budget_ms[t]),
            "qoe_weights": dict(zip(PREFERENCE_TERMS, map(float, self.qoe_weights[t]), strict=True)),
        }

    def measurements(self, t: int, j: int) -> dict[str, float]:
        """The Feedback's measurements for arm j at round t (empty when the model did not run)."""
        if self.failed[t, j]:
            return {}
        out = {"latency_ms": float(self.latency_ms[t, j]), "accuracy": float(self.accuracy[j])}
        if not math.isnan(self.user_rating[t, j]):
            out["user_rating"] = float(self.user_rating[t, j])
        return out


def reward_of(qoe: QoeFunction, measurements: Mapping[str, float], prefs: Mapping[str, Any]) -> float:
    """The server's QoE of one Feedback: the space's minimum when the model did not run."""
    if not measurements:
        return qoe.reward_min
    return qoe.reward(
        measurements, latency_budget_ms=prefs["latency_budget_ms"], weights=prefs["qoe_weights"]
    )


def schema_vectors(schema: FeatureSchema, rows: list[tuple[str, dict[str, float]]], what: str) -> NDArray:
    """The normalized vectors the server's schema computes from raw features (named rows)."""
    out = []
    for name, row in rows:
        try:
            out.append(schema.vector(row))
        except FeatureError as e:
            raise ScenarioError(f"space_config: {what} {name!r}: {e}") from None
    return np.array(out, dtype=np.float64)


def build_measured_stream(sc: MeasuredScenario, rounds: int | None = None, seed: int | None = None) -> Stream:
    rounds = sc.rounds if rounds is None else rounds
    seed = sc.seed if seed is None else seed
    fleet_ss, round_ss, noise_ss = np.random.SeedSequence(seed).spawn(3)
    models = sc.all_models()
    arm_ids = [m.arm_id for m in models]
    cols = [sc.table.variant(a) for a in arm_ids]
    n_arms = len(models)
    rows = [sc.table.device(d.name) for d in sc.devices]
    latency = sc.table.latency_ms[np.ix_(rows, cols)]  # (scenario devices, K)
    runs = sc.table.runs[np.ix_(rows, cols)]
    qoe = sc.space.qoe

    # The fleet: device instances, each with one user and a hidden unit-to-unit latency factor.
    fleet_rng = np.random.default_rng(fleet_ss)
    w = np.asarray(sc.device_weights, dtype=float)
    inst_device = fleet_rng.choice(len(sc.devices), size=sc.fleet_size, p=w / w.sum())
    inst_factor = np.exp(fleet_rng.normal(0.0, sc.noise.instance_sd, sc.fleet_size))
    inst_weights = fleet_rng.dirichlet(np.asarray(sc.users.preference_concentration), size=sc.fleet_size)
    lo, hi = sc.users.latency_budget_ms
    inst_budget = np.exp(fleet_rng.uniform(math.log(lo), math.log(hi), sc.fleet_size))
    inst_bias = fleet_rng.normal(0.0, sc.users.rating_bias_sd, sc.fleet_size)

    rng = np.random.default_rng(round_ss)
    inst = rng.integers(0, sc.fleet_size, size=rounds)
    dev = inst_device[inst]
    rates = rng.random(rounds) < sc.users.rating_probability
    noise_rng = np.random.default_rng(noise_ss)
    jitter = np.exp(noise_rng.normal(0.0, sc.noise.latency_jitter_sd, size=(rounds, n_arms)))
    rating_noise = noise_rng.normal(0.0, sc.noise.rating_sd, size=(rounds, n_arms))

    accuracy = np.array([m.top1 / 100.0 for m in models])
    failed = ~runs[dev]
    nominal = latency[inst_device] * inst_factor[:, None]  # (instances, K): the instance's own latency
    feedback = MeasuredFeedback(
        latency_ms=np.where(failed, np.nan, nominal[inst] * jitter),
        accuracy=accuracy,
        user_rating=np.full((rounds, n_arms), np.nan),
        failed=failed,
        latency_budget_ms=inst_budget[inst],
        qoe_weights=inst_weights[inst],
        instance=inst,
        instance_latency_ms=np.where(runs[inst_device], nominal, np.nan),
        instance_rating_bias=inst_bias,
    )

    # Expected QoE (oracle and regret reference): the QoE function at the instance's nominal latency, without
    # a rating (a noiseless rating is the felt QoE below, so the weighted mean would not change). Computed
    # once per device instance in the stream.
    expected_by_inst: dict[int, NDArray] = {}
    for i in np.unique(inst):
        prefs = {
            "latency_budget_ms": float(inst_budget[i]),
            "qoe_weights": dict(zip(PREFERENCE_TERMS, map(float, inst_weights[i]), strict=True)),
        }
        row = [
            reward_of(qoe, {"latency_ms": float(nominal[i, k]), "accuracy": float(accuracy[k])}, prefs)
            if runs[inst_device[i], k]
            else qoe.reward_min
            for k in range(n_arms)
        ]
        expected_by_inst[int(i)] = np.array(row)
    expected = np.array([expected_by_inst[int(i)] for i in inst])

    # What the user reports: the QoE felt (latency and accuracy through the QoE function) plus the user's
    # bias and noise, on the rating scale; then the reward of the whole Feedback.
    reward = np.empty((rounds, n_arms))
    span = qoe.reward_max - qoe.reward_min
    for t in range(rounds):
        prefs = feedback.preferences(t)
        for k in range(n_arms):
            m = feedback.measurements(t, k)
            if m and rates[t]:
                felt = (reward_of(qoe, m, prefs) - qoe.reward_min) / span
                score = min(1.0, max(0.0, felt + inst_bias[inst[t]] + rating_noise[t, k]))
                rating = qoe.rating_min + score * (qoe.rating_max - qoe.rating_min)
                feedback.user_rating[t, k] = rating
                m["user_rating"] = rating
            reward[t, k] = reward_of(qoe, m, prefs)

    device_schema = FeatureSchema(sc.space.device_features, kind="device")
    model_schema = FeatureSchema(sc.space.model_features, kind="model")
    static = schema_vectors(device_schema, [(d.name, d.features()) for d in sc.devices], "device")
    arm_features = schema_vectors(model_schema, [(m.arm_id, m.features()) for m in models], "model")

    in_catalog, change_rounds = catalog_over_time(arm_ids, [m.arm_id for m in sc.models], sc.changes, rounds)
    return Stream(
        scenario=sc,
        rounds=rounds,
        seed=seed,
        arm_ids=arm_ids,
        arm_features=arm_features,
        device_index=dev,
        contexts=np.ascontiguousarray(static[dev]),
        expected=expected,
        reward=reward,
        eligible=in_catalog,
        fits=~failed,
        change_rounds=change_rounds,
        feedback=feedback,
    )
