"""The holdout and the report, end to end: who is held out (a pure function), what they get, that their
Feedback is stored and reported but never learned, and that GetSpaceReport equals a hand computation from the
Feedbacks sent, across a kill -9 and restart. Real edgesel-server processes on loopback."""

from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
import statistics
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
from edgesel.v1 import catalog_pb2_grpc as cat_grpc
from edgesel.v1 import selection_pb2_grpc as sel_grpc
from edgesel_server.config import ConfigError, parse_config
from edgesel_server.holdout import holdout_fraction, in_holdout
from edgesel_server.store.base import Decision, Snapshot
from edgesel_server.store.sqlite import SqliteStore
from edgesel_server.toml import loads as toml_loads
from tests.server.serverproc import ServerProcess

SHARE = 0.3
CONFIG = """
[server]
snapshot_every = 7

[[space]]
name = "fleet"

[space.policy]
kind = "disjoint_linucb"
alpha = 0.3
forced_sampling = 0.5

[space.holdout]
model = "incumbent"
share = {share}

[space.report]
device_class = "soc"
window_s = 3600

[space.qoe]
weights = {{ user_rating = 1.0, latency_ms = 1.0 }}
latency_budget_ms = 50

[[space.device_features]]
name = "ram_gb"
min = 0.25
max = 64
transform = "log"

[[space.device_features]]
name = "soc"
kind = "categorical"
values = ["snapdragon", "exynos"]

[[space.models]]
id = "incumbent"

[[space.models]]
id = "fast"

[[space.models]]
id = "slow"
"""


def ids(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(128):032x}" for _ in range(n)]


@pytest.mark.parametrize("share", [0.01, 0.1, 0.3, 0.5])
def test_holdout_share_is_within_one_point_over_100k_installations(share: float) -> None:
    installs = ids(100_000, seed=int(share * 100))
    held = sum(in_holdout("fleet", i, share) for i in installs)
    assert abs(held / len(installs) - share) < 0.01


def test_holdout_is_a_pure_function_of_space_and_installation() -> None:
    installs = ids(2000)
    # The same installation is in the same group every time; a different space draws anew.
    assert [holdout_fraction("fleet", i) for i in installs] == [
        holdout_fraction("fleet", i) for i in installs
    ]
    same = sum(in_holdout("fleet", i, 0.5) == in_holdout("other", i, 0.5) for i in installs)
    assert 0.4 < same / len(installs) < 0.6
    assert not in_holdout("fleet", "", 0.99)  # no installation id: never held out


def _parse(text: str) -> None:
    parse_config(toml_loads(text))


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (("share = 0.3", "share = 0"), "space[0].holdout.share"),
        (("share = 0.3", "share = 1.5"), "space[0].holdout.share"),
        (('model = "incumbent"', 'model = "nope"'), "space[0].holdout.model"),
        (('device_class = "soc"', 'device_class = "gpu"'), "space[0].report.device_class"),
        (("window_s = 3600", "window_s = -1"), "space[0].report.window_s"),
        (("window_s = 3600", "window_s = 3600\nbins = 3"), "space[0].report"),
        (("[space.qoe]", "[space.guardrails]\nwindow = 0\n[space.qoe]"), "space[0].guardrails.window"),
        (("[space.qoe]", "[space.guardrails]\nmax_failure_rate = 2.0\n[space.qoe]"), "max_failure_rate"),
    ],
)
def test_bad_holdout_report_or_guardrail_config_names_the_key(change: tuple[str, str], key: str) -> None:
    good = CONFIG.format(share=SHARE)
    _parse(good)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        _parse(good.replace(*change))


# -- a real server -----------------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "edgesel.toml"
    path.write_text(CONFIG.format(share=SHARE))
    return path


