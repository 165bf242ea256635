"""Detects the features of the device the SDK runs on, as the numbers a space's feature schema expects.

Every value is a finite float; booleans are 1.0 / 0.0. A feature that cannot be measured is left out so the
server applies its schema default. Names:

=====================  ==================================================================================
cpu_cores              logical CPUs usable by this process
cpu_max_ghz            highest max clock over the cores (cpufreq ``cpuinfo_max_freq``, else /proc/cpuinfo)
ram_gb                 total RAM in GiB (/proc/meminfo ``MemTotal``, else ``os.sysconf``)
ram_available_gb       RAM available for new work in GiB (/proc/meminfo ``MemAvailable``)
is_arm64, is_x86_64    CPU architecture flags
has_nvidia_gpu         /dev/nvidia0, /dev/nvidiactl, or a Jetson GPU (/dev/nvhost-*, /dev/nvgpu/igpu0/*)
has_gpu                any GPU: NVIDIA, a DRM render node /dev/dri/renderD*, or a Mali/Adreno device
has_coral_tpu          Google Coral Edge TPU (/dev/apex_0, or the USB accelerator)
has_npu                any neural accelerator: Qualcomm Hexagon (FastRPC), Rockchip, Hailo, Coral, Intel or
                       AMD NPU (/dev/accel), ... (``edgesel_client.platforms`` says where each comes from)
npu_hexagon, ...       one flag per NPU kind: npu_hexagon, npu_rockchip, npu_hailo, npu_coral, npu_intel,
                       npu_amd
hexagon_arch           Hexagon DSP version of a known Qualcomm SoC (65, 66, 68, 69, 73, 75, 79)
qcom_soc_id            Qualcomm SoC number (/sys/devices/soc0/soc_id)
has_fp16               the CPU does half-precision arithmetic (Arm ``asimdhp``, x86 ``avx512_fp16``)
has_int8_dot           the CPU has int8 dot products (Arm ``asimddp``, x86 ``avx512_vnni``/``avx_vnni``)
is_jetson              an NVIDIA Jetson (/etc/nv_tegra_release); jetson_l4t_major: its L4T release (35, 36)
is_raspberry_pi        a Raspberry Pi (/proc/device-tree/model); raspberry_pi_generation: 3, 4, 5, ...
has_accelerator        any of has_gpu, has_coral_tpu, has_npu
has_battery            a battery in /sys/class/power_supply
battery_percent        battery charge 0..100; mains-powered devices report 100
battery_charging       1 when charging, full or mains-powered, else 0
thermal_celsius        hottest /sys/class/thermal/thermal_zone*/temp in degrees Celsius
=====================  ==================================================================================

The app can extend or override any of them: ``detect_device_features({"network_mbps": 40.0})``.

Categorical features (a space's ``kind = "categorical"``) travel as strings, in the request's
``device_labels``; ``detect_device_labels`` measures these:

os                     "android" (an Android system partition), else ``platform.system()`` lower-cased:
                       "linux", "darwin", "windows", ...
cpu_arch               "arm64", "x86_64", else ``platform.machine()`` lower-cased ("armv7l", "riscv64", ...)
=====================  ==================================================================================

Add the rest (``form_factor``, ``soc_family``, ...) as overrides: ``detect_device_labels({"form_factor":
"phone"})``.
=======
``detect_device()`` also gives the identity as strings (SoC, board, NPU kinds, L4T release) for the app's own
use and logs. Files are read under ``/``, or under ``$EDGESEL_SYSFS_ROOT`` (or the ``root`` argument) when
set, so a fake tree can stand in for a device's.
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgesel_client.platforms import NPU_KINDS, detect_platform

__all__ = [
    "DEVICE_FEATURE_NAMES",
    "DEVICE_LABEL_NAMES",
    "DeviceInfo",
    "detect_device",
    "detect_device_features",
    "detect_device_labels",
]

ROOT_ENV = "EDGESEL_SYSFS_ROOT"

DEVICE_FEATURE_NAMES: tuple[str, ...] = (
    "cpu_cores",
    "cpu_max_ghz",
    "ram_gb",
    "ram_available_gb",
    "is_arm64",
    "is_x86_64",
    "has_nvidia_gpu",
    "has_gpu",
    "has_coral_tpu",
    "has_npu",
    *(f"npu_{kind}" for kind in NPU_KINDS),
    "hexagon_arch",
    "qcom_soc_id",
    "has_fp16",
    "has_int8_dot",
    "is_jetson",
    "jetson_l4t_major",
    "is_raspberry_pi",
    "raspberry_pi_generation",
    "has_accelerator",
    "has_battery",
    "battery_percent",
    "battery_charging",
    "thermal_celsius",
)

DEVICE_LABEL_NAMES: tuple[str, ...] = ("os", "cpu_arch")

_ARM64_MACHINES = {"aarch64", "arm64", "armv8l", "armv8b"}
_X86_64_MACHINES = {"x86_64", "amd64", "x64"}
_KIB_PER_GIB = 1024.0 * 1024.0


@dataclass
class DeviceInfo:
    """What ``detect_device`` found: the numeric features a space's schema can use, and the identity."""

    features: dict[str, float]
    soc_vendor: str | None = None
    """"qualcomm", "nvidia", "rockchip", ... when known."""
    soc_family: str | None = None
    """/sys/devices/soc0/family, e.g. "Snapdragon"."""
    soc_machine: str | None = None
    """The SoC's name, e.g. "SM8550" (soc0/machine) or "rk3588" (device-tree compatible)."""
    soc_id: str | None = None
    board_model: str | None = None
    """/proc/device-tree/model, e.g. "Raspberry Pi 5 Model B Rev 1.0"."""
    npu_kinds: list[str] = field(default_factory=list)
    jetson_l4t: str | None = None
    """The L4T release of a Jetson, e.g. "R35.4.1" (JetPack 5.1.2)."""


