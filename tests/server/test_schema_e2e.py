"""Categorical features, clipping and the accuracy floor/ceiling end to end: a real edgesel-server process on
loopback, raw stubs and the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_client import EdgeselClient, EdgeselError, RetryPolicy
from tests.server.serverproc import ServerProcess

CONFIG = """
[server]
snapshot_every = 5

[[space]]
name = "labels"

[space.policy]
kind = "hybrid_linucb"
alpha = 0.3

[space.qoe]
weights = { accuracy = 1.0, user_rating = 1.0 }
accuracy_floor = 0.5
accuracy_ceiling = 0.9

[[space.device_features]]
name = "ram_gb"
min = 0.25
max = 64
transform = "log"

[[space.device_features]]
name = "battery_percent"
min = 0
max = 100
default = 100
clip = true

[[space.device_features]]
name = "os"
kind = "categorical"
values = ["android", "linux"]

[[space.device_features]]
name = "form_factor"
kind = "categorical"
values = ["phone", "board"]
default = "phone"
unknown = "other"

[[space.model_features]]
name = "top1"
min = 40
max = 95

[[space.model_features]]
name = "precision"
kind = "categorical"
values = ["fp32", "w8a8"]

[[space.models]]
id = "a"
features = { top1 = 70.0 }
labels = { precision = "fp32" }

[[space.models]]
id = "b"
features = { top1 = 75.0 }
labels = { precision = "w8a8" }

[[space]]
name = "plain"

[[space.device_features]]
name = "ram_gb"
min = 0.25
max = 64

[[space.models]]
id = "only"
"""

PHONE = {"ram_gb": 4.0, "battery_percent": 60.0}
NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edgesel.toml"
    path.write_text(CONFIG)
    return path


@pytest.fixture
def server(config: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """Replaces conftest's server (so its `stubs` fixture talks to this one)."""
    proc = ServerProcess(config, tmp_path / "data").start()
    yield proc
    proc.kill()


def select(stub: sel_grpc.SelectionServiceStub, **kw) -> selection_pb2.SelectResponse:
    kw.setdefault("space", "labels")
    kw.setdefault("device_features", PHONE)
    kw.setdefault("device_labels", {"os": "android"})
    return stub.Select(selection_pb2.SelectRequest(**kw), timeout=10)


def ranking(stub: sel_grpc.SelectionServiceStub, **kw) -> dict[str, tuple[float, float]]:
    r = select(stub, include_ranking=True, **kw)
    return {m.model_id: (m.expected_qoe, m.exploration_bonus) for m in r.ranking}


def arm_stats(cat: cat_grpc.CatalogServiceStub) -> catalog_pb2.GetArmStatsResponse:
    return cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space="labels"), timeout=10)


def state_bytes(cat: cat_grpc.CatalogServiceStub) -> bytes:
    return cat.ExportState(catalog_pb2.ExportStateRequest(space="labels"), timeout=10).state


def test_a_categorical_device_feature_changes_what_the_learner_sees(stubs) -> None:
    s, cat = stubs
    cold_android, cold_linux = ranking(s), ranking(s, device_labels={"os": "linux"})
    # Same norm, both one-hot: a cold learner cannot tell them apart yet.
    assert sorted(cold_android) == sorted(cold_linux)
    for arm, scores in cold_android.items():
        assert scores == pytest.approx(cold_linux[arm], rel=1e-12)
    for _ in range(4):
        r = select(s, eligible_model_ids=["a"])
        fb = s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=1.0), timeout=10)
        assert fb.reward == 1.0
    android, linux = ranking(s), ranking(s, device_labels={"os": "linux"})
    # Android devices taught the learner that "a" is good; a Linux device with the same numbers is another
    # point of the feature space, so it is predicted lower and left more uncertain.
    assert android["a"][0] > linux["a"][0] + 0.05
    assert android["a"][1] < linux["a"][1]
    # An undeclared form factor is the "other" column (unknown = "other"), not an error and not "phone".
    other = ranking(s, device_labels={"os": "android", "form_factor": "car"})
    assert other != android
    # A label the schema does not declare at all is ignored, like an undeclared numeric feature.
    assert ranking(s, device_labels={"os": "android", "gpu_vendor": "mali"}) == android
    assert arm_stats(cat).total_updates == 4


