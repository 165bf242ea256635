"""A real server with a holdout, a metrics port and the status page, and Select/Feedback traffic whose
counts the status tests compare with the page."""

from __future__ import annotations

import random
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgesel.v1 import selection_pb2, types_pb2
from edgesel_server.holdout import in_holdout
from tests.hardening.support import json_logs
from tests.server.serverproc import ServerProcess
from tests.server.test_holdout import CONFIG, SHARE, Fleet, ids

SAMPLE_S = 0.2
SOCS = ("snapdragon", "exynos")
LATENCY_MS = {"incumbent": 30.0, "fast": 12.0, "slow": 80.0}


# `slow` fails on every exynos device (drive): the failure-rate guardrail withdraws it there mid-run.
GUARDRAILS = "[space.guardrails]\nmax_failure_rate = 0.5\nwindow = 10\nmin_observations = 5\n\n"


def status_config(directory: Path, metrics: str = "") -> Path:
    path = directory / "edgesel.toml"
    path.write_text(
        CONFIG.format(share=SHARE).replace("[space.qoe]", GUARDRAILS + "[space.qoe]")
        + f'\n[server.metrics]\nlisten = "127.0.0.1:0"\nstatus_sample_s = {SAMPLE_S}\n'
        + metrics
    )
    return path


def metrics_listen(proc: ServerProcess) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = [e["metrics_listen"] for e in json_logs(proc) if "metrics_listen" in e]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError("no metrics_listen log line")


def get(url: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


@dataclass
class Sent:
    decisions: Counter = field(default_factory=Counter)  # model -> Selects that returned it
    policy_picks: Counter = field(default_factory=Counter)  # (soc, model) -> policy-group Selects
    feedback: Counter = field(default_factory=Counter)  # group -> Feedbacks accepted
    failures: int = 0


def drive(target: str, n: int = 150, seed: int = 11) -> Sent:
    """n Selects, each followed by its Feedback: `slow` fails to run on exynos, the rest report a rating
    and a latency; spread over a few samples."""
    fleet = Fleet(target)
    rng = random.Random(seed)
    sent = Sent()
    for k, installation in enumerate(ids(n, seed=seed)):
        soc = rng.choice(SOCS)
        r = fleet.select(installation, soc)
        model = r.model.model_id
        held = in_holdout("fleet", installation, SHARE)
        sent.decisions[model] += 1
        if not held:
            sent.policy_picks[(soc, model)] += 1
        if model == "slow" and soc == "exynos":
            m = types_pb2.Measurements(failed=True, failure_reason=types_pb2.FAILURE_REASON_OUT_OF_MEMORY)
            reply = fleet.sel.Feedback(selection_pb2.FeedbackRequest(event_id=r.event_id, measurements=m))
            assert reply.status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
            sent.failures += 1
        else:
            rating = 4.0 if model != "slow" else 2.0
            fleet.feedback(r.event_id, rating, LATENCY_MS[model] * rng.uniform(0.8, 1.2))
        sent.feedback["holdout" if held else "policy"] += 1
        if k % 25 == 24:
            time.sleep(SAMPLE_S)  # a few samples with traffic in them
    time.sleep(2.5 * SAMPLE_S)  # the last traffic is in a closed sample
    fleet.channel.close()
    return sent
