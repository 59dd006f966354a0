"""A byte-count progress bar on stderr for long transfers (export, verify, load); CLI only."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30
_MIB = 1024 * 1024


class ProgressBar:
    """Call with (done, total); redraws at most ~10 times a second, `finish` ends the line."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self._label = label
        self._out = stream or sys.stderr
        self._last = 0.0
        self._shown = False
        self._state: tuple[int, int] | None = None
        self._drawn: tuple[int, int] | None = None  # the state on screen now

    def __call__(self, done: int, total: int) -> None:
        self._state = (done, max(total, done))
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        if self._state is None or self._state == self._drawn:
            return  # the same line again would show twice in a log (no terminal to overwrite)
        self._drawn = self._state
        done, total = self._state
        frac = done / total if total > 0 else 1.0
        bar = "#" * int(frac * _WIDTH)
        amount = f"{done / _MIB:.0f}/{total / _MIB:.0f} MiB"
        self._out.write(f"\r{self._label} [{bar:<{_WIDTH}}] {frac:4.0%} {amount}")
        self._out.flush()
        self._shown = True

    def finish(self) -> None:
        """Draw the last state (if anything was reported) and end the line."""
        if self._state is not None:
            self._draw()
            self._out.write("\n")
            self._out.flush()
            self._state = None
            self._drawn = None
