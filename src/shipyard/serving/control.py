"""The access rules of the server's calls, shared by both frontends (protocol-free).

* With an auth token (``--auth-token``), every call but the health checks (REST
  ``/v2/health/*``, gRPC ServerLive/ServerReady), the static API document and ``/metrics``
  (unless ``--auth-metrics``) needs ``Authorization: Bearer <token>`` (:meth:`Control.check_access`;
  the frontends decide which calls are open). The control token, where set, is accepted too:
  an operator may do what a client may. Without an auth token nothing here changes.

* The repository index is open in every mode: it says which models exist and their state, no
  more than ``/v2/models/{m}`` and ``.../ready`` do.
* Load and unload work only in explicit mode and need ``Authorization: Bearer <token>`` (gRPC
  metadata ``authorization``); outside explicit mode they are refused.
* Changing the log or trace settings needs the same token when the server has one
  (``--control-token``); a server without a token leaves them open, as Triton does. Reading
  them is always open.
"""

from __future__ import annotations

import hmac
from typing import Protocol

from shipyard.serving.errors import PermissionDenied, Unauthenticated
from shipyard.serving.lifecycle import ModelManager
from shipyard.serving.overrides import LoadOverride

__all__ = ["Control", "ModelControl"]


class ModelControl(Protocol):
    """What carries out a load or unload: the :class:`ModelManager` itself, or with
    ``--workers N`` a :class:`~shipyard.serving.broadcast.Broadcast` to every worker."""

    async def load(self, name: str, override: LoadOverride | None = None) -> None:
        """(Re)load ``name``; raise when it fails."""

    async def unload(self, name: str) -> None:
        """Stop serving ``name``; raise when it fails."""


class Control:
    """Checks tokens, then forwards to the :class:`ModelManager`."""

    def __init__(self, manager: ModelManager, token: str | None,
                 auth_token: str | None = None, models: ModelControl | None = None) -> None:
        self.manager = manager
        #: what load and unload calls go to (default: the manager; several workers: all)
        self.models: ModelControl = manager if models is None else models
        self._token = token.encode() if token else None
        self._access = tuple(t.encode() for t in (auth_token, token) if t) if auth_token else ()

    @property
    def auth(self) -> bool:
        """Whether calls need the auth token (the server has one)."""
        return bool(self._access)

    def check_access(self, authorization: str | None) -> None:
        """Raise Unauthenticated unless ``authorization`` carries the auth token (or the
        control token); a no-op on a server without an auth token."""
        if not self._access:
            return
        given = _bearer_token(authorization)
        # compare against every accepted token (no early exit: the time says nothing)
        ok = False
        for token in self._access:
            ok |= given is not None and hmac.compare_digest(given, token)
        if not ok:
            problem = ("is missing" if not authorization else
                       "is not 'Bearer <token>'" if given is None else "has the wrong token")
            raise Unauthenticated(
                f"this server needs the header 'Authorization: Bearer <auth token>' (gRPC "
                f"metadata 'authorization') on every call but the health checks; the header "
                f"{problem}")

    async def load(self, name: str, override: LoadOverride | None = None) -> None:
        """Carry out a repository load (call :meth:`check` first)."""
        await self.models.load(name, override)

    async def unload(self, name: str) -> None:
        """Carry out a repository unload (call :meth:`check` first)."""
        await self.models.unload(name)

    @property
    def explicit(self) -> bool:
        return self.manager.mode == "explicit"

    def check(self, authorization: str | None, action: str) -> None:
        """Raise unless the repository ``action`` (index, load, unload) is allowed with this
        ``Authorization`` value."""
        if action == "index":
            return
        if not self.explicit:
            raise PermissionDenied(
                f"repository {action} is disabled: start the server with "
                "--model-control explicit --control-token TOKEN to manage models by API"
            )
        self._bearer(authorization, f"repository {action}")

    def check_settings(self, authorization: str | None, what: str) -> None:
        """Raise unless changing ``what`` (the log or trace settings) is allowed: with the
        token when the server has one, by anyone when it has none."""
        if self._token is not None:
            self._bearer(authorization, f"changing the {what}")

    def _bearer(self, authorization: str | None, what: str) -> None:
        assert self._token is not None
        given = _bearer_token(authorization)
        if given is None or not hmac.compare_digest(given, self._token):
            raise Unauthenticated(
                f"{what} needs the header 'Authorization: Bearer <control token>'"
                " (gRPC metadata 'authorization')"
            )


def _bearer_token(authorization: str | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` value (scheme case-insensitive),
    None when the value is absent or of another scheme."""
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return given.strip().encode()