def test_unknown_categorical_value_is_invalid_argument_and_changes_nothing(server, stubs) -> None:
    s, cat = stubs
    r = select(s)
    s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.5), timeout=10)
    before_state, before_stats = state_bytes(cat), arm_stats(cat)
    before_models = cat.ListModels(catalog_pb2.ListModelsRequest(space="labels"), timeout=10)
    cases = {
        "undeclared os": (
            lambda: select(s, device_labels={"os": "tizen"}),
            "device label 'os' = 'tizen' is not one of the allowed values: android, linux",
        ),
        "os as a number": (
            lambda: select(s, device_features={**PHONE, "os": 1.0}, device_labels={}),
            "device feature 'os' is categorical",
        ),
        "missing os": (lambda: select(s, device_labels={}), "missing device feature(s) with no default: os"),
        "number as a label": (
            lambda: select(s, device_labels={"os": "linux", "ram_gb": "lots"}),
            "device feature 'ram_gb' is numeric",
        ),
        "unclipped out of range": (
            lambda: select(s, device_features={**PHONE, "ram_gb": 100.0}),
            "device feature 'ram_gb' = 100 is outside its range",
        ),
        "model with an undeclared precision": (
            lambda: cat.AddModel(
                catalog_pb2.AddModelRequest(
                    space="labels",
                    model=types_pb2.Model(model_id="c", features={"top1": 60}, labels={"precision": "int4"}),
                ),
                timeout=10,
            ),
            "model label 'precision' = 'int4' is not one of the allowed values: fp32, w8a8",
        ),
        "relabel a model": (
            lambda: cat.UpdateModel(
                catalog_pb2.UpdateModelRequest(
                    space="labels", model=types_pb2.Model(model_id="a", labels={"precision": "w8a8"})
                ),
                timeout=10,
            ),
            "labels are fixed once added",
        ),
    }
    for name, (call, words) in cases.items():
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, info.value.details())
        assert words in (info.value.details() or ""), (name, info.value.details())
    assert state_bytes(cat) == before_state, "a rejected request changed the learned state"
    after = arm_stats(cat)
    assert after.policy_version == before_stats.policy_version
    assert [a.n_selections for a in after.arms] == [a.n_selections for a in before_stats.arms]
    assert cat.ListModels(catalog_pb2.ListModelsRequest(space="labels"), timeout=10) == before_models
    assert server.alive()


def test_clip_sends_the_bound_and_reject_stays_the_default(stubs) -> None:
    s, _ = stubs
    at_bound = ranking(s, device_features={**PHONE, "battery_percent": 100.0})
    assert ranking(s, device_features={**PHONE, "battery_percent": 250.0}) == at_bound
    assert ranking(s, device_features={**PHONE, "battery_percent": -3.0}) == ranking(
        s, device_features={**PHONE, "battery_percent": 0.0}
    )
    assert ranking(s, device_features={**PHONE, "battery_percent": 50.0}) != at_bound


def test_accuracy_floor_and_ceiling_shape_the_reward(stubs) -> None:
    s, _ = stubs

    def reward(space: str, **measured: float) -> float:
        kw = {"space": space}
        if space == "plain":
            kw.update(device_features={"ram_gb": 4.0}, device_labels={})
        r = select(s, **kw)
        m = types_pb2.Measurements(**measured)
        return s.Feedback(
            selection_pb2.FeedbackRequest(event_id=r.event_id, measurements=m), timeout=10
        ).reward

    assert reward("labels", accuracy=0.7) == pytest.approx(0.5, abs=1e-12)  # (0.7 - 0.5) / (0.9 - 0.5)
    assert reward("labels", accuracy=0.95) == 1.0
    assert reward("labels", accuracy=0.45) == 0.0
    assert reward("labels", accuracy=0.6, user_rating=3.0) == pytest.approx((0.25 + 0.5) / 2, abs=1e-12)
    assert reward("plain", accuracy=0.7) == pytest.approx(0.7, abs=1e-12)  # defaults: the raw fraction


