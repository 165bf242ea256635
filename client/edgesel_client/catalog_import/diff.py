"""The difference between what an import source describes and the live catalog, and applying it."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgesel.v1 import types_pb2
from edgesel_client.catalog_import.rows import CATEGORICAL, Candidate, feature_specs


@dataclass
class Change:
    candidate: Candidate
    fields: list[str]  # which of version, artifact_uri, metadata change
    update: types_pb2.Model  # what UpdateModel (or ImportModels.update) gets


@dataclass
class Plan:
    added: list[Candidate] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    unchanged: list[Candidate] = field(default_factory=list)
    conflicts: list[tuple[Candidate, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": [c.model_id for c in self.added],
            "changed": [{"model_id": ch.candidate.model_id, "fields": ch.fields} for ch in self.changed],
            "unchanged": [c.model_id for c in self.unchanged],
            "conflicts": [{"model_id": c.model_id, "where": c.where, "reason": r} for c, r in self.conflicts],
        }


def _same_number(a: float, b: float) -> bool:
    return a == b or math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)


def _defaults(specs: Mapping[str, types_pb2.FeatureSpec]) -> tuple[dict[str, float], dict[str, str]]:
    numbers = {n: s.default for n, s in specs.items() if s.transform != CATEGORICAL and s.HasField("default")}
    labels = {
        n: s.default_label
        for n, s in specs.items()
        if s.transform == CATEGORICAL and s.HasField("default_label")
    }
    return numbers, labels


def _feature_difference(
    c: Candidate, live: types_pb2.Model, specs: Mapping[str, types_pb2.FeatureSpec]
) -> str | None:
    """Features and labels are fixed once added: a source that gives other values conflicts. A value left
    out on one side and equal to the schema's default on the other is the same value."""
    numbers, labels = _defaults(specs)
    stored = {**numbers, **dict(live.features)}
    given = {**numbers, **c.features}
    diffs = []
    for name in sorted(set(stored) | set(given)):
        a, b = stored.get(name), given.get(name)
        if a is None or b is None or not _same_number(a, b):
            diffs.append(f"{name} {a if a is not None else '-'} -> {b if b is not None else '-'}")
    stored_labels = {**labels, **dict(live.labels)}
    given_labels = {**labels, **c.labels}
    for name in sorted(set(stored_labels) | set(given_labels)):
        if stored_labels.get(name) != given_labels.get(name):
            diffs.append(f"{name} {stored_labels.get(name, '-')} -> {given_labels.get(name, '-')}")
    if not diffs:
        return None
    return "features are fixed once added, and the source differs: " + ", ".join(diffs)


def plan(
    candidates: Iterable[Candidate], live_models: Iterable[types_pb2.Model], space: types_pb2.Space
) -> Plan:
    """Sort each candidate into added / changed / unchanged / conflict. On update, what the source gives
    replaces the stored value and what it does not give (None) is kept."""
    live: Mapping[str, types_pb2.Model] = {m.model_id: m for m in live_models}
    specs = feature_specs(space)
    out = Plan()
    for c in candidates:
        current = live.get(c.model_id)
        if current is None:
            out.added.append(c)
            continue
        conflict = _feature_difference(c, current, specs)
        if conflict is not None:
            out.conflicts.append((c, conflict))
            continue
        version = current.version if c.version is None else c.version
        uri = current.artifact_uri if c.artifact_uri is None else c.artifact_uri
        metadata = dict(current.metadata) if c.metadata is None else dict(c.metadata)
        fields = [
            name
            for name, changed in (
                ("version", version != current.version),
                ("artifact_uri", uri != current.artifact_uri),
                ("metadata", metadata != dict(current.metadata)),
            )
            if changed
        ]
        if not fields:
            out.unchanged.append(c)
            continue
        update = types_pb2.Model(model_id=c.model_id, version=version, artifact_uri=uri, metadata=metadata)
        out.changed.append(Change(c, fields, update))
    return out
