"""The live models of a repository: lookup by name and version, atomic swaps, shutdown.

Which versions are loaded, and when, is decided by ``lifecycle.py``; this module holds the
current state and answers lookups. Both run on the event loop thread, so a swap (replacing a
model's whole version table at once) is atomic for every request: a request resolves its version
and enters that version's queue without yielding in between, and a retired version finishes
what it has queued before it is unloaded.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.serving.config import ModelConfig
from shipyard.serving.errors import ModelNotFound, ModelNotReady
from shipyard.serving.model import ModelVersion
from shipyard.serving.types import InferenceRequest, InferenceResponse

__all__ = ["FALLBACK_DEFAULT_MODEL", "LifecycleCounters", "ModelRegistry", "ModelSlot"]

#: the model ``POST /predict`` serves when no default model is set and the repository holds
#: several models (the demo repository's seed model)
FALLBACK_DEFAULT_MODEL = "risk"


@dataclass
class ModelSlot:
    """A model name and its served versions (replaced as a whole, never edited in place)."""

    name: str
    versions: dict[int, ModelVersion] = field(default_factory=dict)
    config: ModelConfig | None = None
    #: why the model as a whole cannot serve (bad config, unloaded, no versions)
    error: str | None = None
    #: version -> reason its latest load failed while an older good version kept serving
    failures: dict[int, str] = field(default_factory=dict)
    #: version -> file signature last reconciled (loaded or failed): unchanged = no retry
    seen: dict[int, Hashable] = field(default_factory=dict)
    #: the repository scan's error last reconciled (e.g. a broken config.yaml)
    source_error: str | None = None
    #: what the configuration asked for that is ignored (a config.pbtxt's unsupported fields);
    #: shown as the reason of its ready versions in the repository index
    warnings: list[str] = field(default_factory=list)


@dataclass
class LifecycleCounters:
    """Load / unload events per (model, version), for the metrics."""

    loads: dict[tuple[str, str], int] = field(default_factory=dict)
    load_failures: dict[tuple[str, str], int] = field(default_factory=dict)
    unloads: dict[tuple[str, str], int] = field(default_factory=dict)

    @staticmethod
    def _bump(table: dict[tuple[str, str], int], name: str, version: int | str) -> None:
        key = (name, str(version))
        table[key] = table.get(key, 0) + 1

    def loaded(self, name: str, version: int | str) -> None:
        self._bump(self.loads, name, version)

    def failed(self, name: str, version: int | str) -> None:
        self._bump(self.load_failures, name, version)

    def unloaded(self, name: str, version: int | str) -> None:
        self._bump(self.unloads, name, version)


class ModelRegistry:
    """Every served model; the frontends' single entry point to inference."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._slots: dict[str, ModelSlot] = {}
        #: True once the start-up loads are done (readiness)
        self.loaded = False
        #: models that must have a ready version for the server to be ready
        self.required: list[str] = []
        #: strict readiness: at least one model, and every known model has a ready version
        self.strict = False
        self.counters = LifecycleCounters()

    # -- state changes (lifecycle only) -------------------------------------------------------

    def slot(self, name: str) -> ModelSlot | None:
        return self._slots.get(name)

    def put(self, slot: ModelSlot) -> list[ModelVersion]:
        """Install ``slot`` atomically; return the versions it no longer serves."""
        old = self._slots.get(slot.name)
        self._slots[slot.name] = slot
        if old is None:
            return []
        kept = {id(mv) for mv in slot.versions.values()}
        return [mv for mv in old.versions.values() if id(mv) not in kept]

    # -- lookup -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._slots)

    def _slot(self, name: str) -> ModelSlot:
        slot = self._slots.get(name)
        if slot is None:
            raise ModelNotFound(f"unknown model {name!r}; available models: {self.names()}")
        return slot

    def get(self, name: str, version: str = "") -> ModelVersion:
        """The version to serve; ``""`` = the newest ready one."""
        slot = self._slot(name)
        if version:
            if not (version.isascii() and version.isdigit()) or int(version) not in slot.versions:
                raise ModelNotFound(
                    f"model {name!r} has no version {version!r}; served versions: "
                    f"{sorted(slot.versions)}"
                )
            return slot.versions[int(version)]
        for v in sorted(slot.versions, reverse=True):
            if slot.versions[v].ready:
                return slot.versions[v]
        reasons = "; ".join(
            f"version {v}: {mv.reason}" for v, mv in sorted(slot.versions.items())
        ) or (slot.error or "no versions")
        raise ModelNotReady(f"model {name!r} has no ready version ({reasons})")

    def default_model(self, configured: str | None) -> str:
        """The model behind ``POST /predict`` and gRPC ``ModelService.Predict``: ``configured``
        (``--default-model``) when given, else the repository's only model, else
        :data:`FALLBACK_DEFAULT_MODEL`. Asked per request, so a hot reload that adds or
        removes models changes the answer."""
        if configured is not None:
            return configured
        names = self.names()
        return names[0] if len(names) == 1 else FALLBACK_DEFAULT_MODEL

    def describe_default(self, configured: str | None) -> str:
        """One line saying which model ``POST /predict`` serves and why (for the start-up
        log); it says so when the repository has no such model."""
        name = self.default_model(configured)
        why = ("--default-model" if configured is not None
               else "the only model" if len(self.names()) == 1
               else "no --default-model given and the repository has "
                    f"{len(self.names())} models")
        line = f"POST /predict and ModelService.Predict serve model {name!r} ({why})"
        if name not in self._slots:
            line += (f", which the repository does not have (models: {self.names()}): pass "
                     "--default-model NAME or name the model (POST /v2/models/NAME/predict)")
        return line

    def get_default(self, configured: str | None, version: str = "") -> ModelVersion:
        """:meth:`get` of :meth:`default_model`; when there is no such model the error says
        that it is the default, which models there are, and how to choose one."""
        name = self.default_model(configured)
        if name not in self._slots:
            how = ("--default-model" if configured is not None
                   else f"the default when the repository has {len(self._slots)} models "
                        "and no --default-model is given")
            raise ModelNotFound(
                f"POST /predict serves model {name!r} ({how}), which is not served; available "
                f"models: {self.names()}; name one (POST /v2/models/NAME/predict, or gRPC "
                "metadata 'model') or start the server with --default-model NAME")
        return self.get(name, version)

    def versions(self, name: str) -> list[ModelVersion]:
        """Served versions of a model, newest first."""
        slot = self._slot(name)
        return [slot.versions[v] for v in sorted(slot.versions, reverse=True)]

    def all_versions(self) -> list[ModelVersion]:
        return [mv for name in self.names() for mv in self.versions(name)]

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            return self.get(name, version).ready
        except (ModelNotReady, ModelNotFound):
            return False

    def version_failure(self, name: str, version: str) -> str | None:
        """Why version ``version`` of a known model cannot serve although it was tried: its
        load failed, or the model's config did (then no version of it can serve); None when
        neither (the version serves, or it is simply unknown)."""
        slot = self._slots.get(name)
        if slot is None or not version:
            return None
        if version.isdigit() and int(version) in slot.failures and \
                int(version) not in slot.versions:
            return f"model {name!r} version {version} failed to load: " \
                   f"{slot.failures[int(version)]}"
        if slot.error and not slot.versions:
            return slot.error
        return None

    def not_ready_reason(self, name: str, version: str = "") -> str:
        """Why ``name`` (or one version) cannot serve: '' when it can."""
        try:
            mv = self.get(name, version)
        except (ModelNotReady, ModelNotFound) as exc:
            return exc.message
        if not mv.ready:
            return f"model {name!r} version {mv.version} is {mv.state}: {mv.reason}"
        slot = self._slots[name]
        failed = {v: r for v, r in slot.failures.items() if not version or str(v) == version}
        if failed and version:
            return "; ".join(f"version {v} failed to load: {r}" for v, r in failed.items())
        return ""

    @property
    def ready(self) -> bool:
        """Start-up loads done and every required model has a ready version; with
        :attr:`strict`, also at least one model and every known model ready."""
        if not self.loaded or not all(self.model_ready(name) for name in self.required):
            return False
        if self.strict:
            names = self.names()
            return bool(names) and all(self.model_ready(name) for name in names)
        return True

    def index(self) -> list[dict[str, str]]:
        """Triton's repository index: one row per model version (or per model without one)."""
        rows = []
        for name in self.names():
            slot = self._slots[name]
            if not slot.versions:
                rows.append({"name": name, "version": "", "state": "UNAVAILABLE",
                             "reason": slot.error or "no versions"})
            for v, mv in sorted(slot.versions.items()):
                reason = mv.reason or slot.failures.get(v, "")
                if mv.ready and v in slot.failures:
                    reason = f"serving the previous files; reload failed: {slot.failures[v]}"
                elif mv.ready and not reason and slot.warnings:
                    reason = "served with warnings: " + "; ".join(slot.warnings)
                rows.append({"name": name, "version": str(v), "state": mv.state,
                             "reason": reason})
            for v, why in sorted(slot.failures.items()):
                if v not in slot.versions:
                    rows.append({"name": name, "version": str(v), "state": "UNAVAILABLE",
                                 "reason": why})
        return rows

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        return await self.get(request.model_name, request.model_version).infer(request)

    # -- shutdown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Refuse new requests everywhere (queued and running ones still finish)."""
        for mv in self.all_versions():
            if mv.batcher is not None:
                mv.batcher.close()

    async def drain(self) -> None:
        for mv in self.all_versions():
            if mv.batcher is not None:
                await mv.batcher.drain()

    def unload_all(self) -> None:
        for mv in self.all_versions():
            mv.unload()
