"""The one exception the SDK raises for failed RPCs."""

from __future__ import annotations

import grpc


class EdgeselError(Exception):
    """A call to the edgesel server failed; carries the gRPC status code and the server's details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> EdgeselError:
        # grpc.RpcError raised by a call is also a grpc.Call, which has code() and details().
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN, details or "")

    @property
    def is_unavailable(self) -> bool:
        """True when the server could not be reached (the case the offline fallbacks handle)."""
        return self.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
