"""Retries with exponential backoff and jitter for transient gRPC failures.

Only failures that cannot have had an effect worth protecting are retried: UNAVAILABLE for every RPC, and
DEADLINE_EXCEEDED for Select (a retried Select at worst leaves an unanswered decision on the server).
Feedback is retried on UNAVAILABLE because the server applies each event id at most once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TypeVar

import grpc

from edgesel_client.errors import EdgeselError

T = TypeVar("T")

SELECT_RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
)
FEEDBACK_RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry a call.

    The n-th retry (n = 1, 2, ...) waits ``min(max_backoff, initial_backoff * multiplier**(n-1))`` seconds,
    scaled by a random factor in ``[1 - jitter, 1 + jitter]`` so devices that lost the server together do
    not come back together.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.1
    """Seconds before the first retry."""
    max_backoff: float = 2.0
    """Upper bound of the wait between two attempts, in seconds."""
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.initial_backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoffs must be >= 0")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be in [0, 1]")

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff_s(self, retry_number: int, unit_random: float) -> float:
        """Delay before retry ``retry_number`` (1-based); ``unit_random`` is uniform in [0, 1)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier ** (retry_number - 1))
        return max(0.0, base * (1.0 + self.jitter * (2.0 * unit_random - 1.0)))


def call_with_retry(
    call: Callable[[], T],
    policy: RetryPolicy,
    retryable_codes: Collection[grpc.StatusCode],
    *,
    sleep: Callable[[float], None] = time.sleep,
    unit_random: Callable[[], float] = random.random,
) -> T:
    """Run ``call`` until it succeeds, fails with a non-retryable status, or attempts run out.

    Raises EdgeselError carrying the last status.
    """
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return call()
        except grpc.RpcError as rpc_error:
            error = EdgeselError.from_rpc_error(rpc_error)
            if error.code not in retryable_codes or attempt == policy.max_attempts:
                raise error from rpc_error
        sleep(policy.backoff_s(attempt, unit_random()))
    raise AssertionError("unreachable: the loop returns or raises")


async def call_with_retry_async(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retryable_codes: Collection[grpc.StatusCode],
    *,
    unit_random: Callable[[], float] = random.random,
) -> T:
    """Asyncio flavour of call_with_retry."""
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return await call()
        except grpc.RpcError as rpc_error:
            error = EdgeselError.from_rpc_error(rpc_error)
            if error.code not in retryable_codes or attempt == policy.max_attempts:
                raise error from rpc_error
        await asyncio.sleep(policy.backoff_s(attempt, unit_random()))
    raise AssertionError("unreachable: the loop returns or raises")
