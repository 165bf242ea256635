"""Guardrails: a model failing or too slow on a device class is withdrawn there, deterministically."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgesel_server.guardrails import GuardrailConfig, Guardrails, p95


def feed(g, model, cls, n, *, failed=False, latency=10.0, holdout=False, start=0):
    breaches = []
    for i in range(n):
        lat = None if failed else latency
        b = g.observe(
            model_id=model, device_class=cls, holdout=holdout, failed=failed, latency_ms=lat,
            seq=start + i, created=float(start + i),
        )  # fmt: skip
        if b is not None:
            breaches.append(b)
    return breaches


def test_failure_rate_breach_withdraws_only_that_class_and_lift_restores_it():
    g = Guardrails(GuardrailConfig(max_failure_rate=0.2, window=50, min_observations=20))
    feed(g, "m", "phone", 30)
    assert not g.is_withdrawn("m", "phone")
    # failures push the window's rate over 0.2: with 30 successes then failures, the 8th failure makes
    # 8/38 > 0.2 (7/37 is not)
    breaches = feed(g, "m", "phone", 10, failed=True, start=30)
    assert len(breaches) == 1
    b = breaches[0]
    assert (b.model_id, b.device_class, b.reason, b.seq) == ("m", "phone", "failure_rate", 37)
    assert b.value == pytest.approx(8 / 38)
    assert (
        g.is_withdrawn("m", "phone") and not g.is_withdrawn("m", "iot") and g.withdrawn_in("phone") == {"m"}
    )
    assert g.lift("m", "phone", seq=100, created=100.0) and not g.is_withdrawn("m", "phone")
    assert not g.lift("m", "phone", seq=101, created=101.0)  # nothing to lift
    assert [h["event"] for h in g.history] == ["withdrawn", "lifted"]
    # a fresh window after the lift: it takes min_observations again before judging
    assert feed(g, "m", "phone", 19, failed=True, start=200) == []
    assert len(feed(g, "m", "phone", 1, failed=True, start=219)) == 1


def test_p95_latency_ratio_against_the_holdout():
    g = Guardrails(GuardrailConfig(max_p95_latency_ratio=2.0, window=100, min_observations=30))
    feed(g, "slow", "sbc", 40, latency=50.0)  # no holdout yet: not judged on latency
    assert not g.withdrawn
    feed(g, "incumbent", "sbc", 40, latency=20.0, holdout=True)
    feed(g, "ok", "sbc", 40, latency=39.0, start=100)
    assert not g.is_withdrawn("ok", "sbc")
    (b,) = feed(g, "slow", "sbc", 1, latency=50.0, start=200)
    assert b.reason == "p95_latency_ratio" and b.value == pytest.approx(2.5)


def test_disabled_guardrails_never_withdraw():
    g = Guardrails(GuardrailConfig())
    assert feed(g, "m", "c", 500, failed=True) == [] and not g.withdrawn


def test_p95_is_nearest_rank():
    rng = np.random.default_rng(0)
    for _ in range(50):
        v = list(rng.random(int(rng.integers(1, 300))))
        assert p95(v) == float(np.quantile(v, 0.95, method="inverted_cdf"))


def test_state_round_trips_and_replay_is_deterministic():
    cfg = GuardrailConfig(max_failure_rate=0.1, max_p95_latency_ratio=1.5, window=40, min_observations=10)
    rng = np.random.default_rng(5)
    events = [
        dict(model_id=str(rng.choice(["a", "b", "c"])), device_class=str(rng.choice(["x", "y"])),
             holdout=bool(rng.random() < 0.2), failed=bool(rng.random() < 0.08),
             latency_ms=float(rng.lognormal(3, 0.5)), seq=i, created=float(i))
        for i in range(2000)
    ]  # fmt: skip
    one, two = Guardrails(cfg), Guardrails(cfg)
    for e in events[:1000]:
        one.observe(**e)
        two.observe(**e)
    restored = Guardrails(cfg)
    restored.load(json.loads(json.dumps(one.to_dict())))
    for e in events[1000:]:
        one.observe(**e)
        restored.observe(**e)
    assert restored.to_dict() == one.to_dict()
    assert one.withdrawn  # the stream does breach somewhere, so the comparison is not vacuous


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_failure_rate": 1.0}, "max_failure_rate"),
        ({"max_p95_latency_ratio": 0.0}, "max_p95_latency_ratio"),
        ({"window": 0}, "window"),
        ({"window": 10, "min_observations": 11}, "min_observations"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GuardrailConfig(**kwargs)
