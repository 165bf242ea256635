"""The three import sources, each turned into candidates (rows.Candidate) through a field -> target mapping:

- a CSV file: every column must be mapped (``--map``) or named like its target (a model feature or label of
  the space, ``id``/``model_id``, ``version``, ``artifact_uri``); any other column is an error, so a typo
  never silently drops a feature;
- an AI Hub style suite (aihub.py): fields top1, num_params_m, file_size_mb, input_size, quantized,
  activation_bits, activation_16bit and the label precision, onto the space's names by AIHUB_DEFAULT_MAP
  (overridable with ``--map FIELD=TARGET``); the measured latencies go to metadata;
- ONNX files: num_params_m and file_size_mb (and input_size, quantized when the file tells) read with the
  ``onnx`` package, plus numeric ``metadata_props`` of the file, by ONNX_DEFAULT_MAP.

``--feature NAME=NUMBER`` gives a value to every candidate that its source does not provide.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgesel.v1 import types_pb2
from edgesel_client.catalog_import import aihub
from edgesel_client.catalog_import.rows import (
    ARTIFACT_URI,
    CATEGORICAL,
    ID,
    IGNORE,
    MAX_METADATA_BYTES,
    MAX_METADATA_ENTRIES,
    META_PREFIX,
    VERSION,
    Candidate,
    ImportInputError,
    check_target,
    compact_json,
    feature_specs,
)

# Source field -> the space feature names it goes to by default, first match wins (a space names its
# features as it likes: the AI Hub example config says top1 / num_params_m / file_size_mb, the fleet one
# top1 / gflops / file_size_mb).
AIHUB_DEFAULT_MAP: dict[str, tuple[str, ...]] = {
    "top1": ("top1", "top1_accuracy", "accuracy"),
    "num_params_m": ("num_params_m", "params_m"),
    "file_size_mb": ("file_size_mb", "size_mb"),
    "input_size": ("input_size",),
    "quantized": ("quantized",),
    "activation_bits": ("activation_bits", "quantization_bits"),
    "activation_16bit": ("activation_16bit",),
    "precision": ("precision",),
}
ONNX_DEFAULT_MAP: dict[str, tuple[str, ...]] = {
    "num_params_m": ("num_params_m", "params_m"),
    "file_size_mb": ("file_size_mb", "size_mb"),
    "input_size": ("input_size",),
    "quantized": ("quantized",),
}
AIHUB_LATENCY_KEY = f"aihub_latency_ms.{aihub.RUNTIME}"  # compact JSON {"device": ms}, by device name
AIHUB_LATENCY_DROPPED_KEY = "aihub_latency_dropped"  # how many devices did not fit the metadata limit
MIB = 1024 * 1024  # the AI Hub manifests' "MB" are MiB (mobilenet_v2: 3.49M fp32 params = "13.3 MB")


def _resolve(
    fields: Sequence[str],
    mapping: Mapping[str, str],
    defaults: Mapping[str, tuple[str, ...]],
    specs: Mapping[str, types_pb2.FeatureSpec],
    *,
    strict: bool,
    what: str,
) -> dict[str, str]:
    """Field -> target. `strict` (CSV): a field neither mapped nor named like a target is an error."""
    problems = [f"--map: {what} {source!r} does not exist" for source in mapping if source not in fields]
    targets: dict[str, str] = {}
    for name in fields:
        if name in mapping:
            target = mapping[name]
        elif name in defaults:
            target = next((t for t in defaults[name] if t in specs), IGNORE)
        elif name in specs or name in (VERSION, ARTIFACT_URI):
            target = name
        elif name in (ID, "model_id"):
            target = ID
        elif strict:
            problems.append(
                f"{what} {name!r} is not a model feature of the space ({', '.join(specs) or 'none'}); map it "
                f"with --map {name}=FEATURE (or {name}=meta:KEY, or {name}=- to ignore it)"
            )
            continue
        else:
            target = IGNORE
        problem = check_target(target, specs, f"--map {name}")
        if problem:
            problems.append(problem)
        targets[name] = target
    by_target: dict[str, list[str]] = {}
    for name, target in targets.items():
        if target != IGNORE:
            by_target.setdefault(target, []).append(name)
    for target, names in by_target.items():
        if len(names) > 1:
            problems.append(
                f"{what}s {', '.join(map(repr, names))} all go to {target!r}; map all but one to -"
            )
    if problems:
        raise ImportInputError(problems)
    return targets


def _fill(
    candidate: Candidate,
    record: Mapping[str, Any],
    targets: Mapping[str, str],
    specs: Mapping[str, types_pb2.FeatureSpec],
) -> Candidate:
    for name, target in targets.items():
        value = record.get(name)
        if target == IGNORE or value is None or value == "":
            continue  # an empty cell is "not given": the feature's default, or an error if it has none
        if target == ID:
            candidate.model_id = str(value)
        elif target == VERSION:
            candidate.version = str(value)
        elif target == ARTIFACT_URI:
            candidate.artifact_uri = str(value)
        elif target.startswith(META_PREFIX):
            if candidate.metadata is None:
                candidate.metadata = {}
            candidate.metadata[target[len(META_PREFIX) :]] = str(value)
        elif specs[target].transform == CATEGORICAL:
            candidate.labels[target] = str(value)
            candidate.origin[target] = name
        else:
            candidate.features[target] = value  # checked (and made a float) by rows.validate
            candidate.origin[target] = name
    return candidate


def _constants(candidates: list[Candidate], constants: Mapping[str, float]) -> list[Candidate]:
    for c in candidates:
        for name, value in constants.items():
            c.features.setdefault(name, value)
    return candidates


# -- CSV ----------------------------------------------------------------------------------------------------


def csv_candidates(
    path: Path, mapping: Mapping[str, str], space: types_pb2.Space, constants: Mapping[str, float]
) -> list[Candidate]:
    specs = feature_specs(space)
    try:
        with open(path, newline="", encoding="utf-8-sig") as source:
            reader = csv.DictReader(source)
            header = list(reader.fieldnames or [])
            duplicated = sorted({h for h in header if header.count(h) > 1})
            if not header or duplicated:
                why = f"column(s) {', '.join(duplicated)} appear twice" if duplicated else "no header row"
                raise ImportInputError([f"{path}: {why}"])
            targets = _resolve(header, mapping, {}, specs, strict=True, what=f"{path}: column")
            if ID not in targets.values():
                raise ImportInputError(
                    [f"{path}: no id column (name one id or model_id, or map one with --map COLUMN=id)"]
                )
            out = []
            for n, row in enumerate(reader, start=1):
                where = f"{path}: row {n} (line {reader.line_num})"
                if None in row:
                    raise ImportInputError([f"{where}: more cells than the header has columns"])
                out.append(_fill(Candidate("", where), row, targets, specs))
    except OSError as e:
        raise ImportInputError([f"cannot read {path}: {e}"]) from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise ImportInputError([f"{path}: not a CSV file: {e}"]) from e
    return _constants(out, constants)


# -- AI Hub -------------------------------------------------------------------------------------------------


def _latency_metadata(latencies: Mapping[str, float], budget: int) -> dict[str, str]:
    """The latencies as one compact JSON entry; devices (in name order) that do not fit `budget` bytes are
    dropped, and how many is said in a second entry."""
    kept = dict(latencies)
    dropped = 0
    while kept:
        entries = {AIHUB_LATENCY_KEY: compact_json(kept)}
        if dropped:
            entries[AIHUB_LATENCY_DROPPED_KEY] = str(dropped)
        if sum(len(k.encode()) + len(v.encode()) for k, v in entries.items()) <= budget:
            return entries
        kept.pop(next(reversed(kept)))
        dropped += 1
    return {AIHUB_LATENCY_DROPPED_KEY: str(dropped)} if dropped else {}


def _wheel_version(path: Path) -> str | None:
    m = re.match(r"qai_hub_models-([^-]+)-", path.name)
    return f"qai-hub-models-{m.group(1)}" if m else None


def aihub_candidates(
    path: Path,
    mapping: Mapping[str, str],
    space: types_pb2.Space,
    constants: Mapping[str, float],
    only: Sequence[str] | None = None,
) -> tuple[list[Candidate], list[tuple[str, str]]]:
    """Candidates of a suite (folder or wheel) and the models it skipped, with why."""
    specs = feature_specs(space)
    try:
        files = aihub.read_package(path)
        suite = aihub.read_suite(files, list(only) if only else None)
    except OSError as e:
        raise ImportInputError([f"cannot read {path}: {e}"]) from e
    except aihub.SuiteFormatError as e:
        raise ImportInputError([f"{path}: {e}"]) from e
    fields = list(AIHUB_DEFAULT_MAP)
    targets = _resolve(fields, mapping, AIHUB_DEFAULT_MAP, specs, strict=False, what="AI Hub field")
    version = _wheel_version(path)
    out = []
    for v in suite.variants:
        record = {
            "top1": v.top1,
            "num_params_m": v.num_params_m,
            "file_size_mb": v.file_size_mb,
            "input_size": v.input_size,
            "quantized": 1.0 if v.quantized else 0.0,
            "activation_bits": float(v.activation_bits),
            "activation_16bit": 1.0 if v.activation_bits >= 16 else 0.0,
            "precision": v.precision,
        }
        metadata = {
            "model": v.model,
            "precision": v.precision,
            "model_name": v.model_name,
            "license": v.license,
            "top1_device": aihub.NUMERICS_DEVICE,
            "file_size_source": v.file_size_source,
            "source": v.perf_path,
        }
        used = sum(len(k.encode()) + len(x.encode()) for k, x in metadata.items())
        metadata.update(
            _latency_metadata(v.latencies_ms(), min(MAX_METADATA_BYTES - used, MAX_METADATA_BYTES))
        )
        assert len(metadata) <= MAX_METADATA_ENTRIES
        where = f"{path.name}: {v.variant_id}"
        candidate = Candidate(v.variant_id, where, metadata=metadata, version=version)
        out.append(_fill(candidate, record, targets, specs))
    return _constants(out, constants), suite.skipped


# -- ONNX ---------------------------------------------------------------------------------------------------


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:  # an optional extra: the SDK itself needs only grpcio and protobuf
        raise ImportInputError(
            ["reading ONNX files needs onnx: pip install 'edgesel-client[onnx]'"]
        ) from None
    return onnx


def onnx_facts(path: Path) -> dict[str, Any]:
    """What an ONNX file says about itself: parameters (elements of its initializers and Constant nodes),
    bytes on disk (the file plus its external data files), the side of a static image input, whether the
    weights are 8-bit integers, and its numeric metadata_props."""
    onnx = _onnx()
    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    tensors = list(graph.initializer)
    for node in graph.node:
        if node.op_type == "Constant":
            tensors += [a.t for a in node.attribute if a.name == "value"]
    params = 0
    external: set[str] = set()
    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    quantized = False
    for t in tensors:
        n = 1
        for d in t.dims:
            n *= int(d)
        params += n
        quantized = quantized or t.data_type in int8
        for entry in t.external_data:
            if entry.key == "location":
                external.add(entry.value)
    size = os.path.getsize(path) + sum(os.path.getsize(path.parent / loc) for loc in sorted(external))
    facts: dict[str, Any] = {
        "num_params_m": params / 1e6,
        "file_size_mb": size / MIB,
        "quantized": 1.0 if quantized else 0.0,
        "params": params,
        "bytes": size,
    }
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if inputs:
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in inputs[0].type.tensor_type.shape.dim]
        if len(dims) == 4 and dims[-1] > 0 and dims[-1] == dims[-2]:
            facts["input_size"] = float(dims[-1])  # NCHW image input with a static square side
    for prop in model.metadata_props:
        facts.setdefault(prop.key, prop.value)
    return facts


def onnx_candidates(
    paths: Sequence[Path], mapping: Mapping[str, str], space: types_pb2.Space, constants: Mapping[str, float]
) -> list[Candidate]:
    specs = feature_specs(space)
    read = []
    for path in paths:
        try:
            read.append((path, onnx_facts(path)))
        except OSError as e:
            raise ImportInputError([f"cannot read {path}: {e}"]) from e
        except ImportInputError:
            raise
        except Exception as e:  # noqa: BLE001 - onnx raises DecodeError and others for a file that is not ONNX
            raise ImportInputError([f"{path}: not an ONNX model: {e}"]) from e
    known = {f for _, facts in read for f in facts}
    missing = sorted(set(mapping) - known)
    if missing:
        raise ImportInputError([f"--map: no ONNX file has the field(s) {', '.join(missing)}"])
    out = []
    for path, facts in read:
        fields = [f for f in facts if f not in ("params", "bytes")]
        usable = {f: t for f, t in mapping.items() if f in fields}
        targets = _resolve(fields, usable, ONNX_DEFAULT_MAP, specs, strict=False, what=f"{path.name}: field")
        metadata = {"format": "onnx", "params": str(facts["params"]), "bytes": str(facts["bytes"])}
        candidate = Candidate(path.stem, path.name, metadata=metadata)
        out.append(_fill(candidate, facts, targets, specs))
    return _constants(out, constants)
