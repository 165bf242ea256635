"""The model zoo (``data/imagenet_model_zoo.csv``) and how scenarios name its rows.

An arm id is the zoo's ``model`` column when that name has a single row (``"efficientnet_b0"``), else
``"model:WEIGHTS"`` (``"resnet50:IMAGENET1K_V2"``): several rows share a name when torchvision publishes more
than one set of weights for it, and those rows differ in accuracy (and sometimes in GFLOPs/input size).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class ModelSpec:
    arm_id: str
    model: str
    weights: str
    family: str
    quantized: bool
    num_params: float  # estimated from the file size when the zoo leaves it blank
    gflops: float
    file_size_mb: float
    input_size: int
    top1: float
    top5: float


def _read_csv(name: str) -> list[dict[str, str]]:
    with resources.files("edgesel_tools.data").joinpath(name).open("r", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@cache
def model_zoo() -> dict[str, ModelSpec]:
    """Every zoo row keyed by its arm id (and, for multi-weight names, ``model:WEIGHTS`` only)."""
    rows = _read_csv("imagenet_model_zoo.csv")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["model"]] = counts.get(row["model"], 0) + 1
    zoo: dict[str, ModelSpec] = {}
    for row in rows:
        quantized = row["quantized"].strip() == "1"
        size = float(row["file_size_mb"])
        params = (
            float(row["num_params"]) if row["num_params"].strip() else size * 1e6 / (1 if quantized else 4)
        )
        arm_id = row["model"] if counts[row["model"]] == 1 else f"{row['model']}:{row['weights']}"
        zoo[arm_id] = ModelSpec(
            arm_id=arm_id,
            model=row["model"],
            weights=row["weights"],
            family=row["family"],
            quantized=quantized,
            num_params=params,
            gflops=float(row["gflops"]),
            file_size_mb=size,
            input_size=int(row["input_size"]),
            top1=float(row["top1"]),
            top5=float(row["top5"]),
        )
    return zoo


def resolve_model(name: str) -> ModelSpec:
    """Look an arm id up; a bare name that has several weights gets an error listing the valid ids."""
    zoo = model_zoo()
    if name in zoo:
        return zoo[name]
    variants = sorted(k for k in zoo if k.split(":", 1)[0] == name)
    if variants:
        raise KeyError(f"model {name!r} has several weights; use one of {variants}")
    close = sorted(k for k in zoo if name.split(":", 1)[0][:5] in k)[:8]
    hint = f" (similar: {close})" if close else ""
    raise KeyError(f"unknown model {name!r}{hint}")


# ---- features the learner sees (fixed ranges, never fitted to a run; see docs/simulator.md) ----

MODEL_FEATURE_NAMES = ("top1", "log_gflops", "log_size", "quantized", "input_size")


def model_features(m: ModelSpec) -> list[float]:
    """Normalized model vector: each entry is ~[0, 1] for real ImageNet models, by a fixed transform."""
    return [
        (m.top1 - 50.0) / 40.0,  # 50 % -> 0, 90 % -> 1
        (math.log10(max(m.gflops, 1e-3)) + 1.5) / 4.5,  # 0.03 GFLOPs -> 0, 1000 -> 1
        math.log10(max(m.file_size_mb, 0.1)) / 3.5,  # 1 MB -> 0, ~3 GB -> 1
        1.0 if m.quantized else 0.0,
        (m.input_size - 128.0) / 512.0,  # 128 px -> 0, 640 px -> 1
    ]
