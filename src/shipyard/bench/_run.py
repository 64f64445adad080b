"""One capacity report: a server (started here, or ``--url``), the in-process ceiling, and a
level of load per protocol and concurrency."""

from __future__ import annotations

import datetime
import io
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from shipyard.bench._load import (
    HttpBody,
    cpu_seconds,
    find_wrk,
    grpc_load,
    rest_load,
    wrk_load,
)
from shipyard.bench._result import (
    PROTOCOLS,
    BenchError,
    BenchResult,
    BenchSettings,
    Ceiling,
    Level,
)
from shipyard.bench._server import BenchServer, ServerStartError, serve, stats
from shipyard.client._vocab import ModelInfo, encode_items
from shipyard.protocol.types import Array, datatype_of

__all__ = ["run_bench"]

#: the text a text model is measured with when ``--data`` gives none
SAMPLE_TEXT = "WINNER!! As a valued network customer you have been selected to receive a " \
              "£900 prize reward! To claim call 09061701461. Valid 12 hours only."
# -- request bodies ---------------------------------------------------------------------------


def _drawn_digit() -> bytes:
    """A 28x28 PNG of a white ring on black (a zero, as MNIST writes it)."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(image).ellipse((7, 4, 21, 24), outline=255, width=3)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _sample_items(info: ModelInfo, n: int, data: Path | None) -> list[Any]:
    if data is not None:
        from shipyard.predict import PredictError, read_data

        try:
            dataset = read_data(data, info)
            items = []
            for row in dataset.rows:
                if row.error is not None:
                    raise BenchError(f"--data {str(data)!r}: {row.error}")
                items.append(row.item)
                if len(items) >= n:
                    break
        except PredictError as exc:
            raise BenchError(exc.message) from exc
        if not items:
            raise BenchError(f"--data {str(data)!r} holds no rows")
        return [items[i % len(items)] for i in range(n)]
    kind = info.kind
    if kind == "images":
        return [_drawn_digit()] * n
    if kind == "texts":
        return [SAMPLE_TEXT] * n
    if kind == "columns":
        neutral: dict[str, Any] = {s.name: "" if s.datatype == "BYTES" else 0
                                   for s in info.inputs}
        return [dict(neutral) for _ in range(n)]
    spec = info.inputs[0]
    shape = [1 if d < 0 else d for d in spec.shape[1:]]
    rng = np.random.default_rng(0)
    values: Array = rng.standard_normal((n, *shape))
    if spec.datatype.startswith(("INT", "UINT")):
        values = np.abs(values).round()
    elif spec.datatype == "BOOL":
        values = values > 0
    return list(values.tolist())


def _json_body(info: ModelInfo, arrays: dict[str, Array]) -> HttpBody:
    from shipyard.protocol.errors import InvalidInput
    from shipyard.protocol.wire import to_json_data

    try:
        doc = {"inputs": [{"name": k, "datatype": datatype_of(a), "shape": list(a.shape),
                           "data": to_json_data(k, a)} for k, a in arrays.items()]}
    except InvalidInput as exc:
        raise BenchError(f"--protocol rest-json: model {info.name!r} takes bytes that are not "
                         "UTF-8 text (an encoded image), which JSON cannot carry; use "
                         "--protocol rest-binary") from exc
    return HttpBody(f"/v2/models/{info.name}/infer", json.dumps(doc).encode(),
                    {"Content-Type": "application/json"})


def _binary_body(info: ModelInfo, arrays: dict[str, Array]) -> HttpBody:
    from shipyard.client._rest import encode_infer

    body, headers = encode_infer(arrays, None, None, "", None)
    return HttpBody(f"/v2/models/{info.name}/infer", body, headers)


def _grpc_body(info: ModelInfo, arrays: dict[str, Array]) -> bytes:
    from shipyard.client._grpc import infer_request
    from shipyard.protocol.grpc.pool import kserve_messages

    message: bytes = infer_request(kserve_messages(), info.name, "", arrays, None, None,
                                   "").SerializeToString()
    return message


def _with_auth(body: HttpBody, token: str | None) -> HttpBody:
    if not token:
        return body
    return HttpBody(body.path, body.body, {**body.headers, "Authorization": f"Bearer {token}"})


def _repeat(arrays: dict[str, Array], rows: int) -> dict[str, Array]:
    return {k: np.take(a, np.arange(rows) % a.shape[0], axis=0) for k, a in arrays.items()}


# -- the in-process ceiling --------------------------------------------------------------------


def _ceiling(local: Any, arrays: dict[str, Array], seconds: float) -> Ceiling:
    """The model in this process, one request after another, for ``seconds``."""
    batch = next(iter(arrays.values())).shape[0]

    async def loop() -> Ceiling:
        model = local.model
        for _ in range(3):  # warm
            await model.infer(local.request(arrays))
        latencies = []
        t0 = time.perf_counter()
        stop = t0 + seconds
        while True:
            start = time.perf_counter()
            if start >= stop:
                break
            await model.infer(local.request(arrays))
            latencies.append(time.perf_counter() - start)
        wall = time.perf_counter() - t0
        return Ceiling(batch, len(latencies), wall,
                       float(np.percentile(np.asarray(latencies) * 1e3, 50)))

    result: Ceiling = local.run(loop())
    return result


# -- the run -----------------------------------------------------------------------------------


def _demo_repository() -> Path:
    from shipyard.serving.config import demo_repository

    return demo_repository()


def _info(url: str, model: str, token: str | None) -> ModelInfo:
    from shipyard.client import Client, ClientError, NotFound

    try:
        with Client(url, token=token, timeout_s=15) as client:
            return client.model(model)
    except NotFound as exc:
        names: list[str] = []
        try:
            with Client(url, token=token, timeout_s=15) as client:
                names = sorted({str(r["name"]) for r in client.models()})
        except ClientError:
            pass
        raise BenchError(f"unknown model {model!r} at {url}"
                         + (f"; its models are {names}" if names else "")) from exc
    except ClientError as exc:
        hint = " (is the server running? check --url)" if "cannot reach" in exc.message else ""
        raise BenchError(f"{exc.message}{hint}") from exc


def _smoke(url: str, model: str, arrays: dict[str, Array], token: str | None) -> None:
    """One request through the client before any load: a refusal is the user's to fix."""
    from shipyard.client import Client, ClientError

    try:
        with Client(url, token=token, timeout_s=30) as client:
            client.infer(model, arrays)
    except ClientError as exc:
        raise BenchError(f"the server refused a request for model {model!r}: {exc.message}"
                         ) from exc


