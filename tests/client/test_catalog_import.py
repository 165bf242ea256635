"""`edgesel models import` end to end against a real server: a CSV with a column mapping, an AI Hub suite
(the real qai-hub-models excerpts of tests/sim/fixtures/aihub, as a folder and as a wheel), ONNX files made
here with onnx.helper; the dry-run diff changes nothing; bad inputs name their row and column; an import is
one event in the server's log."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, catalog_pb2_grpc, types_pb2
from edgesel_client.cli import EXIT_LOCAL_ERROR, EXIT_OK, EXIT_REJECTED, main
from tests.server.serverproc import ServerProcess

AIHUB_FIXTURE = Path(__file__).resolve().parents[1] / "sim" / "fixtures" / "aihub"

CONFIG = """
[server]
snapshot_every = 1000

[[space]]
name = "catalog"

[space.policy]
kind = "hybrid_linucb"

[[space.device_features]]
name = "ram_gb"
min = 0.25
max = 64

[[space.model_features]]
name = "top1"
min = 40
max = 95

[[space.model_features]]
name = "num_params_m"
min = 0.0001
max = 500
transform = "log"

[[space.model_features]]
name = "file_size_mb"
min = 0.0001
max = 2000
transform = "log"

[[space.model_features]]
name = "input_size"
min = 32
max = 640
default = 224

[[space.model_features]]
name = "quantized"
min = 0
max = 1
default = 0

[[space.model_features]]
name = "activation_16bit"
min = 0
max = 1
default = 1

[[space.model_features]]
name = "precision"
kind = "categorical"
values = ["float", "w8a8", "w8a16", "w8a16_mixed_int16"]
default = "float"

[[space.models]]
id = "base"
version = "1"
features = { top1 = 70.0, num_params_m = 5.0, file_size_mb = 20.0 }
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    config = tmp_path / "edgesel.toml"
    config.write_text(CONFIG)
    proc = ServerProcess(config, tmp_path / "data").start()
    yield proc
    proc.kill()


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], server: ServerProcess) -> None:
        self.capsys = capsys
        self.server = server

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--target", self.server.target, *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def imports(self, *argv: str) -> tuple[int, str, str]:
        return self("models", "import", "--space", "catalog", *argv)

    def json_import(self, *argv: str) -> dict:
        code, out, err = self("--json", "models", "import", "--space", "catalog", *argv)
        assert code == EXIT_OK, err
        return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], server: ServerProcess) -> Cli:
    return Cli(capsys, server)


@pytest.fixture
def catalog(server: ServerProcess) -> Iterator[catalog_pb2_grpc.CatalogServiceStub]:
    with grpc.insecure_channel(server.target) as channel:
        yield catalog_pb2_grpc.CatalogServiceStub(channel)


def _models(stub: catalog_pb2_grpc.CatalogServiceStub) -> dict[str, types_pb2.Model]:
    response = stub.ListModels(
        catalog_pb2.ListModelsRequest(space="catalog", include_retired=True), timeout=10
    )
    return {m.model_id: m for m in response.models}


def _state(stub: catalog_pb2_grpc.CatalogServiceStub) -> tuple:
    """Everything an import could change: the catalog and the learned state with its version."""
    exported = stub.ExportState(catalog_pb2.ExportStateRequest(space="catalog"), timeout=10)
    models = sorted(m.SerializeToString(deterministic=True) for m in _models(stub).values())
    return exported.state, exported.policy_version, models


def _logged_kinds(server: ServerProcess) -> list[str]:
    """The kinds of the events in the server's SQLite log (read-only, while it runs: WAL allows that)."""
    db = server.data_dir / "edgesel.sqlite3"
    with contextlib.closing(
        sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    ) as conn:  # `with` alone does not close it
        return [
            row[0] for row in conn.execute("SELECT kind FROM events WHERE space = 'catalog' ORDER BY seq")
        ]


