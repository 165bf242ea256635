"""The one exception the SDK raises for failed RPCs, with the server's machine-readable reason.

The server puts a `google.rpc.Status` holding a `google.rpc.ErrorInfo` (domain "edgesel") in the standard
`grpc-status-details-bin` trailer. The SDK stays grpcio + protobuf only: instead of depending on
googleapis-common-protos for two messages, it declares their wire format (field numbers and types are
frozen by Google's API compatibility rules) in a private descriptor pool and lets protobuf decode them. A
private pool cannot clash with googleapis-common-protos if the app loads that too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

STATUS_DETAILS_KEY = "grpc-status-details-bin"
DOMAIN = "edgesel"
_ERROR_INFO_TYPE = "type.googleapis.com/google.rpc.ErrorInfo"


def _rpc_messages() -> tuple[Any, Any]:
    """google.rpc.Status and google.rpc.ErrorInfo, as in google/rpc/{status,error_details}.proto."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    F = descriptor_pb2.FieldDescriptorProto
    f = descriptor_pb2.FileDescriptorProto(
        name="edgesel_client/google_rpc_wire.proto",
        package="google.rpc",
        syntax="proto3",
        dependency=["google/protobuf/any.proto"],
    )
    status = f.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    status.field.add(
        name="details",
        number=3,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    info = f.message_type.add(name="ErrorInfo")
    info.field.add(name="reason", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    info.field.add(name="domain", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry = info.nested_type.add(name="MetadataEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    info.field.add(
        name="metadata",
        number=3,
        type=F.TYPE_MESSAGE,
        label=F.LABEL_REPEATED,
        type_name=".google.rpc.ErrorInfo.MetadataEntry",
    )
    pool.Add(f)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.ErrorInfo")),
    )


_Status, _ErrorInfo = _rpc_messages()


def error_info(trailing_metadata: Any) -> tuple[str, dict[str, str]] | None:
    """(reason, metadata) of the edgesel ErrorInfo in a call's trailers, or None (e.g. a transport error)."""
    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = _Status.FromString(value)
            for detail in status.details:
                if detail.type_url == _ERROR_INFO_TYPE:
                    info = _ErrorInfo.FromString(detail.value)
                    if info.domain == DOMAIN:
                        return str(info.reason), dict(info.metadata)
        except Exception:  # noqa: BLE001 - a malformed trailer is no reason to hide the status code
            return None
    return None


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
