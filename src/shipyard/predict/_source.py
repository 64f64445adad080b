"""Where predictions come from: a server (:class:`RemoteModel`, over :class:`~shipyard.client.
Client`) or the model's own files loaded in this process (:class:`LocalModel`, with the serving
core). Both turn items into tensors and outputs into predictions with the client's vocabulary
code (:mod:`shipyard.client._vocab`) on a :class:`~shipyard.client.ModelInfo`, so a served and an
in-process model answer alike.

The in-process path imports the serving core (``serving/model.py``, ``describe.py``) and never its
frontends (no gRPC server, no HTTP server).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from shipyard.client._vocab import (
    ModelInfo,
    OutputRequest,
    Prediction,
    encode_items,
    output_requests,
    predictions,
)
from shipyard.protocol.types import Array, datatype_of

if TYPE_CHECKING:
    from shipyard.client import Client
    from shipyard.serving.model import ModelVersion

__all__ = ["LocalModel", "PredictError", "PredictSource", "RemoteModel", "is_url",
           "open_source"]

_URL_SCHEMES = ("http://", "https://", "grpc://", "grpcs://")


class PredictError(Exception):
    """A mistake the user can fix (a missing file, an unknown model, a bad row): the command
    prints :attr:`message` as one line and exits with status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        """What is wrong and how to fix it."""


class PredictSource(Protocol):
    """A model to predict with: its metadata, and one call from items to predictions."""

    info: ModelInfo
    """The model's V2 metadata."""
    where: str
    """Where the model is (a URL and a name, or a folder), for messages."""

    def predict(self, items: Any, top_k: int | None = None) -> list[Prediction]:
        """One :class:`Prediction` per item (the items as :func:`encode_items` takes them)."""
        ...

    def close(self) -> None:
        """Release the connection or the loaded model."""
        ...


def is_url(source: str) -> bool:
    """Whether ``source`` names a server (``http(s)://``, ``grpc(s)://``) rather than a path."""
    return source.lower().startswith(_URL_SCHEMES)


class RemoteModel:
    """A model on a server: :meth:`Client.predict <shipyard.client.Client.predict>`."""

    def __init__(self, url: str, model: str | None = None, *, token: str | None = None,
                 ca_file: Path | None = None, cert_file: Path | None = None,
                 key_file: Path | None = None, timeout_s: float = 60.0) -> None:
        from shipyard.client import Client, ClientError

        try:
            self.client: Client = Client(url, token=token, ca_file=ca_file, cert_file=cert_file,
                                         key_file=key_file, timeout_s=timeout_s)
        except ClientError as exc:
            raise PredictError(exc.message) from exc
        try:
            name = model if model is not None else self._only_model()
            self.info: ModelInfo = self.client.model(name)
        except ClientError as exc:
            self.client.close()
            hint = " (is `shipyard serve` running there?)" if "cannot reach" in exc.message \
                else ""
            raise PredictError(exc.message + hint) from exc
        self.where = f"model {name!r} at {self.client.url}"

    def _only_model(self) -> str:
        names = sorted({str(r["name"]) for r in self.client.models()})
        if len(names) == 1:
            return names[0]
        raise PredictError(f"the server at {self.client.url} serves "
                           f"{'no models' if not names else f'models {names}'}; pass "
                           "--model NAME")

    def predict(self, items: Any, top_k: int | None = None) -> list[Prediction]:
        """The server's predictions for ``items`` (client errors raise ClientError)."""
        return self.client.predict(self.info.name, items, top_k=top_k)

    def close(self) -> None:
        """Close the connection."""
        self.client.close()


@contextmanager
def _quiet_load_logs() -> Iterator[None]:
    """A failed load logs an error; the command prints the reason itself, as one line."""
    logger = logging.getLogger("shipyard")
    null = logging.NullHandler()
    had_handlers = logger.hasHandlers()
    if not had_handlers:
        logger.addHandler(null)
    try:
        yield
    finally:
        logger.removeHandler(null)


