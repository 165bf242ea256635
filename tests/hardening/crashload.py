"""Load for the exactness tests: raw-stub clients doing Select + Feedback, keeping what each answer proved.

Every Feedback ends in one of two books: `acked` (the server said ACCEPTED, with the reward it applied) or
`unsure` (no answer: the server may or may not have made it durable). After the crashes, `settle` re-sends
every one of them: an acknowledged one must come back DUPLICATE with the reward that was applied; an unsure
one is either DUPLICATE (it had been applied; the reply says with which reward) or ACCEPTED now — never
NOT_FOUND, since its Select was answered and a Select is answered only once its decision is durable. Then the
set of applied rewards is known exactly, and the server's statistics must equal it.
"""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from edgesel.v1 import catalog_pb2, selection_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc

ACCEPTED = selection_pb2.FEEDBACK_STATUS_ACCEPTED
DUPLICATE = selection_pb2.FEEDBACK_STATUS_DUPLICATE
DEVICES = [{"ram_gb": 0.5 * 2**i, "has_npu": float(i % 2), "battery_percent": 12.0 * i} for i in range(8)]


def reward_for(n: int) -> float:
    # Multiples of 1/8: their sums are exact in floating point, in any order.
    return (n % 9) / 8


@dataclass
class Books:
    acked: dict[str, tuple[str, float]] = field(default_factory=dict)  # event id -> (model id, reward)
    unsure: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Answered Selects whose Feedback is held back until after the crashes (CrashLoad's `withhold`).
    withheld: dict[str, tuple[str, float]] = field(default_factory=dict)
    selected: collections.Counter[str] = field(default_factory=collections.Counter)
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    # (monotonic send time, answer time, event id) of every ACCEPTED, to check none came during an outage
    ack_times: list[tuple[float, float, str]] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # answers that contradict what was sent or applied
    lock: threading.Lock = field(default_factory=threading.Lock)


class CrashLoad:
    """`workers` threads over raw stubs; Select on one target, Feedback on the next (round robin).

    A Feedback that fails with UNAVAILABLE is retried (on the other target) until `retry_for` seconds have
    passed, so a decision answered during an outage must get its real feedback once the store is back."""

    def __init__(
        self,
        targets: Sequence[str],
        books: Books,
        *,
        workers: int = 16,
        retry_for: float = 0.0,
        withhold: int = 0,
    ):
        self.targets = list(targets)
        self.books = books
        self.retry_for = retry_for
        self.withhold = withhold  # every n-th answered Select gets its Feedback only in `settle`
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(workers)]

    def __enter__(self) -> CrashLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=60)
            assert not t.is_alive(), "a load thread hangs"

    def acked_count(self) -> int:
        with self.books.lock:
            return len(self.books.acked)

    def wait_acked(self, n: int, timeout: float = 120.0) -> None:
        wait_for(lambda: self.acked_count() >= n, timeout, lambda: f"acked {self.acked_count()}/{n}, "
                 f"{self.books.codes}")  # fmt: skip

    def _run(self, w: int) -> None:
        rng = random.Random(w)
        channels = [grpc.insecure_channel(t) for t in self.targets]
        sels = [sel_grpc.SelectionServiceStub(c) for c in channels]
        n = 0
        try:
            while not self.stop_event.is_set():
                n += 1
                i = (w + n) % len(sels)
                try:
                    r = sels[i].Select(
                        selection_pb2.SelectRequest(space="vision", device_features=rng.choice(DEVICES)),
                        timeout=10,
                    )
                except grpc.RpcError as e:
                    self._count(f"select:{e.code().name}")
                    self.stop_event.wait(0.02)
                    continue
                reward = reward_for(w * 7919 + n)
                with self.books.lock:
                    self.books.selected[r.model.model_id] += 1
                    if self.withhold and n % self.withhold == 0:
                        self.books.withheld[r.event_id] = (r.model.model_id, reward)
                        continue
                self._feedback(sels, i + 1, r.event_id, r.model.model_id, reward)
        finally:
            for c in channels:
                c.close()

    def _feedback(self, sels: list, i: int, event_id: str, model_id: str, reward: float) -> None:
        request = selection_pb2.FeedbackRequest(event_id=event_id, reward=reward)
        give_up = time.monotonic() + self.retry_for
        while True:
            sent = time.monotonic()
            try:
                fb = sels[i % len(sels)].Feedback(request, timeout=10)
            except grpc.RpcError as e:
                self._count(f"feedback:{e.code().name}")
                with self.books.lock:
                    self.books.unsure[event_id] = (model_id, reward)
                retryable = e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if retryable and time.monotonic() < give_up and not self.stop_event.is_set():
                    i += 1
                    self.stop_event.wait(0.05)
                    continue
                return
            status = selection_pb2.FeedbackStatus.Name(fb.status)
            self._count(f"feedback:{status}")
            with self.books.lock:
                if fb.status in (ACCEPTED, DUPLICATE):
                    # DUPLICATE here means an earlier try of ours got through: same reward, applied once.
                    if fb.reward != reward:
                        self.books.wrong.append(
                            f"{event_id}: {status} with reward {fb.reward}, sent {reward}"
                        )
                    self.books.unsure.pop(event_id, None)
                    self.books.acked[event_id] = (model_id, fb.reward)
                    self.books.ack_times.append((sent, time.monotonic(), event_id))
            return

    def _count(self, key: str) -> None:
        with self.books.lock:
            self.books.codes[key] += 1


