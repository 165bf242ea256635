"""Every error a client can act on: its gRPC status, a stable machine-readable reason, and whether to retry.

A domain error raised anywhere in the server reaches the client as its status code plus a
`google.rpc.ErrorInfo` detail (domain "edgesel", `reason` from the table below, `metadata` e.g. the field
at fault), in the standard `grpc-status-details-bin` trailer (grpcio-status). The reasons are part of the
contract (proto/edgesel/v1/*.proto list them per RPC): clients switch on them, never on message text.
Anything that is not an `EdgeselError` is a bug: it becomes INTERNAL (reason INTERNAL) and is logged with its
traceback, so a stray ValueError can no longer pass for the client's fault.
"""

from __future__ import annotations

from collections.abc import Mapping

import google.rpc.error_details_pb2 as error_details_pb2
import google.rpc.status_pb2 as status_pb2
import grpc
from google.protobuf import any_pb2
from grpc_status import rpc_status

DOMAIN = "edgesel"
# Error messages echo caller input (ids, names); keep them well under the clients' metadata size limit.
DETAILS_MAX = 1024


class EdgeselError(Exception):
    """Base of every error the server reports on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"
    retryable: bool = False  # documented per RPC; UNAVAILABLE ones are worth a retry with backoff

    def __init__(self, message: str, *, field: str | None = None, **metadata: str) -> None:
        super().__init__(message)
        self.metadata: dict[str, str] = dict(metadata)
        if field is not None:
            self.metadata["field"] = field

    def to_status(self) -> grpc.Status:
        """Code, message and the `grpc-status-details-bin` trailer, ready for `context.abort`."""
        return rpc_status.to_status(rich_status(self.code, self.message, self.reason, self.metadata))

    @property
    def message(self) -> str:
        text = str(self)
        return text if len(text) <= DETAILS_MAX else text[:DETAILS_MAX] + "..."


def rich_status(
    code: grpc.StatusCode, message: str, reason: str, metadata: Mapping[str, str]
) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=dict(metadata))
    detail = any_pb2.Any()
    detail.Pack(info)
    value = code.value[0]
    assert isinstance(value, int)
    return status_pb2.Status(code=value, message=message, details=[detail])


# -- INVALID_ARGUMENT: the request is wrong; do not retry it unchanged ------------------------------------
class InvalidArgument(EdgeselError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class InvalidFeatures(InvalidArgument):
    """Device or model features do not fit the space's schema (missing, NaN, out of range, unknown)."""

    reason = "INVALID_FEATURES"


class InvalidReward(InvalidArgument):
    """A reward outside the space's range, or measurements the QoE function cannot use."""

    reason = "INVALID_REWARD"


class InvalidPreferences(InvalidArgument):
    """Preferences that cannot be honoured (unknown or all-zero QoE weights, non-positive budgets)."""

    reason = "INVALID_PREFERENCES"


class LimitExceeded(InvalidArgument):
    """More features, eligible ids, metadata or characters than the documented limits."""

    reason = "LIMIT_EXCEEDED"


class InvalidModel(InvalidArgument):
    """A catalog change that is invalid (bad id, features fixed once added, retired on add)."""

    reason = "INVALID_MODEL"


class InvalidState(InvalidArgument):
    """ImportState with bytes that are not a compatible state of this space."""

    reason = "INVALID_STATE"


# -- NOT_FOUND -----------------------------------------------------------------------------------------
class NotFound(EdgeselError, LookupError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class UnknownSpace(NotFound):
    reason = "SPACE_UNKNOWN"


class UnknownModel(NotFound):
    reason = "MODEL_UNKNOWN"


class UnknownEvent(NotFound):
    """No decision with this event id (never made, or older than the decision retention)."""

    reason = "EVENT_UNKNOWN"


# -- the rest -------------------------------------------------------------------------------------------
class ModelExists(EdgeselError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "MODEL_EXISTS"


class ExpiredEvent(EdgeselError):
    """The decision's feedback window closed (the missing-feedback rule applies instead)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "EVENT_EXPIRED"


class NotActivated(EdgeselError):
    """Feedback for a decision made with defer_activation that was not activated (Activate) yet."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "NOT_ACTIVATED"


class NotDeferred(EdgeselError):
    """Activate for a decision that was not made with defer_activation (it counts from Select on)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "NOT_DEFERRED"


class ActivationExpired(EdgeselError):
    """Activate after the decision's activation deadline (decision_retention_s after its Select)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "ACTIVATION_EXPIRED"


class NoEligibleModel(EdgeselError):
    """Nothing in the catalog is eligible for this request (none active, none small enough)."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "NO_ELIGIBLE_MODEL"


class FeedbackForbidden(EdgeselError):
    """The decision was made for another token (`bind_feedback_to_token`)."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "FEEDBACK_OTHER_TOKEN"


class OtherInstallation(EdgeselError):
    """Activate naming another installation than the one the decision was made for."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "EVENT_OTHER_INSTALLATION"


class StoreUnavailable(EdgeselError):
    """The store cannot make a write durable right now (disk full, read-only, backend down)."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "STORE_UNAVAILABLE"
    retryable = True


class DecisionNotYetStored(StoreUnavailable):
    """An event id this replica does not know yet, young enough to sit in another replica's backlog of
    decisions made while the shared store was down: retry, it will be known once that backlog is written."""

    reason = "EVENT_NOT_YET_STORED"


# -- refused by the RPC guard before the servicer runs ----------------------------------------------------
class MalformedRequest(InvalidArgument):
    reason = "MALFORMED_REQUEST"


class TokenMissing(EdgeselError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "TOKEN_MISSING"


class TokenInvalid(EdgeselError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "TOKEN_INVALID"


class AdminTokenRequired(EdgeselError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "ADMIN_TOKEN_REQUIRED"


class RateLimited(EdgeselError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RATE_LIMITED"
    retryable = True  # after a pause


class ShuttingDown(EdgeselError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "SHUTTING_DOWN"
    retryable = True


class StreamingNotServed(EdgeselError):
    code = grpc.StatusCode.UNIMPLEMENTED
    reason = "STREAMING_NOT_SERVED"


class Internal(EdgeselError):
    """A bug: what the client sees of anything unexpected (the server logs the traceback)."""


def status_of(exc: BaseException) -> EdgeselError:
    """The error as the client will see it."""
    if isinstance(exc, EdgeselError):
        return exc
    return Internal(f"internal error: {type(exc).__name__}")


async def abort(context: grpc.aio.ServicerContext, error: EdgeselError) -> None:
    """End the RPC with the error's status and its ErrorInfo detail (raises grpc.aio.AbortError)."""
    status = error.to_status()
    await context.abort(status.code, status.details, status.trailing_metadata)