class LocalModel:
    """A model folder loaded in this process with the serving core: the newest version its
    version policy selects, its preprocess and postprocess steps, its batcher. ``folder`` is a
    model's folder (version folders beside an optional ``config.yaml``, or the model files
    themselves) or a repository root (then ``model`` names the model, default its only one)."""

    def __init__(self, folder: Path, model: str | None = None) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="shipyard-local-"))
        self._loop = asyncio.new_event_loop()
        self._mv: ModelVersion | None = None
        try:
            self._open(Path(folder), model)
        except BaseException:
            self.close()
            raise

    def _open(self, folder: Path, model: str | None) -> None:
        from shipyard.repository.layout import (
            MODEL_NAME_RE,
            model_names,
            scan_model,
            single_model_view,
        )
        from shipyard.serving.describe import model_metadata
        from shipyard.serving.ensemble import new_version
        from shipyard.serving.registry import ModelRegistry

        if not folder.is_dir():
            raise PredictError(f"model folder {str(folder)!r} not found; pass a run directory, "
                               "a model's folder or a server URL")
        name = model or folder.resolve().name
        if not MODEL_NAME_RE.match(name):
            name = "model"
        root = single_model_view(folder, name, self._tmp / "repo")
        if root is None:  # a repository: folders of models
            root = folder
            names = model_names(root)
            if model is None:
                if len(names) != 1:
                    raise PredictError(f"{str(folder)!r} is a model repository of "
                                       f"{len(names)} models {names}; pass --model NAME")
                name = names[0]
            elif name not in names:
                raise PredictError(f"unknown model {name!r} in repository {str(folder)!r}; "
                                   f"its models are {names}")
        entry = scan_model(root, name)
        if entry is None or entry.config is None or entry.error:
            reason = entry.error if entry is not None else "no such model folder"
            raise PredictError(f"model {name!r} at {str(folder)!r} cannot be loaded: {reason}")
        if entry.config.backend == "ensemble":
            raise PredictError(f"model {name!r} is an ensemble of other served models; "
                               "predict against a server that serves them (pass its URL)")
        version = max(entry.versions)
        mv = new_version(name, version, entry.versions[version], entry.config,
                         entry.signatures.get(version), ModelRegistry(root))
        with _quiet_load_logs():
            mv.load()
        if not mv.ready:
            raise PredictError(f"model {name!r} version {version} at {str(folder)!r} cannot "
                               f"be loaded: {mv.reason}")
        self._mv = mv
        self.info: ModelInfo = ModelInfo.from_metadata(model_metadata(mv, sorted(entry.versions)))
        self.where = f"model {name!r} loaded from {str(folder)!r}"
        self.path = entry.versions[version]
        """The version folder that was loaded."""

    @property
    def model(self) -> ModelVersion:
        """The loaded serving-core version."""
        assert self._mv is not None
        return self._mv

    def infer(self, inputs: Mapping[str, Array], outputs: list[OutputRequest] | None = None
              ) -> dict[str, Array]:
        """V2 inference in this process: ``{name: array}`` in, ``{name: array}`` out (every
        output, a labelled one classified when ``outputs`` asks)."""
        return self._loop.run_until_complete(self.infer_async(inputs, outputs))

    async def infer_async(self, inputs: Mapping[str, Array],
                          outputs: list[OutputRequest] | None = None) -> dict[str, Array]:
        """:meth:`infer` on this model's own event loop (see :meth:`run`)."""
        request = self.request(inputs, outputs)
        response = await self.model.infer(request)
        return {t.name: t.data for t in response.outputs}

    def request(self, inputs: Mapping[str, Array], outputs: list[OutputRequest] | None = None
                ) -> Any:
        """The serving core's InferenceRequest for these arrays and outputs."""
        from shipyard.serving.types import InferenceRequest, RequestedOutput, Tensor

        wanted = None if outputs is None else [
            RequestedOutput(o.name, parameters={"classification": o.classification}
                            if o.classification else {}) for o in outputs]
        return InferenceRequest(self.info.name, inputs=[
            Tensor(name, datatype_of(a), tuple(a.shape), a) for name, a in inputs.items()],
            outputs=wanted)

    def run(self, coroutine: Any) -> Any:
        """Run a coroutine on this model's event loop (its batcher lives there)."""
        return self._loop.run_until_complete(coroutine)

    def predict(self, items: Any, top_k: int | None = None) -> list[Prediction]:
        """Predictions for ``items``, by the same rules as :meth:`Client.predict`; a refused
        request raises the serving core's ShipyardError."""
        arrays = encode_items(self.info, items)
        return predictions(self.info, self.infer(arrays, output_requests(self.info)), top_k)

    def close(self) -> None:
        """Unload the model and remove the temporary folder."""
        if self._mv is not None:
            self._mv.unload()
            self._mv = None
        if not self._loop.is_closed():
            self._loop.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


def _publish_run(run: Path, into: Path) -> Path:
    """Publish a finished run into a fresh repository under ``into``; the model's folder."""
    from shipyard import api
    from shipyard.errors import ExperimentError
    from shipyard.protocol.errors import ShipyardError

    try:
        published = api.publish(run, into)
    except ModuleNotFoundError as exc:
        raise PredictError(f"{exc.name!r} is not installed; publishing run {str(run)!r} needs "
                           "pip install 'shipyard[serve]'") from exc
    except (ExperimentError, ShipyardError) as exc:
        raise PredictError(f"run {str(run)!r} cannot be published: {exc.message}") from exc
    return published.repository / published.model


class _RunModel(LocalModel):
    """A run directory: published into a temporary repository, then loaded from there, so the
    in-process model is made of the very files a server would serve."""

    def __init__(self, run: Path) -> None:
        self._run_tmp = Path(tempfile.mkdtemp(prefix="shipyard-run-"))
        try:
            folder = _publish_run(run, self._run_tmp / "repo")
            super().__init__(folder)
        except BaseException:
            shutil.rmtree(self._run_tmp, ignore_errors=True)
            raise
        self.where = f"run {str(run)!r} (published to a temporary repository, in-process)"

    def close(self) -> None:
        """Unload, and remove the temporary repository."""
        super().close()
        shutil.rmtree(self._run_tmp, ignore_errors=True)


def open_source(source: str, model: str | None = None, *, token: str | None = None,
                ca_file: Path | None = None, cert_file: Path | None = None,
                key_file: Path | None = None, timeout_s: float = 60.0) -> PredictSource:
    """The model behind ``source``: a server URL (``model``: its name, default the server's
    only model; ``token``, ``ca_file``, ``cert_file`` and ``key_file`` as
    :class:`~shipyard.client.Client` takes them), a run directory (has ``run.json``: published
    to a temporary repository and loaded in-process), or a model's folder / a repository
    (loaded in-process)."""
    if is_url(source):
        return RemoteModel(source, model, token=token, ca_file=ca_file, cert_file=cert_file,
                           key_file=key_file, timeout_s=timeout_s)
    path = Path(source)
    if not path.exists():
        raise PredictError(f"source {source!r} is neither a server URL (http://, grpc://) nor "
                           "an existing run directory or model folder")
    if (path / "run.json").is_file():
        if model is not None:
            raise PredictError(f"--model: {source!r} is a run directory, which holds one "
                               "model; drop --model")
        return _RunModel(path)
    return LocalModel(path, model)
