"""Edge devices (``data/edge_devices.csv``) and the hidden hardware parameters the simulator derives.

Everything here is a documented rule of thumb (docs/simulator.md, "Latency and energy"), not a measurement.
Unknown CPUs/accelerators get conservative defaults, so any device row with the same columns works.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

from edgesel_tools.sim.catalog import _read_csv


@dataclass(frozen=True)
class Uarch:
    """Per big-core CPU microarchitecture: fp32 throughput in GMAC per cycle (effective, conv nets with a
    good runtime), int8 speed-up over fp32, and power per busy core at max clock (W)."""

    gmac_per_cycle: float
    int8_speedup: float
    watts_per_core: float


# Matched by substring against cpu_big, first hit wins (so "Kryo 485 Gold (A76)" finds "A76").
UARCH_TABLE: tuple[tuple[str, Uarch], ...] = (
    ("Lightning", Uarch(3.0, 2.5, 1.8)),  # Apple A13 big core
    ("Carmel", Uarch(1.5, 2.2, 1.2)),  # NVIDIA Xavier, ARMv8.2 with dot-product
    ("A78", Uarch(2.0, 2.8, 1.0)),
    ("A77", Uarch(1.9, 2.8, 1.1)),
    ("A76", Uarch(1.8, 2.7, 1.1)),
    ("A75", Uarch(1.4, 2.4, 1.0)),  # first Cortex with sdot: int8 gains most
    ("A73", Uarch(1.1, 1.6, 0.8)),
    ("Kryo 250", Uarch(1.0, 1.6, 0.8)),  # A73-derived
    ("A72", Uarch(1.0, 1.6, 0.9)),
    ("A57", Uarch(0.8, 1.5, 0.9)),
    ("A55", Uarch(0.55, 1.8, 0.3)),
    ("A53", Uarch(0.5, 1.5, 0.35)),  # in-order core
)
DEFAULT_UARCH = Uarch(1.0, 1.6, 1.0)


@dataclass(frozen=True)
class Accelerator:
    """An int8 (and optionally fp16) inference engine beside the CPU."""

    kind: str
    tops_int8: float  # peak, from the CSV or ACCEL_FALLBACK_TOPS
    utilization: float  # fraction of peak a single-image inference achieves
    runs_float: bool  # fp32 models run (converted to fp16 at half the int8 rate)
    watts: float
    onchip_mb: float  # weights beyond this are streamed per inference (Edge TPU: 8 MB SRAM)


# accelerator-name substring -> (utilization, runs_float, watts, on-chip MB, TOPS when the CSV has none)
ACCEL_TABLE: tuple[tuple[str, tuple[float, bool, float, float, float]], ...] = (
    ("Edge TPU", (0.15, False, 2.0, 8.0, 4.0)),
    ("Hexagon 685", (0.08, False, 1.0, math.inf, 3.0)),
    ("Hexagon 690", (0.08, False, 1.0, math.inf, 7.0)),
    ("Hexagon", (0.08, False, 1.0, math.inf, 3.0)),
    ("Neural Engine", (0.10, True, 1.5, math.inf, 6.0)),
    ("DLA", (0.10, False, 2.5, math.inf, 10.0)),
)
# A TOPS figure with no named accelerator (Jetson Orin: the GPU's tensor cores) is an int8 path on the GPU.
GPU_TENSOR_CORES = (0.08, False, 7.0, math.inf)

# CUDA GPUs run float models (TensorRT fp16): clock in GHz per architecture.
CUDA_GPU_CLOCK_GHZ = {"Maxwell": 0.92, "Pascal": 1.3, "Volta": 1.1, "Turing": 1.2, "Ampere": 0.625}
CUDA_GPU_UTILIZATION = 0.4


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    kind: str  # phone | sbc | ...
    soc: str
    cpu_big: str
    cpu_big_count: int
    cpu_little_count: int
    cpu_max_ghz: float
    ram_gb: float
    gpu: str
    accelerator: str
    accelerator_tops_int8: float  # 0 when the CSV leaves it blank (what the device itself can report)
    release_year: int

    # ---- derived hidden hardware parameters ----
    @property
    def uarch(self) -> Uarch:
        for key, ua in UARCH_TABLE:
            if key in self.cpu_big:
                return ua
        return DEFAULT_UARCH

    @property
    def battery_powered(self) -> bool:
        return self.kind == "phone"

    @property
    def cpu_gmacs(self) -> float:
        """Effective fp32 GMAC/s of the CPU: big cores x clock x per-core rate, sub-linear in core count,
        little cores counted as a quarter of a big one."""
        cores = self.cpu_big_count + 0.25 * self.cpu_little_count
        return self.uarch.gmac_per_cycle * self.cpu_max_ghz * max(cores, 1.0) ** 0.8

    @property
    def cpu_watts(self) -> float:
        return 0.5 + self.cpu_big_count * self.uarch.watts_per_core + 0.15 * self.cpu_little_count

    @property
    def mem_bw_mb_per_ms(self) -> float:
        """DRAM bandwidth (GB/s == MB/ms) a single inference sees: grows ~20 %/year, phones have LPDDR4X."""
        base = 6.0 if self.kind == "phone" else 3.0
        return base * 1.2 ** (self.release_year - 2018)

    @property
    def accel(self) -> Accelerator | None:
        for key, (util, runs_float, watts, onchip, fallback) in ACCEL_TABLE:
            if key in self.accelerator:
                tops = self.accelerator_tops_int8 or fallback
                return Accelerator(key, tops, util, runs_float, watts, onchip)
        if self.accelerator_tops_int8 > 0:
            util, runs_float, watts, onchip = GPU_TENSOR_CORES
            return Accelerator(
                "gpu_tensor_cores", self.accelerator_tops_int8, util, runs_float, watts, onchip
            )
        return None

    @property
    def cuda_gpu_gmacs(self) -> float:
        """Effective fp16 GMAC/s of a CUDA GPU (0 when the GPU is not CUDA-capable)."""
        m = re.match(r"(\d+)-core (\w+)", self.gpu)
        if not m or m.group(2) not in CUDA_GPU_CLOCK_GHZ:
            return 0.0
        cores, clock = int(m.group(1)), CUDA_GPU_CLOCK_GHZ[m.group(2)]
        return cores * clock * 2.0 * CUDA_GPU_UTILIZATION  # x2: paired fp16 FMA

    @property
    def cuda_gpu_watts(self) -> float:
        m = re.match(r"(\d+)-core", self.gpu)
        return 1.5 + 0.007 * int(m.group(1)) if m else 0.0


def _f(value: str, default: float = 0.0) -> float:
    return float(value) if value.strip() else default


@cache
def device_table() -> dict[str, DeviceSpec]:
    out: dict[str, DeviceSpec] = {}
    for row in _read_csv("edge_devices.csv"):
        out[row["device"]] = DeviceSpec(
            name=row["device"],
            kind=row["kind"],
            soc=row["soc"],
            cpu_big=row["cpu_big"],
            cpu_big_count=int(_f(row["cpu_big_count"], 1)),
            cpu_little_count=int(_f(row["cpu_little_count"])),
            cpu_max_ghz=_f(row["cpu_max_ghz"], 1.0),
            ram_gb=_f(row["ram_gb"], 1.0),
            gpu=row["gpu"],
            accelerator=row["accelerator"],
            accelerator_tops_int8=_f(row["accelerator_tops_int8"]),
            release_year=int(_f(row["release_year"], 2018)),
        )
    return out


def resolve_device(name: str) -> DeviceSpec:
    table = device_table()
    if name not in table:
        raise KeyError(f"unknown device {name!r}; known: {sorted(table)}")
    return table[name]


# ---- features the learner sees ----
# Static part (what the SDK can detect), then per-request state, then the user's stated preferences.
DEVICE_STATIC_FEATURE_NAMES = (
    "big_cores",
    "little_cores",
    "cpu_ghz",
    "log_ram",
    "has_npu",
    "log_tops",
    "cuda_gpu",
    "release_year",
    "battery_powered",
)
DEVICE_STATE_FEATURE_NAMES = ("battery", "thermal", "background_load")
PREFERENCE_FEATURE_NAMES = ("w_accuracy", "w_latency", "w_energy")
DEVICE_FEATURE_NAMES = DEVICE_STATIC_FEATURE_NAMES + DEVICE_STATE_FEATURE_NAMES + PREFERENCE_FEATURE_NAMES


def device_static_features(d: DeviceSpec) -> list[float]:
    """Fixed-range transforms, ~[0, 1] for current hardware (clipped so a future device cannot blow up)."""

    def clip(v: float, hi: float = 1.5) -> float:
        return min(max(v, 0.0), hi)

    has_npu = bool(d.accelerator.strip()) or d.accelerator_tops_int8 > 0
    return [
        clip(d.cpu_big_count / 8.0),
        clip(d.cpu_little_count / 8.0),
        clip(d.cpu_max_ghz / 4.0),
        clip((math.log2(max(d.ram_gb, 0.25)) + 1.0) / 5.0),  # 0.5 GB -> 0, 16 GB -> 1
        1.0 if has_npu else 0.0,
        clip(math.log1p(d.accelerator_tops_int8) / math.log1p(100.0)),  # reported TOPS only (0 if unknown)
        1.0 if d.cuda_gpu_gmacs > 0 else 0.0,
        clip((d.release_year - 2015) / 10.0),
        1.0 if d.battery_powered else 0.0,
    ]
