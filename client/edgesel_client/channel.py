"""Channel security: TLS (optionally mutual) credentials and the bearer-token metadata."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Union

import grpc

PemSource = Union[bytes, str, "os.PathLike[str]"]
"""PEM data as bytes, or the path of a PEM file."""

DEFAULT_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    # Edge devices lose the network often; come back within seconds of it returning, not minutes.
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5000),
)


def read_pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    with open(source, "rb") as pem_file:
        return pem_file.read()


def channel_credentials(
    root_certificates: PemSource | None,
    private_key: PemSource | None,
    certificate_chain: PemSource | None,
) -> grpc.ChannelCredentials:
    """TLS credentials; ``root_certificates=None`` uses the system roots, key + chain enable mutual TLS."""
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("mutual TLS needs both private_key and certificate_chain")
    return grpc.ssl_channel_credentials(
        root_certificates=read_pem(root_certificates),
        private_key=read_pem(private_key),
        certificate_chain=read_pem(certificate_chain),
    )


def wants_tls(
    secure: bool | None,
    root_certificates: PemSource | None,
    private_key: PemSource | None,
    certificate_chain: PemSource | None,
) -> bool:
    if secure is not None:
        return secure
    return any(item is not None for item in (root_certificates, private_key, certificate_chain))


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    # Plain call metadata rather than call credentials so that it also works on insecure loopback channels.
    return (("authorization", f"Bearer {token}"),) if token else ()


def merge_options(options: Sequence[tuple[str, Any]] | None) -> list[tuple[str, Any]]:
    """Default channel options, overridden by the caller's (same key: caller wins)."""
    merged = dict(DEFAULT_CHANNEL_OPTIONS)
    merged.update(dict(options or ()))
    return list(merged.items())
