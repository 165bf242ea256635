"""The status page's in-memory history (status/history.py): what a sample counts, that it is bounded, that
concurrent writers lose nothing, and that the sampler closes samples on its own."""

from __future__ import annotations

import asyncio
import threading

import pytest

from edgesel_server.status.history import RECENT_FAILURES, SpaceHistory, sample_forever


def test_a_sample_counts_the_policy_decisions_and_the_rewards_by_group() -> None:
    h = SpaceHistory(sample_s=10.0, samples=5, now=100.0)
    h.on_decision("snapdragon", "fast", 0.4, True, "policy")
    h.on_decision("snapdragon", "fast", 0.2, False, "policy")
    h.on_decision("exynos", "slow", 0.0, False, "excluded")  # the policy decided: counted
    h.on_decision("exynos", "incumbent", 9.0, False, "holdout")  # not the policy's choice
    h.on_outcome("policy", "snapdragon", "fast", 0.8, False, "", 101.0)
    h.on_outcome("policy", "exynos", "slow", 0.2, True, "out_of_memory", 102.0)
    h.on_outcome("holdout", "exynos", "incumbent", 0.5, False, "", 103.0)
    done = h.roll(110.0)
    assert (done.start, done.end) == (100.0, 110.0)
    assert (done.decisions, done.exploratory, done.holdout_decisions) == (3, 1, 1)
    assert done.mean_bonus == pytest.approx(0.2)
    assert done.picks == {("snapdragon", "fast"): 2, ("exynos", "slow"): 1}
    assert done.mean_qoe("policy") == pytest.approx(0.5)
    assert done.mean_qoe("holdout") == pytest.approx(0.5)
    assert done.mean_qoe("excluded") is None
    assert (done.outcomes, done.failures) == (3, 1)
    view = h.view()
    assert [f.reason for f in view.failures] == ["out_of_memory"]
    assert view.current.start == 110.0 and view.current.decisions == 0
    assert view.closed[0].picks == done.picks and view.closed[0] is not done  # a copy


def test_an_empty_sample_has_no_means() -> None:
    h = SpaceHistory(sample_s=1.0, samples=5, now=0.0)
    s = h.roll(1.0)
    assert s.mean_bonus is None and s.mean_qoe("policy") is None and s.picks == {}


def test_only_the_newest_samples_and_failures_are_kept() -> None:
    h = SpaceHistory(sample_s=1.0, samples=3, now=0.0)
    for t in range(1, 11):
        h.on_decision("all", f"m{t}", 0.1, False, "policy")
        h.roll(float(t))
    for i in range(RECENT_FAILURES + 7):
        h.on_outcome("policy", "all", f"m{i}", 0.0, True, "crash", float(i))
    view = h.view()
    assert [s.end for s in view.closed] == [8.0, 9.0, 10.0]
    assert view.max_samples == 3
    # Shares are over the kept samples and the open one: m8..m10 only.
    assert view.picks() == {"all": {"m8": 1, "m9": 1, "m10": 1}}
    assert len(view.failures) == RECENT_FAILURES and view.failures[-1].model_id == f"m{RECENT_FAILURES + 6}"


def test_concurrent_writers_and_rolls_lose_no_count() -> None:
    h = SpaceHistory(sample_s=1.0, samples=100_000, now=0.0)
    per_thread, threads = 5000, 4

    def decide() -> None:
        for _ in range(per_thread):
            h.on_decision("all", "m", 1.0, False, "policy")

    def reward() -> None:
        for _ in range(per_thread):
            h.on_outcome("policy", "all", "m", 1.0, False, "", 0.0)

    workers = [threading.Thread(target=f) for f in (decide, reward) * (threads // 2)]
    for w in workers:
        w.start()
    rolls = 0
    while any(w.is_alive() for w in workers):
        h.roll()
        rolls += 1
    for w in workers:
        w.join()
    view = h.view()
    samples = [*view.closed, view.current]
    assert sum(s.decisions for s in samples) == per_thread * threads // 2
    assert sum(s.qoe_n.get("policy", 0) for s in samples) == per_thread * threads // 2
    assert sum(s.bonus_sum for s in samples) == per_thread * threads // 2
    assert len(view.closed) == rolls


def test_the_sampler_closes_samples_until_cancelled() -> None:
    h = SpaceHistory(sample_s=0.02, samples=1000)

    async def run() -> int:
        task = asyncio.create_task(sample_forever({"s": h}, 0.02))
        for _ in range(500):  # up to 5 s on a loaded machine; normally ~0.1 s
            await asyncio.sleep(0.01)
            if len(h.view().closed) >= 3:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return len(h.view().closed)

    closed = asyncio.run(run())
    assert closed >= 3
    ends = [s.end for s in h.view().closed]
    assert ends == sorted(ends)
