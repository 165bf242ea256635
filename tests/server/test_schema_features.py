"""Categorical and clipped features, and the QoE's accuracy floor/ceiling, against hand-computed values and a
plain numpy reference (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edgesel_server.catalog import Catalog, CatalogError, Model
from edgesel_server.config import ConfigError, parse_config
from edgesel_server.qoe import QoeFunction
from edgesel_server.schema import CategoricalSpec, FeatureError, FeatureSchema, FeatureSpec
from tests.server.test_config_schema_qoe import minimal


def phone_schema() -> FeatureSchema:
    return FeatureSchema(
        [
            FeatureSpec("ram_gb", 0.25, 64, "log"),
            CategoricalSpec("os", ("android", "linux", "ios")),
            FeatureSpec("battery", 0, 100, clip=True),
            CategoricalSpec("form", ("phone", "board"), default="board", unknown="other"),
        ]
    )


def test_columns_are_declaration_order_with_one_per_value_and_other_last() -> None:
    schema = phone_schema()
    assert schema.columns == [
        "ram_gb",
        "os=android",
        "os=linux",
        "os=ios",
        "battery",
        "form=phone",
        "form=board",
        "form=<other>",
    ]
    assert len(schema) == 8
    assert schema.names == ["ram_gb", "os", "battery", "form"]


def test_one_hot_and_clip_hand_computed() -> None:
    schema = phone_schema()
    v = schema.vector({"ram_gb": 4.0, "battery": 150.0}, {"os": "linux", "form": "car"})
    # log(4/0.25) / log(64/0.25) = log 16 / log 256 = 0.5; battery 150 clips to 100 -> 1; "car" -> other.
    np.testing.assert_allclose(v, [0.5, 0, 1, 0, 1.0, 0, 0, 1], rtol=0, atol=1e-15)
    v = schema.vector({"ram_gb": 64.0, "battery": -5.0}, {"os": "android"})
    np.testing.assert_array_equal(v, [1.0, 1, 0, 0, 0.0, 0, 1, 0])  # form takes its default "board"
    v = schema.vector({"ram_gb": 0.25, "battery": 25.0}, {"os": "ios", "form": "phone"})
    np.testing.assert_array_equal(v, [0.0, 0, 0, 1, 0.25, 1, 0, 0])


@pytest.mark.parametrize(
    ("values", "labels", "words"),
    [
        (
            {"ram_gb": 4},
            {"os": "tizen"},
            "device label 'os' = 'tizen' is not one of the allowed values: android, linux, ios",
        ),  # fmt: skip
        ({"ram_gb": 4}, {}, "missing device feature(s) with no default: os"),
        ({"ram_gb": 4, "os": 1.0}, {}, "device feature 'os' is categorical"),
        ({"ram_gb": 4}, {"os": "linux", "battery": "full"}, "device feature 'battery' is numeric"),
        ({"ram_gb": 4, "battery": math.nan}, {"os": "linux"}, "'battery' is nan"),  # clip never hides NaN
        ({"ram_gb": 4, "battery": math.inf}, {"os": "linux"}, "'battery' is inf"),
        ({"ram_gb": 65}, {"os": "linux"}, "'ram_gb' = 65 is outside its range"),  # no clip: rejected
    ],
)
def test_bad_values_name_the_feature(values: dict, labels: dict, words: str) -> None:
    with pytest.raises(FeatureError) as info:
        phone_schema().vector(values, labels)
    assert words in str(info.value)


def test_long_label_is_not_echoed_whole() -> None:
    with pytest.raises(FeatureError) as info:
        phone_schema().vector({"ram_gb": 4}, {"os": "x" * 5000})
    assert len(str(info.value)) < 300


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"values": ()}, "at least one value"),
        ({"values": ("a", "a")}, "listed twice: a"),
        ({"values": ("a", "")}, "non-empty strings"),
        ({"values": ("a",), "default": "b"}, "default 'b' is not one of its values"),
        ({"values": ("a",), "unknown": "ignore"}, "unknown must be one of"),
    ],
)
def test_categorical_spec_validation(kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        CategoricalSpec("os", **kwargs)


def test_model_labels_go_through_the_catalog() -> None:
    schema = FeatureSchema(
        [FeatureSpec("top1", 40, 95), CategoricalSpec("precision", ("fp32", "fp16", "w8a8"))], kind="model"
    )
    catalog = Catalog(schema, [Model("a", features={"top1": 95.0}, labels={"precision": "w8a8"})])
    np.testing.assert_array_equal(catalog.vector("a"), [1.0, 0, 0, 1])
    with pytest.raises(CatalogError, match="model 'b': model label 'precision' = 'int4' is not one of"):
        catalog.add(Model("b", features={"top1": 60.0}, labels={"precision": "int4"}))
    assert "b" not in catalog
    with pytest.raises(CatalogError, match="categorical features go in labels"):
        Model.from_dict({"id": "c", "features": {"top1": 60.0, "precision": "fp16"}})
    with pytest.raises(CatalogError, match="label 'precision' must be a string"):
        Model.from_dict({"id": "c", "labels": {"precision": 16}})
    assert Model.from_dict({"id": "old", "features": {"top1": 60}}).labels == {}  # logs from before labels


# ---- hypothesis: the schema against a plain numpy reference ------------------------------------------


@st.composite
def specs_and_inputs(draw: st.DrawFn) -> tuple[list, dict, dict]:
    specs: list = []
    values: dict = {}
    labels: dict = {}
    for i in range(draw(st.integers(1, 6))):
        name = f"f{i}"
        if draw(st.booleans()):
            vocabulary = draw(st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=5, unique=True))
            unknown = draw(st.sampled_from(["error", "other"]))
            specs.append(CategoricalSpec(name, tuple(vocabulary), unknown=unknown))
            pool = vocabulary + (["zz"] if unknown == "other" else [])
            labels[name] = draw(st.sampled_from(pool))
        else:
            lo = draw(st.floats(0.01, 100, allow_nan=False))
            hi = lo + draw(st.floats(0.01, 1000, allow_nan=False))
            transform = draw(st.sampled_from(["linear", "log"]))
            specs.append(FeatureSpec(name, lo, hi, transform, clip=True))
            values[name] = draw(st.floats(lo / 10, hi * 2, allow_nan=False))
    return specs, values, labels


def reference_vector(specs: list, values: dict, labels: dict) -> np.ndarray:
    parts = []
    for s in specs:
        if isinstance(s, CategoricalSpec):
            slots = list(s.values) + (["<other>"] if s.unknown == "other" else [])
            label = labels[s.name] if labels[s.name] in s.values else "<other>"
            parts.append((np.array(slots) == label).astype(np.float64))
        else:
            t = np.log if s.transform == "log" else (lambda a: a)
            v = np.clip(values[s.name], s.min, s.max)
            parts.append(np.array([(t(v) - t(s.min)) / (t(s.max) - t(s.min))]))
    return np.concatenate(parts)


@settings(max_examples=300, deadline=None)
@given(specs_and_inputs())
def test_vector_matches_numpy_reference(case: tuple[list, dict, dict]) -> None:
    specs, values, labels = case
    schema = FeatureSchema(specs)
    v = schema.vector(values, labels)
    want = reference_vector(specs, values, labels)
    assert v.shape == want.shape == (len(schema),)
    np.testing.assert_allclose(v, want, rtol=1e-12, atol=1e-12)
    assert np.all((v >= 0) & (v <= 1))
    at = 0
    for s in specs:  # every categorical block is exactly one-hot
        if isinstance(s, CategoricalSpec):
            block = v[at : at + len(s.columns)]
            assert block.sum() == 1.0 and set(block.tolist()) <= {0.0, 1.0}
        else:  # and a numeric column is bit for bit what the spec's own normalize gives
            assert v[at] == s.normalize(min(s.max, max(s.min, values[s.name])))
        at += len(s.columns)


@settings(max_examples=200, deadline=None)
@given(st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from(["linear", "log", "none"]))
def test_clip_equals_sending_the_bound(value: float, transform: str) -> None:
    lo, hi = (0.5, 8.0) if transform != "none" else (0.0, 1.0)
    clipped = FeatureSchema([FeatureSpec("x", lo, hi, transform, clip=True)])
    exact = FeatureSchema([FeatureSpec("x", lo, hi, transform)])
    assert clipped.vector({"x": value})[0] == exact.vector({"x": min(hi, max(lo, value))})[0]


# ---- QoE: accuracy floor and ceiling -----------------------------------------------------------------


def test_accuracy_floor_ceiling_hand_computed() -> None:
    q = QoeFunction(accuracy_floor=0.5, accuracy_ceiling=0.9)
    assert math.isclose(q.reward({"accuracy": 0.7}), 0.5)  # (0.7 - 0.5) / (0.9 - 0.5)
    assert q.reward({"accuracy": 0.95}) == 1.0  # above the ceiling: no better
    assert q.reward({"accuracy": 0.4}) == 0.0  # below the floor: worthless
    assert math.isclose(q.reward({"accuracy": 0.6, "user_rating": 3}), (0.25 + 0.5) / 2)
    assert QoeFunction().reward({"accuracy": 0.8}) == 0.8  # defaults 0 and 1: the raw fraction, as before


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1))
def test_accuracy_score_matches_numpy(a: float, f1: float, f2: float) -> None:
    floor, ceiling = min(f1, f2), max(f1, f2)
    assume(ceiling - floor > 1e-6)
    q = QoeFunction(weights={"accuracy": 1.0}, accuracy_floor=floor, accuracy_ceiling=ceiling)
    assert math.isclose(q.reward({"accuracy": a}), float(np.clip((a - floor) / (ceiling - floor), 0, 1)))


@pytest.mark.parametrize(
    ("floor", "ceiling"), [(0.9, 0.5), (0.5, 0.5), (-0.1, 0.5), (0.2, 1.5), (55.0, 88.0)]
)
def test_accuracy_floor_ceiling_validation(floor: float, ceiling: float) -> None:
    with pytest.raises(ValueError, match="0 <= accuracy_floor < accuracy_ceiling <= 1"):
        QoeFunction(accuracy_floor=floor, accuracy_ceiling=ceiling)


# ---- config: every new key, and its errors naming the key ------------------------------------------


def test_config_reads_categorical_clip_and_accuracy_bounds() -> None:
    cfg = parse_config(
        minimal(
            device_features=[
                {"name": "ram_gb", "min": 0.5, "max": 64, "clip": True},
                {"name": "os", "kind": "categorical", "values": ["android", "linux"], "unknown": "other"},
            ],
            model_features=[
                {"name": "top1", "min": 40, "max": 95},
                {"name": "precision", "kind": "categorical", "values": ["fp32", "w8a8"], "default": "fp32"},
            ],
            models=[{"id": "m", "features": {"top1": 70}, "labels": {"precision": "w8a8"}}],
            qoe={"accuracy_floor": 0.55, "accuracy_ceiling": 0.88},
        )
    )
    (space,) = cfg.spaces
    assert space.device_features[0] == FeatureSpec("ram_gb", 0.5, 64, clip=True)
    assert space.device_features[1] == CategoricalSpec("os", ("android", "linux"), unknown="other")
    assert space.model_features[1] == CategoricalSpec("precision", ("fp32", "w8a8"), default="fp32")
    assert space.models[0].labels == {"precision": "w8a8"}
    assert (space.qoe.accuracy_floor, space.qoe.accuracy_ceiling) == (0.55, 0.88)


CAT = {"name": "os", "kind": "categorical", "values": ["android", "linux"]}


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        (
            {"device_features": [{**CAT, "kind": "ordinal"}]},
            "space[0].device_features[0].kind must be one of",
        ),
        (
            {"device_features": [{"name": "os", "kind": "categorical"}]},
            "device_features[0].values is required",
        ),
        ({"device_features": [{**CAT, "values": []}]}, "device_features[0]: feature 'os': a categorical"),
        ({"device_features": [{**CAT, "values": [1, 2]}]}, "device_features[0].values must be a list of str"),
        ({"device_features": [{**CAT, "values": "android"}]}, "device_features[0].values must be list"),
        (
            {"device_features": [{**CAT, "values": ["a", "a"]}]},
            "device_features[0]: feature 'os': values listed",
        ),
        ({"device_features": [{**CAT, "default": "ios"}]}, "device_features[0]: feature 'os': default 'ios'"),
        ({"device_features": [{**CAT, "default": 1}]}, "device_features[0].default must be str"),
        ({"device_features": [{**CAT, "unknown": "drop"}]}, "device_features[0]: feature 'os': unknown must"),
        ({"device_features": [{**CAT, "min": 0}]}, "unknown key(s) in space[0].device_features[0]: min"),
        ({"device_features": [{"name": "x", "min": 0, "max": 1, "clip": "yes"}]}, "[0].clip must be bool"),
        ({"device_features": [{"name": "x", "min": 0, "max": 1, "values": ["a"]}]}, "[0]: values"),
        ({"qoe": {"accuracy_floor": 0.9, "accuracy_ceiling": 0.5}}, "space[0].qoe: qoe accuracy_floor"),
        ({"qoe": {"accuracy_ceiling": 88.0}}, "space[0].qoe: qoe accuracy_floor and accuracy_ceiling"),
        ({"qoe": {"accuracy_floor": "low"}}, "space[0].qoe.accuracy_floor must be float"),
        (
            {"model_features": [{**CAT, "name": "precision"}], "models": [{"id": "m", "labels": {}}]},
            "space[0].models[0]: model 'm': missing model feature(s) with no default: precision",
        ),
        (
            {"model_features": [{**CAT, "name": "p"}], "models": [{"id": "m", "labels": {"p": "int4"}}]},
            "space[0].models[0]: model 'm': model label 'p' = 'int4' is not one of",
        ),
        ({"models": [{"id": "m", "features": {"p": "int8"}}]}, "categorical features go in labels"),
    ],
)
def test_config_errors_name_the_key(patch: dict, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(**patch))
    assert words in str(info.value)


def test_the_worked_examples_of_docs_qoe_md() -> None:
    """docs/qoe.md quotes these numbers; keep them true."""
    schema = FeatureSchema(
        [
            FeatureSpec("ram_gb", 0.25, 64, "log"),
            CategoricalSpec("os", ("android", "linux", "ios")),
            FeatureSpec("battery_percent", 0, 100, clip=True),
            CategoricalSpec("form_factor", ("phone", "board"), default="phone", unknown="other"),
        ]
    )
    assert len(schema) == 8 and schema.columns[-1] == "form_factor=<other>"
    features = {"ram_gb": 4, "battery_percent": 130}
    v = schema.vector(features, {"os": "linux", "form_factor": "car"})
    np.testing.assert_allclose(v, [0.5, 0, 1, 0, 1.0, 0, 0, 1], rtol=0, atol=1e-15)
    v = schema.vector(features, {"os": "linux"})
    np.testing.assert_allclose(v, [0.5, 0, 1, 0, 1.0, 1, 0, 0], rtol=0, atol=1e-15)
    report = {"user_rating": 4, "latency_ms": 80, "accuracy": 0.76}
    q = QoeFunction(accuracy_floor=0.55, accuracy_ceiling=0.88)
    assert round(q.reward(report, latency_budget_ms=50), 4) == 0.5288
    assert round(QoeFunction().reward(report, latency_budget_ms=50), 4) == 0.57
    assert round(q.reward(report, latency_budget_ms=50, weights={"latency_ms": 3.0}), 4) == 0.3973
    low = QoeFunction(accuracy_floor=0.55, accuracy_ceiling=0.88, reward_min=-1)
    assert round(low.reward(report, latency_budget_ms=50), 4) == 0.0576
