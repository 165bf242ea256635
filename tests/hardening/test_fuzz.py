"""Thousands of malformed and adversarial requests against a real server process.

Every request must get a proper status (never INTERNAL/UNKNOWN, never a hang), the process must stay up with
a bounded RSS and no traceback in its logs, and the learned state must be byte-identical afterwards: nothing
in here may be learned from (the only feedback sent is invalid, forged, replayed or from the wrong token).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from edgesel.v1 import catalog_pb2, selection_pb2, types_pb2
from tests.hardening.support import (
    ADMIN,
    AUTH_SECTION,
    DEVICE_A,
    DEVICE_B,
    PHONE,
    Stubs,
    md,
    stubs_for,
    tracebacks,
    write_secure_config,
)
from tests.server.serverproc import ServerProcess

REQUESTS = 9_600  # a multiple of THREADS
THREADS = 6
RSS_GROWTH_MAX = 96 << 20
FORBIDDEN = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.CANCELLED,
}
SELECTION = "/edgesel.v1.SelectionService/"
CATALOG = "/edgesel.v1.CatalogService/"
METHODS = [SELECTION + m for m in ("Select", "Feedback")] + [
    CATALOG + m
    for m in (
        "ListSpaces",
        "ListModels",
        "AddModel",
        "UpdateModel",
        "RetireModel",
        "GetArmStats",
        "ExportState",
        "ImportState",
        "ResetState",
    )
]
TOKENS = [None, DEVICE_A, DEVICE_B, ADMIN, "forged-token-0000000000000000", ""]
BAD_NUMBERS = [math.nan, math.inf, -math.inf, 1e308, -1e308, -1.0, 0.0, 5e-324, 1e20]
ODD_STRINGS = ["", "vision\0", "ṽïšïøñ", "x" * 5000, "../../etc/passwd", "'; DROP TABLE events; --", "\n\t"]
# Invalid for any decision: these must never be learned from.
BAD_REWARDS = [math.nan, math.inf, -math.inf, -0.5, 1.5, 1e308, -1e308]
BAD_MEASUREMENTS = [
    {"latency_ms": math.nan},
    {"latency_ms": -1.0},
    {"energy_mj": math.inf},
    {"accuracy": 1.5},
    {"accuracy": -0.1},
    {"user_rating": math.nan},
    {"user_rating": -math.inf},
]


def rand_bytes(rng: random.Random) -> bytes:
    n = rng.choice([0, 1, 2, 5, 17, 100, 1000, 20_000])
    return rng.randbytes(n)


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        if op < 0.4 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.6 and b:
            del b[rng.randrange(len(b)) :]
        elif op < 0.8:
            b[rng.randrange(len(b) + 1) : 0] = rng.randbytes(rng.randint(1, 16))
        else:
            b += bytes([rng.randrange(256)]) * rng.randint(1, 8)  # runs of one byte: bogus varints/lengths
    return bytes(b)


def adversarial_select(rng: random.Random) -> selection_pb2.SelectRequest:
    features = dict(PHONE)
    kind = rng.randrange(8)
    if kind == 0:
        features[rng.choice(list(PHONE))] = rng.choice(BAD_NUMBERS)
    elif kind == 1:
        features = {f"f{i}": 1.0 for i in range(rng.choice([257, 300, 3000, 20_000]))}
    elif kind == 2:
        features = {rng.choice(ODD_STRINGS): rng.choice(BAD_NUMBERS)}
    elif kind == 3:
        features = {}
    request = selection_pb2.SelectRequest(
        space=rng.choice(["vision", "vision", "second", *ODD_STRINGS]),
        device_features=features,
        include_ranking=rng.random() < 0.5,
        request_id=rng.choice(["", "r-1", "x" * 3000]),
    )
    if rng.random() < 0.4:
        n = rng.choice([1, 3, 499, 501, 2000, 10_000])
        ids = [rng.choice(["tiny", "big", "nope", "", "x" * 300]) for _ in range(n)]
        request.eligible_model_ids.extend(ids)
    if rng.random() < 0.4:
        prefs = request.preferences
        which = rng.randrange(3)
        if which == 0:
            prefs.latency_budget_ms = rng.choice(BAD_NUMBERS)
        elif which == 1:
            prefs.max_model_size_mb = rng.choice(BAD_NUMBERS)
        else:
            prefs.qoe_weights[rng.choice(["latency", "rating", "bogus", "user_rating", ""])] = rng.choice(
                BAD_NUMBERS
            )
    return request


class Fuzzer:
    def __init__(self, s: Stubs, own: list[str], replayed: list[str]) -> None:
        self.s = s
        self.own = own  # DEVICE_A's pending decisions: feedback for them must fail validation or ownership
        self.replayed = replayed  # already acknowledged: DUPLICATE at most
        self.raw = {m: s.channel.unary_unary(m) for m in METHODS}  # identity (de)serializers: raw bytes

    def cases(self, rng: random.Random) -> Iterator[tuple[str, Callable[[], object]]]:
        sel, cat = self.s.sel, self.s.cat
        while True:
            kind = rng.randrange(10)
            token = rng.choice(TOKENS)
            if kind <= 1:
                method = rng.choice(METHODS)
                data = rand_bytes(rng)
                yield (
                    f"raw {method}",
                    lambda m=method, d=data, t=token: self.raw[m](d, metadata=md(t), timeout=10),
                )
            elif kind == 2:  # valid messages with a few bytes flipped, cut or inserted
                base = adversarial_select(rng) if rng.random() < 0.5 else self._bad_feedback(rng)
                data = mutate(rng, base.SerializeToString())
                method = SELECTION + (
                    "Select" if isinstance(base, selection_pb2.SelectRequest) else "Feedback"
                )
                token = rng.choice([DEVICE_A, ADMIN])
                yield f"mutated {method}", lambda m=method, d=data, t=token: self.raw[m](d, metadata=md(t))
            elif kind <= 4:
                request = adversarial_select(rng)
                yield "select", lambda r=request, t=token: sel.Select(r, metadata=md(t), timeout=10)
            elif kind <= 6:
                request = self._bad_feedback(rng)
                token = rng.choice([DEVICE_A, DEVICE_A, DEVICE_B, ADMIN, None])
                if token == DEVICE_A and request.event_id in self.own and request.WhichOneof("qoe") is None:
                    request.reward = math.nan
                yield "feedback", lambda r=request, t=token: sel.Feedback(r, metadata=md(t), timeout=10)
            elif kind == 7:  # admin RPCs with device, missing or forged tokens
                name, request = self._admin_call(rng, valid=True)
                token = rng.choice([DEVICE_A, DEVICE_B, None, "forged-token-0000000000000000"])
                yield (
                    f"admin-as-device {name}",
                    lambda n=name, r=request, t=token: getattr(cat, n)(r, metadata=md(t), timeout=10),
                )
            else:  # admin RPCs with the admin token but invalid arguments
                name, request = self._admin_call(rng, valid=False)
                yield (
                    f"bad-admin {name}",
                    lambda n=name, r=request: getattr(cat, n)(r, metadata=md(ADMIN), timeout=10),
                )

    def _bad_feedback(self, rng: random.Random) -> selection_pb2.FeedbackRequest:
        source = rng.randrange(5)
        if source == 0:
            event_id = rng.randbytes(16).hex()  # forged: well-formed, never issued
        elif source == 1:
            event_id = rng.choice(self.replayed)
        elif source == 2:
            event_id = rng.choice(["", "x" * 65, "x" * 5000, "ṽ" * 10, "\0"])
        else:
            event_id = rng.choice(self.own)
        request = selection_pb2.FeedbackRequest(event_id=event_id)
        if source == 1 and rng.random() < 0.5:
            request.reward = rng.random()  # a replay of an acknowledged event: DUPLICATE, never learned
        elif rng.random() < 0.5:
            request.reward = rng.choice(BAD_REWARDS)
        elif rng.random() < 0.8:
            request.measurements.CopyFrom(types_pb2.Measurements(**rng.choice(BAD_MEASUREMENTS)))
        return request

    @staticmethod
    def _admin_call(rng: random.Random, *, valid: bool) -> tuple[str, object]:
        """Admin requests; with valid=False every one of them must be refused by validation."""
        space = rng.choice(["vision", "second"])
        if valid:
            name = rng.choice(
                ["ListSpaces", "ExportState", "ResetState", "RetireModel", "AddModel", "ImportState"]
            )
            requests = {
                "ListSpaces": catalog_pb2.ListSpacesRequest(),
                "ExportState": catalog_pb2.ExportStateRequest(space=space),
                "ResetState": catalog_pb2.ResetStateRequest(space=space),
                "RetireModel": catalog_pb2.RetireModelRequest(space="vision", model_id="tiny"),
                "AddModel": catalog_pb2.AddModelRequest(
                    space="second", model=types_pb2.Model(model_id="evil")
                ),
                "ImportState": catalog_pb2.ImportStateRequest(space=space, state=b"\0" * 64),
            }
            return name, requests[name]
        bad_features = {"top1": rng.choice(BAD_NUMBERS), "file_size_mb": 1.0, "quantized": 0.0}
        options: list[tuple[str, object]] = [
            (
                "ImportState",
                catalog_pb2.ImportStateRequest(space=space, state=rng.randbytes(rng.choice([0, 9, 999]))),
            ),
            ("ImportState", catalog_pb2.ImportStateRequest(space="vision", state=b"x", format="pickle")),
            ("AddModel", catalog_pb2.AddModelRequest(space="vision", model=types_pb2.Model(model_id="tiny"))),
            ("AddModel", catalog_pb2.AddModelRequest(space="vision", model=types_pb2.Model(model_id=""))),
            (
                "AddModel",
                catalog_pb2.AddModelRequest(
                    space="vision", model=types_pb2.Model(model_id="nan-model", features=bad_features)
                ),
            ),
            ("AddModel", catalog_pb2.AddModelRequest(space=rng.choice(ODD_STRINGS), model=types_pb2.Model())),
            (
                "UpdateModel",
                catalog_pb2.UpdateModelRequest(
                    space="vision", model=types_pb2.Model(model_id="tiny", features={"top1": 99.0})
                ),
            ),
            (
                "UpdateModel",
                catalog_pb2.UpdateModelRequest(space="vision", model=types_pb2.Model(model_id="nope")),
            ),
            ("RetireModel", catalog_pb2.RetireModelRequest(space="vision", model_id=rng.choice(ODD_STRINGS))),
            ("GetArmStats", catalog_pb2.GetArmStatsRequest(space="vision", model_id="nope")),
            ("ExportState", catalog_pb2.ExportStateRequest(space=rng.choice(ODD_STRINGS))),
            ("ResetState", catalog_pb2.ResetStateRequest(space=rng.choice(ODD_STRINGS))),
            ("ListModels", catalog_pb2.ListModelsRequest(space=rng.choice(ODD_STRINGS))),
        ]
        return rng.choice(options)


def learned(s: Stubs) -> tuple:
    models = [
        s.cat.ListModels(catalog_pb2.ListModelsRequest(space=sp, include_retired=True), metadata=md(ADMIN))
        for sp in ("vision", "second")
    ]
    return (
        s.export("vision"),
        s.export("second"),
        s.total_updates("vision"),
        *[m.SerializeToString() for m in models],
    )


@pytest.mark.usefixtures("admin_env")
def test_fuzz_never_crashes_leaks_or_learns(tmp_path: Path) -> None:
    cfg = write_secure_config(tmp_path, extra=AUTH_SECTION + '\n[server.metrics]\nlisten = "127.0.0.1:0"\n')
    proc = ServerProcess(cfg, tmp_path / "data").start()
    assert proc.proc is not None
    server = psutil.Process(proc.proc.pid)
    try:
        with stubs_for(proc.target) as s:
            replayed = []
            for i in range(30):  # some real learning first, so there is state to corrupt
                r = s.select(DEVICE_A, device_features={**PHONE, "ram_gb": 1.0 + i % 7})
                s.feedback(r.event_id, (i % 10) / 10, DEVICE_A)
                replayed.append(r.event_id)
            own = [s.select(DEVICE_A).event_id for _ in range(20)]
            before = learned(s)
            fuzzer = Fuzzer(s, own, replayed)

            outcomes: Counter[tuple[str, grpc.StatusCode]] = Counter()
            bad: list[tuple[str, grpc.StatusCode, str]] = []
            rss: list[int] = []
            lock = threading.Lock()

            def run(seed: int) -> None:
                rng = random.Random(seed)
                cases = fuzzer.cases(rng)
                for n in range(REQUESTS // THREADS):
                    label, call = next(cases)
                    try:
                        call()
                        code, details = grpc.StatusCode.OK, ""
                    except grpc.RpcError as e:
                        code, details = e.code(), e.details() or ""
                    with lock:
                        outcomes[(label.split()[0], code)] += 1
                        if code in FORBIDDEN:
                            bad.append((label, code, details[:200]))
                        if seed == 0 and n % 100 == 0:
                            rss.append(server.memory_info().rss)

            started = time.monotonic()
            threads = [threading.Thread(target=run, args=(seed,)) for seed in range(THREADS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=240)
            elapsed = time.monotonic() - started

            assert proc.alive(), "the server died"
            assert not bad, f"{len(bad)} improper statuses, e.g. {bad[:5]}"
            assert sum(outcomes.values()) == REQUESTS
            codes = {code for _, code in outcomes}
            for expected in ("INVALID_ARGUMENT", "NOT_FOUND", "PERMISSION_DENIED", "UNAUTHENTICATED"):
                assert getattr(grpc.StatusCode, expected) in codes, (expected, outcomes)
            assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes  # oversized messages
            assert max(rss) - rss[0] < RSS_GROWTH_MAX, [r >> 20 for r in rss]
            assert learned(s) == before, "the fuzz changed the learned state or the catalog"
            # The server still works normally.
            r = s.select(DEVICE_A)
            assert s.feedback(r.event_id, 0.5, DEVICE_A).status == selection_pb2.FEEDBACK_STATUS_ACCEPTED
        time.sleep(0.2)
        assert not tracebacks(proc), tracebacks(proc)[:5]
        assert not [line for line in proc.stderr_lines if "internal error" in line]
        print(f"{REQUESTS} fuzz requests in {elapsed:.1f}s; RSS {rss[0] >> 20}->{max(rss) >> 20} MiB")
    finally:
        proc.kill()
