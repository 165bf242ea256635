"""PendingDecisions (the event loop's open decisions) against a plain reference model of its rules."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesel_server.pending import PendingDecisions
from edgesel_server.store.base import Decision

WINDOW = 10.0


def decision(i: int, created: float) -> Decision:
    return Decision(f"e{i}", "s", "m", np.zeros(1), created, created + WINDOW)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.floats(0.001, 3.0)),  # time passes, then a Select
        st.tuples(st.just("take"), st.integers(0, 60)),
        st.tuples(st.just("sweep"), st.floats(0.0, 15.0)),
        st.tuples(st.just("feedback_fails"), st.integers(0, 60)),  # take, then put_back
    ),
    max_size=120,
)


@settings(max_examples=1000, deadline=None)
@given(ops, st.integers(1, 8))
def test_matches_a_reference_model(operations, limit):
    p = PendingDecisions(limit)
    ref: dict[str, Decision] = {}  # the reference: a plain map, expiry and eviction by deadline order
    now, n = 0.0, 0
    for op, arg in operations:
        if op == "add":
            now += arg
            d = decision(n, now)
            n += 1
            evicted = p.add(d)
            want = []
            while len(ref) >= limit:
                oldest = min(ref.values(), key=lambda x: (x.deadline, int(x.event_id[1:])))
                want.append(ref.pop(oldest.event_id))
            ref[d.event_id] = d
            assert [e.event_id for e in evicted] == [e.event_id for e in want]
        elif op == "take":
            p.take(f"e{arg}")
            ref.pop(f"e{arg}", None)
        elif op == "feedback_fails":
            d = p.get(f"e{arg}")
            if d is not None:
                p.take(d.event_id)
                p.put_back(d)
        else:
            out = p.pop_expired(now + arg)
            want = sorted((d for d in ref.values() if d.deadline <= now + arg), key=lambda x: x.deadline)
            assert [d.event_id for d in out] == [d.event_id for d in want]
            for d in out:
                del ref[d.event_id]
        assert len(p) == len(ref) and all(k in p for k in ref)


def test_a_decision_put_back_keeps_its_place_in_deadline_order():
    for back in range(5):
        p = PendingDecisions(100)
        ds = [decision(i, float(i)) for i in range(5)]
        for d in ds:
            p.add(d)
        p.take(f"e{back}")
        p.put_back(ds[back])
        assert [d.event_id for d in p.pop_expired(ds[2].deadline)] == ["e0", "e1", "e2"], back
        # and eviction takes the earliest deadline too
        p.put_back(p.get("e3") or ds[3])
        assert [d.event_id for d in p.add(decision(9, 9.0))] == []
        small = PendingDecisions(2)
        small.add(ds[0])
        small.add(ds[1])
        small.take("e0")
        small.put_back(ds[0])
        assert [d.event_id for d in small.add(ds[2])] == ["e0"]


def test_two_hundred_thousand_pending_decisions_sweep_and_evict_in_order():
    p = PendingDecisions(200_000)
    for i in range(200_000):
        assert p.add(decision(i, i * 1e-3)) == []
    (evicted,) = p.add(decision(200_000, 200.0))
    assert evicted.event_id == "e0"
    out = p.pop_expired(WINDOW + 0.0995)  # deadlines of e1..e99 (created at up to 0.099 s)
    assert [d.event_id for d in out] == [f"e{i}" for i in range(1, 100)]
    assert len(p) == 200_000 - 99
