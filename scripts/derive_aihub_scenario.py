"""Derive the real-measurement scenario data (``tools/edgesel_tools/data/aihub_*.csv``) from the public
Qualcomm AI Hub model zoo (the ``qai-hub-models`` wheel on PyPI, BSD-3-Clause).

The wheel ships, per model, ``qai_hub_models/models/<m>/perf.yaml`` (on-device profiling jobs: latency per
device, precision and runtime; only jobs that passed are published), ``numerics.yaml`` (top-1 on ImageNet
measured on device, per precision and runtime) and ``manifest.yaml`` (use case, parameters, size, input
resolution), plus ``qai_hub_models/devices_and_chipsets.yaml`` (form factor, OS, chipset, HTP version, fp16).
This script reads those files straight out of the pinned wheel and writes three small CSV files with the
provenance of every number. Rules (also in tools/edgesel_tools/data/README.md):

- variants: every (model, precision) of an ImageNet image classifier whose on-device top-1 was measured with
  the chosen runtime (RUNTIME below) on the numerics device;
- devices: every device of devices_and_chipsets.yaml that appears in the perf data of at least
  MIN_PROFILED_MODELS of the kept models (drops devices added to the scorecard after the last profiling run);
- a (device, variant) pair "runs" when perf.yaml has a RUNTIME job for it, else it "does not run": AI Hub
  publishes passing jobs only (every job_status in 0.65.0 is "Passed"), so absence is a failed, unsupported or
  skipped job; ``reason`` says what else is known about the pair.

Usage: python scripts/derive_aihub_scenario.py [--wheel FILE] [--out DIR] [--check]
Without --wheel it runs ``pip download --no-deps qai-hub-models==VERSION`` into a temporary folder and checks
the wheel's SHA-256. ``--check`` compares with the committed files instead of writing (exit 1 if different).
The output depends only on the wheel: rebuilding gives byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The one parser of the suite's files, shared with `edgesel models import --aihub`.
from edgesel_client.catalog_import.aihub import (
    DEVICES_FILE,
    NUMERICS_DEVICE,
    RUNTIME,
    SuiteFormatError,
    Variant,
    load_yaml,
    read_suite,
    read_wheel,
)

PACKAGE = "qai-hub-models"
VERSION = "0.65.0"
WHEEL_NAME = f"qai_hub_models-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "35198f76e3b98a759bc0d1ec94692b21f44e0cf20dc6f6fe51d8dceb05f12f2c"
SOURCE = f"{PACKAGE}=={VERSION}"  # prefix of every provenance field
# RUNTIME (qnn_dlc) and NUMERICS_DEVICE, the variant rules and the manifest parsing are those of
# edgesel_client.catalog_import.aihub.
MIN_PROFILED_MODELS = 10
OUT_FILES = ("aihub_devices.csv", "aihub_variants.csv", "aihub_measurements.csv")

DEVICE_COLUMNS = (
    "device", "form_factor", "world", "vendor", "os", "os_version", "chipset", "chipset_name", "htp_version",
    "supports_fp16", "npu_count", "reference_chipset", "source",
)  # fmt: skip
VARIANT_COLUMNS = (
    "variant", "model", "precision", "model_name", "top1", "top1_device", "top1_samples", "top1_torch",
    "top1_reference", "num_params_m", "file_size_mb", "file_size_source", "input_size", "quantized",
    "activation_bits", "model_license", "source_accuracy", "source_features",
)  # fmt: skip
MEASUREMENT_COLUMNS = (
    "device", "variant", "runs", "latency_ms", "peak_memory_mb", "compute_unit", "npu_layers", "total_layers",
    "job_id", "reason", "source",
)  # fmt: skip


DeriveError = SuiteFormatError  # the wheel's files do not have the expected shape; names the file


def _fmt(v: float | int | None) -> str:
    """Shortest exact text of a number (repr round-trips floats), '' for unknown."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v)


def _variant_row(v: Variant) -> dict[str, str]:
    return {
        "variant": v.variant_id,
        "model": v.model,
        "precision": v.precision,
        "model_name": v.model_name,
        "top1": _fmt(v.top1),
        "top1_device": NUMERICS_DEVICE,
        "top1_samples": _fmt(v.top1_samples),
        "top1_torch": _fmt(v.top1_torch),
        "top1_reference": _fmt(v.top1_reference),
        "num_params_m": _fmt(v.num_params_m),
        "file_size_mb": _fmt(v.file_size_mb),
        "file_size_source": v.file_size_source,
        "input_size": str(v.input_size),
        "quantized": "1" if v.quantized else "0",
        "activation_bits": str(v.activation_bits),
        "model_license": v.license,
        "source_accuracy": f"{SOURCE}:{v.numerics_path}",
        "source_features": f"{SOURCE}:{v.manifest_path}",
    }


