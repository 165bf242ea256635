"""A space's model catalog: the arms, their features and artifacts, and which ones are retired."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgesel_server.errors import InvalidFeatures, InvalidModel, LimitExceeded, ModelExists, UnknownModel
from edgesel_server.schema import FeatureSchema

MAX_MODEL_ID_LEN = 256
# What a model may carry to devices: every Select response includes it, so it stays small.
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY_LEN = 128
MAX_METADATA_BYTES = 16 * 1024  # keys and values together, UTF-8
MAX_VERSION_LEN = 128
MAX_ARTIFACT_URI_LEN = 2048


class CatalogError(InvalidModel):
    """A catalog change is invalid (unknown or duplicate model, bad features)."""


class UnknownModelError(UnknownModel, CatalogError):
    """No model with that id in the space."""


class DuplicateModelError(ModelExists, CatalogError):
    """A model with that id is in the catalog already (retired ones included)."""


def check_model_fields(
    version: str | None, artifact_uri: str | None, metadata: Mapping[str, str] | None
) -> None:
    """The size limits of a model's strings (see Model in proto/edgesel/v1/types.proto)."""
    if version is not None and len(version) > MAX_VERSION_LEN:
        raise LimitExceeded(
            f"model version is longer than {MAX_VERSION_LEN} characters", field="model.version"
        )
    if artifact_uri is not None and len(artifact_uri) > MAX_ARTIFACT_URI_LEN:
        raise LimitExceeded(
            f"model artifact_uri is longer than {MAX_ARTIFACT_URI_LEN} characters", field="model.artifact_uri"
        )
    if metadata is None:
        return
    if len(metadata) > MAX_METADATA_ENTRIES:
        raise LimitExceeded(
            f"model metadata has {len(metadata)} entries, the limit is {MAX_METADATA_ENTRIES}",
            field="model.metadata",
        )
    size = 0
    for k, v in metadata.items():
        if not k or len(k) > MAX_METADATA_KEY_LEN:
            raise LimitExceeded(
                f"model metadata key {k[:40]!r} must be 1-{MAX_METADATA_KEY_LEN} characters",
                field="model.metadata",
            )
        size += len(k.encode()) + len(v.encode())
    if size > MAX_METADATA_BYTES:
        raise LimitExceeded(
            f"model metadata is {size} bytes, the limit is {MAX_METADATA_BYTES}", field="model.metadata"
        )


def check_feature_names(model: Model, schema: FeatureSchema) -> None:
    """Model features the schema does not know are refused (a typo would otherwise fall back to a default)."""
    unknown = sorted(set(model.features) - set(schema.names))
    if unknown:
        raise InvalidFeatures(
            f"model {model.id!r}: feature(s) {', '.join(map(repr, unknown))} are not in the space's schema "
            f"({', '.join(schema.names) or 'no model features'})",
            field="model.features",
        )


@dataclass
class Model:
    id: str
    version: str = ""
    artifact_uri: str = ""
    features: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    retired: bool = False
    # Categorical model features (the schema's kind = "categorical"), e.g. {"precision": "w8a8"}.
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > MAX_MODEL_ID_LEN or not self.id.isprintable():
            raise CatalogError(f"model id {self.id!r} must be 1-{MAX_MODEL_ID_LEN} printable characters")
        for k, v in self.features.items():
            if not isinstance(v, int | float) or not math.isfinite(v):
                hint = " (categorical features go in labels)" if isinstance(v, str) else ""
                raise CatalogError(
                    f"model {self.id!r}: feature {k!r} must be a finite number, got {v!r}{hint}"
                )
        for k, label in self.labels.items():
            if not isinstance(label, str):
                raise CatalogError(f"model {self.id!r}: label {k!r} must be a string, got {label!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        # Whatever was derived from the fields (`derived`) is stale once one is set (retire, update).
        self.__dict__.pop("_derived", None)
        object.__setattr__(self, name, value)

    def derived(self, key: str, build: Callable[[Model], Any]) -> Any:
        """`build(self)`, computed once per state of the model (e.g. its message in every Select's reply).
        Not a field: not compared, not in to_dict."""
        cache = self.__dict__.setdefault("_derived", {})
        if key not in cache:
            cache[key] = build(self)
        return cache[key]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Model:
        return cls(
            id=str(d["id"]),
            version=str(d.get("version", "")),
            artifact_uri=str(d.get("artifact_uri", "")),
            features={str(k): _number(v) for k, v in dict(d.get("features", {})).items()},
            metadata={str(k): str(v) for k, v in dict(d.get("metadata", {})).items()},
            retired=bool(d.get("retired", False)),
            labels={
                str(k): v for k, v in dict(d.get("labels", {})).items()
            },  # older logs and snapshots have none
        )


def _number(v: Any) -> Any:
    """Numbers (TOML integers and booleans too) become floats; anything else is left for __post_init__ to
    reject with a message naming the feature."""
    return float(v) if isinstance(v, int | float) else v


class Catalog:
    """Models in insertion order. Retired models stay (their history and statistics are kept) but are
    never eligible again."""

    def __init__(self, schema: FeatureSchema, models: Iterable[Model] = ()) -> None:
        self.schema = schema
        self._models: dict[str, Model] = {}
        self._vectors: dict[str, np.ndarray] = {}
        for m in models:
            self.add(m)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._models

    def __len__(self) -> int:
        return len(self._models)

    def get(self, model_id: str) -> Model:
        try:
            return self._models[model_id]
        except KeyError:
            raise UnknownModelError(f"unknown model {model_id!r}") from None

    def models(self, *, include_retired: bool = False) -> list[Model]:
        return [m for m in self._models.values() if include_retired or not m.retired]

    def active_ids(self) -> list[str]:
        return [m.id for m in self._models.values() if not m.retired]

    def vector(self, model_id: str) -> np.ndarray:
        return self._vectors[model_id]

    def validate_new(self, model: Model) -> np.ndarray:
        """The model's normalized feature vector, or CatalogError if it cannot join the catalog."""
        if model.id in self._models:
            raise DuplicateModelError(
                f"model {model.id!r} already exists in the catalog", field="model.model_id"
            )
        try:
            return self.schema.vector(model.features, model.labels)
        except ValueError as e:
            raise CatalogError(f"model {model.id!r}: {e}") from None

    def add(self, model: Model) -> np.ndarray:
        vec = self.validate_new(model)
        self._models[model.id] = model
        self._vectors[model.id] = vec
        return vec

    def retire(self, model_id: str) -> Model:
        model = self.get(model_id)
        model.retired = True
        return model

    def update(
        self,
        model_id: str,
        *,
        version: str | None,
        artifact_uri: str | None,
        metadata: Mapping[str, str] | None,
    ) -> Model:
        model = self.get(model_id)
        if version is not None:
            model.version = version
        if artifact_uri is not None:
            model.artifact_uri = artifact_uri
        if metadata is not None:
            model.metadata = dict(metadata)
        return model

    def to_list(self) -> list[dict]:
        return [m.to_dict() for m in self._models.values()]
