from __future__ import annotations

import math
from pathlib import Path

import pytest

from edgesel_client import (
    DEVICE_FEATURE_NAMES,
    DEVICE_LABEL_NAMES,
    detect_device_features,
    detect_device_labels,
)


def test_detects_sane_values_on_this_machine() -> None:
    features = detect_device_features()
    assert features, "expected at least the CPU and memory features"
    assert set(features) <= set(DEVICE_FEATURE_NAMES)
    assert all(isinstance(value, float) and math.isfinite(value) for value in features.values())
    assert features["cpu_cores"] >= 1
    assert 0 < features["ram_gb"] < 1e5
    assert 0 < features.get("cpu_max_ghz", 1.0) < 20
    assert features["is_arm64"] + features["is_x86_64"] <= 1
    for flag in ("has_gpu", "has_nvidia_gpu", "has_coral_tpu", "has_npu", "has_accelerator", "has_battery"):
        assert features[flag] in (0.0, 1.0)
    assert 0 <= features["battery_percent"] <= 100
    if "thermal_celsius" in features:
        assert -40 < features["thermal_celsius"] < 150


def test_overrides_win_and_extend() -> None:
    features = detect_device_features({"cpu_cores": 3, "network_mbps": 12.5})
    assert features["cpu_cores"] == 3.0
    assert features["network_mbps"] == 12.5
    assert "ram_gb" in features


def _write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_reads_a_fake_arm_board(tmp_path: Path) -> None:
    _write(tmp_path, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "1800000\n")
    _write(tmp_path, "sys/devices/system/cpu/cpu4/cpufreq/cpuinfo_max_freq", "2400000\n")
    _write(tmp_path, "proc/meminfo", "MemTotal:        4194304 kB\nMemAvailable:    1048576 kB\n")
    _write(tmp_path, "dev/apex_0")
    _write(tmp_path, "dev/dri/renderD128")
    _write(tmp_path, "sys/class/power_supply/battery/type", "Battery\n")
    _write(tmp_path, "sys/class/power_supply/battery/capacity", "57\n")
    _write(tmp_path, "sys/class/power_supply/battery/status", "Discharging\n")
    _write(tmp_path, "sys/class/power_supply/ac/type", "Mains\n")
    _write(tmp_path, "sys/class/power_supply/ac/online", "0\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone0/temp", "45000\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone1/temp", "61500\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone2/temp", "garbage\n")
    _write(tmp_path, "sys/class/thermal/thermal_zone3/temp", "-273000\n")  # disconnected sensor

    features = detect_device_features(root=tmp_path, machine="aarch64")

    assert features["cpu_max_ghz"] == 2.4
    assert features["ram_gb"] == 4.0
    assert features["ram_available_gb"] == 1.0
    assert (features["is_arm64"], features["is_x86_64"]) == (1.0, 0.0)
    assert (features["has_coral_tpu"], features["has_gpu"], features["has_nvidia_gpu"]) == (1.0, 1.0, 0.0)
    assert (features["has_npu"], features["has_accelerator"]) == (0.0, 1.0)
    assert (features["has_battery"], features["battery_percent"], features["battery_charging"]) == (
        1.0,
        57.0,
        0.0,
    )
    assert features["thermal_celsius"] == 61.5


def test_mains_powered_without_sensors(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "proc/cpuinfo",
        "processor\t: 0\ncpu MHz\t\t: 1200.000\nprocessor\t: 1\ncpu MHz\t\t: 3400.5\n",
    )
    _write(tmp_path, "dev/nvidia0")

    features = detect_device_features(root=tmp_path, machine="x86_64")

    assert features["cpu_max_ghz"] == 3.4005
    assert (features["has_nvidia_gpu"], features["has_gpu"]) == (1.0, 1.0)
    assert (features["has_battery"], features["battery_percent"], features["battery_charging"]) == (
        0.0,
        100.0,
        1.0,
    )
    assert "thermal_celsius" not in features
    assert "ram_available_gb" not in features


def test_labels_of_a_fake_android_phone_and_a_linux_board(tmp_path: Path) -> None:
    phone = tmp_path / "phone"
    _write(phone, "system/build.prop", "ro.product.model=Pixel\n")
    assert detect_device_labels(root=phone, machine="aarch64", system="Linux") == {
        "os": "android",
        "cpu_arch": "arm64",
    }
    board = tmp_path / "board"
    board.mkdir()
    assert detect_device_labels(root=board, machine="armv7l", system="Linux") == {
        "os": "linux",
        "cpu_arch": "armv7l",
    }
    assert detect_device_labels(root=board, machine="AMD64", system="Windows")["cpu_arch"] == "x86_64"


def test_label_overrides_win_and_extend_and_must_be_strings(tmp_path: Path) -> None:
    labels = detect_device_labels({"os": "ios", "form_factor": "phone"}, root=tmp_path, machine="arm64")
    assert labels == {"os": "ios", "cpu_arch": "arm64", "form_factor": "phone"}
    assert set(detect_device_labels()) == set(DEVICE_LABEL_NAMES)
    with pytest.raises(TypeError, match="'form_factor' must be a string"):
        detect_device_labels({"form_factor": 1})  # type: ignore[dict-item]
