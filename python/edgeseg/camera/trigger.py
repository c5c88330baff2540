"""External triggers (trigger mode): one frame is processed per trigger instead of free-running.

Contract shared by the camera loop and the trigger implementations (MQTT message, HTTP
request, OPC UA method call — see :mod:`edgeseg.sinks` / the line-integration code):

- The loop calls ``open()``, then ``wait(timeout)`` repeatedly; each returned trigger id
  (a non-empty str, unique per trigger) makes the loop take one frame — the camera's next
  frame after the trigger (a source with ``supports_trigger`` gets ``fire_trigger(id)``
  first) — and process it with ``frame.meta["trigger_id"] = id``, so every sink's record
  carries ``trigger_id``. ``wait`` returns None on timeout. ``close()`` at the end.
- After the frame is processed the loop calls ``done(trigger_id, record)`` so a trigger that
  answers its caller (HTTP response, OPC UA method return) can reply with the verdict record.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["Trigger"]


class Trigger:
    """Base class of external triggers."""

    spec: str = ""

    def open(self) -> None:
        """Starts listening; raises SourceError/SinkError naming the endpoint and the fix."""

    def wait(self, timeout: Optional[float] = None) -> Optional[str]:
        """The next trigger id, or None after ``timeout`` seconds without one."""
        raise NotImplementedError

    def done(self, trigger_id: str, record: dict) -> None:
        """The frame of ``trigger_id`` was processed; ``record`` is its per-frame record."""

    def close(self) -> None:
        """Stops listening; safe to call twice."""
