"""Reading a Qualcomm AI Hub style model suite: the YAML files the ``qai-hub-models`` wheel ships per model.

Per model, ``qai_hub_models/models/<m>/`` holds ``perf.yaml`` (on-device profiling jobs: latency per device,
precision and runtime; only jobs that passed are published), ``numerics.yaml`` (top-1 on ImageNet measured on
device, per precision and runtime) and ``manifest.yaml`` (use case, parameters, size, input resolution).
This one parser serves both ``scripts/derive_aihub_scenario.py`` (the simulator's measured scenario) and
``edgesel models import --aihub`` (a catalog). Rules:

- a variant is one (model, precision) of an ImageNet image classifier whose on-device top-1 was measured
  with RUNTIME on NUMERICS_DEVICE; models that give none are reported with the reason (``Suite.skipped``);
- features come from the manifest: parameter count, input side, the precision's weights size (estimated
  from the float size, a quarter, when the manifest gives only that one).

Needs PyYAML: ``pip install 'edgesel-client[import]'``.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEVICES_FILE = "qai_hub_models/devices_and_chipsets.yaml"
MODELS_DIR = "qai_hub_models/models/"
SUITE_FILES = ("perf.yaml", "numerics.yaml", "manifest.yaml")
# QNN (DLC) is the runtime with the widest coverage in 0.65.0: it is the only one profiled on every device
# (the automotive SA8255P/SA8650P boards have no TFLite or ONNX results, the Windows devices no TFLite), so
# one runtime can be used consistently, as an app that ships one runtime would.
RUNTIME = "qnn_dlc"
NUMERICS_DEVICE = "Samsung Galaxy S25"  # the only device numerics.yaml measures accuracy on (0.65.0)
# Activation bits per precision name (float runs as fp16 on the HTP, but is stored as fp32: 32 here).
ACTIVATION_BITS = {"float": 32, "w8a8": 8, "w8a8_mixed_int16": 8, "w8a16": 16, "w8a16_mixed_int16": 16}


class SuiteFormatError(ValueError):
    """The suite's files do not have the expected shape; the message names the file."""


def _yaml() -> Any:
    try:
        import yaml  # type: ignore[import-untyped]  # stubs are not worth a pin here
    except ImportError:  # an optional extra: the SDK itself needs only grpcio and protobuf
        raise SuiteFormatError(
            "reading an AI Hub suite needs PyYAML: pip install 'edgesel-client[import]'"
        ) from None
    return yaml


def load_yaml(files: Mapping[str, bytes], path: str) -> Any:
    yaml = _yaml()
    # The C loader when PyYAML has it: all 728 YAML files of the 0.65.0 wheel parse 5-7x faster with it.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(files[path], Loader=loader)  # noqa: S506 - a safe loader, only named differently
    except KeyError:
        raise SuiteFormatError(f"{path}: missing from the package") from None
    except yaml.YAMLError as e:
        raise SuiteFormatError(f"{path}: not valid YAML: {e}") from None


def number_in(text: str, where: str) -> float:
    """The first number in a manifest value such as "3.49M" or "13.3 MB"."""
    m = re.search(r"\d+(?:\.\d+)?", text)
    if m is None:
        raise SuiteFormatError(f"{where}: no number in {text!r}")
    return float(m.group())


def is_imagenet_classifier(manifest: Mapping[str, Any]) -> bool:
    return manifest.get("use_case") == "Image Classification"


