"""Model lifecycle: start-up loading, hot reload (polling the repository), explicit load and
unload, warm-up, atomic switch-over and draining of retired versions.

Modes (Triton's names): ``none`` loads every model at start-up and never changes; ``poll`` also
rescans the repository every ``poll_interval_s`` and reconciles what changed; ``explicit``
loads only the models named at start-up and then changes only on ``load`` / ``unload`` calls
(the repository extension, protected by a bearer token). A load may bring its own
configuration and files (:class:`~shipyard.serving.overrides.LoadOverride`): files are staged
in a temporary folder of this server, each version's folder removed once that version is
unloaded (or not taken).

Reconciling a model: versions whose files or config changed are loaded in a worker thread and
warmed up while the old ones keep serving; then the model's whole version table is swapped in
one step on the event loop. Retired versions refuse nothing already queued: they finish their
queue, then unload. A version that fails to load never replaces a good one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from shipyard.repository.layout import (
    MODEL_NAME_RE,
    NAME_RULE,
    ModelEntry,
    model_entry,
    model_names,
    scan_model,
    scan_repository,
)
from shipyard.serving.ensemble import new_version
from shipyard.serving.errors import InvalidInput, ModelNotFound
from shipyard.serving.model import ModelVersion
from shipyard.serving.overrides import LoadOverride, stage_files
from shipyard.serving.registry import ModelRegistry, ModelSlot

__all__ = ["ControlMode", "ModelManager"]

log = logging.getLogger("shipyard.lifecycle")

ControlMode = Literal["none", "poll", "explicit"]


class ModelManager:
    """Keeps a :class:`ModelRegistry` in line with the repository on disk."""

    def __init__(
        self, registry: ModelRegistry, *, mode: ControlMode = "none",
        poll_interval_s: float = 1.0, startup_models: list[str] | None = None,
        startup_overrides: Mapping[str, LoadOverride | None] | None = None,
        staging_root: Path | None = None,
    ) -> None:
        self.registry = registry
        self.root: Path = registry.root
        self.mode = mode
        self.poll_interval_s = poll_interval_s
        self.startup_models = startup_models or []
        #: explicit mode: the load override of a start-up model (a restarted worker's set)
        self.startup_overrides = dict(startup_overrides or {})
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._staging: Path | None = None  # created at the first load that brings files
        #: where that folder is made (None: the system's temporary folder)
        self.staging_root = staging_root

    # -- start / stop -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the start-up models; in poll mode, start watching."""
        loop = asyncio.get_running_loop()
        if self.mode == "explicit":
            self.registry.required = list(self.startup_models)
            for name in self.startup_models:
                try:
                    await self.load(name, self.startup_overrides.get(name))
                except (ModelNotFound, InvalidInput) as exc:
                    log.error("start-up model %s: %s", name, exc.message)
        else:
            entries = await loop.run_in_executor(None, scan_repository, self.root)
            async with self._lock:
                for entry in entries:
                    await self._sync(entry)
        self.registry.loaded = True
        if self.mode == "poll":
            self._poller = asyncio.create_task(self._poll_forever())

    async def stop(self) -> None:
        """Stop watching and wait for retiring versions to unload."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)

    # -- explicit control ---------------------------------------------------------------------

    async def load(self, name: str, override: LoadOverride | None = None) -> None:
        """(Re)load a model from disk, or with the configuration and files of ``override``;
        raise when it does not exist or no version is ready."""
        loop = asyncio.get_running_loop()
        staged: Path | None = None
        if override is not None and override.files:
            if not MODEL_NAME_RE.match(name):
                raise InvalidInput(f"model name {name!r} is not valid ({NAME_RULE})")
            if self._staging is None:
                self._staging = Path(tempfile.mkdtemp(prefix="shipyard-load-",
                                                        dir=self.staging_root))
            staged = await loop.run_in_executor(
                None, stage_files, self._staging, name, override.files)
            entry: ModelEntry | None = await loop.run_in_executor(
                None, model_entry, name, staged, override.config, override.config_hash)
        else:
            entry = await loop.run_in_executor(None, scan_model, self.root, name)
            if entry is not None and override is not None:
                entry = await loop.run_in_executor(
                    None, model_entry, name, entry.path, override.config, override.config_hash)
        if entry is None:
            raise ModelNotFound(
                f"no model {name!r} in repository {str(self.root)!r}; models there: "
                f"{await loop.run_in_executor(None, model_names, self.root)}"
            )
        try:
            async with self._lock:
                await self._sync(entry)
        finally:
            if staged is not None:
                await loop.run_in_executor(None, self._sweep, name, staged)
        slot = self.registry.slot(name)
        if slot is not None and (slot.error or slot.failures or not any(
                mv.ready for mv in slot.versions.values())):
            reasons = slot.error or "; ".join(
                [f"version {v}: {r}" for v, r in slot.failures.items()]
                + [f"version {v}: {mv.reason}" for v, mv in slot.versions.items() if not mv.ready]
            )
            raise InvalidInput(f"model {name!r} failed to load: {reasons}")

    async def unload(self, name: str) -> None:
        """Stop serving a model: new requests get 503; queued ones finish first."""
        async with self._lock:
            slot = self.registry.slot(name)
            if slot is None:
                raise ModelNotFound(f"unknown model {name!r}; loaded: {self.registry.names()}")
            self._retire(self.registry.put(ModelSlot(name, error="unloaded")))
            log.info("unloaded model %s", name)

    async def index(self) -> list[dict[str, str]]:
        """The registry's index plus, in explicit mode, models on disk that are not loaded."""
        rows = self.registry.index()
        if self.mode == "explicit":
            on_disk = await asyncio.get_running_loop().run_in_executor(
                None, model_names, self.root)
            known = set(self.registry.names())
            rows += [{"name": n, "version": "", "state": "UNAVAILABLE", "reason": "not loaded"}
                     for n in on_disk if n not in known]
            rows.sort(key=lambda r: (r["name"], r["version"]))
        return rows

    # -- polling ------------------------------------------------------------------------------

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.poll_once()
            except Exception:  # the watcher must survive anything the disk throws at it
                log.exception("repository poll failed; retrying in %.1f s", self.poll_interval_s)

    async def poll_once(self) -> None:
        """Rescan the repository and reconcile every model that changed."""
        loop = asyncio.get_running_loop()
        entries = await loop.run_in_executor(None, scan_repository, self.root)
        async with self._lock:
            seen = set()
            for entry in entries:
                seen.add(entry.name)
                if self._changed(entry):
                    await self._sync(entry)
            for name in self.registry.names():
                if name not in seen:
                    log.info("model %s left the repository; unloading", name)
                    self._retire(self.registry.put(ModelSlot(name, error="removed from the "
                                                              "repository")))

    def _changed(self, entry: ModelEntry) -> bool:
        slot = self.registry.slot(entry.name)
        if slot is None:
            return True
        return entry.error != slot.source_error or entry.signatures != slot.seen

    # -- reconcile one model ------------------------------------------------------------------

    async def _sync(self, entry: ModelEntry) -> None:
        """Make the registry serve what ``entry`` describes (call with ``_lock`` held)."""
        loop = asyncio.get_running_loop()
        name = entry.name
        old = self.registry.slot(name)
        current = dict(old.versions) if old else {}
        if entry.error or entry.config is None:
            error = entry.error or "no configuration"
            if current and old is not None:
                log.error("model %s: %s; still serving the previous version(s)", name, error)
                self.registry.put(ModelSlot(
                    name, current, old.config, None, {v: error for v in current},
                    seen=dict(entry.signatures), source_error=entry.error))
            else:
                log.error("model %s cannot be served: %s", name, error)
                self.registry.put(ModelSlot(name, error=error, source_error=entry.error))
            self.registry.counters.failed(name, "")
            return
        for warning in entry.warnings:
            log.warning("model %s: %s", name, warning)
        new: dict[int, ModelVersion] = {}
        failures: dict[int, str] = {}
        any_failed = False
        for version, path in sorted(entry.versions.items()):
            signature = entry.signatures.get(version)
            have = current.get(version)
            if have is not None and old is not None and old.seen.get(version) == signature:
                new[version] = have  # files unchanged since the last attempt
                if version in old.failures:
                    failures[version] = old.failures[version]
                continue
            mv = new_version(name, version, path, entry.config, signature, self.registry)
            await loop.run_in_executor(None, mv.load)
            if mv.ready:
                new[version] = mv
                self.registry.counters.loaded(name, version)
                continue
            any_failed = True
            self.registry.counters.failed(name, version)
            if have is not None and have.ready:
                new[version] = have  # keep serving the good files
                failures[version] = mv.reason
            else:
                new[version] = mv  # shows as UNAVAILABLE with its reason
        if any_failed:  # never let a failed load retire a good version
            for version, have in current.items():
                if version not in new and have.ready:
                    new[version] = have
        retired = self.registry.put(ModelSlot(
            name, new, entry.config, None, failures, seen=dict(entry.signatures),
            warnings=list(entry.warnings)))
        self._retire(retired)
        if retired or any(v not in current for v in new):
            log.info("model %s now serves version(s) %s", name,
                     sorted(v for v, mv in new.items() if mv.ready))

    def _sweep(self, name: str, staged: Path) -> None:
        """Remove the version folders of ``staged`` that no version of ``name`` serves (not
        loaded, or the same files were already being served)."""
        slot = self.registry.slot(name)
        used = {mv.path for mv in slot.versions.values()} if slot is not None else set()
        for child in staged.iterdir():
            if child not in used:
                shutil.rmtree(child, ignore_errors=True)
        with contextlib.suppress(OSError):
            staged.rmdir()  # only when empty

    def _unstage(self, mv: ModelVersion) -> None:
        """Remove the folder of an unloaded version when it was staged from a load's files."""
        if self._staging is not None and mv.path.is_relative_to(self._staging):
            shutil.rmtree(mv.path, ignore_errors=True)
            with contextlib.suppress(OSError):
                mv.path.parent.rmdir()  # only when empty

    def _retire(self, versions: list[ModelVersion]) -> None:
        for mv in versions:
            task = asyncio.create_task(self._drain_and_unload(mv))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    async def _drain_and_unload(self, mv: ModelVersion) -> None:
        was_loaded = mv.batcher is not None
        if mv.batcher is not None:
            mv.batcher.close()
            await mv.batcher.drain()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, mv.unload)
        await loop.run_in_executor(None, self._unstage, mv)
        if was_loaded:
            self.registry.counters.unloaded(mv.name, mv.version)
            log.info("unloaded %s version %s", mv.name, mv.version)
