"""`edgesel`, the admin CLI, end to end against a real server (admin/device tokens, mutual TLS), every exit
code of a failure included. Most runs call `main()` in this process (the same code path as the console
script, minus process start-up); a few run the installed `edgesel` console script itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from fake_selection_server import unused_port

from edgesel.v1 import catalog_pb2
from edgesel_client import EdgeselClient, FeedbackOutcome, RetryPolicy
from edgesel_client.cli import main
from tests.hardening.support import ADMIN, DEVICE_A, PHONE
from tests.server.serverproc import ServerProcess, write_config


class Cli:
    """Runs `edgesel` with the connection flags of one server; returns (exit code, stdout, stderr)."""

    def __init__(self, capsys: pytest.CaptureFixture[str], target: str, pki: Path | None) -> None:
        self.capsys = capsys
        self.flags = ["--target", target]
        if pki is not None:
            self.flags += ["--tls-ca", str(pki / "ca.pem")]
            self.flags += ["--tls-cert", str(pki / "client.pem"), "--tls-key", str(pki / "client.key")]

    def __call__(self, *argv: str, token: str | None = ADMIN, flags: list[str] | None = None) -> tuple:
        self.capsys.readouterr()
        token_flags = ["--token", token] if token is not None else []
        code = main([*(self.flags if flags is None else flags), *token_flags, *argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *argv: str, **kw) -> dict:
        code, out, err = self("--json", *argv, **kw)
        assert code == 0, err
        return json.loads(out)  # type: ignore[no-any-return]


@pytest.fixture
def cli(mtls_server: ServerProcess, pki: Path, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys, mtls_server.target, pki)


def _traffic(server: ServerProcess, pki: Path, n: int) -> None:
    with EdgeselClient(
        server.target,
        space="vision",
        token=DEVICE_A,
        root_certificates=pki / "ca.pem",
        private_key=pki / "client.key",
        certificate_chain=pki / "client.pem",
        retry=RetryPolicy(max_attempts=1),
    ) as client:
        for _ in range(n):
            assert (
                client.select(device_features=PHONE).feedback(reward=0.6).outcome is FeedbackOutcome.ACCEPTED
            )


def test_spaces_as_a_table_and_as_json(cli: Cli) -> None:
    code, out, _ = cli("spaces")
    assert code == 0
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["SPACE", "POLICY", "ACTIVE", "RETIRED"]
    assert [row.split()[:4] for row in rows] == [
        ["vision", "hybrid_linucb", "3", "0"],
        ["second", "qoe_model", "1", "0"],  # no [space.policy]: the default
    ]
    spaces = {space["name"]: space for space in cli.json("spaces")["spaces"]}
    assert spaces["vision"]["model_feature_names"] == ["top1", "file_size_mb", "quantized"]
    assert spaces["second"]["active_model_count"] == 1


def test_models_add_update_retire(cli: Cli) -> None:
    added = cli.json(
        "models", "add", "vision", "tiny-v2", "-f", "top1=61.5", "-f", "file_size_mb=2.2",
        "-f", "quantized=1", "--version", "1", "--artifact-uri", "file:///models/tiny-v2.tflite",
        "--meta", "format=tflite",
    )["model"]  # fmt: skip
    assert added["features"] == {"top1": 61.5, "file_size_mb": 2.2, "quantized": 1.0}
    code, out, _ = cli("models", "list", "vision")
    assert code == 0 and "tiny-v2" in out and "file:///models/tiny-v2.tflite" in out
    # update changes only what it is given: the artifact URI and the other metadata stay.
    updated = cli.json("models", "update", "vision", "tiny-v2", "--version", "2", "--meta", "owner=ops")[
        "model"
    ]
    assert (updated["version"], updated["artifact_uri"]) == ("2", "file:///models/tiny-v2.tflite")
    assert updated["metadata"] == {"format": "tflite", "owner": "ops"}
    dropped = cli.json("models", "update", "vision", "tiny-v2", "--drop-meta", "format")["model"]
    assert dropped["metadata"] == {"owner": "ops"} and dropped["version"] == "2"
    code, out, _ = cli("models", "retire", "vision", "tiny-v2")
    assert (code, out.strip()) == (0, "retired tiny-v2")
    active = {m["model_id"] for m in cli.json("models", "list", "vision")["models"]}
    everything = {
        m["model_id"]: m["retired"] for m in cli.json("models", "list", "vision", "--all")["models"]
    }
    assert active == {"tiny", "small", "big"}
    assert everything == {"tiny": False, "small": False, "big": False, "tiny-v2": True}


def test_stats_export_reset_import(cli: Cli, mtls_server: ServerProcess, pki: Path, tmp_path: Path) -> None:
    _traffic(mtls_server, pki, 3)
    stats = cli.json("stats", "vision")
    assert stats["total_updates"] == 3 and stats["policy"] == "hybrid_linucb"
    assert sum(arm["n_updates"] for arm in stats["arms"]) == 3
    code, out, _ = cli("stats", "vision")
    assert code == 0 and "3 updates" in out.splitlines()[0] and out.splitlines()[1].startswith("MODEL")
    chosen = next(arm for arm in stats["arms"] if arm["n_updates"] > 0)
    only = cli.json("stats", "vision", "--model", chosen["model_id"])
    assert [arm["model_id"] for arm in only["arms"]] == [chosen["model_id"]]

    saved = tmp_path / "vision.state.json"
    exported = cli.json("export", "vision", "-o", str(saved))
    document = json.loads(saved.read_text())
    assert document["kind"] == "edgesel-state-export" and exported["state_bytes"] > 0
    assert (exported["format"], document["policy"]) == (document["format"], "hybrid_linucb")

    assert cli("reset", "vision")[0] == 2  # refuses without --yes
    assert cli.json("stats", "vision")["total_updates"] == 3
    assert cli.json("reset", "vision", "--yes")["space"] == "vision"
    assert cli.json("stats", "vision")["total_updates"] == 0
    imported = cli.json("import", "vision", str(saved))
    assert imported["policy_version"]
    assert cli.json("stats", "vision")["total_updates"] == 3


def test_not_allowed_exits_4(cli: Cli) -> None:
    code, _, err = cli("spaces", token=None)
    assert code == 4 and "UNAUTHENTICATED" in err
    code, _, err = cli("spaces", token=DEVICE_A)  # a device token may not call CatalogService
    assert code == 4 and "PERMISSION_DENIED" in err
    code, _, err = cli("--json", "spaces", token="wrong-token")
    assert code == 4 and json.loads(err)["error"]["code"] == "UNAUTHENTICATED"


def test_not_found_exits_5(cli: Cli) -> None:
    code, _, err = cli("models", "list", "no-such-space")
    assert code == 5 and "NOT_FOUND" in err and "no-such-space" in err
    assert cli("models", "retire", "vision", "no-such-model")[0] == 5
    code, _, err = cli("models", "update", "vision", "no-such-model", "--version", "9")
    assert code == 5 and "no-such-model" in err
    assert cli("stats", "no-such-space")[0] == 5


def test_refused_requests_exit_6(cli: Cli) -> None:
    code, _, err = cli(
        "models", "add", "vision", "tiny", "-f", "top1=50", "-f", "file_size_mb=1", "-f", "quantized=1"
    )
    assert code == 6, err  # tiny exists already
    code, _, err = cli(
        "models", "add", "vision", "nan-model", "-f", "top1=nan", "-f", "file_size_mb=1", "-f", "quantized=0"
    )
    assert code == 6 and "INVALID_ARGUMENT" in err and "top1" in err
    assert cli.json("spaces")  # the server is fine and the catalog unchanged
    assert {m["model_id"] for m in cli.json("models", "list", "vision", "--all")["models"]} == {
        "tiny",
        "small",
        "big",
    }


def test_unreachable_server_exits_3(cli: Cli, pki: Path) -> None:
    code, _, err = cli("spaces", flags=["--target", f"127.0.0.1:{unused_port()}", "--timeout", "3"])
    assert code == 3 and ("UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err)
    # Mutual TLS without a client certificate: the server ends the handshake.
    code, _, err = cli("spaces", flags=[*cli.flags[:2], "--tls-ca", str(pki / "ca.pem")])
    assert code == 3 and "UNAVAILABLE" in err


def test_report_as_a_table_and_as_json_and_guardrails_lift(
    cli: Cli, mtls_server: ServerProcess, pki: Path
) -> None:
    _traffic(mtls_server, pki, 3)  # reward 0.6 each, no holdout in this space
    report = cli.json("report", "vision")
    assert report["holdout_model"] == "" and report["window_s"] == 3600.0
    pooled = report["since_start"]["pooled"]
    assert pooled["device_class"] == "POOLED" and pooled["lift"] is None
    assert pooled["policy"]["n"] == 3 and pooled["policy"]["mean_qoe"] == pytest.approx(0.6)
    assert pooled["holdout"] == {
        "n": 0, "mean_qoe": None, "p50_latency_ms": None, "p95_latency_ms": None, "failure_rate": None
    }  # fmt: skip
    assert [c["device_class"] for c in report["window"]["classes"]] == ["all"]
    code, out, _ = cli("report", "vision")
    lines = out.splitlines()
    assert code == 0 and "no holdout configured" in lines[0]
    assert lines[1].split()[:4] == ["PERIOD", "CLASS", "GROUP", "N"]
    assert lines[2].split()[:5] == ["since_start", "all", "policy", "3", "0.6"]
    lifted = cli.json("guardrails", "lift", "vision", "tiny", "all")
    assert lifted == {"space": "vision", "model_id": "tiny", "device_class": "all", "lifted": False}
    code, _, err = cli("guardrails", "lift", "vision", "tiny", "")
    assert code == 6 and "device_class" in err


def test_local_problems_exit_1_and_usage_2(cli: Cli, tmp_path: Path) -> None:
    code, _, err = cli("spaces", flags=[*cli.flags[:2], "--tls-ca", str(tmp_path / "missing.pem")])
    assert code == 1 and "missing.pem" in err
    assert cli("import", "vision", str(tmp_path / "missing.json"))[0] == 1
    (tmp_path / "bad.json").write_text('{"kind": "something else"}')
    code, _, err = cli("import", "vision", str(tmp_path / "bad.json"))
    assert code == 1 and "not an `edgesel export` file" in err
    (tmp_path / "bad64.json").write_text('{"kind": "edgesel-state-export", "state_base64": "***"}')
    assert cli("import", "vision", str(tmp_path / "bad64.json"))[0] == 1
    assert cli("export", "vision", "-o", str(tmp_path / "no-such-dir" / "x.json"))[0] == 1
    code, _, err = cli("spaces", flags=[*cli.flags[:2], "--tls-cert", str(tmp_path / "c.pem")])
    assert code == 2 and "both" in err
    with pytest.raises(SystemExit) as usage:
        cli("models", "add", "vision", "m", "-f", "top1")  # not NAME=NUMBER
    assert usage.value.code == 2
    with pytest.raises(SystemExit) as unknown:
        cli("frobnicate")
    assert unknown.value.code == 2


def test_a_corrupted_state_file_is_refused_by_the_server(cli: Cli, tmp_path: Path) -> None:
    saved = tmp_path / "state.json"
    cli.json("export", "vision", "-o", str(saved))
    document = json.loads(saved.read_text())
    document["state_base64"] = "AAAA" + document["state_base64"][4:]
    saved.write_text(json.dumps(document))
    code, _, err = cli("import", "vision", str(saved))
    assert code == 6 and "INVALID_ARGUMENT" in err


def test_other_server_errors_exit_8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    # One call allowed, then RESOURCE_EXHAUSTED for a long while.
    config.write_text(
        config.read_text().replace("[server]\n", "[server]\nrate_limit_per_s = 0.001\nrate_burst = 1\n")
    )
    proc = ServerProcess(config, tmp_path / "data").start()
    try:
        cli = Cli(capsys, proc.target, None)
        assert cli("spaces", token=None)[0] == 0
        code, _, err = cli("spaces", token=None)
        assert code == 8 and "RESOURCE_EXHAUSTED" in err
    finally:
        proc.kill()


# -- google.rpc.ErrorInfo: a server that attaches one (edgesel may, or not) ------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    """One protobuf field, written by hand so the test does not share the decoder's message classes."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _status_with_error_info(reason: str) -> bytes:
    error_info = (
        _field(1, reason.encode())
        + _field(2, b"edgesel.dev")
        + _field(3, _field(1, b"space") + _field(2, b"x"))
    )
    retry_info = _field(1, b"type.googleapis.com/google.rpc.RetryInfo") + _field(2, _field(1, _field(1, 3)))
    packed = _field(1, b"type.googleapis.com/google.rpc.ErrorInfo") + _field(2, error_info)
    return _field(1, 5) + _field(2, b"unknown space 'x'") + _field(3, retry_info) + _field(3, packed)


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple) -> None:
        self.code, self.details, self.trailing_metadata = code, details, trailing