def top1_metric(numerics: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for metric in numerics.get("metrics") or []:
        name = str(metric.get("dataset_name", ""))
        if name.startswith("imagenet") and metric.get("metric_name") == "Top-1 Accuracy":
            return metric  # type: ignore[no-any-return]
    return None


def input_size(details: Mapping[str, Any], where: str) -> int | None:
    text = details.get("Input resolution")
    if text is None:
        return None
    numbers = re.findall(r"\d+", str(text))  # "224x224", "1x3x224x224": the last number is the side
    if not numbers:
        raise SuiteFormatError(f"{where}: cannot read the input resolution {text!r}")
    return int(numbers[-1])


def file_size(details: Mapping[str, Any], precision: str, where: str) -> tuple[float | None, str]:
    """Size of the precision's weights (MB) from the manifest; else estimated from the float size: the
    quantized precisions here all store 8-bit weights, a quarter of fp32."""
    own = details.get(f"Model size ({precision})")
    if own is not None:
        return number_in(str(own), where), "manifest"
    fp32 = details.get("Model size (float)")
    if fp32 is None:
        return None, ""
    size = number_in(str(fp32), where)
    if precision == "float":
        return size, "manifest"
    return round(size / 4.0, 3), "estimate: float size / 4 (8-bit weights)"


@dataclass(frozen=True)
class Variant:
    """One (model, precision) of the suite with its features and its profiling jobs."""

    model: str
    precision: str
    model_name: str
    top1: float
    top1_samples: Any
    top1_torch: Any
    top1_reference: Any
    num_params_m: float
    file_size_mb: float | None
    file_size_source: str
    input_size: int
    license: str
    manifest_path: str
    numerics_path: str
    perf_path: str
    # device -> runtime -> job (perf.yaml's performance_metrics of the variant's only component)
    performance: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def variant_id(self) -> str:
        return f"{self.model}:{self.precision}"

    @property
    def quantized(self) -> bool:
        return self.precision != "float"

    @property
    def activation_bits(self) -> int:
        return ACTIVATION_BITS.get(self.precision, 8 if "a8" in self.precision else 16)

    def passed_job(self, device: str, runtime: str = RUNTIME) -> Mapping[str, Any] | None:
        job = (self.performance.get(device) or {}).get(runtime)
        if job is None or job.get("job_status", "Passed") != "Passed":
            return None
        return job  # type: ignore[no-any-return]

    def latencies_ms(self, runtime: str = RUNTIME) -> dict[str, float]:
        """Measured inference time per device (passed jobs of `runtime` only), in device-name order."""
        out = {}
        for device in sorted(self.performance):
            job = self.passed_job(device, runtime)
            if job is not None:
                out[device] = float(job["inference_time_milliseconds"])
        return out


@dataclass(frozen=True)
class SuiteModel:
    model: str
    perf_path: str
    precisions: Mapping[str, Any]  # perf.yaml's precisions, every precision (kept variants or not)
    variants: tuple[Variant, ...]


@dataclass
class Suite:
    models: list[SuiteModel] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (model, why it gives no variant)

    @property
    def variants(self) -> list[Variant]:
        return [v for m in self.models for v in m.variants]


def model_names(files: Mapping[str, bytes]) -> list[str]:
    return sorted({p[len(MODELS_DIR) :].split("/", 1)[0] for p in files if p.startswith(MODELS_DIR)})


def read_suite(files: Mapping[str, bytes], only: list[str] | None = None) -> Suite:
    """Variants of the suite's files (path inside the package -> bytes), per the rules above."""
    suite = Suite()
    names = model_names(files)
    for wanted in only or []:
        if wanted not in names:
            raise SuiteFormatError(f"model {wanted!r} is not in the suite ({len(names)} models)")
    for m in names if not only else sorted(set(only)):
        base = f"{MODELS_DIR}{m}/"
        if f"{base}manifest.yaml" not in files or f"{base}perf.yaml" not in files:
            suite.skipped.append((m, "no manifest.yaml or perf.yaml"))
            continue
        manifest = load_yaml(files, f"{base}manifest.yaml")
        if not is_imagenet_classifier(manifest):
            suite.skipped.append((m, f"use case {manifest.get('use_case')!r}, not Image Classification"))
            continue
        if f"{base}numerics.yaml" not in files:
            suite.skipped.append((m, "no numerics.yaml"))
            continue
        metric = top1_metric(load_yaml(files, f"{base}numerics.yaml"))
        if metric is None:
            suite.skipped.append((m, "numerics.yaml has no ImageNet top-1"))
            continue
        perf = load_yaml(files, f"{base}perf.yaml")
        precisions = perf.get("precisions") or {}
        if any(len(p.get("components") or {}) != 1 for p in precisions.values()):
            suite.skipped.append((m, "several components (not one classifier)"))
            continue
        details = manifest.get("technical_details") or {}
        params = details.get("Number of parameters")
        size_ok = details.get("Model size (float)") is not None
        side = input_size(details, f"{base}manifest.yaml")
        if params is None or not size_ok or side is None:
            # no reliable model features (e.g. regnet_y_800mf lists only "Model size: ~6.3 MB")
            suite.skipped.append((m, "manifest lacks parameters, float size or input resolution"))
            continue
        on_device = (metric.get("device_metric") or {}).get(NUMERICS_DEVICE) or {}
        variants = []
        for precision in sorted(precisions):
            top1 = ((on_device.get(precision) or {}).get(RUNTIME) or {}).get("partial_metric")
            if top1 is None:
                continue
            size, size_source = file_size(details, precision, f"{base}manifest.yaml")
            component = next(iter((precisions[precision].get("components") or {}).values()))
            variants.append(
                Variant(
                    model=m,
                    precision=precision,
                    model_name=str(manifest.get("name", m)),
                    top1=float(top1),
                    top1_samples=metric.get("num_partial_samples"),
                    top1_torch=metric.get("partial_torch_metric"),
                    top1_reference=metric.get("benchmark_value"),
                    num_params_m=number_in(str(params), f"{base}manifest.yaml"),
                    file_size_mb=size,
                    file_size_source=size_source,
                    input_size=side,
                    license=str(manifest.get("license_type", "")),
                    manifest_path=f"{base}manifest.yaml",
                    numerics_path=f"{base}numerics.yaml",
                    perf_path=f"{base}perf.yaml",
                    performance=component.get("performance_metrics") or {},
                )
            )
        if variants:
            suite.models.append(SuiteModel(m, f"{base}perf.yaml", precisions, tuple(variants)))
        else:
            suite.skipped.append((m, f"no on-device top-1 with {RUNTIME} on {NUMERICS_DEVICE}"))
    return suite


def _wanted(name: str) -> bool:
    return name == DEVICES_FILE or (name.startswith(MODELS_DIR) and name.rsplit("/", 1)[-1] in SUITE_FILES)


def read_wheel(path: Path) -> dict[str, bytes]:
    """The YAML files of a qai-hub-models wheel, by their path inside the wheel."""
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist() if _wanted(n)}


def read_folder(root: Path) -> dict[str, bytes]:
    """The same files from a folder: an unpacked package (``qai_hub_models/models/<m>/...``), its
    ``models`` folder, or any folder of ``<model>/perf.yaml`` (+ ``numerics.yaml``, ``manifest.yaml``)."""
    if (root / "qai_hub_models").is_dir():
        root = root / "qai_hub_models"
    models = root / "models" if (root / "models").is_dir() else root
    files: dict[str, bytes] = {}
    for p in sorted(models.glob("*/*.yaml")):
        if p.name in SUITE_FILES:
            files[f"{MODELS_DIR}{p.parent.name}/{p.name}"] = p.read_bytes()
    devices = root / "devices_and_chipsets.yaml"
    if devices.is_file():
        files[DEVICES_FILE] = devices.read_bytes()
    return files


def read_package(path: Path) -> dict[str, bytes]:
    """A wheel (``.whl``) or a folder, as above."""
    if path.is_dir():
        return read_folder(path)
    if zipfile.is_zipfile(path):
        return read_wheel(path)
    raise SuiteFormatError(f"{path}: neither a folder nor a wheel")
