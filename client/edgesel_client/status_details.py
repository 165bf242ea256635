"""The machine-readable part of a failed RPC: the ``google.rpc.ErrorInfo`` a server may attach.

A server that uses gRPC's rich error model sends a serialized ``google.rpc.Status`` in the trailing metadata
``grpc-status-details-bin``; its ``details`` may hold a ``google.rpc.ErrorInfo`` (reason, domain, metadata).
The SDK depends on grpcio and protobuf only, so the two messages are declared here, field for field as in
googleapis' google/rpc/status.proto and error_details.proto, in a private descriptor pool (no clash with
googleapis-common-protos when an app has it). ``Status.details`` is read as raw bytes, then each one as a
``google.protobuf.Any`` (wire-compatible), so no other detail type needs to be known. Anything missing or
malformed gives ``None``: the details are a bonus over the status code and message, never a new failure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

__all__ = ["STATUS_DETAILS_KEY", "ErrorDetails", "error_details", "error_details_from_metadata"]

STATUS_DETAILS_KEY = "grpc-status-details-bin"
ERROR_INFO_TYPE = "google.rpc.ErrorInfo"


@dataclass(frozen=True)
class ErrorDetails:
    """``google.rpc.ErrorInfo``: why the server refused (``reason``, e.g. ``"SPACE_NOT_FOUND"``)."""

    reason: str
    domain: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


def _declare_messages() -> tuple[type[Message], type[Message]]:
    proto = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="edgesel_client/google_rpc.proto", package="google.rpc")
    file.syntax = "proto3"

    def add(message: Any, name: str, number: int, kind: int, repeated: bool = False, of: str = "") -> None:
        label = proto.LABEL_REPEATED if repeated else proto.LABEL_OPTIONAL
        added = message.field.add(name=name, number=number, type=kind, label=label)
        if of:
            added.type_name = of

    status = file.message_type.add(name="Status")
    add(status, "code", 1, proto.TYPE_INT32)
    add(status, "message", 2, proto.TYPE_STRING)
    add(status, "details", 3, proto.TYPE_BYTES, repeated=True)  # repeated google.protobuf.Any on the wire
    info = file.message_type.add(name="ErrorInfo")
    add(info, "reason", 1, proto.TYPE_STRING)
    add(info, "domain", 2, proto.TYPE_STRING)
    add(info, "metadata", 3, proto.TYPE_MESSAGE, repeated=True, of=".google.rpc.ErrorInfo.MetadataEntry")
    entry = info.nested_type.add(name="MetadataEntry")  # map<string, string> is this on the wire
    add(entry, "key", 1, proto.TYPE_STRING)
    add(entry, "value", 2, proto.TYPE_STRING)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return _message_class(pool, "google.rpc.Status"), _message_class(pool, "google.rpc.ErrorInfo")


def _message_class(pool: descriptor_pool.DescriptorPool, name: str) -> type[Message]:
    descriptor = pool.FindMessageTypeByName(name)
    get_message_class = getattr(message_factory, "GetMessageClass", None)  # protobuf >= 4.22
    if get_message_class is not None:
        return get_message_class(descriptor)  # type: ignore[no-any-return]
    # protobuf < 4.22 (the SDK's floor is 4.21.6) only has the older factory method.
    factory: Any = message_factory.MessageFactory(pool)
    return factory.GetPrototype(descriptor)  # type: ignore[no-any-return]


_STATUS, _ERROR_INFO = _declare_messages()


def error_details_from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> ErrorDetails | None:
    """The ErrorInfo in trailing metadata, if there is one."""
    for key, value in metadata or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return _parse_status(value)
    return None


def error_details(error: Exception) -> ErrorDetails | None:
    """The ErrorInfo of a failed call (a ``grpc.RpcError``), tolerant of servers that send none."""
    trailing = getattr(error, "trailing_metadata", None)
    if not callable(trailing):
        return None
    try:
        return error_details_from_metadata(trailing())
    except Exception:  # a call object without trailers (e.g. failed before any reply) has nothing to give
        return None


def _parse_status(blob: bytes) -> ErrorDetails | None:
    try:
        status: Any = _STATUS.FromString(blob)
        for raw in status.details:
            packed = any_pb2.Any.FromString(raw)
            if packed.type_url.rsplit("/", 1)[-1] == ERROR_INFO_TYPE:
                info: Any = _ERROR_INFO.FromString(packed.value)
                metadata = {entry.key: entry.value for entry in info.metadata}
                return ErrorDetails(reason=info.reason, domain=info.domain, metadata=metadata)
    except DecodeError:
        return None
    return None
