"""Progress of long steps: always logged, and shown live on a terminal when asked."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Steps"]

log = logging.getLogger("shipyard.training")


class Steps:
    """Named steps of a job. ``show=True`` draws a rich spinner per step on stderr."""

    def __init__(self, show: bool = False) -> None:
        self.show = show
        self.timings: dict[str, float] = {}
        self._progress: Any = None

    def __enter__(self) -> Steps:
        if self.show:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(finished_text="[green]done[/]"), TextColumn("{task.description}"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Take the live display off the terminal meanwhile (for a step that draws its own,
        such as the torch loop's epoch bars: rich shows one live display at a time)."""
        progress = self._progress
        if progress is not None:
            progress.stop()
        try:
            yield
        finally:
            if progress is not None:
                progress.start()

    @contextmanager
    def step(self, text: str, key: str | None = None) -> Iterator[None]:
        """Time and show one step; ``key`` names it in :attr:`timings`."""
        log.info("%s ...", text)
        task = self._progress.add_task(text, total=1) if self._progress is not None else None
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.timings[key or text] = round(elapsed, 3)
            log.info("%s: %.2f s", text, elapsed)
            if task is not None:
                self._progress.update(task, completed=1)