def derive(files: Mapping[str, bytes], min_profiled_models: int = MIN_PROFILED_MODELS) -> dict[str, str]:
    """CSV text per output file from the wheel's files (path inside the wheel -> bytes)."""
    catalog = load_yaml(files, DEVICES_FILE)
    devices_yaml, chipsets = catalog.get("devices") or {}, catalog.get("chipsets") or {}
    suite = read_suite(files)
    kept = suite.variants
    variants = [_variant_row(v) for v in kept]
    perf_by_model: dict[str, tuple[str, Mapping[str, Any]]] = {
        m.model: (m.perf_path, m.precisions) for m in suite.models
    }

    # Which devices were profiled for which model (any precision, any runtime).
    profiled: dict[str, set[str]] = {}
    for m, (_, precisions) in perf_by_model.items():
        for p in precisions.values():
            for comp in (p.get("components") or {}).values():
                for dev in comp.get("performance_metrics") or {}:
                    profiled.setdefault(dev, set()).add(m)
    device_names = sorted(
        d for d, ms in profiled.items() if len(ms) >= min_profiled_models and d in devices_yaml
    )
    if not device_names or not variants:
        raise DeriveError("no device or no variant left: the package layout is not the expected one")

    devices = []
    for d in device_names:
        info = devices_yaml[d]
        chip = chipsets.get(info.get("chipset")) or {}
        os_info = info.get("os") or {}
        devices.append(
            {
                "device": d,
                "form_factor": str(info.get("form_factor", "")),
                "world": str(chip.get("world", "")),
                "vendor": str(info.get("vendor", "")),
                "os": str(os_info.get("ostype", "")),
                "os_version": str(os_info.get("version", "")),
                "chipset": str(info.get("chipset", "")),
                "chipset_name": str(chip.get("marketing_name", "")),
                "htp_version": _fmt(chip.get("htp_version")),
                "supports_fp16": "1" if chip.get("supports_fp16") else "0",
                "npu_count": _fmt(info.get("npu_count", 1)),
                "reference_chipset": str(info.get("reference_chipset", "")),
                "source": f"{SOURCE}:{DEVICES_FILE}",
            }
        )

    measurements = []
    for d in device_names:
        for v in kept:
            m = v.model
            per_runtime = v.performance.get(d) or {}
            job = per_runtime.get(RUNTIME)
            row = dict.fromkeys(MEASUREMENT_COLUMNS, "")
            row.update(device=d, variant=v.variant_id, source=f"{SOURCE}:{v.perf_path}")
            passed = v.passed_job(d)
            if passed is not None:
                mem = passed.get("estimated_peak_memory_range_mb") or {}
                layers = passed.get("layer_counts") or {}
                row.update(
                    runs="1",
                    latency_ms=_fmt(float(passed["inference_time_milliseconds"])),
                    peak_memory_mb=_fmt(mem.get("max")),
                    compute_unit=str(passed.get("primary_compute_unit", "")),
                    npu_layers=_fmt(layers.get("npu")),
                    total_layers=_fmt(layers.get("total")),
                    job_id=str(passed.get("job_id", "")),
                )
            else:
                if job is not None:
                    reason = f"job_status {job.get('job_status')}"
                elif per_runtime:
                    reason = "other_runtime_only"  # ran with TFLite/ONNX, not with this runtime
                elif d in profiled and m in profiled[d]:
                    reason = "other_precision_only"  # e.g. float on a chip without fp16
                else:
                    reason = "model_not_profiled"  # the device is absent from this model's perf.yaml
                row.update(runs="0", reason=reason)
            measurements.append(row)

    return {
        "aihub_devices.csv": _csv(DEVICE_COLUMNS, devices),
        "aihub_variants.csv": _csv(VARIANT_COLUMNS, variants),
        "aihub_measurements.csv": _csv(MEASUREMENT_COLUMNS, measurements),
    }


def _csv(columns: tuple[str, ...], rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def download_wheel(into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "-q",
            "-d",
            str(into),
            f"{PACKAGE}=={VERSION}",
        ],
        check=True,
    )
    return into / WHEEL_NAME


def check_sha256(path: Path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise DeriveError(f"{path}: SHA-256 {digest} is not the pinned {WHEEL_SHA256}")


def main(argv: list[str] | None = None) -> int:
    repo = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheel", type=Path, help=f"a local {WHEEL_NAME} (default: pip download it)")
    p.add_argument("--out", type=Path, default=repo / "server" / "edgesel_server" / "data")
    p.add_argument("--check", action="store_true", help="compare with the files in --out, write nothing")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        check_sha256(wheel)
        out = derive(read_wheel(wheel))
    if args.check:
        stale = [
            n for n, text in out.items() if not (args.out / n).is_file() or (args.out / n).read_text() != text
        ]
        for n in stale:
            print(
                f"derive_aihub_scenario: {args.out / n} differs from what {WHEEL_NAME} gives", file=sys.stderr
            )
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in out.items():
        (args.out / name).write_text(text, encoding="utf-8", newline="")
        print(f"wrote {args.out / name} ({text.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
