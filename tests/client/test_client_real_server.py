"""The SDK against a real edgesel-server process (tokens, mutual TLS), sync and asyncio.

scripts/test.sh also runs this file on the oldest Python present with the floor versions of grpcio and
protobuf, and on the newest Python; the server then runs from the development venv (EDGESEL_SERVER_PYTHON).
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from edgesel.v1 import catalog_pb2, catalog_pb2_grpc
from edgesel_client import AsyncEdgeselClient, EdgeselClient, EdgeselError, FeedbackOutcome, RetryPolicy
from tests.hardening.support import ADMIN, DEVICE_A, PHONE, md
from tests.server.serverproc import ServerProcess

NO_RETRY = RetryPolicy(max_attempts=1)
MODELS = {"tiny", "small", "big"}


def _tls(pki: Path) -> dict[str, Path]:
    return {
        "root_certificates": pki / "ca.pem",
        "private_key": pki / "client.key",
        "certificate_chain": pki / "client.pem",
    }


def _total_updates(server: ServerProcess, pki: Path) -> int:
    credentials = grpc.ssl_channel_credentials(
        (pki / "ca.pem").read_bytes(), (pki / "client.key").read_bytes(), (pki / "client.pem").read_bytes()
    )
    with grpc.secure_channel(server.target, credentials) as channel:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        request = catalog_pb2.GetArmStatsRequest(space="vision")
        return stub.GetArmStats(request, metadata=md(ADMIN), timeout=10).total_updates


def test_sync_select_and_feedback(mtls_server: ServerProcess, pki: Path) -> None:
    with EdgeselClient(mtls_server.target, space="vision", token=DEVICE_A, retry=NO_RETRY, **_tls(pki)) as c:
        detected = c.select()  # this machine's detected features: names outside the schema are ignored
        assert detected.model_id in MODELS and not detected.from_cache and detected.event_id
        selection = c.select(device_features=PHONE, include_ranking=True)
        assert selection.model_id in MODELS
        assert {ranked.model_id for ranked in selection.ranking} == MODELS
        assert selection.score == pytest.approx(selection.expected_qoe + selection.exploration_bonus)
        receipt = selection.feedback(latency_ms=40.0, user_rating=4)
        assert receipt.outcome is FeedbackOutcome.ACCEPTED
        again = c.feedback(selection.event_id, latency_ms=40.0, user_rating=4)
        assert again.outcome is FeedbackOutcome.DUPLICATE
        assert detected.feedback(reward=0.5).outcome is FeedbackOutcome.ACCEPTED
    assert _total_updates(mtls_server, pki) == 2


async def test_async_select_and_feedback(mtls_server: ServerProcess, pki: Path) -> None:
    async with AsyncEdgeselClient(
        mtls_server.target, space="vision", token=DEVICE_A, retry=NO_RETRY, **_tls(pki)
    ) as client:
        selection = await client.select(device_features=PHONE)
        assert selection.model_id in MODELS and not selection.from_cache
        receipt = await selection.feedback(reward=0.75)
        assert (receipt.outcome, receipt.reward) == (FeedbackOutcome.ACCEPTED, 0.75)
        again = await client.feedback(selection.event_id, reward=0.75)
        assert again.outcome is FeedbackOutcome.DUPLICATE
    assert _total_updates(mtls_server, pki) == 1


def test_server_errors_reach_the_app(mtls_server: ServerProcess, pki: Path) -> None:
    with EdgeselClient(mtls_server.target, token=DEVICE_A, retry=NO_RETRY, **_tls(pki)) as client:
        with pytest.raises(EdgeselError) as unknown_space:
            client.select("no-such-space", device_features=PHONE)
        assert unknown_space.value.code is grpc.StatusCode.NOT_FOUND
        assert "no-such-space" in unknown_space.value.details
        with pytest.raises(EdgeselError) as bad_feature:
            client.select("vision", device_features={**PHONE, "ram_gb": float("nan")})
        assert bad_feature.value.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "ram_gb" in bad_feature.value.details
    with EdgeselClient(
        mtls_server.target, space="vision", token="not-a-token", retry=NO_RETRY, **_tls(pki)
    ) as c:
        with pytest.raises(EdgeselError) as unauthenticated:
            c.select(device_features=PHONE)
        assert unauthenticated.value.code is grpc.StatusCode.UNAUTHENTICATED
