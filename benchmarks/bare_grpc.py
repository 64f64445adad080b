"""A bare grpc.aio server: the ceiling for Shipyard's gRPC frontend.

It implements ``inference.GRPCInferenceService`` with canned replies (fetched from the real
server by ``serve_bench.py``): requests are parsed with ``kserve_pb2`` and a prebuilt response
message is serialised, with no validation and no inference. The server has the same options as
``shipyard.serving.server.Server`` and runs on uvloop, as the real server does.

    python benchmarks/bare_grpc.py --canned canned.json [--host 127.0.0.1] [--port 0]
        [--executor-hop | --onnx-worker MODEL.onnx]

``canned.json`` holds ``{"grpc": {"ModelInfer": "<base64 ModelInferResponse>", "ModelConfig":
..., ...}}``: one serialised response per method name. ModelStatistics counts the ModelInfer
calls served (perf_analyzer needs its counters to move). ModelStreamInfer answers each request
on the stream with the canned ModelInfer response (with the request's id), in order. Logs
``gRPC listening on HOST:PORT`` to stderr once it serves. With ``--executor-hop`` each
ModelInfer also awaits a no-op in a one-thread executor, the thread hop the real server's
batcher makes (a diagnostic, not a ceiling). With
``--onnx-worker MODEL.onnx`` each ModelInfer runs that model on its request's first raw input
in a worker thread fed by a ``queue.SimpleQueue`` (ONNX Runtime with one intra-op and one
inter-op thread, as the real server configures it) and waits for it: the least a server that
never runs inference on its event loop has to do per request, without batching, validation or
statistics (a diagnostic: the ceiling of such a server).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import queue
import signal
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import numpy as np

from shipyard.protocol.grpc import kserve_pb2 as pb
from shipyard.serving.types import DATATYPES

#: the options shipyard.serving.server.Server gives grpc.aio.server (max_body_bytes default)
SERVER_OPTIONS = [
    ("grpc.so_reuseport", 0),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_concurrent_streams", 1024),
]


def _noop() -> None:
    return None


class OnnxWorker:
    """One thread running an ONNX model on the inputs it is handed (``run`` is awaitable)."""

    def __init__(self, path: str) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.work: queue.SimpleQueue[tuple[Any, Any, asyncio.AbstractEventLoop]] = (
            queue.SimpleQueue())
        threading.Thread(target=self._loop, name="onnx-worker", daemon=True).start()

    def _loop(self) -> None:
        while True:
            array, future, loop = self.work.get()
            result = self.session.run(None, {self.input: array})
            loop.call_soon_threadsafe(future.set_result, result)

    async def run(self, request: Any) -> Any:
        tensor = request.inputs[0]
        array = np.frombuffer(request.raw_input_contents[0], dtype=DATATYPES[tensor.datatype])
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.work.put((array.reshape(tuple(tensor.shape)), future, loop))
        return await future


def handlers(canned: dict[str, str], hop: bool = False,
             onnx: str | None = None) -> grpc.GenericRpcHandler:
    served = [0]
    pool = ThreadPoolExecutor(max_workers=1) if hop else None
    worker = OnnxWorker(onnx) if onnx else None
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
                if worker is not None:  # diagnostic: parse, run the model off the loop, reply
                    await worker.run(request)
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
    if "ModelInfer" in canned:  # the stream answers every request with the canned response
        streamed = pb.ModelStreamInferResponse(infer_response=pb.ModelInferResponse.FromString(
            base64.b64decode(canned["ModelInfer"])))

        async def stream(requests: Any, context: Any) -> Any:
            async for request in requests:
                served[0] += 1
                answer = pb.ModelStreamInferResponse()
                answer.CopyFrom(streamed)
                answer.infer_response.id = request.id  # perf_analyzer matches answers by id
                yield answer

        methods["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
            stream, request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelStreamInferResponse.SerializeToString)
    return grpc.method_handlers_generic_handler("inference.GRPCInferenceService", methods)


async def serve(canned: dict[str, str], host: str, port: int, hop: bool = False,
                onnx: str | None = None) -> None:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers([handlers(canned, hop, onnx)])
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
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--executor-hop", action="store_true",
                      help="diagnostic: run a no-op in a 1-thread executor for each ModelInfer")
    mode.add_argument("--onnx-worker", metavar="MODEL.onnx",
                      help="diagnostic: run this model on each ModelInfer's input in a worker "
                           "thread")
    args = parser.parse_args(argv)
    with open(args.canned) as f:
        canned = json.load(f)["grpc"]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is part of shipyard[serve]
        asyncio.run(serve(canned, args.host, args.port, args.executor_hop, args.onnx_worker))
    else:
        uvloop.run(serve(canned, args.host, args.port, args.executor_hop, args.onnx_worker))


if __name__ == "__main__":
    main()