def detect_device(*, root: str | os.PathLike[str] | None = None, machine: str | None = None) -> DeviceInfo:
    """Measure this device. ``root`` (default ``$EDGESEL_SYSFS_ROOT``, else ``/``) and ``machine`` (default
    ``platform.machine()``) exist so tests can point detection at a fake filesystem / architecture."""
    base = Path(root if root is not None else os.environ.get(ROOT_ENV) or "/")
    features: dict[str, float] = {}
    features["cpu_cores"] = float(_cpu_cores())
    max_ghz = _cpu_max_ghz(base)
    if max_ghz is not None:
        features["cpu_max_ghz"] = max_ghz
    features.update(_memory_gb(base))
    features.update(_architecture_flags(machine if machine is not None else platform.machine()))
    found = detect_platform(base)
    features.update(found.features)
    features.update(_gpus(base, coral=found.features["npu_coral"] == 1.0))
    features["has_accelerator"] = float(features["has_gpu"] == 1.0 or found.features["has_npu"] == 1.0)
    features.update(_power(base))
    thermal = _thermal_celsius(base)
    if thermal is not None:
        features["thermal_celsius"] = thermal
    return DeviceInfo(
        features={name: value for name, value in features.items() if math.isfinite(value)},
        soc_vendor=found.soc_vendor,
        soc_family=found.soc_family,
        soc_machine=found.soc_machine,
        soc_id=found.soc_id,
        board_model=found.board_model,
        npu_kinds=found.npu_kinds,
        jetson_l4t=found.jetson_l4t,
    )


def detect_device_features(
    overrides: Mapping[str, float] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    machine: str | None = None,
) -> dict[str, float]:
    """This device's features (``detect_device().features``); ``overrides`` win and may add new names."""
    features = detect_device(root=root, machine=machine).features
    if overrides:
        for name, value in overrides.items():
            features[name] = float(value)
    return features


