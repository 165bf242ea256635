"""Measured scenarios end to end: the scenario's own server config served by a real `edgesel-server`.

A measured scenario (sim/measured.py) already speaks the server's language: raw device features that the
space's schema normalizes, Preferences (latency budget, QoE weights) with every request, and Feedback as
Measurements (latency, accuracy, maybe a rating) or `failed = true`, scored by the space's QoE function. So a
live run serves the scenario's `space_config` itself (with the policy, the holdout and the report window set
here) and sends, per round, one Select (with the device instance as the installation id, so the holdout is
the server's own hash-based assignment) and one Feedback, over raw gRPC stubs on loopback. The server's
reward for every Feedback is checked against the simulator's: both use the same QoE function.

After the run the caller reads `GetSpaceReport` (the lift and its CI) and the server's decision log
(`--export-log`, which names each decision's group) from the same data directory.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import grpc
from numpy.typing import NDArray

from edgesel.v1 import catalog_pb2, catalog_pb2_grpc, selection_pb2, selection_pb2_grpc, types_pb2
from edgesel_tools.sim.live import LiveServer
from edgesel_tools.sim.measured import MeasuredFeedback, MeasuredScenario
from edgesel_tools.sim.policies import Feedback, Request
from edgesel_tools.sim.runner import PolicyRun, ProgressFn, run_policy
from edgesel_tools.sim.scenario import ScenarioError, Stream

RPC_TIMEOUT_S = 30.0
# The report's sliding window is set longer than any simulated run, so "window" and "since start" cover the
# same decisions (checked by sim/lift_check.py); the ground truth is computed over exactly those.
REPORT_WINDOW_S = 30 * 86400.0


def installation_id(seed: int, instance: int) -> str:
    """The installation id a simulated device instance sends (the holdout hashes it). The stream's seed is in
    it, so that each seed holds out another set of instance numbers."""
    return f"sim-{seed}-instance-{instance:08d}"


def _drop_table(text: str, header: str) -> str:
    """`text` without the TOML table `[header]` (its header line up to the next table header)."""
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith("["):
            skipping = stripped == f"[{header}]"
        if not skipping:
            out.append(line)
    return "".join(out)


def measured_server_config(
    sc: MeasuredScenario,
    *,
    policy: str | None = None,
    alpha: float | None = None,
    seed: int = 0,
    holdout_model: str | None = None,
    holdout_share: float = 0.0,
    durability: str = "process",
) -> str:
    """The scenario's server config (one space) with the policy, holdout and report window set for a run.

    The file's `[space.policy]`, `[space.holdout]` and `[space.report]` tables are replaced (appended after
    the last `[[space.models]]`, where TOML gives them to the one `[[space]]`); everything else, the schema
    and the QoE function above all, is served as written. Durability defaults to "process" (a run measures
    learning and the report, not fsync)."""
    text = Path(sc.space_config_file).read_text(encoding="utf-8")
    if len(re.findall(r"(?m)^\s*\[\[space\]\]\s*$", text)) != 1:
        raise ScenarioError(
            f"--live serves one space: {sc.space_config_file} must have exactly one [[space]]"
        )
    for header in ("space.policy", "space.holdout", "space.report"):
        text = _drop_table(text, header)
    text = re.sub(r'(?m)^durability\s*=\s*"[a-z]+"', f'durability = "{durability}"', text)
    kind = policy or sc.space.policy.kind
    a = sc.space.policy.alpha if alpha is None and policy is None else alpha
    text += f'\n[space.policy]\nkind = "{kind}"\nseed = {seed}\nlam = {sc.space.policy.lam!r}\n'
    if a is not None:
        text += f"alpha = {float(a)!r}\n"
    if holdout_model is not None and holdout_share > 0:
        text += f'\n[space.holdout]\nmodel = "{holdout_model}"\nshare = {float(holdout_share)!r}\n'
    text += f"\n[space.report]\nwindow_s = {REPORT_WINDOW_S!r}\n"
    return text


def device_instances(stream: Stream) -> NDArray:
    """Which device instance sent each request of a measured stream."""
    fb = stream.feedback
    if not isinstance(fb, MeasuredFeedback) or fb.instance is None:
        raise ScenarioError("a live measured run needs a stream of a measured scenario (build_stream)")
    return fb.instance


class MeasuredLivePolicy:
    """The simulator's Policy protocol over raw gRPC stubs: one Select and one Feedback per round, sending
    what a device app would (raw features, installation id, Preferences; Measurements or failed)."""

    def __init__(self, target: str, stream: Stream, *, name: str = "live") -> None:
        sc = stream.scenario
        assert isinstance(sc, MeasuredScenario)
        self._instances = device_instances(stream)
        self.name = name
        self.space = sc.space.name
        self._stream = stream
        self._device_features = [d.features() for d in sc.devices]
        self._variants = {m.arm_id: m for m in sc.all_models()}
        self._channel = grpc.insecure_channel(target)
        self._select = selection_pb2_grpc.SelectionServiceStub(self._channel)
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(self._channel)
        listed = self.catalog.ListModels(
            catalog_pb2.ListModelsRequest(space=self.space, include_retired=True), timeout=RPC_TIMEOUT_S
        )
        self._known = {m.model_id for m in listed.models}
        self._all_active = {m.model_id for m in listed.models if not m.retired}
        self._event: str | None = None
        self.exploratory = 0
        self.event_ids: list[str] = []  # per round, to join with the server's decision log

    def add_arm(self, arm_id: str, features: object) -> None:
        if arm_id not in self._known:
            v = self._variants[arm_id]
            model = types_pb2.Model(
                model_id=arm_id, artifact_uri=f"file:///srv/edgesel/models/{arm_id}", features=v.features()
            )
            self.catalog.AddModel(
                catalog_pb2.AddModelRequest(space=self.space, model=model), timeout=RPC_TIMEOUT_S
            )
            self._known.add(arm_id)
        self._all_active.add(arm_id)

    def remove_arm(self, arm_id: str) -> None:
        self.catalog.RetireModel(
            catalog_pb2.RetireModelRequest(space=self.space, model_id=arm_id), timeout=RPC_TIMEOUT_S
        )
        self._all_active.discard(arm_id)

    def select(self, request: Request) -> str:
        assert request.prefs is not None
        t = request.round
        prefs = request.prefs
        eligible = [] if set(request.eligible) == self._all_active else request.eligible
        resp = self._select.Select(
            selection_pb2.SelectRequest(
                space=self.space,
                device_features=self._device_features[int(self._stream.device_index[t])],
                eligible_model_ids=eligible,
                preferences=types_pb2.Preferences(
                    latency_budget_ms=prefs["latency_budget_ms"], qoe_weights=prefs["qoe_weights"]
                ),
                installation_id=installation_id(self._stream.seed, int(self._instances[t])),
            ),
            timeout=RPC_TIMEOUT_S,
        )
        self._event = resp.event_id
        self.event_ids.append(resp.event_id)
        self.exploratory += int(resp.exploratory)
        return resp.model.model_id

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        raise RuntimeError("a measured stream reports Feedback measurements (update_feedback)")

    def update_feedback(self, request: Request, arm_id: str, feedback: Feedback) -> None:
        assert self._event is not None
        m = feedback.measurements
        measurements = (
            types_pb2.Measurements(failed=True)
            if feedback.failed
            else types_pb2.Measurements(
                latency_ms=m["latency_ms"], accuracy=m["accuracy"], user_rating=m.get("user_rating")
            )
        )
        resp = self._select.Feedback(
            selection_pb2.FeedbackRequest(event_id=self._event, measurements=measurements),
            timeout=RPC_TIMEOUT_S,
        )
        if resp.status != selection_pb2.FEEDBACK_STATUS_ACCEPTED:
            raise RuntimeError(f"round {request.round}: Feedback was not accepted ({resp.status})")
        if not math.isclose(resp.reward, feedback.reward, rel_tol=1e-12, abs_tol=1e-12):
            raise RuntimeError(
                f"round {request.round}: the server scored the Feedback {resp.reward!r}, the simulator "
                f"{feedback.reward!r}: the two QoE functions differ"
            )
        self._event = None

    def report(self) -> catalog_pb2.GetSpaceReportResponse:
        return self.catalog.GetSpaceReport(
            catalog_pb2.GetSpaceReportRequest(space=self.space), timeout=RPC_TIMEOUT_S
        )

    def close(self) -> None:
        self._channel.close()


class MeasuredLiveServer(LiveServer):
    """A real `edgesel-server` serving a measured scenario's space on a free loopback port (a context manager;
    starting and stopping are sim/live.py's)."""

    def __init__(self, sc: MeasuredScenario, workdir: Path, **config: object) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "edgesel.toml"
        self.config.write_text(measured_server_config(sc, **config))  # type: ignore[arg-type]
        self.data_dir = self.workdir / "data"
        self.proc: subprocess.Popen | None = None
        self.target = ""


def run_measured_live(
    stream: Stream,
    workdir: Path,
    *,
    policy: str | None = None,
    alpha: float | None = None,
    seed: int = 0,
    holdout_model: str | None = None,
    holdout_share: float = 0.0,
    progress: ProgressFn | None = None,
) -> tuple[PolicyRun, catalog_pb2.GetSpaceReportResponse, list[str]]:
    """Run the stream through a real server; returns the run, the GetSpaceReport read after the last Feedback,
    and each round's event id. The server's data directory is `workdir/data` (for `--export-log`)."""
    sc = stream.scenario
    if not isinstance(sc, MeasuredScenario):
        raise ScenarioError("run_measured_live needs a measured scenario")
    with MeasuredLiveServer(
        sc,
        workdir,
        policy=policy,
        alpha=alpha,
        seed=seed,
        holdout_model=holdout_model,
        holdout_share=holdout_share,
    ) as server:
        live = MeasuredLivePolicy(server.target, stream, name=f"{policy or sc.space.policy.kind}@server")
        try:
            result = run_policy(live, stream, progress)
            return result, live.report(), live.event_ids
        finally:
            live.close()
