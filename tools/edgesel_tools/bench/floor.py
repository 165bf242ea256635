"""The floor: a trivial gRPC unary RPC on the same server stack (grpc.aio, same options) that does no work.

It takes a SelectRequest and answers a canned SelectResponse of the same shape and size as a real one (a
model with its features and metadata, scores, a deadline, an event id), so request parsing and response
serialization cost what they cost for Select, and what Select takes beyond the floor is edgesel's own work
(validation, scoring, the durable decision record).
Run as `python -m edgesel_tools.bench.floor --listen 127.0.0.1:0`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

from edgesel.v1 import selection_pb2, types_pb2

SERVICE = "edgesel.bench.v1.FloorService"
METHOD = f"/{SERVICE}/Echo"


def canned_response() -> selection_pb2.SelectResponse:
    """A response like a real Select's for a model of the example catalog."""
    model = types_pb2.Model(
        model_id="mobilenet_v3_large_int8",
        version="IMAGENET1K_QNNPACK_V1",
        artifact_uri="file:///srv/edgesel/models/mobilenet_v3_large_int8/IMAGENET1K_QNNPACK_V1.pt",
        features={
            "top1": 73.004,
            "gflops": 0.217,
            "file_size_mb": 21.554,
            "quantized": 1.0,
            "input_size": 224.0,
        },
        metadata={"family": "mobilenetv3", "top5": "90.858"},
    )
    resp = selection_pb2.SelectResponse(
        event_id="0123456789abcdef0123456789abcdef",
        model=model,
        expected_qoe=0.7312,
        exploration_bonus=0.0811,
        score=0.8123,
        policy_version="123456",
    )
    resp.feedback_deadline.FromSeconds(1_800_000_000)
    return resp


async def serve(listen: str) -> None:
    response = canned_response()

    async def echo(request: selection_pb2.SelectRequest, context: grpc.aio.ServicerContext
                   ) -> selection_pb2.SelectResponse:  # fmt: skip
        return response

    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo,
                request_deserializer=selection_pb2.SelectRequest.FromString,
                response_serializer=selection_pb2.SelectResponse.SerializeToString,
            )
        },
    )
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"LISTENING {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", default="127.0.0.1:0")
    args = p.parse_args()
    asyncio.run(serve(args.listen))


if __name__ == "__main__":
    main()
