from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from fake_selection_server import FAST_RETRY, FakeSelectionService

from edgesel.v1 import selection_pb2_grpc
from edgesel_client import EdgeselClient, EdgeselError, FeedbackOutcome


@pytest.fixture
def mtls_target(pki: Path, servicer: FakeSelectionService) -> Iterator[str]:
    credentials = grpc.ssl_server_credentials(
        [((pki / "server.key").read_bytes(), (pki / "server.pem").read_bytes())],
        root_certificates=(pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    selection_pb2_grpc.add_SelectionServiceServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None).wait()


def test_mutual_tls_with_pem_paths_and_bytes(
    pki: Path, mtls_target: str, servicer: FakeSelectionService
) -> None:
    with EdgeselClient(
        mtls_target,
        space="s",
        token="t0k",
        root_certificates=pki / "ca.pem",  # a path ...
        private_key=(pki / "client.key").read_bytes(),  # ... or PEM bytes
        certificate_chain=str(pki / "client.pem"),
        retry=FAST_RETRY,
    ) as client:
        selection = client.select()
        assert selection.feedback(reward=0.5).outcome is FeedbackOutcome.ACCEPTED
    assert servicer.metadata[0]["authorization"] == "Bearer t0k"


def test_server_refuses_a_client_without_certificate(pki: Path, mtls_target: str) -> None:
    with EdgeselClient(mtls_target, space="s", root_certificates=pki / "ca.pem", retry=FAST_RETRY) as client:
        with pytest.raises(EdgeselError) as raised:
            client.select()
    assert raised.value.code is grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_needs_key_and_chain_together(pki: Path) -> None:
    with pytest.raises(ValueError, match="both"):
        EdgeselClient("127.0.0.1:1", private_key=pki / "client.key")
