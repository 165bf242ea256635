"""The floor: a trivial gRPC unary RPC on the same server stack (grpc.aio, same options), no work at all.

Requests and responses are raw bytes of a given size, so the bench can compare Select/Feedback against
an RPC of the same size that does nothing: what is left is the cost of edgesel itself.
Run as `python -m edgesel_server.bench.floor --listen 127.0.0.1:0 --response-bytes N`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc

METHOD = "/edgesel.bench.v1.FloorService/Echo"


def _identity(b: bytes) -> bytes:
    return b


async def serve(listen: str, response_bytes: int) -> None:
    payload = b"x" * response_bytes

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return payload

    handler = grpc.method_handlers_generic_handler(
        "edgesel.bench.v1.FloorService",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                echo, request_deserializer=_identity, response_serializer=_identity
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
    p.add_argument("--response-bytes", type=int, default=300)
    args = p.parse_args()
    asyncio.run(serve(args.listen, args.response_bytes))


if __name__ == "__main__":
    main()