@pytest.fixture
def server(config: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(config, tmp_path / "data").start()
    yield proc
    proc.kill()


class Fleet:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.sel = sel_grpc.SelectionServiceStub(self.channel)
        self.cat = cat_grpc.CatalogServiceStub(self.channel)

    def select(self, installation: str, soc: str, **kw) -> selection_pb2.SelectResponse:
        req = selection_pb2.SelectRequest(
            space="fleet",
            device_features={"ram_gb": 4.0},
            device_labels={"soc": soc},
            installation_id=installation,
            **kw,
        )
        return self.sel.Select(req, timeout=10)

    def feedback(self, event_id: str, rating: float, latency_ms: float) -> float:
        m = types_pb2.Measurements(user_rating=rating, latency_ms=latency_ms)
        r = self.sel.Feedback(selection_pb2.FeedbackRequest(event_id=event_id, measurements=m), timeout=10)
        assert r.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
        return float(r.reward)

    def state(self) -> bytes:
        return bytes(self.cat.ExportState(catalog_pb2.ExportStateRequest(space="fleet"), timeout=10).state)

    def report(self) -> catalog_pb2.GetSpaceReportResponse:
        return self.cat.GetSpaceReport(catalog_pb2.GetSpaceReportRequest(space="fleet"), timeout=10)


def split(installs: list[str]) -> tuple[list[str], list[str]]:
    held = [i for i in installs if in_holdout("fleet", i, SHARE)]
    return held, [i for i in installs if not in_holdout("fleet", i, SHARE)]


def stored_groups(data_dir: Path) -> dict[str, tuple[str, str, float]]:
    """event id -> (group, device class, propensity), read from the SQLite file itself."""
    with sqlite3.connect(data_dir / "edgesel.sqlite3") as conn:
        rows = conn.execute(
            "SELECT event_id, report_group, device_class, propensity FROM decisions"
        ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_holdout_devices_get_the_incumbent_and_their_feedback_never_teaches(
    server: ServerProcess, tmp_path: Path
) -> None:
    fleet = Fleet(server.target)
    held, policy = split(ids(200, seed=7))
    assert len(held) >= 30 and len(policy) >= 100
    # Policy traffic first, so that the learned state is not empty.
    for i in policy[:40]:
        r = fleet.select(i, "snapdragon")
        fleet.feedback(r.event_id, 4.0, 20.0)
    before = fleet.state()
    events = {}
    for i in held:
        for soc in ("snapdragon", "exynos"):
            r = fleet.select(i, soc)
            assert r.model.model_id == "incumbent"
            events[r.event_id] = soc
            fleet.feedback(r.event_id, 2.0, 30.0)
    ranked = fleet.select(held[0], "exynos", include_ranking=True)
    assert ranked.model.model_id == "incumbent" and not ranked.exploratory
    assert sorted(m.model_id for m in ranked.ranking) == ["fast", "incumbent", "slow"]
    fleet.feedback(ranked.event_id, 2.0, 30.0)
    events[ranked.event_id] = "exynos"
    # Stored exactly like any other decision, flagged, with propensity 1 ...
    stored = stored_groups(tmp_path / "data")
    for eid, soc in events.items():
        assert stored[eid] == ("holdout", soc, 1.0)
    # ... and reported, but the learned state did not move.
    assert fleet.state() == before
    rep = fleet.report()
    assert rep.since_start.pooled.holdout.n == len(events)
    assert rep.since_start.pooled.policy.n == 40
    arms = fleet.cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space="fleet"), timeout=10)
    assert arms.total_updates == 40
    # The incumbent not eligible: the policy decides, and the decision is in neither group.
    r = fleet.select(held[0], "exynos", eligible_model_ids=["fast", "slow"])
    assert r.model.model_id in ("fast", "slow")
    assert stored_groups(tmp_path / "data")[r.event_id][0] == "excluded"
    fleet.feedback(r.event_id, 5.0, 10.0)
    rep = fleet.report()
    assert (rep.since_start.pooled.holdout.n, rep.since_start.pooled.policy.n) == (len(events), 40)
    assert (
        fleet.cat.GetArmStats(catalog_pb2.GetArmStatsRequest(space="fleet"), timeout=10).total_updates == 41
    )


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _check_group(got: catalog_pb2.GroupOutcomes, rewards: list[float], latencies: list[float]) -> None:
    assert got.n == len(rewards)
    assert got.mean_qoe == pytest.approx(statistics.fmean(rewards), rel=1e-12)
    assert got.failure_rate == 0.0
    # the report's quantiles are to within 1 % (log-bucketed histogram)
    assert got.p50_latency_ms == pytest.approx(_nearest_rank(latencies, 0.5), rel=0.01)
    assert got.p95_latency_ms == pytest.approx(_nearest_rank(latencies, 0.95), rel=0.01)


