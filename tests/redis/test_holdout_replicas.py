"""Two replicas on one real Redis put an installation in the same group, store the flag with the decision, and
agree on the report and on the learned state (holdout Feedback teaches neither of them)."""

from __future__ import annotations

import json
from pathlib import Path

from edgesel_server.holdout import in_holdout
from tests.redis.conftest import RedisServer, requires_redis
from tests.redis.test_replicas import converge
from tests.server.serverproc import ServerProcess
from tests.server.test_holdout import CONFIG, SHARE, Fleet, ids

pytestmark = requires_redis


def test_two_replicas_agree_on_groups_report_and_state(tmp_path: Path, redis_server: RedisServer) -> None:
    config = tmp_path / "edgesel.toml"
    config.write_text(
        CONFIG.format(share=SHARE).replace(
            "snapshot_every = 7", f'snapshot_every = 7\nstore = "{redis_server.url}"'
        )
    )
    a = ServerProcess(config, tmp_path / "a").start()
    b = ServerProcess(config, tmp_path / "b").start()
    r = redis_server.client()
    try:
        fa, fb = Fleet(a.target), Fleet(b.target)
        installs = ids(60, seed=21)
        held = {i for i in installs if in_holdout("fleet", i, SHARE)}
        assert 5 <= len(held) <= 40
        for k, i in enumerate(installs):
            # Both replicas decide for the installation; Feedback goes to the replica that did not decide.
            first, second = (fa, fb) if k % 2 else (fb, fa)
            for fleet in (first, second):
                got = fleet.select(i, "exynos")
                stored = json.loads(r.get(f"edgesel:{{fleet}}:dec:{got.event_id}"))  # type: ignore[arg-type]
                assert stored["group"] == ("holdout" if i in held else "policy")
                assert stored["device_class"] == "exynos"
                if i in held:
                    assert got.model.model_id == "incumbent" and stored["propensity"] == 1.0
            first.feedback(got.event_id, 3.0, 25.0)  # the decision `second` made, fed back to `first`
        (state_a, version_a, _), (state_b, version_b, _) = converge([a.target, b.target], r, space="fleet")
        assert state_a == state_b and version_a == version_b
        rep_a, rep_b = fa.report(), fb.report()
        assert rep_a.since_start == rep_b.since_start
        assert rep_a.since_start.pooled.holdout.n == len(held)
        assert rep_a.since_start.pooled.policy.n == len(installs) - len(held)
    finally:
        a.kill()
        b.kill()
