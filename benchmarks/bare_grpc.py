"""A bare grpc.aio server: the ceiling for Shipyard's gRPC frontend.

It implements ``inference.GRPCInferenceService`` with canned replies (fetched from the real
server by ``serve_bench.py``): requests are parsed with ``kserve_pb2`` and a prebuilt response
message is serialised, with no validation and no inference. The server has the same options as
``shipyard.serving.server.Server`` and runs on uvloop, as the real server does.

    python benchmarks/bare_grpc.py --canned canned.json [--host 127.0.0.1] [--port 0]
        [--executor-hop]

``canned.json`` holds ``{"grpc": {"ModelInfer": "<base64 ModelInferResponse>", "ModelConfig":
..., ...}}``: one serialised response per method name. ModelStatistics counts the ModelInfer
calls served (perf_analyzer needs its counters to move). Logs ``gRPC listening on HOST:PORT`` to
stderr once it serves. With ``--executor-hop`` each ModelInfer also awaits a no-op in a one-thread
executor, the thread hop the real server's batcher makes (a diagnostic, not a ceiling).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from shipyard.serving.grpc.protos import kserve_pb2 as pb

#: the options shipyard.serving.server.Server gives grpc.aio.server (max_body_bytes default)
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_concurrent_streams", 1024),
]


def _noop() -> None:
    return None


def handlers(canned: dict[str, str], hop: bool = False) -> grpc.GenericRpcHandler:
    served = [0]
    pool = ThreadPoolExecutor(max_workers=1) if hop else None
    methods = {}
    for method, b64 in canned.items():
        req_cls = getattr(pb, f"{method}Request")
        resp_cls = getattr(pb, f"{method}Response")
        response = resp_cls.FromString(base64.b64decode(b64))

        def make(resp: Any) -> Any:
            async def handler(request: Any, context: Any) -> Any:
                return resp

            return handler

        if method == "ModelInfer":
            async def infer(request: Any, context: Any, resp: Any = response) -> Any:
                served[0] += 1
                if pool is not None:  # diagnostic: the thread hop the real server's batcher makes
                    await asyncio.get_running_loop().run_in_executor(pool, _noop)
                return resp

            fn = infer
        elif method == "ModelStatistics":
            async def statistics(request: Any, context: Any, resp: Any = response) -> Any:
                # perf_analyzer finds the model version by a queue count that grew
                n = served[0]
                for st in resp.model_stats:
                    st.inference_count = st.execution_count = n
                    s = st.inference_stats
                    for d in (s.success, s.queue, s.compute_input, s.compute_infer,
                              s.compute_output):
                        d.count = n
                return resp

            fn = statistics
        else:
            fn = make(response)
        methods[method] = grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=req_cls.FromString,
            response_serializer=resp_cls.SerializeToString,
        )
    return grpc.method_handlers_generic_handler("inference.GRPCInferenceService", methods)


async def serve(canned: dict[str, str], host: str, port: int, hop: bool = False) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers([handlers(canned, hop)])
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"gRPC listening on {host}:{bound}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop(0.5)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--canned", required=True, help="JSON file of canned replies")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--executor-hop", action="store_true",
                        help="diagnostic: run a no-op in a 1-thread executor for each ModelInfer")
    args = parser.parse_args(argv)
    with open(args.canned) as f:
        canned = json.load(f)["grpc"]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is part of shipyard[serve]
        asyncio.run(serve(canned, args.host, args.port, args.executor_hop))
    else:
        uvloop.run(serve(canned, args.host, args.port, args.executor_hop))


if __name__ == "__main__":
    main()