def _clustered_variance_of_mean(rewards: list[float], installs: list[str]) -> float:
    """K/(K−1) Σ_b (S_b − n_b ȳ)² / n² over the devices' variance buckets (lift.py), by hand."""
    mean = statistics.fmean(rewards)
    resid: dict[int, float] = {}
    for r, i in zip(rewards, installs, strict=True):
        b = int.from_bytes(hashlib.sha256(f"fleet\0variance\0{i}".encode()).digest()[:8], "big") % 64
        resid[b] = resid.get(b, 0.0) + r - mean
    k = len(resid)
    return k / (k - 1) * sum(v * v for v in resid.values()) / len(rewards) ** 2


def _check_lift(
    got: catalog_pb2.ClassReport, policy: list[float], holdout: list[float], installs: dict[str, list[str]]
) -> None:
    diff = statistics.fmean(policy) - statistics.fmean(holdout)
    se = math.sqrt(
        _clustered_variance_of_mean(policy, installs["policy"])
        + _clustered_variance_of_mean(holdout, installs["holdout"])
    )
    assert got.HasField("lift")
    assert got.lift.absolute == pytest.approx(diff, rel=1e-9, abs=1e-12)
    assert got.lift.absolute_ci95_low == pytest.approx(diff - 1.959963984540054 * se, rel=1e-9)
    assert got.lift.absolute_ci95_high == pytest.approx(diff + 1.959963984540054 * se, rel=1e-9)
    assert got.lift.relative == pytest.approx(
        statistics.fmean(policy) / statistics.fmean(holdout) - 1, rel=1e-9
    )


def _by_class(period: catalog_pb2.PeriodReport) -> dict[str, catalog_pb2.ClassReport]:
    return {c.device_class: c for c in period.classes}


def test_report_equals_a_hand_computation_and_survives_kill_9(
    server: ServerProcess, config: Path, tmp_path: Path
) -> None:
    fleet = Fleet(server.target)
    held, policy = split(ids(120, seed=11))
    rng = random.Random(3)
    sent: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    installs: dict[tuple[str, str], list[str]] = {}
    for k, i in enumerate(held + policy):
        soc = ("snapdragon", "exynos")[k % 2]
        r = fleet.select(i, soc)
        group = "holdout" if i in held else "policy"
        rating = rng.choice([1.0, 2.0, 3.0, 4.0, 5.0])
        latency = rng.uniform(5.0, 80.0) * (1.0 if group == "policy" else 1.5)
        reward = fleet.feedback(r.event_id, rating, latency)
        rewards, lats = sent.setdefault((group, soc), ([], []))
        rewards.append(reward)
        lats.append(latency)
        installs.setdefault((group, soc), []).append(i)

    def check(rep: catalog_pb2.GetSpaceReportResponse) -> None:
        assert rep.holdout_model == "incumbent" and rep.holdout_share == SHARE
        for period in (rep.since_start, rep.window):  # everything was sent within the window
            classes = _by_class(period)
            assert set(classes) == {"snapdragon", "exynos"}
            for soc, c in classes.items():
                _check_group(c.policy, *sent[("policy", soc)])
                _check_group(c.holdout, *sent[("holdout", soc)])
                by_group = {g: installs[(g, soc)] for g in ("policy", "holdout")}
                _check_lift(c, sent[("policy", soc)][0], sent[("holdout", soc)][0], by_group)
            pooled = {g: ([], []) for g in ("policy", "holdout")}  # type: dict[str, tuple[list, list]]
            for (g, _), (rw, lt) in sent.items():
                pooled[g][0].extend(rw)
                pooled[g][1].extend(lt)
            assert period.pooled.device_class == "POOLED"
            _check_group(period.pooled.policy, *pooled["policy"])
            _check_group(period.pooled.holdout, *pooled["holdout"])
            every = {g: [i for (h, _), ins in installs.items() if h == g for i in ins] for g in pooled}
            _check_lift(period.pooled, pooled["policy"][0], pooled["holdout"][0], every)

    first = fleet.report()
    check(first)
    server.kill()
    restarted = ServerProcess(config, tmp_path / "data").start()
    try:
        again = Fleet(restarted.target)
        second = again.report()
        check(second)
        assert second.since_start == first.since_start
        # Nobody switched group across the restart.
        for i in held[:10]:
            assert again.select(i, "exynos").model.model_id == "incumbent"
    finally:
        restarted.kill()


