"""A bare ASGI app on uvicorn: the ceiling for Shipyard's REST frontend.

With ``--shipyard-http`` the same app runs on Shipyard's own HTTP server
(``shipyard.serving.http.server``) instead: a reference row that shows what that server costs
by itself, not the ceiling the targets use.

It answers from canned replies (fetched from the real server by ``serve_bench.py``) and does no
parsing, validation or inference: it only reads the request body and writes a fixed response.
uvicorn runs with the same settings as ``shipyard.serving.server.Server`` (httptools, uvloop,
lifespan off, no access log, log level warning, a pre-bound socket with backlog 2048).

    python benchmarks/bare_asgi.py --canned canned.json [--host 127.0.0.1] [--port 0]
        [--executor-hop] [--shipyard-http]

``canned.json`` holds ``{"http": {"GET /v2/models/risk": {"status": 200, "headers": [[k, v]],
"body_b64": "..."}, ...}, "http_infer": {"path": "/v2/models/risk/infer", "binary": {...},
"json": {...}}}``. A request with an ``Inference-Header-Content-Length`` header (the binary
tensor extension, perf_analyzer's default) gets the ``binary`` reply, any other the ``json`` one.
Statistics replies (``.../stats``) count the infer requests served, as perf_analyzer needs.
With ``--executor-hop`` each infer request also awaits a no-op in a one-thread executor, the
thread hop the real server's batcher makes (a diagnostic, not a ceiling). Logs
``HTTP listening on http://HOST:PORT`` to stderr once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import uvicorn

Reply = tuple[int, list[tuple[bytes, bytes]], bytes]

_MISS = b'{"error":"no canned reply"}'
_NOT_FOUND: Reply = (404, [(b"content-type", b"application/json"),
                           (b"content-length", str(len(_MISS)).encode())], _MISS)


def _reply(doc: dict[str, Any]) -> Reply:
    body = base64.b64decode(doc["body_b64"])
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in doc["headers"]
               if k.lower() not in ("content-length", "date", "server")]
    headers.append((b"content-length", str(len(body)).encode()))
    return int(doc["status"]), headers, body


def _stats_body(template: dict[str, Any], n: int) -> bytes:
    """The real server's statistics reply with every counter set to ``n`` served requests.

    perf_analyzer finds the model version to report on by looking for a queue count that grew
    during the measurement window, so the counters must move; the times stay 0.
    """
    for st in template.get("model_stats", []):
        st["inference_count"] = st["execution_count"] = n
        for d in st["inference_stats"].values():
            if d is not st["inference_stats"]["fail"]:
                d["count"] = n
        for key in ("cache_hit", "cache_miss"):
            if key in st["inference_stats"]:
                st["inference_stats"][key]["count"] = 0
    return json.dumps(template, separators=(",", ":")).encode()


def make_app(canned: dict[str, Any], log_misses: bool = True, hop: bool = False) -> Any:
    routes = {key: _reply(doc) for key, doc in canned.get("http", {}).items()}
    stats = {key: json.loads(routes[key][2]) for key in routes
             if key.endswith("/stats") and routes[key][0] == 200}
    infer = canned["http_infer"]
    infer_key = "POST " + infer["path"]
    infer_binary = _reply(infer["binary"])
    infer_json = _reply(infer["json"])
    hlen = b"inference-header-content-length"
    served = [0]
    pool = ThreadPoolExecutor(max_workers=1) if hop else None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:  # read (and drop) the whole body, as any real handler must
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more = message.get("more_body", False)
        key = scope["method"] + " " + scope["path"]
        if key == infer_key:
            served[0] += 1
            if pool is not None:  # diagnostic: the thread hop the real server's batcher makes
                await asyncio.get_running_loop().run_in_executor(pool, _noop)
            reply = infer_json
            for name, _ in scope["headers"]:
                if name == hlen:
                    reply = infer_binary
                    break
        elif key in stats:
            body = _stats_body(stats[key], served[0])
            reply = (200, [(b"content-type", b"application/json"),
                           (b"content-length", str(len(body)).encode())], body)
        elif key in routes:
            reply = routes[key]
        else:
            if log_misses:
                print(f"bare_asgi: no canned reply for {key}", file=sys.stderr, flush=True)
            reply = _NOT_FOUND
        status, headers, body = reply
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def _noop() -> None:
    return None


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:  # same as shipyard.serving.server._bind
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve_shipyard_http(canned: dict[str, Any], host: str, port: int,
                              hop: bool = False) -> None:
    from shipyard.serving.http.server import HttpServer

    sock = _bind(host, port)
    server = HttpServer(make_app(canned, hop=hop), keep_alive_s=30.0)
    await server.start(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"HTTP listening on http://{host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.shutdown(0.5)


async def serve(canned: dict[str, Any], host: str, port: int, hop: bool = False) -> None:
    sock = _bind(host, port)
    config = uvicorn.Config(
        make_app(canned, hop=hop), http="httptools", lifespan="off", access_log=False,
        log_level="warning", timeout_keep_alive=30, log_config=None,
    )
    server = _Uvicorn(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    print(f"HTTP listening on http://{host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    await task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--canned", required=True, help="JSON file of canned replies")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--executor-hop", action="store_true",
                        help="diagnostic: run a no-op in a 1-thread executor for each infer")
    parser.add_argument("--shipyard-http", action="store_true",
                        help="reference: serve the app with Shipyard's HTTP server, not uvicorn")
    args = parser.parse_args(argv)
    with open(args.canned) as f:
        canned = json.load(f)
    run = serve_shipyard_http if args.shipyard_http else serve
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is part of shipyard[serve]
        asyncio.run(run(canned, args.host, args.port, args.executor_hop))
    else:
        uvloop.run(run(canned, args.host, args.port, args.executor_hop))


if __name__ == "__main__":
    main()
