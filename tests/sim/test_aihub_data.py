"""The AI Hub derivation (scripts/derive_aihub_scenario.py) on real YAML excerpts, and the committed data."""

from __future__ import annotations

import csv
import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import pytest

from edgesel_tools.sim.measured import load_measurements

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "aihub"
DATA = REPO / "server" / "edgesel_server" / "data"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def derive():
    return _script("derive_aihub_scenario")


def _fixture_files() -> dict[str, bytes]:
    return {str(p.relative_to(FIXTURE)): p.read_bytes() for p in FIXTURE.rglob("*.yaml")}


def _table(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_derivation_of_real_excerpts(derive):
    out = derive.derive(_fixture_files(), min_profiled_models=1)
    assert derive.derive(_fixture_files(), min_profiled_models=1) == out  # deterministic, byte for byte
    devices = {r["device"]: r for r in _table(out["aihub_devices.csv"])}
    # The Gen 6 QRD is in devices_and_chipsets.yaml but in no perf.yaml: not profiled, left out.
    assert sorted(devices) == ["Dragonwing RB3 Gen 2 Vision Kit", "SA8255P ADP", "Samsung Galaxy S25"]
    rb3 = devices["Dragonwing RB3 Gen 2 Vision Kit"]
    assert (rb3["form_factor"], rb3["os"], rb3["htp_version"], rb3["supports_fp16"]) == (
        "IoT", "Qualcomm Linux", "68", "0",
    )  # fmt: skip
    assert devices["Samsung Galaxy S25"]["supports_fp16"] == "1"

    variants = {r["variant"]: r for r in _table(out["aihub_variants.csv"])}
    # openai_clip is not an ImageNet classifier; regnet_y_800mf's manifest has no parameter count.
    assert sorted(variants) == [
        "mobilenet_v3_small:float", "mobilenet_v3_small:w8a16_mixed_int16", "resnet50:float", "resnet50:w8a8",
    ]  # fmt: skip
    r50q = variants["resnet50:w8a8"]
    assert (r50q["top1"], r50q["top1_torch"], r50q["top1_reference"]) == ("75.7", "75.7", "76.1")
    assert (r50q["num_params_m"], r50q["file_size_mb"], r50q["file_size_source"]) == (
        "25.5",
        "25.1",
        "manifest",
    )
    assert (r50q["input_size"], r50q["quantized"], r50q["activation_bits"]) == ("224", "1", "8")
    assert r50q["source_accuracy"] == "qai-hub-models==0.65.0:qai_hub_models/models/resnet50/numerics.yaml"
    mq = variants["mobilenet_v3_small:w8a16_mixed_int16"]
    assert mq["top1"] == "65.7" and mq["file_size_source"].startswith("estimate")
    assert float(mq["file_size_mb"]) == pytest.approx(9.71 / 4, abs=1e-3)

    rows = {(r["device"], r["variant"]): r for r in _table(out["aihub_measurements.csv"])}
    assert len(rows) == 3 * 4
    s25 = rows[("Samsung Galaxy S25", "resnet50:w8a8")]
    assert (s25["runs"], s25["latency_ms"], s25["job_id"], s25["compute_unit"]) == (
        "1",
        "0.534",
        s25["job_id"],
        "NPU",
    )
    assert s25["job_id"] and s25["source"].endswith("qai_hub_models/models/resnet50/perf.yaml")
    assert rows[("SA8255P ADP", "resnet50:float")]["latency_ms"] == "3.316"  # QNN is all it has
    # No fp16 on the RB3's chip: float ResNet-50 does not run, int8 does.
    assert rows[("Dragonwing RB3 Gen 2 Vision Kit", "resnet50:float")]["runs"] == "0"
    assert rows[("Dragonwing RB3 Gen 2 Vision Kit", "resnet50:float")]["reason"] == "other_precision_only"
    assert rows[("Dragonwing RB3 Gen 2 Vision Kit", "resnet50:w8a8")]["latency_ms"] == "2.96"
    # The RB3 is absent from mobilenet_v3_small's perf.yaml altogether.
    assert (
        rows[("Dragonwing RB3 Gen 2 Vision Kit", "mobilenet_v3_small:float")]["reason"]
        == "model_not_profiled"
    )
    for r in rows.values():
        assert (r["runs"] == "1") == bool(r["latency_ms"]) == (not r["reason"])


def test_without_enough_profiled_devices_the_derivation_fails_clearly(derive):
    with pytest.raises(derive.DeriveError, match="no device or no variant"):
        derive.derive(_fixture_files())  # the default threshold (10 models) leaves no device here
    files = _fixture_files()
    files["qai_hub_models/models/resnet50/perf.yaml"] = b"precisions: [unclosed"
    with pytest.raises(derive.DeriveError, match="resnet50/perf.yaml: not valid YAML"):
        derive.derive(files, min_profiled_models=1)


def test_committed_data_is_consistent_and_the_example_config_current():
    table = load_measurements("aihub")
    assert len(table.devices) == 21 and len(table.variants) == 86
    assert table.latency_ms.shape == (21, 86)
    fail = 1.0 - table.runs.mean()
    assert 0.15 < fail < 0.25
    # Float never runs on the chips the data says have no fp16; quantized variants run on every device.
    no_fp16 = [i for i, d in enumerate(table.devices) if not d.supports_fp16]
    floats = [j for j, v in enumerate(table.variants) if v.precision == "float"]
    assert no_fp16 and not table.runs[[[i] for i in no_fp16], floats].any()
    assert (table.latency_ms[table.runs] > 0).all()
    res = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_aihub_config.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