def _protocols(settings: BenchSettings, info: ModelInfo) -> list[str]:
    if settings.protocols:
        for p in settings.protocols:
            if p not in PROTOCOLS:
                raise BenchError(f"--protocol: {p!r} is not one of {list(PROTOCOLS)}")
        return list(dict.fromkeys(settings.protocols))
    return ["rest-binary"] if info.kind == "images" else ["rest-json"]


def _check_settings(settings: BenchSettings) -> None:
    if settings.batch < 1:
        raise BenchError(f"--batch: {settings.batch} is not a positive number of rows")
    if not settings.concurrency or min(settings.concurrency) < 1:
        raise BenchError("--concurrency: give at least one positive level, e.g. 1,16,64")
    if settings.load_tool not in ("auto", "wrk", "builtin"):
        raise BenchError(f"--load-tool: {settings.load_tool!r} is not one of auto, wrk, "
                         "builtin")
    if settings.load_tool == "wrk" and find_wrk() is None:
        raise BenchError("--load-tool wrk: wrk is not on PATH; install it (apt-get install "
                         "wrk) or pass --load-tool builtin")


def run_bench(settings: BenchSettings, say: Callable[[str], None] = lambda line: None
              ) -> BenchResult:
    """Measure ``settings.model``: the in-process ceiling, then each protocol at each
    concurrency; write ``bench.json``, ``bench.md`` and (with matplotlib) ``bench.png`` into
    the report folder. BenchError for a mistake the user can fix."""
    _check_settings(settings)
    if settings.url is None:
        repository = settings.repository or _demo_repository()
        if not repository.is_dir():
            raise BenchError(f"--model-repository: {str(repository)!r} is not a directory")
        from shipyard.repository.layout import model_names

        names = model_names(repository)
        if settings.model not in names:
            raise BenchError(f"unknown model {settings.model!r} in {str(repository)!r}; its "
                             f"models are {names}")
        try:
            with serve(repository, say) as server:
                return _measure(settings, f"http://127.0.0.1:{server.http_port}",
                                f"127.0.0.1:{server.grpc_port}", repository, server, say)
        except ServerStartError as exc:
            raise BenchError(exc.message) from exc
    from shipyard.client import ClientError, parse_url

    try:
        endpoint = parse_url(settings.url)
    except ClientError as exc:
        raise BenchError(f"--url: {exc.message}") from exc
    rest = endpoint.url if endpoint.protocol == "rest" else None
    grpc_target = endpoint.target if endpoint.protocol == "grpc" else None
    return _measure(settings, rest, grpc_target, settings.repository, None, say,
                    tls=endpoint.tls, given=endpoint.url)