CSV = """id,top1,params,size,quantized,precision,version,uri,license
mnv2,71.9,3.49,13.3,0,float,2024-05,https://cdn.example/mnv2.tflite,apache-2.0
mnv2-q,70.2,3.49,4.39,1,w8a8,2024-05,https://cdn.example/mnv2-q.tflite,apache-2.0
r50,76.1,25.5,97.4,,,,,
"""
HEAD = "id,top1,num_params_m,file_size_mb"
CSV_MAP = "params=num_params_m,size=file_size_mb,uri=artifact_uri,license=meta:license"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_import_gives_the_expected_catalog_in_one_logged_change(cli, catalog, server, tmp_path):
    source = _write(tmp_path / "models.csv", CSV)
    before = catalog.ExportState(catalog_pb2.ExportStateRequest(space="catalog"), timeout=10).policy_version
    kinds_before = _logged_kinds(server)

    result = cli.json_import("--csv", str(source), "--map", CSV_MAP)
    assert result["added"] == ["mnv2", "mnv2-q", "r50"]
    assert (result["changed"], result["conflicts"], result["applied"]) == ([], [], True)

    models = _models(catalog)
    assert sorted(models) == ["base", "mnv2", "mnv2-q", "r50"]
    q = models["mnv2-q"]
    assert dict(q.features) == {
        "top1": 70.2, "num_params_m": 3.49, "file_size_mb": 4.39, "quantized": 1.0,
    }  # fmt: skip
    assert dict(q.labels) == {"precision": "w8a8"}
    assert (q.version, q.artifact_uri, dict(q.metadata)) == (
        "2024-05", "https://cdn.example/mnv2-q.tflite", {"license": "apache-2.0"},
    )  # fmt: skip
    # Empty cells are "not given": the schema's defaults apply on the server (quantized 0, precision float).
    r50 = models["r50"]
    assert dict(r50.features) == {"top1": 76.1, "num_params_m": 25.5, "file_size_mb": 97.4}
    assert (dict(r50.labels), r50.version, r50.artifact_uri, dict(r50.metadata)) == ({}, "", "", {})

    # One change: one event in the log; the policy version is the new event's.
    assert _logged_kinds(server) == [*kinds_before, "import_models"]
    assert int(result["policy_version"]) > int(before)

    # The same file again: everything unchanged, nothing sent.
    again = cli.json_import("--csv", str(source), "--map", CSV_MAP)
    assert (again["added"], again["changed"], again["applied"]) == ([], [], False)
    assert again["unchanged"] == ["mnv2", "mnv2-q", "r50"]
    assert _logged_kinds(server) == [*kinds_before, "import_models"]


def test_reimport_updates_version_uri_and_metadata_only(cli, catalog, server, tmp_path):
    cli.json_import("--csv", str(_write(tmp_path / "a.csv", CSV)), "--map", CSV_MAP)
    changed = CSV.replace(
        "2024-05,https://cdn.example/mnv2.tflite", "2024-09,https://cdn.example/mnv2-v2.tflite"
    )
    result = cli.json_import("--csv", str(_write(tmp_path / "b.csv", changed)), "--map", CSV_MAP)
    assert result["changed"] == [{"model_id": "mnv2", "fields": ["version", "artifact_uri"]}]
    assert result["unchanged"] == ["mnv2-q", "r50"]
    mnv2 = _models(catalog)["mnv2"]
    assert (mnv2.version, mnv2.artifact_uri) == ("2024-09", "https://cdn.example/mnv2-v2.tflite")
    assert dict(mnv2.metadata) == {"license": "apache-2.0"}
    assert _logged_kinds(server)[-2:] == ["import_models", "import_models"]


