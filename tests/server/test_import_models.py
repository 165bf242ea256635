"""ImportModels: many models added and updated as one event of the space's log, all or nothing; replayed
after a kill -9 like any other event."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_server.config import load_config
from edgesel_server.space import SpaceRuntime
from edgesel_server.store import base as ev
from edgesel_server.store.base import LogEvent
from tests.rpc_status import refusal
from tests.server.serverproc import ServerProcess, write_config

C = grpc.StatusCode
PHONE = {"ram_gb": 6.0, "has_npu": 1.0, "battery_percent": 80.0}


def model(model_id: str, top1: float = 66.0, **kw) -> types_pb2.Model:
    return types_pb2.Model(
        model_id=model_id, features={"top1": top1, "file_size_mb": 5.0, "quantized": 1.0}, **kw
    )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(write_config(tmp_path), tmp_path / "data").start()
    yield proc
    proc.kill()


def stubs(target: str) -> tuple[cat_grpc.CatalogServiceStub, sel_grpc.SelectionServiceStub]:
    channel = grpc.insecure_channel(target)
    return cat_grpc.CatalogServiceStub(channel), sel_grpc.SelectionServiceStub(channel)


def catalog_and_state(cat: cat_grpc.CatalogServiceStub) -> tuple:
    listed = cat.ListModels(catalog_pb2.ListModelsRequest(space="vision", include_retired=True), timeout=10)
    exported = cat.ExportState(catalog_pb2.ExportStateRequest(space="vision"), timeout=10)
    return (
        [m.SerializeToString(deterministic=True) for m in listed.models],
        exported.state,
        exported.policy_version,
    )


def logged_kinds(server: ServerProcess) -> list[str]:
    """The kinds of the space's events in the server's SQLite log (read-only while it runs: WAL)."""
    with contextlib.closing(
        sqlite3.connect(f"file:{server.data_dir / 'edgesel.sqlite3'}?mode=ro", uri=True)
    ) as conn:  # `with` alone does not close it
        return [k for (k,) in conn.execute("SELECT kind FROM events WHERE space = 'vision' ORDER BY seq")]


def test_import_is_one_event_and_is_replayed_after_a_kill(tmp_path: Path, server: ServerProcess) -> None:
    cat, sel = stubs(server.target)
    logged = logged_kinds(server)
    request = catalog_pb2.ImportModelsRequest(
        space="vision",
        add=[model("m1", metadata={"k": "v"}), model("m2", top1=80.0, artifact_uri="file:///m2")],
        update=[types_pb2.Model(model_id="tiny", version="2", artifact_uri="file:///tiny-v2")],
    )
    response = cat.ImportModels(request, timeout=10)
    assert [m.model_id for m in response.models] == ["m1", "m2", "tiny"]
    assert logged_kinds(server) == [*logged, "import_models"]  # one event for the three models
    tiny = response.models[2]
    assert (tiny.version, tiny.artifact_uri, dict(tiny.features)["top1"]) == ("2", "file:///tiny-v2", 58.0)
    after = catalog_and_state(cat)

    server.kill()
    again = ServerProcess(server.config, server.data_dir).start()
    try:
        cat, sel = stubs(again.target)
        assert catalog_and_state(cat) == after
        choice = sel.Select(
            selection_pb2.SelectRequest(space="vision", device_features=PHONE, eligible_model_ids=["m2"]),
            timeout=10,
        )
        assert (choice.model.model_id, choice.model.artifact_uri) == ("m2", "file:///m2")
    finally:
        again.kill()


@pytest.mark.parametrize(
    ("add", "update", "expected"),
    [
        ([model("ok"), model("tiny")], [], (C.ALREADY_EXISTS, "MODEL_EXISTS")),
        ([model("ok"), model("ok")], [], (C.ALREADY_EXISTS, "MODEL_EXISTS")),
        ([model("ok"), model("hot", top1=99.0)], [], (C.INVALID_ARGUMENT, "INVALID_MODEL")),
        ([model("ok")], [types_pb2.Model(model_id="nope", version="2")], (C.NOT_FOUND, "MODEL_UNKNOWN")),
        ([model("ok")], [model("tiny", top1=60.0)], (C.INVALID_ARGUMENT, "INVALID_MODEL")),
        ([model("ok", metadata={"x" * 200: "v"})], [], (C.INVALID_ARGUMENT, "LIMIT_EXCEEDED")),
        ([], [], (C.INVALID_ARGUMENT, "INVALID_ARGUMENT")),
    ],
    ids=[
        "existing-id",
        "twice",
        "out-of-range",
        "unknown-update",
        "features-changed",
        "metadata-key",
        "empty",
    ],
)
def test_a_refused_import_changes_nothing(server: ServerProcess, add, update, expected) -> None:
    cat, _ = stubs(server.target)
    before = catalog_and_state(cat)
    request = catalog_pb2.ImportModelsRequest(space="vision", add=add, update=update)
    assert refusal(lambda: cat.ImportModels(request, timeout=10)) == expected
    assert catalog_and_state(cat) == before


def test_an_import_that_lost_a_race_is_applied_as_nothing(tmp_path: Path) -> None:
    """A change that reached the log between the engine's check and the import's event (a concurrent
    AddModel, another replica) makes the whole import a no-op, on every replica alike (same log, same
    verdict), and the engine that appended it hears why."""
    cfg = load_config(write_config(tmp_path))
    space = SpaceRuntime(cfg.spaces[0], cfg)
    first = {"id": "m1", "features": {"top1": 60.0, "file_size_mb": 5.0, "quantized": 1.0}}
    space.apply(LogEvent("vision", ev.ADD_MODEL, model_id="m1", payload=json.dumps(first).encode(), seq=1))
    raced = {
        "add": [
            {"id": "m0", "features": first["features"]},
            {**first, "features": {**first["features"], "top1": 70}},
        ],
        "update": [{"id": "m1", "version": "9", "artifact_uri": None, "metadata": None}],
    }
    space.apply(LogEvent("vision", ev.IMPORT_MODELS, payload=json.dumps(raced).encode(), seq=2))
    assert [m.id for m in space.models(include_retired=True)] == ["m1"]
    assert space.model("m1").features["top1"] == 60.0 and space.model("m1").version == ""
    assert "m1" in space.rejected_imports[2] and space.policy_version == "2"