def _measure(settings: BenchSettings, rest: str | None, grpc_target: str | None,
             repository: Path | None, server: BenchServer | None, say: Callable[[str], None], *,
             tls: bool = False, given: str | None = None) -> BenchResult:
    from shipyard.predict import LocalModel, PredictError

    model = settings.model
    url = rest if rest is not None else f"{'grpcs' if tls else 'grpc'}://{grpc_target}"
    info = _info(url, model, settings.token)
    protocols = _protocols(settings, info)
    for p in protocols:
        if p.startswith("rest") and rest is None:
            raise BenchError(f"--protocol {p} needs a REST server: pass --url http://HOST:PORT")
        if p == "grpc" and grpc_target is None:
            raise BenchError("--protocol grpc needs a gRPC server: pass --url grpc://HOST:PORT")
    limit = info.properties.get("max_batch_size", "0")
    cap = int(limit) if limit.isdigit() else 0
    if cap > 0 and settings.batch > cap:
        raise BenchError(f"--batch {settings.batch}: model {model!r} takes at most {cap} rows "
                         "per request (max_batch_size)")
    try:
        arrays = encode_items(info, _sample_items(info, settings.batch, settings.data))
    except ValueError as exc:  # InvalidArgument
        raise BenchError(f"model {model!r}: {getattr(exc, 'message', exc)}") from exc
    _smoke(url, model, arrays, settings.token)
    notes: list[str] = []
    wrk = find_wrk() if settings.load_tool in ("auto", "wrk") else None
    if any(p.startswith("rest") for p in protocols):
        notes.append(f"REST load: {'wrk (1 thread)' if wrk else 'built-in asyncio client'}"
                     + ("" if wrk or settings.load_tool == "builtin"
                        else " (wrk is not on PATH)"))
    if "grpc" in protocols:
        notes.append("gRPC load: built-in grpc.aio client (prebuilt serialized request)")
    if wrk and settings.duration_s < 1:
        notes.append(f"wrk measures whole seconds: each REST level ran 1 s, not "
                     f"{settings.duration_s:g} s")
    local = None
    ceiling = None
    if repository is not None and (repository / model).is_dir():
        try:
            local = LocalModel(repository, model)
        except PredictError as exc:
            notes.append(f"no in-process ceiling: {exc.message}")
    else:
        notes.append(f"no in-process ceiling: model {model!r} is not in "
                     + (f"{str(repository)!r}" if repository is not None else
                        "a local repository (pass --model-repository DIR with its files)"))
    levels: list[Level] = []
    try:
        if local is not None:
            say(f"in-process ceiling: batch {settings.batch}, {settings.duration_s:g} s ...")
            ceiling = _ceiling(local, arrays, settings.duration_s)
        cached: dict[int, Ceiling] = {}
        with tempfile.TemporaryDirectory(prefix="shipyard-bench-") as work:
            for protocol in protocols:
                for conc in settings.concurrency:
                    say(f"{protocol}, concurrency {conc}, {settings.duration_s:g} s ...")
                    level = _level(settings, info, arrays, protocol, conc, rest, grpc_target,
                                   tls, wrk, server, Path(work))
                    formed = level.formed_batch
                    if local is not None and formed is not None:
                        size = min(round(formed), cap) if cap > 0 else round(formed)
                        if size > settings.batch:
                            if size not in cached:
                                say(f"in-process ceiling at the formed batch {size} ...")
                                cached[size] = _ceiling(local, _repeat(arrays, size),
                                                        settings.duration_s)
                            level.ceiling_at_formed = cached[size]
                    levels.append(level)
    finally:
        if local is not None:
            local.close()
    cores = os.cpu_count() or 1
    machine = {"cores": cores, "platform": platform.platform(),
               "python": platform.python_version()}
    notes.append(f"the load tool, the server and this process share this machine's {cores} "
                 "core(s): the client's CPU lowers the served figure")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = settings.output or Path("bench") / f"{model}-{stamp}"
    result = BenchResult(settings, info, given or url, server is not None, ceiling, levels,
                         notes, folder, machine=machine)
    from shipyard.bench._report import write_report

    write_report(result)
    return result


def _level(settings: BenchSettings, info: ModelInfo, arrays: dict[str, Array], protocol: str,
           conc: int, rest: str | None, grpc_target: str | None, tls: bool, wrk: str | None,
           server: BenchServer | None, work: Path) -> Level:
    before = stats(rest, info.name, settings.token) if rest is not None else None
    cpu0 = cpu_seconds(server.proc.pid) if server is not None else None
    if protocol == "grpc":
        assert grpc_target is not None
        load = grpc_load(grpc_target, tls, _grpc_body(info, arrays), conc,
                         settings.duration_s, settings.token)
    else:
        assert rest is not None
        body = _json_body(info, arrays) if protocol == "rest-json" else \
            _binary_body(info, arrays)
        body = _with_auth(body, settings.token)
        if wrk is not None:
            load = wrk_load(wrk, rest, body, conc, settings.duration_s,
                            work / f"{protocol}-{conc}")
        else:
            from urllib.parse import urlsplit

            parts = urlsplit(rest)
            assert parts.hostname is not None
            load = rest_load(parts.hostname, parts.port or (443 if tls else 80), tls, body,
                             conc, settings.duration_s)
    cpu1 = cpu_seconds(server.proc.pid) if server is not None else None
    after = stats(rest, info.name, settings.token) if rest is not None else None
    level = Level(protocol, conc, settings.batch, load)
    if cpu0 is not None and cpu1 is not None:
        level.server_cpu_s = cpu1 - cpu0
    if before is not None and after is not None:
        level.server_success = after[0] - before[0]
        executions = after[2] - before[2]
        if executions > 0:
            level.formed_batch = (after[1] - before[1]) / executions
    return level