def test_dry_run_shows_the_diff_and_changes_nothing(cli, catalog, tmp_path):
    cli.json_import("--csv", str(_write(tmp_path / "a.csv", CSV)), "--map", CSV_MAP)
    edited = CSV.replace("2024-05,https://cdn.example/mnv2.tflite", "2024-09,https://cdn.example/mnv2.tflite")
    edited += "new,60,1,2,1,w8a16,,,\n"
    source = _write(tmp_path / "b.csv", edited)
    before = _state(catalog)

    result = cli.json_import("--csv", str(source), "--map", CSV_MAP, "--dry-run")
    assert (result["dry_run"], result["applied"]) == (True, False)
    assert result["added"] == ["new"]
    assert result["changed"] == [{"model_id": "mnv2", "fields": ["version"]}]
    assert result["unchanged"] == ["mnv2-q", "r50"]
    assert _state(catalog) == before

    code, out, _ = cli.imports("--csv", str(source), "--map", CSV_MAP, "--dry-run")
    assert code == EXIT_OK
    lines = [line.split() for line in out.splitlines()]
    assert [
        "add",
        "new",
        "file_size_mb=2",
        "num_params_m=1",
        "precision=w8a16",
        "quantized=1",
        "top1=60",
    ] in lines
    assert ["change", "mnv2", "version"] in lines and ["unchanged", "r50"] in lines
    assert "1 to add, 1 to change, 2 unchanged, 0 conflicting" in out and "dry run: nothing changed" in out
    assert _state(catalog) == before

    # A conflict in a dry run: listed, exit 6 (the real import would be refused), still nothing changed.
    conflicting = _write(tmp_path / "c.csv", HEAD + "\nbase,71,5,20\n")
    code, out, err = cli.imports("--csv", str(conflicting), "--dry-run")
    assert code == EXIT_REJECTED
    assert "would conflict" in err and "base" in err and "top1 70.0 -> 71.0" in err
    assert ["conflict", "base", "features", "are", "fixed"] == out.splitlines()[1].split()[:5]
    assert _state(catalog) == before


@pytest.mark.parametrize(
    ("text", "map_", "expected"),
    [
        (HEAD + ",colour\na,70,1,2,red\n", None, "column 'colour' is not a model feature"),
        (HEAD + "\na,70,1,2\nb,99.5,1,2\n", None, "row 2 (line 3), column 'top1': 99.5"),
        ("id,acc,num_params_m,file_size_mb\na,70,1,2\nb,x,1,2\n", "acc=top1", "column 'acc': not a number"),
        (HEAD + "\na,70,1,2\na,71,1,2\n", None, "row 2 (line 3): model id 'a' again"),
        (HEAD + ",precision\na,70,1,2,int4\n", None, "column 'precision': 'int4' is not"),
        ("id,num_params_m,file_size_mb\na,1,2\n", None, "row 1 (line 2): no value for the required"),
        ("top1,num_params_m,file_size_mb\n70,1,2\n", None, "no id column"),
        (HEAD + "\na,70,1,2\n", "typo=top1", "column 'typo' does not exist"),
        (HEAD + "\na,70,1,0\n", None, "column 'file_size_mb': 0 is outside"),
        (HEAD + ",acc\na,70,1,2,71\n", "acc=top1", "columns 'top1', 'acc' all go to 'top1'"),
    ],
    ids=["unknown-column", "out-of-range", "not-a-number", "duplicate-id", "bad-label", "missing", "no-id",
         "bad-map", "log-zero", "two-columns-one-feature"],
)  # fmt: skip
def test_bad_csv_is_refused_before_anything_is_sent(cli, catalog, tmp_path, text, map_, expected):
    before = _state(catalog)
    source = _write(tmp_path / "bad.csv", text)
    code, _, err = cli.imports("--csv", str(source), *(["--map", map_] if map_ else []))
    assert code == EXIT_LOCAL_ERROR
    assert "nothing imported" in err and expected in err, err
    assert _state(catalog) == before


def test_a_default_given_explicitly_is_no_conflict(cli, catalog, tmp_path):
    """`base` was added without quantized, precision: giving their defaults (0, float) is the same model."""
    text = HEAD + ",quantized,precision,version\nbase,70,5,20,0,float,1\n"
    result = cli.json_import("--csv", str(_write(tmp_path / "d.csv", text)))
    assert (result["unchanged"], result["conflicts"]) == (["base"], [])


