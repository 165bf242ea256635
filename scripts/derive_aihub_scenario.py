"""Derive the real-measurement scenario data (``server/edgesel_server/data/aihub_*.csv``) from the public
Qualcomm AI Hub model zoo (the ``qai-hub-models`` wheel on PyPI, BSD-3-Clause).

The wheel ships, per model, ``qai_hub_models/models/<m>/perf.yaml`` (on-device profiling jobs: latency per
device, precision and runtime; only jobs that passed are published), ``numerics.yaml`` (top-1 on ImageNet
measured on device, per precision and runtime) and ``manifest.yaml`` (use case, parameters, size, input
resolution), plus ``qai_hub_models/devices_and_chipsets.yaml`` (form factor, OS, chipset, HTP version, fp16).
This script reads those files straight out of the pinned wheel and writes three small CSV files with the
provenance of every number. Rules (also in server/edgesel_server/data/README.md):

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
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PACKAGE = "qai-hub-models"
VERSION = "0.65.0"
WHEEL_NAME = f"qai_hub_models-{VERSION}-py3-none-any.whl"
WHEEL_SHA256 = "35198f76e3b98a759bc0d1ec94692b21f44e0cf20dc6f6fe51d8dceb05f12f2c"
SOURCE = f"{PACKAGE}=={VERSION}"  # prefix of every provenance field
# QNN (DLC) is the runtime with the widest coverage in this release: it is the only one profiled on every
# device (the automotive SA8255P/SA8650P boards have no TFLite or ONNX results, the Windows devices no
# TFLite), so one runtime can be used consistently, as an app that ships one runtime would.
RUNTIME = "qnn_dlc"
NUMERICS_DEVICE = "Samsung Galaxy S25"  # the only device numerics.yaml measures accuracy on (0.65.0)
MIN_PROFILED_MODELS = 10
DEVICES_FILE = "qai_hub_models/devices_and_chipsets.yaml"
MODELS_DIR = "qai_hub_models/models/"
OUT_FILES = ("aihub_devices.csv", "aihub_variants.csv", "aihub_measurements.csv")
# Activation bits per precision name (float runs as fp16 on the HTP, but is stored as fp32: 32 here).
ACTIVATION_BITS = {"float": 32, "w8a8": 8, "w8a8_mixed_int16": 8, "w8a16": 16, "w8a16_mixed_int16": 16}

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


class DeriveError(ValueError):
    """The wheel's files do not have the shape this script expects; the message names the file."""


def _load(files: Mapping[str, bytes], path: str) -> Any:
    try:
        return yaml.safe_load(files[path])
    except KeyError:
        raise DeriveError(f"{path}: missing from the package") from None
    except yaml.YAMLError as e:
        raise DeriveError(f"{path}: not valid YAML: {e}") from None


def _number(text: str, where: str) -> float:
    m = re.search(r"\d+(?:\.\d+)?", text)
    if m is None:
        raise DeriveError(f"{where}: no number in {text!r}")
    return float(m.group())


