"""Reward payloads on the replica path: `reward_outcome` (orjson, with json for what orjson refuses) reads
every payload exactly as json.loads does, floats bit for bit; and a space applying reward events in batches
(`apply_batch`, its inline bookkeeping and QoeModel.update_batch) ends exactly where `apply` one by one ends,
also for payloads the server does not write today (older logs, hand-edited ones): integer latencies, missing
or odd buckets, no outcome, non-dict preferences, measurements that are not floats, another record version,
NaN, other encodings."""

from __future__ import annotations

import json
import math
import random
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgesel_server.catalog import Model
from edgesel_server.config import load_config
from edgesel_server.space import SpaceRuntime, reward_outcome
from edgesel_server.status.history import SpaceHistory
from edgesel_server.store import base as ev
from edgesel_server.store.base import LogEvent
from tests.redis.test_bulk_apply import GUARDRAILS, state
from tests.server.test_holdout import CONFIG

json_values = st.recursive(
    st.none()
    | st.booleans()
    # orjson reads integers beyond 64 bits (below -2**63, from 2**64) as floats where json keeps them ints;
    # no edgesel payload has any (its integers are a bucket < 64, a record version and counts).
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(min_value=-1e-300, max_value=1e-300)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equal, with floats compared by their bits (NaN included) and types kept apart (1 vs 1.0 vs True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)  # type: ignore[arg-type]
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=400, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=12), json_values, max_size=8), ascii_only=st.booleans())
def test_reward_outcome_reads_what_json_reads(payload: dict, ascii_only: bool) -> None:
    raw = json.dumps(payload, ensure_ascii=ascii_only, separators=(",", ":")).encode()
    assert same(reward_outcome(raw), json.loads(raw))


def test_reward_outcome_of_other_encodings_and_nothing() -> None:
    assert reward_outcome(b"") == {}
    raw = json.dumps({"latency_ms": 12.5, "device_class": "é"}).encode("utf-16")
    assert reward_outcome(raw) == json.loads(raw)


def test_every_float_survives_the_payload_bit_for_bit() -> None:
    rng = random.Random(11)
    for _ in range(20_000):
        v = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(v):
            raw = json.dumps({"latency_ms": v}).encode()
            assert struct.pack("<d", reward_outcome(raw)["latency_ms"]) == struct.pack("<d", v)


# Payloads a log may hold besides today's (holdout.outcome_payload + qoe_policy.feedback_record).
def unusual_payloads(rng: random.Random, installation: str) -> list[object]:
    base = {"group": "policy", "device_class": "snapdragon", "bucket": 3, "latency_ms": 20.0, "failed": False}
    record = {"v": 1, "measurements": {"latency_ms": 20.0, "user_rating": 4.0}, "prefs": {}}
    return [
        b"",  # a scalar reward from before payloads
        {**base, "latency_ms": 20},  # an integer latency
        {k: v for k, v in base.items() if k != "bucket"},  # from before the variance buckets
        {**base, "bucket": None},
        {**base, "bucket": True},
        {"latency_ms": 20.0},  # no outcome at all (before the report)
        {**base, "group": "excluded"},
        {**base, "group": "holdout", "latency_ms": rng.uniform(5, 50)},
        {**base, "failed": True, "latency_ms": None, "prefs": {"installation_id": installation}},
        {**base, "failed": True, "latency_ms": None, "prefs": "not a dict"},
        {**base, **record},
        {**base, **record, "measurements": {"latency_ms": 30, "user_rating": 5}},  # integers
        {**base, **record, "measurements": {"user_rating": "4"}},  # the model refuses it (a str)
        {**base, **record, "v": 2},  # another record version: refused
        {**base, **record, "prefs": {"latency_budget_ms": 80.0, "qoe_weights": {"latency_ms": 2.0}}},
        {**base, **record, "prefs": {"qoe_weights": {"nonsense": 1.0}}},  # refused by the model
        {
            **base,
            **record,
            "measurements": {"latency_ms": float("nan")},
        },  # NaN (json writes it; orjson cannot)
    ]


def events(space: SpaceRuntime, n: int, seed: int) -> list[LogEvent]:
    rng = random.Random(seed)
    seq = 0
    out = []
    for model_id in ("incumbent", "fast", "slow"):
        seq += 1
        payload = json.dumps(Model(model_id, features={}).to_dict()).encode()
        out.append(LogEvent(space.name, ev.ADD_MODEL, None, model_id, payload=payload, created=1e9, seq=seq))
    d = len(space.device_schema)
    for k in range(n):
        seq += 1
        payloads = unusual_payloads(rng, f"inst{k % 5}")
        p = payloads[k % len(payloads)] if rng.random() < 0.7 else rng.choice(payloads)
        raw = p if isinstance(p, bytes) else json.dumps(p).encode()
        x = np.array([rng.random() for _ in range(d)])
        kind = ev.FEEDBACK if k % 7 else ev.DEFAULT_REWARD
        model = rng.choice(["incumbent", "fast", "slow"])
        out.append(LogEvent(space.name, kind, f"e{k}", model, x, rng.random(), raw, 1e9 + 7.3 * k, seq))
    return out


