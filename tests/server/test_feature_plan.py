"""The core's plain-case vectorizer (`_core.FeaturePlan`, core-rs/src/feature_plan.rs) against the schema's
Python code (`FeatureSchema._vector`, the reference): over hypothesis schemas and requests, plain and
perturbed (missing, defaulted, NaN, out of range, clipped, undeclared labels, the wrong map, values of
other types, proto map containers), `vector` gives the same floats bit for bit or the same error, and every
plain request is answered by the core."""

from __future__ import annotations

import copy
import math
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesel.v1 import selection_pb2
from edgesel_server.schema import CategoricalSpec, FeatureSchema, FeatureSpec

VOCABULARY = "abcdefgh"


@st.composite
def numeric_spec(draw: st.DrawFn, name: str) -> FeatureSpec:
    transform = draw(st.sampled_from(["linear", "log", "none"]))
    if transform == "none":
        lo, hi = 0.0, 1.0
    else:
        lo = draw(st.floats(0.001, 1e4, allow_nan=False))
        hi = lo + draw(st.floats(1e-3, 1e6, allow_nan=False))
    default = draw(st.none() | st.floats(lo, hi))
    return FeatureSpec(name, lo, hi, transform, default=default, clip=draw(st.booleans()))


@st.composite
def categorical_spec(draw: st.DrawFn, name: str) -> CategoricalSpec:
    values = tuple(draw(st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=5, unique=True)))
    default = draw(st.none() | st.sampled_from(values))
    return CategoricalSpec(name, values, default=default, unknown=draw(st.sampled_from(["error", "other"])))


@st.composite
def schema_and_request(draw: st.DrawFn) -> tuple[FeatureSchema, dict, dict, bool]:
    """A schema, a request's (values, labels), and whether the request is the plain case."""
    specs: list = []
    values: dict = {}
    labels: dict = {}
    plain = True
    for i in range(draw(st.integers(1, 7))):
        name = f"f{i}"
        if draw(st.booleans()):
            c = draw(categorical_spec(name))
            specs.append(c)
            how = draw(st.sampled_from(["declared"] * 4 + ["absent", "undeclared", "wrong map", "not str"]))
            if how == "declared":
                labels[name] = draw(st.sampled_from(c.values))
            elif how == "absent":
                plain &= c.default is not None
            elif how == "undeclared":
                labels[name] = "zz"
                plain &= c.unknown == "other"
            elif how == "wrong map":
                labels[name] = c.values[0]
                values[name] = 1.0
                plain = False
            else:
                labels[name] = 3
                plain = False
        else:
            f = draw(numeric_spec(name))
            specs.append(f)
            odd = ["absent", "out of range", "not finite", "wrong map", "int", "str", "None"]
            how = draw(st.sampled_from(["in range"] * 4 + odd))
            if how == "in range":
                values[name] = draw(st.floats(f.min, f.max))
            elif how == "absent":
                plain &= f.default is not None
            elif how == "out of range":
                values[name] = draw(st.sampled_from([f.min / 2, f.max * 2, -1.0, f.max + 1e-9 * f.max]))
                plain &= f.clip or f.min <= values[name] <= f.max
            elif how == "not finite":
                values[name] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
                plain = False
            elif how == "wrong map":
                values[name] = f.min
                labels[name] = "a"
                plain = False
            elif how == "int":
                values[name] = int(f.max)
                plain = False
            elif how == "None":
                values[name] = None
                plain &= f.default is not None
            else:
                values[name] = str(f.min)
                plain = False
    return FeatureSchema(specs), values, labels, plain


def outcome(fn, *args):  # noqa: ANN001, ANN201
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - the error itself is compared
        return (type(e), str(e))


def same(a, b) -> bool:  # noqa: ANN001
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.dtype == b.dtype == np.float64
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    return a == b


@settings(max_examples=600, deadline=None)
@given(schema_and_request())
def test_vector_is_the_python_reference_bit_for_bit_or_the_same_error(case) -> None:  # noqa: ANN001
    schema, values, labels, plain = case
    got = outcome(schema.vector, values, labels)
    want = outcome(schema._vector, values, labels)
    assert same(got, want), (got, want)
    fast = schema._plan.vector(values, labels)
    if plain:
        assert fast is not None, "a plain request must be answered by the core"
        assert same(fast, want)


@settings(max_examples=200, deadline=None)
@given(schema_and_request())
def test_proto_maps_read_like_dicts(case) -> None:  # noqa: ANN001
    """What a Select hands over: the request's own map containers (a missing key must not be added)."""
    schema, values, labels, _ = case
    try:
        req = selection_pb2.SelectRequest(device_features=values, device_labels=labels)
    except (TypeError, ValueError):
        return  # not representable in the proto's maps (None, str numbers, int labels)
    before = req.SerializeToString()
    got = outcome(schema.vector, req.device_features, req.device_labels)
    want = outcome(schema._vector, dict(req.device_features), dict(req.device_labels))
    assert same(got, want), (got, want)
    assert req.SerializeToString() == before


def test_a_plain_request_is_answered_by_the_core_and_others_by_python() -> None:
    schema = FeatureSchema(
        [
            FeatureSpec("mem", 1.0, 16.0, "log"),
            CategoricalSpec("soc", ("a", "b"), unknown="other"),
            FeatureSpec("t", 0.0, 1.0, "none", default=0.5),
        ]
    )
    x = schema._plan.vector({"mem": 4.0}, {"soc": "zz"})
    assert x is not None and x.tolist() == [math.log(4.0) / math.log(16.0), 0.0, 0.0, 1.0, 0.5]
    assert len(schema._plan) == len(schema) == 5
    for values, labels in [({}, {"soc": "a"}), ({"mem": 32.0}, {"soc": "a"}), ({"mem": 2.0, "soc": 1.0}, {})]:
        assert schema._plan.vector(values, labels) is None


def test_a_schema_pickles_and_copies_with_a_working_plan() -> None:
    schema = FeatureSchema([FeatureSpec("mem", 1.0, 16.0, "log"), CategoricalSpec("soc", ("a", "b"))])
    want = schema.vector({"mem": 4.0}, {"soc": "b"})
    for twin in (pickle.loads(pickle.dumps(schema)), copy.deepcopy(schema)):
        assert twin._plan is not schema._plan and len(twin._plan) == len(schema)
        got = twin._plan.vector({"mem": 4.0}, {"soc": "b"})
        assert got is not None and got.tobytes() == want.tobytes()
