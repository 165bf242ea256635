"""Running the simulator end to end against a real edgesel server, through the client SDK.

`space_config(stream, ...)` writes a server config whose space sees exactly what the in-process policies
see: the simulator's already-normalized device and model vectors, declared as features with transform
"none" (passed through, range-checked). `LiveServerPolicy` then implements the simulator's Policy protocol
with Select and Feedback RPCs, and catalog changes mid-run with CatalogService.AddModel / RetireModel, so a
live run exercises the whole product and should reproduce the in-process core's choices.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import grpc
import numpy as np
from numpy.typing import NDArray

from edgesel.v1 import catalog_pb2, catalog_pb2_grpc, types_pb2
from edgesel_client import EdgeselClient, RetryPolicy
from edgesel_server.process import server_command, start_listening, stop
from edgesel_tools.sim.catalog import MODEL_FEATURE_NAMES
from edgesel_tools.sim.devices import DEVICE_FEATURE_NAMES
from edgesel_tools.sim.policies import Request
from edgesel_tools.sim.runner import PolicyRun, ProgressFn, run_policy
from edgesel_tools.sim.scenario import Stream

SPACE = "sim"
# Normalized features stay well inside this band; the bound only guards against garbage.
FEATURE_BOUND = 100.0


def _feature_tables(kind: str, names: tuple[str, ...]) -> str:
    return "".join(
        f'\n[[space.{kind}]]\nname = "{n}"\nmin = {-FEATURE_BOUND}\nmax = {FEATURE_BOUND}\n'
        'transform = "none"\n'
        for n in names
    )


def space_config(
    stream: Stream,
    *,
    policy: str = "hybrid_linucb",
    alpha: float = 0.5,
    lam: float = 1.0,
    seed: int = 0,
    durability: str = "fsync",
    snapshot_every: int = 1000,
    half_life: int = 0,
) -> str:
    """TOML for a server with one space, "sim", holding the scenario's initial catalog."""
    col = {a: i for i, a in enumerate(stream.arm_ids)}
    models = []
    for m in stream.scenario.models:
        feats = ", ".join(
            f"{n} = {float(v)!r}"
            for n, v in zip(MODEL_FEATURE_NAMES, stream.arm_features[col[m.arm_id]], strict=True)
        )
        models.append(
            f'\n[[space.models]]\nid = "{m.arm_id}"\nartifact_uri = "file:///srv/edgesel/models/{m.arm_id}.pt"\n'
            f"features = {{ {feats} }}\n"
        )
    return (
        f'[server]\nstore = "sqlite"\ndurability = "{durability}"\nsnapshot_every = {snapshot_every}\n'
        f"max_eligible = {max(1000, len(stream.arm_ids))}\n\n"
        f'[[space]]\nname = "{SPACE}"\nreward_window_s = 3600\n\n'
        f'[space.policy]\nkind = "{policy}"\nalpha = {alpha!r}\nlam = {lam!r}\nseed = {seed}\n'
        f"half_life = {half_life}\n"
        + _feature_tables("device_features", DEVICE_FEATURE_NAMES)
        + _feature_tables("model_features", MODEL_FEATURE_NAMES)
        + "".join(models)
    )


class LiveServerPolicy:
    """The simulator's Policy protocol over gRPC: one Select and one Feedback per round."""

    def __init__(self, target: str, *, name: str = "live", timeout: float = 10.0) -> None:
        self.name = name
        self.client = EdgeselClient(target, space=SPACE, timeout=timeout, retry=RetryPolicy(max_attempts=3))
        self._channel = grpc.insecure_channel(target)
        self._catalog = catalog_pb2_grpc.CatalogServiceStub(self._channel)
        listed = self._catalog.ListModels(catalog_pb2.ListModelsRequest(space=SPACE, include_retired=True))
        self._known = {m.model_id for m in listed.models}
        self._all_active: set[str] = {m.model_id for m in listed.models if not m.retired}
        self._event: str | None = None
        self.exploratory = 0

    def add_arm(self, arm_id: str, features: NDArray) -> None:
        if arm_id not in self._known:
            model = types_pb2.Model(
                model_id=arm_id,
                artifact_uri=f"file:///srv/edgesel/models/{arm_id}.pt",
                features={n: float(v) for n, v in zip(MODEL_FEATURE_NAMES, features, strict=True)},
            )
            self._catalog.AddModel(catalog_pb2.AddModelRequest(space=SPACE, model=model), timeout=10)
            self._known.add(arm_id)
        self._all_active.add(arm_id)

    def remove_arm(self, arm_id: str) -> None:
        self._catalog.RetireModel(catalog_pb2.RetireModelRequest(space=SPACE, model_id=arm_id), timeout=10)
        self._all_active.discard(arm_id)

    def select(self, request: Request) -> str:
        features = {n: float(v) for n, v in zip(DEVICE_FEATURE_NAMES, np.asarray(request.x), strict=True)}
        # Send the eligible list only when it restricts the choice, as a device app would.
        eligible = None if set(request.eligible) == self._all_active else request.eligible
        sel = self.client.select(device_features=features, eligible=eligible)
        if sel.from_cache:
            raise RuntimeError("the server became unreachable during a live run")
        self._event = sel.event_id
        self.exploratory += int(sel.exploratory)
        return sel.model_id

    def update(self, request: Request, arm_id: str, reward: float) -> None:
        assert self._event is not None
        self.client.feedback(self._event, reward=min(1.0, max(0.0, reward)))
        self._event = None

    def close(self) -> None:
        self.client.close(flush=True)
        self._channel.close()


class LiveServer:
    """A real `edgesel-server` process for a stream, on a free loopback port (context manager)."""

    def __init__(
        self,
        stream: Stream,
        workdir: Path,
        *,
        policy: str = "hybrid_linucb",
        alpha: float = 0.5,
        lam: float = 1.0,
        seed: int = 0,
        half_life: int = 0,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "edgesel.toml"
        self.config.write_text(
            space_config(stream, policy=policy, alpha=alpha, lam=lam, seed=seed, half_life=half_life)
        )
        self.data_dir = self.workdir / "data"
        self.proc: subprocess.Popen | None = None
        self.target = ""

    def __enter__(self) -> LiveServer:
        with (self.workdir / "server.log").open("w") as log:
            self.proc, self.target = start_listening(server_command(self.config, self.data_dir), stderr=log)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=60)


def run_live(
    stream: Stream,
    workdir: Path,
    *,
    policy: str = "hybrid_linucb",
    alpha: float = 0.5,
    lam: float = 1.0,
    seed: int = 0,
    progress: ProgressFn | None = None,
    half_life: int = 0,
) -> PolicyRun:
    """Run one core policy on the stream through a real server and the SDK."""
    with LiveServer(
        stream, workdir, policy=policy, alpha=alpha, lam=lam, seed=seed, half_life=half_life
    ) as server:
        live = LiveServerPolicy(server.target, name=f"{policy}@server")
        try:
            return run_policy(live, stream, progress)
        finally:
            live.close()
