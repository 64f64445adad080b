"""The access rules of the control calls, shared by both frontends (protocol-free).

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

from shipyard.serving.errors import PermissionDenied, Unauthenticated
from shipyard.serving.lifecycle import ModelManager

__all__ = ["Control"]


class Control:
    """Checks tokens, then forwards to the :class:`ModelManager`."""

    def __init__(self, manager: ModelManager, token: str | None) -> None:
        self.manager = manager
        self._token = token.encode() if token else None

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
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                  self._token):
            raise Unauthenticated(
                f"{what} needs the header 'Authorization: Bearer <control token>'"
                " (gRPC metadata 'authorization')"
            )