def test_conflicting_existing_id_is_refused_whole(cli, catalog, tmp_path):
    before = _state(catalog)
    text = HEAD + "\nfresh,60,1,2\nbase,70,5,25\n"
    code, out, err = cli(
        "--json", "models", "import", "--space", "catalog", "--csv", str(_write(tmp_path / "c.csv", text))
    )
    assert code == EXIT_REJECTED
    error = json.loads(err)["error"]
    assert error["conflicts"][0]["model_id"] == "base"
    assert "file_size_mb 20.0 -> 25.0" in error["conflicts"][0]["reason"]
    assert error["added"] == ["fresh"]
    assert json.loads(out)["conflicts"] == error["conflicts"]  # the diff on stdout, the refusal on stderr
    assert _state(catalog) == before  # "fresh" was not added either


def _wheel_of_fixture(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as wheel:
        for f in sorted(AIHUB_FIXTURE.rglob("*.yaml")):
            wheel.write(f, str(f.relative_to(AIHUB_FIXTURE)))
    return path


# What tests/sim/fixtures/aihub says (its perf.yaml, numerics.yaml and manifest.yaml, read by eye).
RESNET50_W8A8_FEATURES = {
    "top1": 75.7, "num_params_m": 25.5, "file_size_mb": 25.1, "input_size": 224.0, "quantized": 1.0,
    "activation_16bit": 0.0,
}  # fmt: skip
RESNET50_W8A8_LATENCY = {
    "Dragonwing RB3 Gen 2 Vision Kit": 2.96,
    "SA8255P ADP": 1.086,
    "Samsung Galaxy S25": 0.534,
}


@pytest.mark.parametrize("as_wheel", [False, True], ids=["folder", "wheel"])
def test_aihub_suite_gives_one_variant_per_model_and_precision(cli, catalog, tmp_path, as_wheel):
    if as_wheel:
        source = _wheel_of_fixture(tmp_path / "qai_hub_models-0.65.0-py3-none-any.whl")
    else:
        source = AIHUB_FIXTURE
    result = cli.json_import("--aihub", str(source))
    assert result["added"] == [
        "mobilenet_v3_small:float", "mobilenet_v3_small:w8a16_mixed_int16", "resnet50:float", "resnet50:w8a8",
    ]  # fmt: skip
    # openai_clip is not an ImageNet classifier; regnet_y_800mf's manifest has no parameter count.
    assert [s["model"] for s in result["skipped"]] == ["openai_clip", "regnet_y_800mf"]

    models = _models(catalog)
    r50q = models["resnet50:w8a8"]
    assert dict(r50q.features) == RESNET50_W8A8_FEATURES
    assert dict(r50q.labels) == {"precision": "w8a8"}
    assert r50q.version == ("qai-hub-models-0.65.0" if as_wheel else "")
    meta = dict(r50q.metadata)
    assert json.loads(meta["aihub_latency_ms.qnn_dlc"]) == RESNET50_W8A8_LATENCY
    assert (meta["model"], meta["precision"], meta["license"]) == ("resnet50", "w8a8", "bsd-3-clause")
    assert "aihub_latency_dropped" not in meta
    # w8a16_mixed_int16 stores no size of its own in the manifest: a quarter of the float size.
    small_q = models["mobilenet_v3_small:w8a16_mixed_int16"]
    assert small_q.metadata["file_size_source"] == "estimate: float size / 4 (8-bit weights)"
    assert small_q.features["activation_16bit"] == 1.0


def test_aihub_map_override_and_model_filter(cli, catalog):
    # --map sends top1 to metadata instead: the space's required top1 then comes from --feature.
    result = cli.json_import(
        "--aihub",
        str(AIHUB_FIXTURE),
        "--models",
        "resnet50",
        "--map",
        "top1=meta:top1",
        "--feature",
        "top1=50",
    )
    assert result["added"] == ["resnet50:float", "resnet50:w8a8"]
    r50q = _models(catalog)["resnet50:w8a8"]
    assert (r50q.features["top1"], r50q.metadata["top1"]) == (50.0, "75.7")


def test_aihub_unknown_model_is_refused(cli, catalog):
    before = _state(catalog)
    code, _, err = cli.imports("--aihub", str(AIHUB_FIXTURE), "--models", "resnet5")
    assert code == EXIT_LOCAL_ERROR and "model 'resnet5' is not in the suite" in err
    assert _state(catalog) == before


def _tiny_onnx(path: Path, *, top1: str | None = "61.5", side: int = 32) -> Path:
    """A real ONNX classifier: Conv 3->8 (3x3, bias), global pooling, Gemm 8->10 (bias): 216 + 8 + 80 + 10
    = 314 parameters."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "conv_w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
        "conv_b": np.zeros(8, np.float32),
        "fc_w": rng.standard_normal((10, 8)).astype(np.float32),
        "fc_b": np.zeros(10, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        initializer=[numpy_helper.from_array(w, name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    if top1 is not None:
        helper.set_model_props(model, {"top1": top1})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_files_give_parameters_and_size(cli, catalog, tmp_path):
    a = _tiny_onnx(tmp_path / "tiny-a.onnx")
    b = _tiny_onnx(tmp_path / "tiny-b.onnx", top1="64", side=64)
    result = cli.json_import("--onnx", str(a), str(b))
    assert result["added"] == ["tiny-a", "tiny-b"]
    models = _models(catalog)
    for path, top1, side in ((a, 61.5, 32.0), (b, 64.0, 64.0)):
        m = models[path.stem]
        size = path.stat().st_size
        assert dict(m.features) == {
            "num_params_m": 314 / 1e6, "file_size_mb": size / 2**20, "top1": top1, "input_size": side,
            "quantized": 0.0,
        }  # fmt: skip
        assert dict(m.metadata) == {"format": "onnx", "params": "314", "bytes": str(size)}


def test_onnx_without_a_required_feature_names_it(cli, catalog, tmp_path):
    before = _state(catalog)
    path = _tiny_onnx(tmp_path / "plain.onnx", top1=None)
    code, _, err = cli.imports("--onnx", str(path))
    assert code == EXIT_LOCAL_ERROR and "plain.onnx: no value for the required feature 'top1'" in err
    code, _, err = cli.imports("--onnx", str(_write(tmp_path / "junk.onnx", "not a model")))
    assert code == EXIT_LOCAL_ERROR and "junk.onnx: not an ONNX model" in err
    assert _state(catalog) == before
    assert cli.json_import("--onnx", str(path), "--feature", "top1=55")["added"] == ["plain"]


def test_latencies_over_the_metadata_limit_drop_devices_and_say_how_many():
    """A suite profiled on more devices than 16 KiB of metadata holds: the JSON keeps a prefix of the
    devices (name order), `aihub_latency_dropped` counts the others, and the whole stays within the limit."""
    from edgesel_client.catalog_import import sources
    from edgesel_client.catalog_import.rows import MAX_METADATA_BYTES, metadata_problem

    latencies = {f"device {i:04d} " + "x" * 100: 1.0 + i / 1000 for i in range(400)}
    entries = sources._latency_metadata(latencies, MAX_METADATA_BYTES - 300)
    kept = json.loads(entries[sources.AIHUB_LATENCY_KEY])
    dropped = int(entries[sources.AIHUB_LATENCY_DROPPED_KEY])
    assert 0 < len(kept) < 400 and len(kept) + dropped == 400
    assert list(kept) == sorted(latencies)[: len(kept)]
    assert sum(len(k.encode()) + len(v.encode()) for k, v in entries.items()) <= MAX_METADATA_BYTES - 300
    assert metadata_problem(entries) is None
    # One more device would not have fitted.
    one_more = dict(sorted(latencies.items())[: len(kept) + 1])
    assert len(sources.compact_json(one_more)) + len(sources.AIHUB_LATENCY_KEY) > MAX_METADATA_BYTES - 300