def wait_for(cond: Callable[[], bool], timeout: float, what: Callable[[], str] | str = "") -> None:
    """Poll `cond` until it holds; generous bounds, no assumption about the machine's speed."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s: {what() if callable(what) else what}")
        time.sleep(0.05)


def _answered_select_feedback(sel: Any, event_id: str, reward: float, what: str) -> Any:
    """A Feedback for a decision whose Select was answered, so was durable before the reply: whatever a crash
    interrupted, it must be accepted now (or DUPLICATE), never fail — NOT_FOUND least of all."""
    try:
        return sel.Feedback(
            selection_pb2.FeedbackRequest(event_id=event_id, reward=reward), timeout=30, wait_for_ready=True
        )
    except grpc.RpcError as e:
        raise AssertionError(
            f"{what} for {event_id}, whose Select was answered, failed after the restart: "
            f"{e.code().name} {e.details()}"
        ) from None


def settle(targets: Sequence[str], books: Books) -> dict[str, tuple[str, float]]:
    """Re-send every acknowledged and unsure Feedback; returns event id -> (model id, applied reward)."""
    applied: dict[str, tuple[str, float]] = {}
    channels = [grpc.insecure_channel(t) for t in targets]
    try:
        sels = [sel_grpc.SelectionServiceStub(c) for c in channels]
        for k, (event_id, (model_id, reward)) in enumerate(sorted(books.acked.items())):
            fb = sels[k % len(sels)].Feedback(
                selection_pb2.FeedbackRequest(event_id=event_id, reward=0.5 if reward != 0.5 else 0.25),
                timeout=30,
                wait_for_ready=True,
            )
            assert fb.status == DUPLICATE, f"acknowledged feedback {event_id} was lost"
            assert fb.reward == reward, f"{event_id}: DUPLICATE says reward {fb.reward}, {reward} was applied"
            applied[event_id] = (model_id, reward)
        for k, (event_id, (model_id, reward)) in enumerate(sorted(books.unsure.items())):
            fb = _answered_select_feedback(sels[k % len(sels)], event_id, reward, "feedback")
            assert fb.reward == reward, f"{event_id}: reply reward {fb.reward}, sent {reward}"
            applied[event_id] = (model_id, reward)
        for k, (event_id, (model_id, reward)) in enumerate(sorted(books.withheld.items())):
            # First Feedback ever sent for an answered Select, some answered just before a kill -9.
            fb = _answered_select_feedback(sels[k % len(sels)], event_id, reward, "first feedback")
            assert fb.status == ACCEPTED, f"{event_id}: {selection_pb2.FeedbackStatus.Name(fb.status)}"
            assert fb.reward == reward, f"{event_id}: reply reward {fb.reward}, sent {reward}"
            applied[event_id] = (model_id, reward)
    finally:
        for c in channels:
            c.close()
    return applied


def arm_stats(target: str, space: str = "vision") -> catalog_pb2.GetArmStatsResponse:
    with grpc.insecure_channel(target) as ch:
        return cat_grpc.CatalogServiceStub(ch).GetArmStats(
            catalog_pb2.GetArmStatsRequest(space=space), timeout=30
        )


def export_state(target: str, space: str = "vision") -> bytes:
    with grpc.insecure_channel(target) as ch:
        stub = cat_grpc.CatalogServiceStub(ch)
        return stub.ExportState(
            catalog_pb2.ExportStateRequest(space=space), timeout=30, wait_for_ready=True
        ).state


def check_stats_equal_applied(stats: catalog_pb2.GetArmStatsResponse, applied: dict) -> None:
    """GetArmStats equals the applied feedback exactly, arm by arm."""
    n: collections.Counter[str] = collections.Counter()
    total: collections.defaultdict[str, float] = collections.defaultdict(float)
    for model_id, reward in applied.values():
        n[model_id] += 1
        total[model_id] += reward
    got = {a.model_id: a for a in stats.arms}
    for model_id, a in got.items():
        assert a.n_updates == n[model_id], (model_id, a.n_updates, n[model_id])
        assert a.reward_sum == total[model_id], (model_id, a.reward_sum, total[model_id])
        want_mean = total[model_id] / n[model_id] if n[model_id] else 0.0
        assert abs(a.mean_reward - want_mean) <= 1e-12, (model_id, a.mean_reward, want_mean)
        assert a.n_selections >= a.n_updates, (model_id, a.n_selections, a.n_updates)
    assert set(n) <= set(got), set(n) - set(got)
    assert stats.total_updates == len(applied)
