"""The hand-over queues between the camera loop's threads."""

from __future__ import annotations

import queue
import threading
from typing import Callable

_END = object()  # end-of-stream marker passed down the stages
_POLL = 0.2  # s: how often a waiting thread looks at the stop flags


class LatestSlot:
    """A one-frame mailbox: ``put`` replaces an unread frame (returns True when it did).
    The end marker never replaces a frame: it is handed out after the last one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._full = False
        self._end = False

    def put(self, item, alive: Callable[[], bool]) -> bool:
        with self._cond:
            if item is _END:
                self._end = True
                self._cond.notify()
                return False
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def get(self, timeout: float):
        with self._cond:
            if not self._full and not self._end:
                self._cond.wait(timeout)
            if self._full:
                item, self._item, self._full = self._item, None, False
                return item
            if self._end:
                return _END
            raise queue.Empty


class BlockingSlot:
    """A bounded FIFO whose ``put`` waits while the consumer is alive instead of dropping."""

    def __init__(self, size: int) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=size)

    def put(self, item, alive: Callable[[], bool]) -> bool:
        while True:
            try:
                self._q.put(item, timeout=_POLL)
                return False
            except queue.Full:
                if not alive():
                    return False

    def get(self, timeout: float):
        return self._q.get(timeout=timeout)

    def empty(self) -> bool:
        return self._q.empty()
