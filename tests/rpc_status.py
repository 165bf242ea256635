"""Reading the google.rpc.ErrorInfo an edgesel refusal carries, the way a third-party client would."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def reason_of(error: grpc.RpcError) -> str | None:
    """The ErrorInfo reason in the error's grpc-status-details-bin trailer (None without one)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    if status is None:
        return None
    assert status.code == error.code().value[0] and status.message == error.details()
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            assert info.domain == "edgesel"
            return info.reason
    raise AssertionError(f"a status without ErrorInfo: {status}")


def refusal(fn) -> tuple[grpc.StatusCode, str | None]:
    """(status code, reason) of a call that must fail."""
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), reason_of(e)
    raise AssertionError("the call succeeded")
