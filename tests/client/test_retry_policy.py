from __future__ import annotations

import grpc
import pytest

from edgesel_client import EdgeselError, RetryPolicy
from edgesel_client.retry import FEEDBACK_RETRYABLE_CODES, SELECT_RETRYABLE_CODES, call_with_retry


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.5, multiplier=2.0, jitter=0.0)
    assert [policy.backoff_s(n, 0.5) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.4, 0.5])


def test_jitter_stays_within_its_fraction() -> None:
    policy = RetryPolicy(initial_backoff=1.0, jitter=0.25)
    assert policy.backoff_s(1, 0.0) == pytest.approx(0.75)
    assert policy.backoff_s(1, 0.999999) == pytest.approx(1.25, abs=1e-5)


@pytest.mark.parametrize(
    "arguments",
    [{"max_attempts": 0}, {"initial_backoff": -1.0}, {"multiplier": 0.5}, {"jitter": 1.5}],
)
def test_invalid_policies_are_rejected(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**arguments)  # type: ignore[arg-type]


def test_retryable_codes() -> None:
    assert grpc.StatusCode.DEADLINE_EXCEEDED in SELECT_RETRYABLE_CODES
    assert grpc.StatusCode.DEADLINE_EXCEEDED not in FEEDBACK_RETRYABLE_CODES
    assert grpc.StatusCode.UNAVAILABLE in FEEDBACK_RETRYABLE_CODES


class _FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "boom"


def test_call_with_retry_sleeps_between_attempts_and_gives_up() -> None:
    sleeps: list[float] = []
    calls = 0

    def always_unavailable() -> None:
        nonlocal calls
        calls += 1
        raise _FakeRpcError(grpc.StatusCode.UNAVAILABLE)

    policy = RetryPolicy(max_attempts=3, initial_backoff=0.1, multiplier=3.0, jitter=0.0)
    with pytest.raises(EdgeselError) as raised:
        call_with_retry(always_unavailable, policy, FEEDBACK_RETRYABLE_CODES, sleep=sleeps.append)
    assert calls == 3
    assert sleeps == pytest.approx([0.1, 0.3])
    assert (raised.value.code, raised.value.details) == (grpc.StatusCode.UNAVAILABLE, "boom")
