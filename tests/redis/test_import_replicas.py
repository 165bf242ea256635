"""ImportModels with the Redis store: the one event reaches every replica, which all apply it alike."""

from __future__ import annotations

from pathlib import Path

from edgesel.v1 import catalog_pb2, types_pb2
from tests.redis.conftest import RedisServer, requires_redis
from tests.redis.test_replicas import cat, converge, replicas


@requires_redis
def test_an_import_reaches_every_replica_as_one_entry(tmp_path: Path, redis_server: RedisServer) -> None:
    r = redis_server.client()
    with replicas(tmp_path, redis_server, 2) as procs:
        a, b = (p.target for p in procs)
        entries = r.xlen("edgesel:{vision}:log")
        request = catalog_pb2.ImportModelsRequest(
            space="vision",
            add=[
                types_pb2.Model(
                    model_id=f"m{i}", features={"top1": 50.0 + i, "file_size_mb": 3.0, "quantized": 1.0}
                )
                for i in range(5)
            ],
            update=[types_pb2.Model(model_id="big", version="7")],
        )
        cat(a).ImportModels(request, timeout=10)
        assert r.xlen("edgesel:{vision}:log") == entries + 1
        exports = converge([a, b], r)
        assert exports[0] == exports[1]
        listed = [
            {m.model_id: (m.version, dict(m.features)) for m in cat(t).ListModels(
                catalog_pb2.ListModelsRequest(space="vision"), timeout=10).models}
            for t in (a, b)
        ]  # fmt: skip
        assert listed[0] == listed[1]
        assert sorted(listed[0]) == ["big", "m0", "m1", "m2", "m3", "m4", "small", "tiny"]
        assert listed[1]["big"][0] == "7" and listed[1]["m3"][1]["top1"] == 53.0