def test_databases_and_snapshots_from_before_the_holdout_still_load(tmp_path: Path) -> None:
    """A database without the new columns gets them at open: old decisions are "policy"/"all", an old
    snapshot has no derived state (the report then starts from the events replayed after it)."""
    store = SqliteStore(tmp_path)
    store.open(lambda e: None)
    d = Decision("e1", "fleet", "fast", np.zeros(3), 1.0, 2.0, group="holdout", device_class="exynos")
    store.submit_decision(d).result()
    store.save_snapshot(Snapshot("fleet", 0, b"state", [], 1.0, {"lift": {"window_s": 60}}))
    got = store.get_decision("e1")
    assert got is not None and (got.group, got.device_class) == ("holdout", "exynos")
    snap = store.latest_snapshot("fleet")
    assert snap is not None and snap.derived == {"lift": {"window_s": 60}}
    store.close()
    with sqlite3.connect(tmp_path / "edgesel.sqlite3") as conn:  # as an older server wrote it
        for table, column in (
            ("decisions", "report_group"),
            ("decisions", "device_class"),
            ("snapshots", "derived"),
        ):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    store = SqliteStore(tmp_path)
    store.open(lambda e: None)
    old = store.get_decision("e1")
    assert old is not None and (old.group, old.device_class) == ("policy", "all")
    snap = store.latest_snapshot("fleet")
    assert snap is not None and snap.derived == {} and snap.state == b"state"
    store.close()


def test_export_log_names_each_decisions_group_and_device_class(
    server: ServerProcess, config: Path, tmp_path: Path
) -> None:
    fleet = Fleet(server.target)
    held, policy = split(ids(60, seed=11))
    want = {}
    for i in policy[:10]:
        want[fleet.select(i, "snapdragon").event_id] = ("policy", "snapdragon")
    for i in held[:5]:
        want[fleet.select(i, "exynos").event_id] = ("holdout", "exynos")
    r = fleet.select(held[0], "exynos", eligible_model_ids=["fast", "slow"])
    want[r.event_id] = ("excluded", "exynos")
    assert server.terminate() == 0
    from edgesel_server.cli import main as server_main

    out = tmp_path / "log.jsonl"
    args = ["--config", str(config), "--data-dir", str(tmp_path / "data"), "--export-log", str(out)]
    assert server_main([*args, "--space", "fleet"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    got = {d["event_id"]: (d["group"], d["device_class"]) for d in lines if d["type"] == "decision"}
    assert got == want
    assert {g for g, _ in got.values()} == {"policy", "holdout", "excluded"}


def test_a_qoe_model_holdout_decision_is_scored_under_the_requests_budget_and_weights(tmp_path: Path) -> None:
    """The incumbent's recorded expected QoE (and the ranking) of a holdout decision is qoe_model's under the
    request's own Preferences, as a policy decision's is: it used to be scored with the space's defaults."""
    config = tmp_path / "edgesel.toml"
    text = CONFIG.format(share=SHARE).replace(
        'kind = "disjoint_linucb"\nalpha = 0.3\nforced_sampling = 0.5', 'kind = "qoe_model"'
    )
    config.write_text(text)
    server = ServerProcess(config, tmp_path / "data").start()
    try:
        fleet = Fleet(server.target)
        held, policy = split(ids(100, seed=3))
        for k, i in enumerate(policy[:30]):  # something learned: latencies differ by model
            r = fleet.select(i, "snapdragon")
            latency = {"incumbent": 30.0, "fast": 5.0, "slow": 90.0}[r.model.model_id]
            fleet.feedback(r.event_id, 4.0, latency + k)
        seen = set()
        for budget, weights in ((2.0, {"latency_ms": 1.0}), (500.0, {"latency_ms": 0.1, "user_rating": 1.0})):
            prefs = types_pb2.Preferences(latency_budget_ms=budget, qoe_weights=weights)
            h = fleet.select(held[0], "snapdragon", preferences=prefs, include_ranking=True)
            p = fleet.select(policy[40], "snapdragon", preferences=prefs, include_ranking=True)
            assert h.model.model_id == "incumbent"
            want = {m.model_id: (m.expected_qoe, m.exploration_bonus) for m in p.ranking}
            got = {m.model_id: (m.expected_qoe, m.exploration_bonus) for m in h.ranking}
            assert got == want
            assert math.isclose(h.expected_qoe, want["incumbent"][0], rel_tol=1e-12)
            seen.add(round(h.expected_qoe, 9))
        assert len(seen) == 2  # the two requests' preferences give the incumbent different QoE
    finally:
        server.kill()