@pytest.fixture
def details_server() -> Iterator[tuple[str, dict]]:
    """A real gRPC server whose CatalogService.ListSpaces fails NOT_FOUND with `state["details"]` attached."""
    state: dict = {"details": b""}

    def list_spaces(request: catalog_pb2.ListSpacesRequest, context: grpc.ServicerContext) -> None:
        trailing = (("grpc-status-details-bin", state["details"]),) if state["details"] else ()
        context.abort_with_status(_Status(grpc.StatusCode.NOT_FOUND, "unknown space 'x'", trailing))

    handler = grpc.unary_unary_rpc_method_handler(
        list_spaces,
        request_deserializer=catalog_pb2.ListSpacesRequest.FromString,
        response_serializer=catalog_pb2.ListSpacesResponse.SerializeToString,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("edgesel.v1.CatalogService", {"ListSpaces": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", state
    server.stop(grace=None).wait()


def test_error_info_reason_is_printed(
    details_server: tuple[str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    target, state = details_server
    cli = Cli(capsys, target, None)
    state["details"] = _status_with_error_info("SPACE_NOT_FOUND")
    code, _, err = cli("spaces")
    assert code == 5 and "NOT_FOUND: unknown space 'x' [reason: SPACE_NOT_FOUND]" in err
    code, _, err = cli("--json", "spaces")
    error = json.loads(err)["error"]
    assert (code, error["reason"], error["domain"], error["metadata"]) == (
        5,
        "SPACE_NOT_FOUND",
        "edgesel.dev",
        {"space": "x"},
    )


@pytest.mark.parametrize(
    "details", [b"", b"\xff\xff\xff", _field(3, b"\x0a\x03abc")], ids=["none", "garbage", "no-error-info"]
)
def test_missing_or_broken_details_still_give_status_and_message(
    details: bytes, details_server: tuple[str, dict], capsys: pytest.CaptureFixture[str]
) -> None:
    target, state = details_server
    state["details"] = details
    code, _, err = Cli(capsys, target, None)("--json", "spaces")
    assert code == 5 and json.loads(err)["error"] == {"code": "NOT_FOUND", "message": "unknown space 'x'"}


# -- the installed console script -----------------------------------------------------------------------


def test_console_script(mtls_server: ServerProcess, pki: Path) -> None:
    script = Path(sys.executable).parent / "edgesel"
    tls = [
        "--tls-ca",
        str(pki / "ca.pem"),
        "--tls-cert",
        str(pki / "client.pem"),
        "--tls-key",
        str(pki / "client.key"),
    ]
    env = {**os.environ, "EDGESEL_TOKEN": ADMIN, "EDGESEL_TARGET": mtls_server.target}
    done = subprocess.run(
        [str(script), *tls, "--json", "spaces"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert [space["name"] for space in json.loads(done.stdout)["spaces"]] == ["vision", "second"]
    env["EDGESEL_TOKEN"] = DEVICE_A
    done = subprocess.run([str(script), *tls, "spaces"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 4 and "PERMISSION_DENIED" in done.stderr
