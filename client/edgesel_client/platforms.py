"""What kind of edge platform this is: SoC identity, neural accelerator, board, CPU half-precision support.

Each reader looks only at files under ``base`` (``/`` on a device; a fake tree in tests) and returns nothing
when its files are absent, so running on a laptop or in a container costs a few failed ``stat`` calls.
Sources, per platform:

- Qualcomm: ``/sys/devices/soc0/{family,machine,soc_id}`` (drivers/soc/qcom/socinfo.c: family
  ``Snapdragon``, machine the SoC name such as ``SM8550``, soc_id its number); the Hexagon DSP that runs
  neural networks (QNN/SNPE "HTP") is reached through FastRPC: ``/dev/fastrpc-cdsp*`` (upstream kernels,
  drivers/misc/fastrpc.c) or ``/dev/adsprpc-smd`` (Android vendor kernels).
- NVIDIA Jetson: ``/etc/nv_tegra_release`` (``# R35 (release), REVISION: 4.1, ...``), the GPU's
  ``/dev/nvhost-*`` (JetPack <= 5) or ``/dev/nvgpu/igpu0/*`` (JetPack 6) nodes.
- Boards: ``/proc/device-tree/model`` (NUL-terminated, e.g. ``Raspberry Pi 5 Model B Rev 1.0``) and
  ``/proc/device-tree/compatible`` (NUL-separated, e.g. ``rockchip,rk3588``).
- Coral Edge TPU: ``/dev/apex_0`` (PCIe/M.2, gasket driver) or the USB accelerator's ids in
  ``/sys/bus/usb/devices/*/id{Vendor,Product}`` (``1a6e:089a`` before its firmware is loaded, ``18d1:9302``
  after).
- Hailo: ``/dev/hailo0`` (hailo_pci driver).
- Rockchip NPU: ``/dev/rknpu`` or the NPU's devfreq node ``/sys/class/devfreq/*.npu`` (vendor rknpu driver,
  e.g. ``fdab0000.npu`` on RK3588), or an accel device bound to the upstream ``rocket`` driver.
- Compute accelerators of the kernel's accel subsystem: ``/dev/accel/accel*``, the driver named in
  ``/sys/class/accel/accel*/device/uevent`` (``DRIVER=intel_vpu`` Intel NPU, ``amdxdna`` AMD XDNA NPU,
  ``rocket`` Rockchip NPU, ``qaic`` Qualcomm Cloud AI, ``ethosu`` Arm Ethos-U).
- Half precision: ``asimdhp`` (Armv8.2 FP16 arithmetic on NEON) or ``avx512_fp16`` in ``/proc/cpuinfo``;
  int8 dot products: ``asimddp`` / ``avx512_vnni`` / ``avx_vnni``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

__all__ = ["PlatformInfo", "detect_platform"]

# Hexagon DSP architecture version of Qualcomm SoCs, by the name socinfo reports as `machine` (v65/v66: the
# HVX vector DSP; v68 and later: with the HTP tensor accelerator). Source: the supported-SoC table of the
# Qualcomm AI Engine Direct (QNN) SDK documentation, as also used by public apps (rwkv-mobile's soc_detect).
HEXAGON_ARCH_BY_SOC: dict[str, int] = {
    "SDM845": 65,
    "SM8150": 66,
    "SM8250": 66,
    "QRB5165": 66,
    "SM7325": 68,
    "SM8350": 68,
    "SC7280": 68,
    "QCM6490": 68,
    "QCS6490": 68,
    "SC8280XP": 68,
    "SM8450": 69,
    "SM8475": 69,
    "SM8550": 73,
    "QCS8550": 73,
    "SM8650": 75,
    "SM8750": 79,
}

# Kernel drivers of /dev/accel/accel* devices and the accelerator kind they mean.
ACCEL_DRIVER_KINDS: dict[str, str] = {
    "intel_vpu": "intel",
    "amdxdna": "amd",
    "rocket": "rockchip",
    "qaic": "qualcomm_cloud_ai",
    "ethosu": "arm_ethos_u",
}

NPU_KINDS = ("hexagon", "rockchip", "hailo", "coral", "intel", "amd")
"""The kinds reported as one-hot ``npu_<kind>`` features (others still set ``has_npu``)."""

CORAL_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}
_L4T_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)\.(\d+)")
_PI_GENERATION = re.compile(r"Raspberry Pi (?:Compute Module )?(\d)")


@dataclass
class PlatformInfo:
    """The platform identity (strings, for the app and its logs) and the numeric features it implies."""

    soc_vendor: str | None = None
    soc_family: str | None = None
    soc_machine: str | None = None
    soc_id: str | None = None
    board_model: str | None = None
    npu_kinds: list[str] = field(default_factory=list)
    jetson_l4t: str | None = None
    features: dict[str, float] = field(default_factory=dict)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _exists_any(base: Path, patterns: Iterable[str]) -> bool:
    return any(next(iter(base.glob(pattern)), None) is not None for pattern in patterns)


def _device_tree_strings(base: Path, name: str) -> list[str]:
    text = _read(base / "proc/device-tree" / name) or ""
    return [part.strip() for part in text.split("\0") if part.strip()]


def _cpu_flags(base: Path) -> set:
    """The CPU feature words of /proc/cpuinfo (``Features`` on Arm, ``flags`` on x86), of every core."""
    flags: set = set()
    for line in (_read(base / "proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("features", "flags"):
            flags.update(value.split())
    return flags


def _accel_kinds(base: Path) -> list[str]:
    kinds = []
    for device in sorted(base.glob("sys/class/accel/accel*")):
        uevent = _read(device / "device" / "uevent") or ""
        driver = next((line[7:].strip() for line in uevent.splitlines() if line.startswith("DRIVER=")), "")
        kinds.append(ACCEL_DRIVER_KINDS.get(driver, driver or "other"))
    if not kinds and _exists_any(base, ["dev/accel/accel*"]):
        kinds.append("other")  # a node without its sysfs entry (e.g. a container given only /dev)
    if _exists_any(base, ["sys/class/misc/*npu*"]):
        kinds.append("other")
    return kinds


def _coral_usb(base: Path) -> bool:
    for device in base.glob("sys/bus/usb/devices/*"):
        vendor = (_read(device / "idVendor") or "").strip().lower()
        product = (_read(device / "idProduct") or "").strip().lower()
        if (vendor, product) in CORAL_USB_IDS:
            return True
    return False


def _qualcomm(base: Path, info: PlatformInfo) -> None:
    soc = base / "sys/devices/soc0"
    family = (_read(soc / "family") or "").strip()
    info.soc_family = family or None
    info.soc_machine = (_read(soc / "machine") or "").strip() or None
    info.soc_id = (_read(soc / "soc_id") or "").strip() or None
    vendor = (_read(soc / "vendor") or "").strip()
    if family == "Snapdragon" or vendor == "Qualcomm":
        info.soc_vendor = "qualcomm"
        if info.soc_id is not None and info.soc_id.isdigit():
            info.features["qcom_soc_id"] = float(info.soc_id)
        hexagon = HEXAGON_ARCH_BY_SOC.get((info.soc_machine or "").upper())
        if hexagon is not None:
            info.features["hexagon_arch"] = float(hexagon)
    # The compute DSP: a FastRPC node is there only when the kernel and firmware expose it to user space.
    if _exists_any(base, ["dev/fastrpc-cdsp*", "dev/adsprpc-smd"]):
        info.npu_kinds.append("hexagon")


def _jetson(base: Path, info: PlatformInfo) -> None:
    release = _read(base / "etc/nv_tegra_release")
    info.features["is_jetson"] = float(release is not None)
    if release is None:
        return
    info.soc_vendor = info.soc_vendor or "nvidia"
    match = _L4T_RELEASE.search(release)
    if match:
        major, minor, patch = (int(group) for group in match.groups())
        info.jetson_l4t = f"R{major}.{minor}.{patch}"
        info.features["jetson_l4t_major"] = float(major)


def _pi_generation(model: str) -> int | None:
    """4 for "Raspberry Pi 4 Model B Rev 1.1", "Raspberry Pi 400 Rev 1.0" or "... Compute Module 4 ..."."""
    if model.startswith("Raspberry Pi Zero 2"):
        return 3  # the Pi 3's SoC (BCM2710)
    if model.startswith(("Raspberry Pi Zero", "Raspberry Pi Model")):
        return 1  # "Raspberry Pi Zero W Rev 1.1", "Raspberry Pi Model B Rev 2"
    generation = _PI_GENERATION.match(model)
    return int(generation.group(1)) if generation else None


def _board(base: Path, info: PlatformInfo) -> None:
    models = _device_tree_strings(base, "model")
    info.board_model = models[0] if models else None
    compatible = _device_tree_strings(base, "compatible")
    is_pi = bool(info.board_model and info.board_model.startswith("Raspberry Pi"))
    info.features["is_raspberry_pi"] = float(is_pi)
    generation = _pi_generation(info.board_model) if is_pi and info.board_model else None
    if generation is not None:
        info.features["raspberry_pi_generation"] = float(generation)
    rockchip = [entry.split(",", 1)[1] for entry in compatible if entry.startswith("rockchip,rk")]
    if rockchip:
        info.soc_vendor = info.soc_vendor or "rockchip"
        info.soc_machine = info.soc_machine or rockchip[-1]  # the most generic entry names the SoC
    if _exists_any(base, ["dev/rknpu*", "sys/class/devfreq/*.npu"]):
        info.npu_kinds.append("rockchip")


def detect_platform(base: Path) -> PlatformInfo:
    """Read every platform source under ``base``; see the module docstring for what comes from where."""
    info = PlatformInfo()
    _qualcomm(base, info)
    _jetson(base, info)
    _board(base, info)
    if _exists_any(base, ["dev/hailo[0-9]*"]):
        info.npu_kinds.append("hailo")
    if _exists_any(base, ["dev/apex_[0-9]*"]) or _coral_usb(base):
        info.npu_kinds.append("coral")
    info.npu_kinds.extend(_accel_kinds(base))
    info.npu_kinds = sorted(set(info.npu_kinds))
    flags = _cpu_flags(base)
    if flags:
        info.features["has_fp16"] = float(bool(flags & {"asimdhp", "avx512_fp16"}))
        info.features["has_int8_dot"] = float(bool(flags & {"asimddp", "avx512_vnni", "avx_vnni"}))
    info.features["has_npu"] = float(bool(info.npu_kinds))
    for kind in NPU_KINDS:
        info.features[f"npu_{kind}"] = float(kind in info.npu_kinds)
    return info
