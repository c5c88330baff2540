"""Camera-like pacing of file and synthetic sources: one frame every ``1 / fps`` seconds."""

from __future__ import annotations

import time
from typing import Optional

from edgeseg.camera.frame import FrameDropped

__all__ = ["FramePacer"]


class FramePacer:
    """Spaces frames ``1 / fps`` apart on the monotonic clock (``fps`` None or 0: no pacing).

    :meth:`start` sets the first frame due now; :meth:`wait` sleeps until the next frame is
    due. A reader that fell behind by more than one period is not made to catch up with a
    burst: the schedule restarts one period after now.
    """

    def __init__(self, fps: Optional[float]) -> None:
        self.fps = fps
        self._next_t = 0.0

    def start(self) -> None:
        self._next_t = time.monotonic()

    def wait(self, timeout: Optional[float], not_due: str) -> None:
        """Sleep until the next frame is due. When that is more than ``timeout`` seconds away,
        sleep ``timeout`` and raise :class:`FrameDropped` (kind ``timeout``) with the message
        ``not_due``."""
        if not self.fps:
            return
        wait = self._next_t - time.monotonic()
        if timeout is not None and wait > timeout:
            time.sleep(max(0.0, timeout))
            raise FrameDropped(not_due, kind="timeout")
        if wait > 0:
            time.sleep(wait)
        self._next_t = max(self._next_t + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)
