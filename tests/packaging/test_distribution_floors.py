"""The SDK's declared runtime floors are the ones stamped into the generated code by its generator."""

from __future__ import annotations

import re
from pathlib import Path

import edgesel
from edgesel_server.toml import loads as toml_loads

ROOT = Path(__file__).resolve().parents[2]


def _requirements(pyproject: Path) -> dict[str, str]:
    """name -> the whole requirement string, for the project's runtime dependencies."""
    deps = toml_loads(pyproject.read_text())["project"]["dependencies"]
    return {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0]: dep for dep in deps}


def test_sdk_floors_are_the_generator_stamps() -> None:
    requirements = _requirements(ROOT / "client" / "pyproject.toml")
    assert set(requirements) == {"grpcio", "protobuf"}, "the SDK depends on grpcio and protobuf only"
    assert requirements["grpcio"] == f"grpcio>={edgesel.MIN_GRPCIO}"
    assert requirements["protobuf"] == f"protobuf>={edgesel.MIN_PROTOBUF}"


def test_generator_pin_is_the_stamped_one() -> None:
    pins = dict(
        line.split("==")
        for line in (ROOT / "scripts" / "protoc-requirements.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins["grpcio-tools"] == edgesel.GENERATED_BY_GRPCIO_TOOLS
    assert pins["protobuf"] == edgesel.MIN_PROTOBUF


def test_generated_code_carries_no_newer_runtime_check() -> None:
    # Code from grpcio-tools >= 1.63 refuses older runtimes at import (GRPC_GENERATED_VERSION,
    # ValidateProtobufRuntimeVersion); the committed code must not, or the floors above would be a lie.
    for path in (ROOT / "client" / "edgesel" / "v1").glob("*.py"):
        text = path.read_text()
        assert "GRPC_GENERATED_VERSION" not in text and "ValidateProtobufRuntimeVersion" not in text, path
