"""What every import source produces: candidate models, checked against the space's schema before anything is
sent. The schema is the one ListSpaces describes (``Space.model_features``: ranges, transforms, categorical
values, defaults), so a bad value is reported with the row and column it came from, not as a server error
about the tenth model of a batch."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgesel.v1 import types_pb2

# The server's limits on Model (proto/edgesel/v1/types.proto; server/edgesel_server/catalog.py).
MAX_MODEL_ID_LEN = 256
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_LEN = 128
MAX_METADATA_BYTES = 16 * 1024  # keys and values together, UTF-8
MAX_VERSION_LEN = 128
MAX_ARTIFACT_URI_LEN = 2048

# Targets of a column/field besides the space's feature and label names.
ID, VERSION, ARTIFACT_URI, IGNORE, META_PREFIX = "id", "version", "artifact_uri", "-", "meta:"
CATEGORICAL = "categorical"


class ImportInputError(ValueError):
    """The import source cannot become a catalog; every problem is listed, each naming its row/column."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        shown = self.problems[:MAX_PROBLEMS_SHOWN]
        more = len(self.problems) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))


MAX_PROBLEMS_SHOWN = 20


@dataclass
class Candidate:
    """One model an import source describes. None means "the source does not say" (kept on update)."""

    model_id: str
    where: str  # "row 3 (line 4)", "mobilenet_v2:w8a8", "tiny.onnx": named in every message about it
    features: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] | None = None
    version: str | None = None
    artifact_uri: str | None = None
    origin: dict[str, str] = field(default_factory=dict)  # feature/label name -> the column it came from

    def message(self) -> types_pb2.Model:
        return types_pb2.Model(
            model_id=self.model_id,
            version=self.version or "",
            artifact_uri=self.artifact_uri or "",
            features=self.features,
            labels=self.labels,
            metadata=self.metadata or {},
        )


def parse_map(text: str | None) -> dict[str, str]:
    """``--map col=target,col2=target2`` -> {col: target}; a target is a model feature or label name,
    ``id``, ``version``, ``artifact_uri``, ``meta:KEY`` (``meta`` alone: the column's name) or ``-``."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        source, sep, target = item.partition("=")
        source, target = source.strip(), target.strip()
        if not sep or not source or not target:
            raise ImportInputError([f"--map: expected SOURCE=TARGET, got {item!r}"])
        if source in out:
            raise ImportInputError([f"--map: {source!r} is mapped twice"])
        out[source] = META_PREFIX + source if target == "meta" else target
    return out


def feature_specs(space: types_pb2.Space) -> dict[str, types_pb2.FeatureSpec]:
    return {spec.name: spec for spec in space.model_features}


def check_target(target: str, specs: Mapping[str, types_pb2.FeatureSpec], where: str) -> str | None:
    """A problem with a mapping target, or None."""
    if target in (ID, VERSION, ARTIFACT_URI, IGNORE) or target in specs:
        return None
    if target.startswith(META_PREFIX) and 0 < len(target) - len(META_PREFIX) <= MAX_METADATA_KEY_LEN:
        return None
    names = ", ".join(specs) or "none"
    return (
        f"{where}: {target!r} is not a model feature of the space ({names}), nor id, version, "
        "artifact_uri, meta:KEY or -"
    )


def number(text: Any, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: not a finite number: {text!r}")
    return value


def check_value(spec: types_pb2.FeatureSpec, value: Any, where: str) -> float | str:
    """The feature's value as the server will take it, or ValueError naming `where`."""
    if spec.transform == CATEGORICAL:
        label = str(value)
        if label not in spec.values and spec.unknown != "other":
            raise ValueError(f"{where}: {label!r} is not one of {', '.join(spec.values)}")
        return label
    v = number(value, where)
    if not spec.min <= v <= spec.max:
        raise ValueError(f"{where}: {v:g} is outside the space's range [{spec.min:g}, {spec.max:g}]")
    if spec.transform == "log" and v <= 0:
        raise ValueError(f"{where}: {v:g} must be > 0 (log-scaled feature)")
    return v


def has_default(spec: types_pb2.FeatureSpec) -> bool:
    return spec.HasField("default_label") if spec.transform == CATEGORICAL else spec.HasField("default")


def metadata_problem(metadata: Mapping[str, str]) -> str | None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        return f"metadata has {len(metadata)} entries, the server's limit is {MAX_METADATA_ENTRIES}"
    size = 0
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_LEN:
            return f"metadata key {key[:40]!r} must be 1-{MAX_METADATA_KEY_LEN} characters"
        size += len(key.encode()) + len(value.encode())
    if size > MAX_METADATA_BYTES:
        return f"metadata is {size} bytes, the server's limit is {MAX_METADATA_BYTES}"
    return None


def validate(candidates: Iterable[Candidate], space: types_pb2.Space) -> list[Candidate]:
    """Everything the server would refuse, found before anything is sent (ImportInputError lists it all):
    bad ids, duplicate ids, missing required features, values out of range, oversized strings."""
    specs = feature_specs(space)
    problems: list[str] = []
    seen: dict[str, str] = {}
    out = list(candidates)
    for c in out:
        if not c.model_id or len(c.model_id) > MAX_MODEL_ID_LEN or not c.model_id.isprintable():
            problems.append(
                f"{c.where}: model id {c.model_id!r} must be 1-{MAX_MODEL_ID_LEN} printable characters"
            )
        elif c.model_id in seen:
            problems.append(f"{c.where}: model id {c.model_id!r} again (first at {seen[c.model_id]})")
        else:
            seen[c.model_id] = c.where
        for name, spec in specs.items():
            given = c.labels if spec.transform == CATEGORICAL else c.features
            if name not in given:
                if not has_default(spec):
                    problems.append(f"{c.where}: no value for the required feature {name!r}")
                continue
            column = c.origin.get(name, name)
            try:
                given[name] = check_value(spec, given[name], f"{c.where}, column {column!r}")  # type: ignore[assignment]
            except ValueError as e:
                problems.append(str(e))
        if c.version is not None and len(c.version) > MAX_VERSION_LEN:
            problems.append(f"{c.where}: version is longer than {MAX_VERSION_LEN} characters")
        if c.artifact_uri is not None and len(c.artifact_uri) > MAX_ARTIFACT_URI_LEN:
            problems.append(f"{c.where}: artifact_uri is longer than {MAX_ARTIFACT_URI_LEN} characters")
        problem = metadata_problem(c.metadata or {})
        if problem:
            problems.append(f"{c.where}: {problem}")
    if problems:
        raise ImportInputError(problems)
    return out


def compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