def _fmt(v: float | int | None) -> str:
    """Shortest exact text of a number (repr round-trips floats), '' for unknown."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return repr(v)


def _is_imagenet_classifier(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("use_case") == "Image Classification"


def _top1_metric(numerics: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for metric in numerics.get("metrics") or []:
        name = str(metric.get("dataset_name", ""))
        if name.startswith("imagenet") and metric.get("metric_name") == "Top-1 Accuracy":
            return metric
    return None


def _input_size(details: Mapping[str, Any], where: str) -> int | None:
    text = details.get("Input resolution")
    if text is None:
        return None
    numbers = re.findall(r"\d+", str(text))  # "224x224", "1x3x224x224": the last number is the side
    if not numbers:
        raise DeriveError(f"{where}: cannot read the input resolution {text!r}")
    return int(numbers[-1])


def _file_size(details: Mapping[str, Any], precision: str, where: str) -> tuple[float | None, str]:
    """Size of the precision's weights (MB) from the manifest; else estimated from the float size: the
    quantized precisions here all store 8-bit weights, a quarter of fp32."""
    own = details.get(f"Model size ({precision})")
    if own is not None:
        return _number(str(own), where), "manifest"
    fp32 = details.get("Model size (float)")
    if fp32 is None:
        return None, ""
    size = _number(str(fp32), where)
    if precision == "float":
        return size, "manifest"
    return round(size / 4.0, 3), "estimate: float size / 4 (8-bit weights)"


def derive(files: Mapping[str, bytes], min_profiled_models: int = MIN_PROFILED_MODELS) -> dict[str, str]:
    """CSV text per output file from the wheel's files (path inside the wheel -> bytes)."""
    catalog = _load(files, DEVICES_FILE)
    devices_yaml, chipsets = catalog.get("devices") or {}, catalog.get("chipsets") or {}
    model_dirs = sorted({p[len(MODELS_DIR) :].split("/", 1)[0] for p in files if p.startswith(MODELS_DIR)})

    variants: list[dict[str, str]] = []
    perf_by_model: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for m in model_dirs:
        base = f"{MODELS_DIR}{m}/"
        if f"{base}manifest.yaml" not in files or f"{base}perf.yaml" not in files:
            continue
        manifest = _load(files, f"{base}manifest.yaml")
        if not _is_imagenet_classifier(manifest) or f"{base}numerics.yaml" not in files:
            continue
        metric = _top1_metric(_load(files, f"{base}numerics.yaml"))
        if metric is None:
            continue
        perf = _load(files, f"{base}perf.yaml")
        precisions = perf.get("precisions") or {}
        if any(len(p.get("components") or {}) != 1 for p in precisions.values()):
            continue  # multi-part models (image + text encoders) are not one classifier
        details = manifest.get("technical_details") or {}
        params = details.get("Number of parameters")
        size_ok = details.get("Model size (float)") is not None
        input_size = _input_size(details, f"{base}manifest.yaml")
        if params is None or not size_ok or input_size is None:
            continue  # no reliable model features (e.g. regnet_y_800mf lists only "Model size: ~6.3 MB")
        on_device = (metric.get("device_metric") or {}).get(NUMERICS_DEVICE) or {}
        kept = False
        for precision in sorted(precisions):
            top1 = ((on_device.get(precision) or {}).get(RUNTIME) or {}).get("partial_metric")
            if top1 is None:
                continue
            size, size_source = _file_size(details, precision, f"{base}manifest.yaml")
            variants.append(
                {
                    "variant": f"{m}:{precision}",
                    "model": m,
                    "precision": precision,
                    "model_name": str(manifest.get("name", m)),
                    "top1": _fmt(float(top1)),
                    "top1_device": NUMERICS_DEVICE,
                    "top1_samples": _fmt(metric.get("num_partial_samples")),
                    "top1_torch": _fmt(metric.get("partial_torch_metric")),
                    "top1_reference": _fmt(metric.get("benchmark_value")),
                    "num_params_m": _fmt(_number(str(params), f"{base}manifest.yaml")),
                    "file_size_mb": _fmt(size),
                    "file_size_source": size_source,
                    "input_size": str(input_size),
                    "quantized": "0" if precision == "float" else "1",
                    "activation_bits": str(ACTIVATION_BITS.get(precision, 8 if "a8" in precision else 16)),
                    "model_license": str(manifest.get("license_type", "")),
                    "source_accuracy": f"{SOURCE}:{base}numerics.yaml",
                    "source_features": f"{SOURCE}:{base}manifest.yaml",
                }
            )
            kept = True
        if kept:
            perf_by_model[m] = (f"{base}perf.yaml", precisions)

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
        for v in variants:
            m, precision = v["model"], v["precision"]
            perf_path, precisions = perf_by_model[m]
            comp = next(iter((precisions[precision].get("components") or {}).values()))
            per_runtime = (comp.get("performance_metrics") or {}).get(d) or {}
            job = per_runtime.get(RUNTIME)
            row = dict.fromkeys(MEASUREMENT_COLUMNS, "")
            row.update(device=d, variant=v["variant"], source=f"{SOURCE}:{perf_path}")
            if job is not None and job.get("job_status", "Passed") == "Passed":
                mem = job.get("estimated_peak_memory_range_mb") or {}
                layers = job.get("layer_counts") or {}
                row.update(
                    runs="1",
                    latency_ms=_fmt(float(job["inference_time_milliseconds"])),
                    peak_memory_mb=_fmt(mem.get("max")),
                    compute_unit=str(job.get("primary_compute_unit", "")),
                    npu_layers=_fmt(layers.get("npu")),
                    total_layers=_fmt(layers.get("total")),
                    job_id=str(job.get("job_id", "")),
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


def read_wheel(path: Path) -> dict[str, bytes]:
    """The YAML files this script reads, by their path inside the wheel."""
    with zipfile.ZipFile(path) as z:
        return {
            n: z.read(n)
            for n in z.namelist()
            if n == DEVICES_FILE
            or (
                n.startswith(MODELS_DIR)
                and n.rsplit("/", 1)[-1] in ("perf.yaml", "numerics.yaml", "manifest.yaml")
            )
        }


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
