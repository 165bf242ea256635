"""The one exception the SDK raises for failed RPCs, with the server's machine-readable reason.

The server puts a `google.rpc.Status` holding a `google.rpc.ErrorInfo` (domain "edgesel") in the standard
`grpc-status-details-bin` trailer; `status_details` decodes it with protobuf alone (the SDK stays grpcio +
protobuf only, on every protobuf from its floor up).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from edgesel_client.status_details import STATUS_DETAILS_KEY, error_details_from_metadata

__all__ = ["DOMAIN", "STATUS_DETAILS_KEY", "EdgeselError", "error_info"]

DOMAIN = "edgesel"


def error_info(trailing_metadata: Any) -> tuple[str, dict[str, str]] | None:
    """(reason, metadata) of the edgesel ErrorInfo in a call's trailers, or None (e.g. a transport error,
    or another domain's detail)."""
    try:
        found = error_details_from_metadata(trailing_metadata)
    except Exception:  # noqa: BLE001 - a malformed trailer is no reason to hide the status code
        return None
    if found is None or found.domain != DOMAIN:
        return None
    return found.reason, dict(found.metadata)


class EdgeselError(Exception):
    """A call to the edgesel server failed; carries the gRPC status code, the server's message and, when
    the server said why, its stable machine-readable ``reason`` (e.g. "EVENT_EXPIRED", "NO_ELIGIBLE_MODEL",
    "STORE_UNAVAILABLE"; the .proto files list them per RPC) and ``metadata`` (e.g. {"field": ...})."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}" + (f" [{reason}]" if reason else ""))
        self.code = code
        self.details = details
        self.reason = reason
        self.metadata = dict(metadata or {})

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> EdgeselError:
        # grpc.RpcError raised by a call is also a grpc.Call, which has code(), details() and trailers.
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
        found = error_info(trailers)
        return cls(
            code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN,
            details or "",
            found[0] if found else None,
            found[1] if found else None,
        )

    @property
    def is_unavailable(self) -> bool:
        """True when the server could not be reached (the case the offline fallbacks handle)."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