def detect_device_labels(
    overrides: Mapping[str, str] | None = None,
    *,
    root: str | os.PathLike[str] = "/",
    machine: str | None = None,
    system: str | None = None,
) -> dict[str, str]:
    """The categorical features of this device; ``overrides`` win and may add new names.

    ``root``, ``machine`` and ``system`` exist so tests can point detection at a fake device."""
    base = Path(root)
    machine = (machine if machine is not None else platform.machine()).lower()
    system = (system if system is not None else platform.system()).lower()
    # Android reports "linux" to platform.system(); its system partition gives it away.
    is_android = (base / "system/build.prop").exists()
    labels = {
        "os": "android" if is_android else system or "unknown",
        "cpu_arch": "arm64"
        if machine in _ARM64_MACHINES
        else "x86_64"
        if machine in _X86_64_MACHINES
        else machine,
    }
    labels = {name: value for name, value in labels.items() if value}
    if overrides:
        for name, value in overrides.items():
            if not isinstance(value, str):
                raise TypeError(f"device label {name!r} must be a string, got {value!r}")
            labels[name] = value
    return labels


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _read_float(path: Path) -> float | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _cpu_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def _cpu_max_ghz(base: Path) -> float | None:
    max_freqs_khz = [
        _read_float(path) for path in base.glob("sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq")
    ]
    khz = [freq for freq in max_freqs_khz if freq is not None and freq > 0]
    if khz:
        return max(khz) / 1e6
    # Without cpufreq (VMs, containers) /proc/cpuinfo has the current clock, the best available estimate.
    cpuinfo = _read_text(base / "proc/cpuinfo") or ""
    mhz = []
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "cpu mhz":
            try:
                mhz.append(float(value))
            except ValueError:
                continue
    mhz = [value for value in mhz if math.isfinite(value) and value > 0]
    return max(mhz) / 1000.0 if mhz else None


def _memory_gb(base: Path) -> dict[str, float]:
    meminfo: dict[str, float] = {}
    for line in (_read_text(base / "proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            try:
                meminfo[key.strip()] = float(parts[0])  # kB
            except ValueError:
                continue
    memory: dict[str, float] = {}
    if "MemTotal" in meminfo:
        memory["ram_gb"] = meminfo["MemTotal"] / _KIB_PER_GIB
    elif str(base) == "/":
        try:
            memory["ram_gb"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2.0**30
        except (AttributeError, ValueError, OSError):
            pass
    if "MemAvailable" in meminfo:
        memory["ram_available_gb"] = meminfo["MemAvailable"] / _KIB_PER_GIB
    return memory


def _architecture_flags(machine: str) -> dict[str, float]:
    machine = machine.lower()
    return {
        "is_arm64": float(machine in _ARM64_MACHINES),
        "is_x86_64": float(machine in _X86_64_MACHINES),
    }


def _exists_any(base: Path, *patterns: str) -> bool:
    return any(next(iter(base.glob(pattern)), None) is not None for pattern in patterns)


def _gpus(base: Path, *, coral: bool) -> dict[str, float]:
    nvidia = _exists_any(base, "dev/nvidia[0-9]*", "dev/nvidiactl", "dev/nvhost-*", "dev/nvgpu/igpu0/*")
    adreno = ("dev/kgsl-3d0", "sys/class/kgsl/kgsl-3d0")
    gpu = nvidia or _exists_any(base, "dev/dri/renderD*", "dev/mali*", "sys/class/misc/mali*", *adreno)
    return {"has_nvidia_gpu": float(nvidia), "has_gpu": float(gpu), "has_coral_tpu": float(coral)}


def _power(base: Path) -> dict[str, float]:
    batteries = []
    mains_online = False
    for supply in sorted(base.glob("sys/class/power_supply/*")):
        kind = (_read_text(supply / "type") or "").lower()
        if kind == "battery":
            capacity = _read_float(supply / "capacity")
            status = (_read_text(supply / "status") or "").lower()
            if capacity is not None:
                batteries.append((min(100.0, max(0.0, capacity)), status))
        elif kind in ("mains", "usb", "usb_c", "usb_pd") and _read_float(supply / "online") == 1.0:
            mains_online = True
    if not batteries:
        # A device without a battery never runs short of energy: treat it like a full, charging one.
        return {"has_battery": 0.0, "battery_percent": 100.0, "battery_charging": 1.0}
    percent = min(capacity for capacity, _ in batteries)
    charging = mains_online or any(status in ("charging", "full") for _, status in batteries)
    return {"has_battery": 1.0, "battery_percent": percent, "battery_charging": float(charging)}


def _thermal_celsius(base: Path) -> float | None:
    temps = []
    for path in base.glob("sys/class/thermal/thermal_zone*/temp"):
        millidegrees = _read_float(path)
        # Sensors report millidegrees Celsius; ignore absurd or disconnected readings.
        if millidegrees is not None and -40_000 < millidegrees < 150_000:
            temps.append(millidegrees / 1000.0)
    return max(temps) if temps else None
