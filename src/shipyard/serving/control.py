"""The repository extension's access rule, shared by both frontends (protocol-free).

Load, unload and (in explicit mode) the index need ``Authorization: Bearer <token>`` (gRPC
metadata ``authorization``). Outside explicit mode, load and unload are refused and the
read-only index is open.
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
        """Raise unless ``action`` is allowed with this ``Authorization`` value."""
        if action != "index" and not self.explicit:
            raise PermissionDenied(
                f"repository {action} is disabled: start the server with "
                "--model-control explicit --control-token TOKEN to manage models by API"
            )
        if not self.explicit:
            return
        assert self._token is not None
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                                  self._token):
            raise Unauthenticated(
                f"repository {action} needs the header 'Authorization: Bearer <control token>'"
                " (gRPC metadata 'authorization')"
            )
