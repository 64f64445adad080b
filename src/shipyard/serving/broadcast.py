"""Model control under ``shipyard serve --workers N``: a load or unload reaches every worker.

The worker that receives a repository ``load`` / ``unload`` call (REST or gRPC) does it itself,
records the outcome in the parent's private folder, then asks every other worker to do the
same and waits for their answers; the call succeeds only when every worker did it.

* **Wire**: each worker listens on a Unix socket ``control-<index>.sock`` in the folder
  (:attr:`~shipyard.serving.peers.WorkerSlot.directory`, mode 0700: only this server's user can
  connect, so its pickles are trusted data). A request is one JSON line ``{"op": "load" |
  "unload", "name": ..., "override": <path> | null}``, the answer one JSON line ``{"ok": true}``
  or ``{"ok": false, "code": ..., "message": ...}``. A load's configuration and files (Triton's
  ``parameters: {config, file:...}``) are pickled once into ``request-<id>.load`` in the folder;
  each worker stages its own copy of the files from it (the file is removed once every worker
  answered).
* **Bounds**: the whole call waits at most ``timeout_s`` for the others. A worker that is not
  listening (dead, or restarting) is skipped: it loads the recorded set when it starts. A worker
  that dies during the call (its connection closes unanswered) is reported as a failure, as is
  one that does not answer in time.
* **The loaded set**: ``models/<name>.pkl`` holds, per model loaded by API (or at start-up),
  its override (or None). The parent writes the start-up models there; a load that succeeded on
  the receiving worker writes its entry, an unload removes it. A (re)started worker starts its
  listener, then reads the set and loads it, so a call made while it starts reaches it either
  through the set or through its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

from shipyard.protocol.errors import ErrorCode, ShipyardError
from shipyard.serving.lifecycle import ModelManager
from shipyard.serving.overrides import LoadOverride
from shipyard.serving.peers import WorkerSlot

__all__ = ["Broadcast", "BroadcastFailed", "loaded_set", "record_loaded"]

log = logging.getLogger("shipyard.workers")

#: the longest a load or unload waits for the other workers (seconds)
BROADCAST_TIMEOUT_S = 120.0
_MODELS = "models"
_LINE_LIMIT = 1 << 20


class BroadcastFailed(ShipyardError):
    """A load or unload that failed on one or more of the other workers."""

    def __init__(self, message: str, code: ErrorCode) -> None:
        super().__init__(message)
        self.code = code


def _socket_path(directory: Path, index: int) -> Path:
    return directory / f"control-{index}.sock"


def record_loaded(directory: Path, name: str, override: LoadOverride | None) -> None:
    """Record in ``directory`` that ``name`` is loaded (with ``override``), atomically."""
    folder = directory / _MODELS
    folder.mkdir(exist_ok=True)
    tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
    tmp.write_bytes(pickle.dumps(override, protocol=pickle.HIGHEST_PROTOCOL))
    os.replace(tmp, folder / f"{name}.pkl")


def _forget(directory: Path, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (directory / _MODELS / f"{name}.pkl").unlink()


def loaded_set(directory: Path) -> dict[str, LoadOverride | None]:
    """The recorded loaded set: model name -> its load override (None: from the repository)."""
    out: dict[str, LoadOverride | None] = {}
    folder = directory / _MODELS
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.pkl")):
        try:
            value = pickle.loads(path.read_bytes())
        except (OSError, EOFError, pickle.UnpicklingError):
            continue  # removed under us
        if value is None or isinstance(value, LoadOverride):
            out[path.stem] = value
    return out


class Broadcast:
    """One worker's end of the broadcast (see the module docstring)."""

    def __init__(self, slot: WorkerSlot, manager: ModelManager,
                 timeout_s: float = BROADCAST_TIMEOUT_S) -> None:
        self.slot = slot
        self.manager = manager
        self.timeout_s = timeout_s
        self._path = _socket_path(slot.directory, slot.index)
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Listen for the other workers' requests (before loading the recorded set)."""
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()  # a dead predecessor's socket
        self._server = await asyncio.start_unix_server(self._serve, path=str(self._path),
                                                       limit=_LINE_LIMIT)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    # -- the receiving worker -----------------------------------------------------------------

    async def load(self, name: str, override: LoadOverride | None = None) -> None:
        """Load ``name`` here, then on every other worker; raise when any failed."""
        own: ShipyardError | None = None
        try:
            await self.manager.load(name, override)
        except ShipyardError as exc:
            own = exc
        request_file: Path | None = None
        loop = asyncio.get_running_loop()
        try:
            if own is None:
                await loop.run_in_executor(None, record_loaded, self.slot.directory, name,
                                           override)
            if override is not None:
                request_file = self.slot.directory / f"request-{uuid.uuid4().hex}.load"
                data = pickle.dumps(override, protocol=pickle.HIGHEST_PROTOCOL)
                await loop.run_in_executor(None, request_file.write_bytes, data)
            failures = await self._ask_others(
                {"op": "load", "name": name,
                 "override": None if request_file is None else str(request_file)})
        finally:
            if request_file is not None:
                with contextlib.suppress(FileNotFoundError):
                    request_file.unlink()
        self._raise(own, failures, f"load of model {name!r}")

    async def unload(self, name: str) -> None:
        """Unload ``name`` here, then on every other worker; raise when any failed."""
        own: ShipyardError | None = None
        try:
            await self.manager.unload(name)
        except ShipyardError as exc:
            own = exc
        _forget(self.slot.directory, name)
        failures = await self._ask_others({"op": "unload", "name": name, "override": None})
        self._raise(own, failures, f"unload of model {name!r}")

    def _raise(self, own: ShipyardError | None,
               failures: dict[int, tuple[ErrorCode, str]], what: str) -> None:
        if own is None and not failures:
            return
        parts = [] if own is None else [f"worker {self.slot.index}: {own.message}"]
        parts += [f"worker {i}: {message}" for i, (_, message) in sorted(failures.items())]
        code = own.code if own is not None else next(iter(failures.values()))[0]
        done = "" if own is not None else f" (done on worker {self.slot.index})"
        raise BroadcastFailed(f"{what} failed on {len(parts)} of {self.slot.count} "
                              f"workers{done}: " + "; ".join(parts), code)

    async def _ask_others(self, request: dict[str, Any]
                          ) -> dict[int, tuple[ErrorCode, str]]:
        """Send ``request`` to every other listening worker; index -> (code, message) of
        those that failed."""
        others = [i for i in range(self.slot.count) if i != self.slot.index]
        line = json.dumps(request).encode() + b"\n"
        tasks = {i: asyncio.create_task(self._ask(i, line)) for i in others}
        if not tasks:
            return {}
        _, pending = await asyncio.wait(tasks.values(), timeout=self.timeout_s)
        for task in pending:
            task.cancel()
        failures: dict[int, tuple[ErrorCode, str]] = {}
        for i, task in tasks.items():
            if task in pending:
                failures[i] = (ErrorCode.DEADLINE_EXCEEDED,
                               f"no answer within {self.timeout_s:g} s")
                continue
            result = task.result()
            if result is not None:
                failures[i] = result
        if failures:
            log.error("%s %s: failed on worker(s) %s", request["op"], request["name"],
                      failures)
        return failures

    async def _ask(self, index: int, line: bytes) -> tuple[ErrorCode, str] | None:
        path = _socket_path(self.slot.directory, index)
        try:
            reader, writer = await asyncio.open_unix_connection(str(path), limit=_LINE_LIMIT)
        except (FileNotFoundError, ConnectionRefusedError):
            # not running (dead or restarting): it loads the recorded set when it starts
            log.info("worker %d is not listening; it catches up from the loaded set", index)
            return None
        except OSError as exc:
            return ErrorCode.UNAVAILABLE, f"cannot reach it: {exc}"
        try:
            writer.write(line)
            await writer.drain()
            answer = await reader.readline()
        except (OSError, ValueError) as exc:  # ValueError: an answer past the line limit
            return ErrorCode.UNAVAILABLE, f"connection lost: {exc}"
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        if not answer:
            return ErrorCode.UNAVAILABLE, "exited before it answered (it is restarted)"
        try:
            doc = json.loads(answer)
            if doc.get("ok"):
                return None
            return ErrorCode(doc.get("code", "INTERNAL")), str(doc.get("message"))
        except (ValueError, AttributeError):
            return ErrorCode.INTERNAL, f"unreadable answer {answer[:200]!r}"

    # -- the other workers --------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            if line:
                answer = await self._handle(line)
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (OSError, ValueError) as exc:  # the asking worker went away, or a huge line
            log.warning("model control request from another worker dropped: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op, name, source = request["op"], str(request["name"]), request.get("override")
            if op == "load":
                override: LoadOverride | None = None
                if source is not None:
                    data = await asyncio.get_running_loop().run_in_executor(
                        None, Path(source).read_bytes)
                    override = pickle.loads(data)
                await self.manager.load(name, override)
            elif op == "unload":
                await self.manager.unload(name)
            else:
                raise ValueError(f"unknown op {op!r}")
        except ShipyardError as exc:
            return {"ok": False, "code": str(exc.code), "message": exc.message}
        except Exception as exc:  # answer rather than leave the asking worker waiting
            log.exception("model control request failed")
            return {"ok": False, "code": "INTERNAL", "message": f"{type(exc).__name__}: {exc}"}
        return {"ok": True}
