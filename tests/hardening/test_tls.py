"""TLS and mutual TLS on a real server process, through the SDK (certificates made at test time)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from edgesel_client import EdgeselClient, EdgeselError, FeedbackOutcome, RetryPolicy
from tests.hardening.support import (
    ADMIN,
    DEVICE_A,
    PHONE,
    code_of,
    start_tls_server,
    stubs_for,
)

NO_RETRY = RetryPolicy(max_attempts=1)


@pytest.mark.usefixtures("admin_env")
def test_tls_with_tokens(tmp_path: Path, pki: Path) -> None:
    proc = start_tls_server(tmp_path, pki, mutual=False)
    try:
        with EdgeselClient(
            proc.target, space="vision", token=DEVICE_A, root_certificates=pki / "ca.pem", retry=NO_RETRY
        ) as client:
            selection = client.select(device_features=PHONE)
            assert selection.feedback(reward=0.7).outcome is FeedbackOutcome.ACCEPTED
        creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
        with stubs_for(proc.target, creds) as s:
            assert s.total_updates(token=ADMIN) == 1
            assert code_of(lambda: s.select(token=None)) == grpc.StatusCode.UNAUTHENTICATED
        # A plaintext client cannot talk to a TLS port.
        with stubs_for(proc.target) as s:
            assert code_of(lambda: s.select(DEVICE_A)) == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.kill()


@pytest.mark.usefixtures("admin_env")
def test_mutual_tls_requires_a_client_certificate(tmp_path: Path, pki: Path) -> None:
    proc = start_tls_server(tmp_path, pki, mutual=True)
    try:
        with EdgeselClient(
            proc.target,
            space="vision",
            token=DEVICE_A,
            root_certificates=pki / "ca.pem",
            private_key=pki / "client.key",
            certificate_chain=pki / "client.pem",
            retry=NO_RETRY,
        ) as client:
            assert client.select(device_features=PHONE).model_id in {"tiny", "small", "big"}
        with EdgeselClient(
            proc.target, space="vision", token=DEVICE_A, root_certificates=pki / "ca.pem", retry=NO_RETRY
        ) as client:
            with pytest.raises(EdgeselError) as raised:
                client.select(device_features=PHONE)
            assert raised.value.code is grpc.StatusCode.UNAVAILABLE
    finally:
        proc.kill()
