"""The hidden ground truth: latency, energy, fit and QoE of every (request, model) pair.

Documented in docs/simulator.md. Static per (device type, model) quantities are computed once; per-request
state (thermal, background load, battery, user preferences) scales them, vectorized over whole streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from edgesel_tools.sim.catalog import ModelSpec
from edgesel_tools.sim.devices import DeviceSpec

PATH_CPU, PATH_ACCEL, PATH_GPU = 0, 1, 2
PATH_NAMES = ("cpu", "accelerator", "gpu")

_CLASSIC = ("resnet", "vgg", "alexnet", "googlenet", "inception", "squeezenet")
_DEPTHWISE = ("mobilenetv2", "mobilenetv3", "mnasnet", "shufflenetv2", "efficientnet")
_TRANSFORMER = ("swin_transformer", "vision_transformer", "maxvit")

# Fraction of a processor's effective rate that a model family achieves (docs/simulator.md, "Efficiency").
FAMILY_CPU = {
    "resnet": 1.0, "vgg": 1.0, "alexnet": 0.9, "googlenet": 0.85, "inception": 0.85, "squeezenet": 0.8,
    "densenet": 0.7, "regnet": 0.85, "convnext": 0.7, "mobilenetv2": 0.5, "mobilenetv3": 0.45,
    "mnasnet": 0.5, "shufflenetv2": 0.45, "efficientnet": 0.45, "swin_transformer": 0.7,
    "vision_transformer": 0.8, "maxvit": 0.6,
}  # fmt: skip
FAMILY_ACCEL = {
    **{f: 1.0 for f in _CLASSIC}, "densenet": 0.8, "regnet": 0.8, "convnext": 0.5, "mobilenetv2": 0.8,
    "mnasnet": 0.7, "shufflenetv2": 0.6, "mobilenetv3": 0.5, "efficientnet": 0.5,
    **{f: 0.3 for f in _TRANSFORMER},
}  # fmt: skip
FAMILY_GPU = {
    **{f: 1.0 for f in _CLASSIC}, "densenet": 0.8, "regnet": 0.8, "convnext": 0.8,
    **{f: 0.35 for f in _DEPTHWISE}, **{f: 0.8 for f in _TRANSFORMER},
}  # fmt: skip
DEFAULT_FAMILY_EFFICIENCY = 0.7

OVERHEAD_MS = {PATH_CPU: 0.5, PATH_ACCEL: 1.0, PATH_GPU: 2.0}
EDGE_TPU_STREAM_MB_PER_MS = 0.4  # weights that do not fit the 8 MB SRAM cross the host link every inference
SOC_BASE_WATTS = 0.8  # rest of the SoC while an accelerator or GPU works

THERMAL_SENSITIVITY = {"phone": 0.8}  # latency x (1 + s * thermal) on the CPU; half that off the CPU
DEFAULT_THERMAL_SENSITIVITY = 0.4  # boards with a heat sink throttle less
LOAD_CPU = 0.7  # CPU latency / (1 - 0.7 * load): competing threads take cores
LOAD_OFFLOAD = 0.2  # accelerator/GPU latency x (1 + 0.2 * load): only pre/post-processing competes
FREE_RAM_FRACTION = {"phone": 0.45}  # of physical RAM an app can get; the OS and other apps hold the rest
DEFAULT_FREE_RAM_FRACTION = 0.7
LOAD_RAM = 0.5  # background load also takes memory: available x (1 - 0.5 * load)


@dataclass(frozen=True)
class QoEParams:
    latency_half_ms: float = 100.0  # latency at which latency satisfaction is 1/2
    latency_steepness: float = 2.0
    energy_half_mj: float = 300.0  # energy per inference at which energy satisfaction is 1/2 (full battery)
    latency_limit_ms: float = (
        2000.0  # patience: beyond this the whole experience collapses, whatever the weights
    )
    accuracy_floor: float = 55.0  # top-1 below this is worthless to the user ...
    accuracy_ceiling: float = 88.0  # ... and above this no better


def footprint_mb(m: ModelSpec) -> float:
    """Peak memory of one inference: weights (+10 % runtime copies), activations, runtime."""
    activations = 15.0 * (m.input_size / 224.0) ** 2 * (1.0 + np.log2(1.0 + m.gflops) / 2.0)
    return 1.1 * m.file_size_mb + activations + 40.0


def _path_latencies(d: DeviceSpec, m: ModelSpec) -> dict[int, tuple[float, float]]:
    """Nominal latency (ms) and power (W) on every path the device can run the model on."""
    out: dict[int, tuple[float, float]] = {}
    bw = d.mem_bw_mb_per_ms
    rate = d.cpu_gmacs * FAMILY_CPU.get(m.family, DEFAULT_FAMILY_EFFICIENCY)
    if m.quantized:
        rate *= d.uarch.int8_speedup
    out[PATH_CPU] = (m.gflops / rate * 1e3 + m.file_size_mb / bw + OVERHEAD_MS[PATH_CPU], d.cpu_watts)
    acc = d.accel
    if acc is not None and (m.quantized or acc.runs_float):
        rate = acc.tops_int8 * 1e3 / 2.0 * acc.utilization * FAMILY_ACCEL.get(m.family, 0.6)
        if not m.quantized:
            rate /= 2.0  # fp16
        streamed = max(m.file_size_mb - acc.onchip_mb, 0.0) if np.isfinite(acc.onchip_mb) else 0.0
        mem = streamed / EDGE_TPU_STREAM_MB_PER_MS if streamed else m.file_size_mb / bw
        out[PATH_ACCEL] = (m.gflops / rate * 1e3 + mem + OVERHEAD_MS[PATH_ACCEL], acc.watts + SOC_BASE_WATTS)
    if d.cuda_gpu_gmacs > 0:
        rate = d.cuda_gpu_gmacs * FAMILY_GPU.get(m.family, DEFAULT_FAMILY_EFFICIENCY)
        lat = m.gflops / rate * 1e3 + m.file_size_mb / bw + OVERHEAD_MS[PATH_GPU]
        out[PATH_GPU] = (lat, d.cuda_gpu_watts + SOC_BASE_WATTS)
    return out


class GroundTruth:
    """Static (device type x model) tables plus the vectorized per-request QoE."""

    def __init__(
        self,
        devices: list[DeviceSpec],
        models: list[ModelSpec],
        qoe: QoEParams,
        rng: np.random.Generator,
        device_sigma: float = 0.15,
        device_model_sigma: float = 0.15,
    ) -> None:
        self.devices, self.models, self.qoe = devices, models, qoe
        n_dev, n_mod = len(devices), len(models)
        self.latency_ms = np.empty((n_dev, n_mod))
        self.power_w = np.empty((n_dev, n_mod))
        self.path = np.empty((n_dev, n_mod), dtype=np.int8)
        # Hidden efficiency of each device type (firmware, runtime, cooling) and of each pair (op support,
        # delegate quirks): log-normal, drawn once per scenario seed, never visible to the learner.
        dev_eff = np.exp(rng.normal(0.0, device_sigma, n_dev))
        pair_eff = np.exp(rng.normal(0.0, device_model_sigma, (n_dev, n_mod)))
        for i, d in enumerate(devices):
            for j, m in enumerate(models):
                paths = _path_latencies(d, m)
                best = min(paths, key=lambda p: paths[p][0])  # the runtime picks the fastest delegate
                self.path[i, j] = best
                self.latency_ms[i, j] = paths[best][0] * dev_eff[i] * pair_eff[i, j]
                self.power_w[i, j] = paths[best][1]
        self.footprint_mb = np.array([footprint_mb(m) for m in models])
        self.accuracy_utility = np.clip(
            (np.array([m.top1 for m in models]) - qoe.accuracy_floor)
            / (qoe.accuracy_ceiling - qoe.accuracy_floor),
            0.0,
            1.0,
        )
        self.thermal_sens = np.array(
            [THERMAL_SENSITIVITY.get(d.kind, DEFAULT_THERMAL_SENSITIVITY) for d in devices]
        )
        self.free_ram = np.array([FREE_RAM_FRACTION.get(d.kind, DEFAULT_FREE_RAM_FRACTION) for d in devices])
        self.ram_mb = np.array([d.ram_gb * 1024.0 for d in devices])
        self.battery_powered = np.array([d.battery_powered for d in devices])

    def request_latency(self, dev: NDArray, thermal: NDArray, load: NDArray) -> NDArray:
        """(n, K) latency in ms for n requests (device type index, thermal in [0,1], load in [0,1])."""
        base = self.latency_ms[dev]
        on_cpu = self.path[dev] == PATH_CPU
        sens = self.thermal_sens[dev][:, None]
        th, ld = thermal[:, None], load[:, None]
        cpu = (1.0 + sens * th) / (1.0 - LOAD_CPU * ld)
        off = (1.0 + 0.5 * sens * th) * (1.0 + LOAD_OFFLOAD * ld)
        return base * np.where(on_cpu, cpu, off)

    def fits(self, dev: NDArray, load: NDArray) -> NDArray:
        available = self.ram_mb[dev] * self.free_ram[dev] * (1.0 - LOAD_RAM * load)
        return self.footprint_mb[None, :] <= available[:, None]

    def qoe_of(
        self, dev: NDArray, latency: NDArray, energy: NDArray, battery: NDArray, prefs: NDArray, fits: NDArray
    ) -> NDArray:
        q = self.qoe
        u_lat = 1.0 / (1.0 + (latency / q.latency_half_ms) ** q.latency_steepness)
        half = q.energy_half_mj * (0.25 + 0.75 * battery)[:, None]
        u_energy = np.where(self.battery_powered[dev][:, None], 1.0 / (1.0 + energy / half), 1.0)
        value = (
            prefs[:, 0:1] * self.accuracy_utility[None, :] + prefs[:, 1:2] * u_lat + prefs[:, 2:3] * u_energy
        )
        patience = 1.0 / (1.0 + (latency / q.latency_limit_ms) ** 4)
        return np.where(fits, value * patience, 0.0)

    def expected_qoe(
        self,
        dev: NDArray,
        thermal: NDArray,
        load: NDArray,
        battery: NDArray,
        prefs: NDArray,
        latency_factor: NDArray | float = 1.0,
    ) -> NDArray:
        """(n, K) noiseless QoE: what regret and the oracle are measured against (``latency_factor``: a
        drift's (n, K) latency multiplier, sim/drift.py)."""
        lat = self.request_latency(dev, thermal, load) * latency_factor
        energy = lat * self.power_w[dev]  # W x ms = mJ
        return self.qoe_of(dev, lat, energy, battery, prefs, self.fits(dev, load))

    def reported_qoe(
        self,
        dev: NDArray,
        thermal: NDArray,
        load: NDArray,
        battery: NDArray,
        prefs: NDArray,
        latency_jitter: NDArray,
        rating_noise: NDArray,
        latency_factor: NDArray | float = 1.0,
    ) -> NDArray:
        """(n, K) QoE a user would report, in [0, 1]: jittered latency/energy, rating bias and noise.
        A model that does not fit crashes and reports exactly 0."""
        lat = self.request_latency(dev, thermal, load) * latency_jitter * latency_factor
        energy = lat * self.power_w[dev]
        fits = self.fits(dev, load)
        q = self.qoe_of(dev, lat, energy, battery, prefs, fits)
        return np.where(fits, np.clip(q + rating_noise, 0.0, 1.0), 0.0)