@pytest.mark.parametrize("policy", ["disjoint_linucb", "hybrid_linucb", "qoe_model"])
def test_batches_equal_one_by_one_on_unusual_payloads(tmp_path: Path, policy: str) -> None:
    text = CONFIG.format(share=0.3).replace('kind = "disjoint_linucb"', f'kind = "{policy}"')
    if policy == "qoe_model":
        text = text.replace("forced_sampling = 0.5\n", "")
    (tmp_path / "edgesel.toml").write_text(text + GUARDRAILS)
    cfg = load_config(tmp_path / "edgesel.toml")

    def fresh() -> SpaceRuntime:
        space = SpaceRuntime(cfg.spaces[0], cfg)
        space.history = SpaceHistory(60.0, 10, now=0.0)
        space.restore(None)
        return space

    one, batched = fresh(), fresh()
    log = events(one, 600, seed=5)
    for e in log:  # as the tailer applies one event: a failing one is logged and skipped
        try:
            one.apply(e)
        except Exception:
            pass
    for start in range(0, len(log), 97):
        batched.apply_batch(log[start : start + 97], isolate=True)
    assert one.applied_seq == log[-1].seq  # the last event was applied
    assert state(batched) == state(one)


@settings(max_examples=300, deadline=None)
@given(
    measurements=st.dictionaries(
        st.sampled_from(["latency_ms", "energy_mj", "user_rating", "accuracy"]),
        st.floats(0.0, 1e6) | st.floats(min_value=1e-300, max_value=1e-6),
    ),
    failed=st.booleans(),
    reason=st.sampled_from(["", "oom", "unsupported_op"]),
    prefs=st.fixed_dictionaries(
        {},
        optional={
            "latency_budget_ms": st.floats(1.0, 1e4),
            "qoe_weights": st.dictionaries(st.sampled_from(["latency_ms", "accuracy"]), st.floats(0.0, 3.0)),
            "installation_id": st.text("0123456789abcdef", min_size=1, max_size=12),
        },
    ),
    extra=st.none() | st.just({"aggregation": {"mode": "mean", "n": 3}}),
)
def test_a_feedback_payload_is_encoded_once_into_the_bytes_of_the_double_encoding(
    measurements: dict, failed: bool, reason: str, prefs: dict, extra: dict | None
) -> None:
    """The record goes into the payload as a dict now, encoded once (payload_json): the event's payload reads
    back exactly as what encoding the record alone, reading it back into the outcome and encoding again (the
    previous code) gave, and for these ASCII payloads it is the same bytes."""
    from edgesel_server import qoe_policy
    from edgesel_server.engine import Decision, Engine
    from edgesel_server.holdout import outcome_payload

    d = Decision("0" * 44, "s", "m", np.array([0.5]), 1.0, 2.0, prefs=prefs, device_class="all")
    record = qoe_policy.feedback_record(measurements, failed, reason, prefs)
    space = type("S", (), {"name": "s"})()
    e = Engine._reward_event(space, d, 0.5, ev.FEEDBACK, measurements, record, failed, extra)  # type: ignore[arg-type]
    before = outcome_payload(d, measurements, failed)
    before.update(json.loads(json.dumps(record, separators=(",", ":"), sort_keys=True).encode()))
    before.update(extra or {})
    previous = json.dumps(before, separators=(",", ":"), sort_keys=True).encode()
    assert same(json.loads(e.payload), json.loads(previous))
    assert same(reward_outcome(e.payload), json.loads(previous))
    # json writes floats outside this range as "1e-07", orjson as "1e-7": the same value, other bytes
    if all(1e-4 <= abs(v) < 1e16 or v == 0 for v in floats_of(before)):
        assert e.payload == previous


def floats_of(obj: object) -> list[float]:
    if isinstance(obj, float):
        return [obj]
    if isinstance(obj, dict):
        return [f for v in obj.values() for f in floats_of(v)]
    if isinstance(obj, list):
        return [f for v in obj for f in floats_of(v)]
    return []


finite_floats = st.floats(allow_nan=False, allow_infinity=False)
finite_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | finite_floats | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(payload=st.dictionaries(st.text(max_size=12), finite_json, max_size=8))
def test_payload_json_reads_back_as_json_dumps_would(payload: dict) -> None:
    """orjson, or json for what orjson refuses (integers beyond 64 bits): the same values, keys sorted."""
    from edgesel_server.engine import payload_json

    raw = payload_json(payload)
    assert same(json.loads(raw), json.loads(json.dumps(payload, sort_keys=True)))
    assert list(json.loads(raw)) == sorted(payload)
