"""Warnings that repeat every frame (a full disk under a sink) become one line, then summaries.

The first failure of a key (a sink) is logged with its message; further failures within
``interval`` seconds are only counted, and the next failure after it logs one summary line
(how many failed since, and the last message). :meth:`RateLimitedLog.flush` logs what is still
counted (at the end of a run). The failures themselves are counted in the loop's stats either
way: nothing is hidden, only the log stays readable.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from edgeseg._redact import redact

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """One warning per key, then at most one summary per ``interval`` seconds."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = float(interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[str, list] = {}  # key -> [t_last_line, unlogged count, last message]

    def failure(self, key: str, what: str, message: str) -> None:
        """A failure of ``key`` (e.g. ``sink archive:ng/``) at ``what`` (``frame 42``)."""
        now = self._clock()
        message = redact(message)
        with self._lock:
            st = self._state.get(key)
            if st is None:
                self._state[key] = [now, 0, message]
                line = f"{key} failed on {what}: {message}"
            else:
                st[1] += 1
                st[2] = message
                if now - st[0] < self.interval:
                    return
                line = self._summary(key, st, now)
                st[0], st[1] = now, 0
        self.logger.warning("%s", line)

    def flush(self) -> None:
        """Logs the failures counted since the last line, one line per key."""
        now = self._clock()
        with self._lock:
            lines = [self._summary(k, st, now) for k, st in self._state.items() if st[1]]
            for st in self._state.values():
                st[0], st[1] = now, 0
        for line in lines:
            self.logger.warning("%s", line)

    @staticmethod
    def _summary(key: str, st: list, now: float) -> str:
        return (
            f"{key}: {st[1]} more failure(s) in the last {now - st[0]:.0f} s "
            f"(counted in the stats; last: {st[2]})"
        )
