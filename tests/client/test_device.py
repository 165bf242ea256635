from __future__ import annotations

import math
from pathlib import Path

import pytest
from device_trees import ALL, GALAXY_S9, GALAXY_S9_ARM32_CPUINFO, RB3_GEN2, DeviceTree

from edgesel_client import (
    DEVICE_FEATURE_NAMES,
    DEVICE_LABEL_NAMES,
    detect_device,
    detect_device_features,
    detect_device_labels,
)
from edgesel_client.platforms import NPU_KINDS


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
    # A Coral Edge TPU is a neural accelerator: has_npu, with its kind flag.
    assert (features["has_npu"], features["npu_coral"], features["has_accelerator"]) == (1.0, 1.0, 1.0)
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


@pytest.mark.parametrize("device", ALL, ids=[device.name for device in ALL])
def test_platform_detection_on_real_device_trees(device: DeviceTree, tmp_path: Path) -> None:
    found = detect_device(root=device.write(tmp_path), machine=device.machine)
    assert set(found.features) <= set(DEVICE_FEATURE_NAMES)
    wrong = {
        name: found.features.get(name)
        for name, want in device.expected.items()
        if found.features.get(name) != want
    }
    assert not wrong, f"{device.name} ({device.source}): expected {device.expected}, got {wrong}"
    for attribute, want in device.identity.items():
        assert getattr(found, attribute) == want, attribute
    # Exactly the kinds found have their flag set.
    flags = {name[4:] for name, value in found.features.items() if name.startswith("npu_") and value == 1.0}
    assert flags == set(found.npu_kinds) & set(NPU_KINDS)
    assert found.features["has_npu"] == float(bool(found.npu_kinds))


def test_a_32_bit_arm_view_has_no_fp16(tmp_path: Path) -> None:
    # "half" in an Arm32 Features line is half-word load/store; only Armv8.2 asimdhp is fp16 arithmetic.
    GALAXY_S9.write(tmp_path)
    (tmp_path / "proc/cpuinfo").write_text(GALAXY_S9_ARM32_CPUINFO)
    assert detect_device_features(root=tmp_path, machine="armv8l")["has_fp16"] == 0.0


def test_audio_dsp_alone_is_not_an_npu(tmp_path: Path) -> None:
    RB3_GEN2.write(tmp_path)
    for node in ("dev/fastrpc-cdsp", "dev/fastrpc-cdsp-secure"):
        (tmp_path / node).unlink()
    found = detect_device(root=tmp_path, machine="aarch64")
    assert (found.features["has_npu"], found.features["npu_hexagon"]) == (0.0, 0.0)
    assert found.soc_machine == "QCS6490" and found.features["hexagon_arch"] == 68.0


def test_root_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGESEL_SYSFS_ROOT", str(RB3_GEN2.write(tmp_path)))
    features = detect_device_features()
    assert (features["npu_hexagon"], features["qcom_soc_id"]) == (1.0, 498.0)
    assert detect_device().soc_machine == "QCS6490"


def test_unreadable_or_garbled_platform_files_are_ignored(tmp_path: Path) -> None:
    files = {
        "etc/nv_tegra_release": "not a release line\n",
        "sys/devices/soc0/family": "Snapdragon\n",
        "sys/devices/soc0/machine": "\n",
        "sys/devices/soc0/soc_id": "n/a\n",
        "proc/device-tree/model": "\0\0",
    }
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    found = detect_device(root=tmp_path, machine="aarch64")
    assert found.features["is_jetson"] == 1.0 and "jetson_l4t_major" not in found.features
    assert "qcom_soc_id" not in found.features and "hexagon_arch" not in found.features
    assert found.board_model is None and found.soc_machine is None
    assert all(math.isfinite(value) for value in found.features.values())


@pytest.mark.parametrize(
    ("model", "generation"),
    [
        ("Raspberry Pi 3 Model B Plus Rev 1.3", 3.0),
        ("Raspberry Pi 4 Model B Rev 1.5", 4.0),
        ("Raspberry Pi 400 Rev 1.0", 4.0),
        ("Raspberry Pi Compute Module 4 Rev 1.0", 4.0),
        ("Raspberry Pi 5 Model B Rev 1.0", 5.0),
        ("Raspberry Pi Zero 2 W Rev 1.0", 3.0),
        ("Raspberry Pi Zero W Rev 1.1", 1.0),
    ],
)
def test_raspberry_pi_generation_from_the_model_string(model: str, generation: float, tmp_path: Path) -> None:
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text(model + "\0")
    features = detect_device_features(root=tmp_path, machine="aarch64")
    assert (features["is_raspberry_pi"], features["raspberry_pi_generation"]) == (1.0, generation)
