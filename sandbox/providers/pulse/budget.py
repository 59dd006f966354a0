"""Stream budgets: how many streams one app holds, counted in memory; no sockets, no files."""

from __future__ import annotations

from typing import Protocol

DEFAULT_STREAM_LIMIT = 32


class Budget(Protocol):
    """A count of units (streams) one app holds; the proxy may share it between processes."""

    @property
    def used(self) -> int: ...

    def acquire(self) -> bool: ...

    def release(self) -> None: ...


class StreamBudget:
    """An in-memory Budget: streams over the connections of one proxy (one process)."""

    def __init__(self, limit: int = DEFAULT_STREAM_LIMIT) -> None:
        self.limit = limit
        self.used = 0

    def acquire(self) -> bool:
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        self.used = max(0, self.used - 1)