def test_model_labels_are_served_and_survive_a_kill(config: Path, tmp_path: Path) -> None:
    proc = ServerProcess(config, tmp_path / "data").start()
    new = types_pb2.Model(model_id="c", features={"top1": 80.0}, labels={"precision": "w8a8"})
    try:
        with grpc.insecure_channel(proc.target) as ch:
            s, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
            added = cat.AddModel(catalog_pb2.AddModelRequest(space="labels", model=new), timeout=10).model
            assert dict(added.labels) == {"precision": "w8a8"}
            for _ in range(7):  # past snapshot_every, so the restart reads a snapshot and a log tail
                r = select(s, eligible_model_ids=["c"])
                assert dict(r.model.labels) == {"precision": "w8a8"}
                s.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, reward=0.8), timeout=10)
            before, before_rank = state_bytes(cat), ranking(s)
    finally:
        proc.kill()
    proc = ServerProcess(config, tmp_path / "data").start()
    try:
        with grpc.insecure_channel(proc.target) as ch:
            s, cat = sel_grpc.SelectionServiceStub(ch), cat_grpc.CatalogServiceStub(ch)
            models = cat.ListModels(catalog_pb2.ListModelsRequest(space="labels"), timeout=10).models
            assert {m.model_id: dict(m.labels) for m in models} == {
                "a": {"precision": "fp32"},
                "b": {"precision": "w8a8"},
                "c": {"precision": "w8a8"},
            }
            assert state_bytes(cat) == before
            assert ranking(s) == before_rank
    finally:
        proc.kill()


def test_sdk_sends_labels_detected_and_given(server: ServerProcess) -> None:
    with EdgeselClient(
        server.target, space="labels", retry=NO_RETRY, label_overrides={"os": "linux", "form_factor": "board"}
    ) as client:
        # Detected labels (os, cpu_arch) merged with the overrides; cpu_arch is not in this schema: ignored.
        for _ in range(3):
            client.select(device_features=PHONE, eligible=["a"]).feedback(reward=1.0)
        board = client.select(device_features=PHONE, include_ranking=True)
        phone = client.select(device_features=PHONE, device_labels={"os": "linux"}, include_ranking=True)
        # Without the overrides form_factor takes its default "phone", which the learner has not seen.
        expected = {r.model_id: r.expected_qoe for r in board.ranking}
        assert expected["a"] > {r.model_id: r.expected_qoe for r in phone.ranking}["a"] + 0.05
        with pytest.raises(EdgeselError) as info:
            client.select(device_features=PHONE, device_labels={"os": "tizen"})
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "'os' = 'tizen'" in info.value.details and "android, linux" in info.value.details


def test_list_spaces_describes_categorical_features(stubs) -> None:
    _, cat = stubs
    (space,) = [
        sp for sp in cat.ListSpaces(catalog_pb2.ListSpacesRequest(), timeout=10).spaces if sp.name == "labels"
    ]
    specs = {f.name: f for f in space.device_features}
    os_spec = specs["os"]
    assert (os_spec.transform, list(os_spec.values), os_spec.unknown) == (
        "categorical",
        ["android", "linux"],
        "error",
    )
    assert not os_spec.HasField("default_label")  # required
    form = specs["form_factor"]
    assert (list(form.values), form.unknown, form.default_label) == (["phone", "board"], "other", "phone")
    numeric = [f for f in space.device_features if f.transform != "categorical"]
    assert numeric and all(not f.values and not f.HasField("default_label") for f in numeric)
    assert {f.name for f in space.model_features if f.transform == "categorical"} == {"precision"}
