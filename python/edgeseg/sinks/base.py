"""The sink interface: where each processed frame goes (files, browser, MQTT, OPC UA, ...).

Contract shared by the camera loop and every sink:

- ``open_sink("kind:arg")`` builds a sink from its CLI spec through the registry
  (``register_sink(kind, factory)``); ``factory(arg: str, **options) -> Sink``.
- The loop calls ``open()`` once, ``handle(item)`` (which calls ``write(item)`` and counts)
  for every processed frame from its sink thread (one thread per loop; a sink needing its
  own I/O thread starts it in ``open``), and ``close(drain_timeout=...)`` at the end, which
  must flush everything it can within that bound (also after SIGINT).
- ``write`` raising :class:`~edgeseg.errors.SinkError` (or OSError) is counted in the loop's
  stats per sink and reported; the loop goes on. Sinks never lose results silently: one that
  cannot deliver now (broker down) keeps them (outbox) and says so in ``delivery_stats()``.
- ``delivery_stats()`` → ``{"delivered", "queued", "failed"}``: records the receiver has,
  records still waiting (in an outbox, kept on disk), records that will never arrive. A
  synchronous sink (files, screens, OPC UA variables) delivers in ``write``; one that sends
  later (MQTT, webhook) overrides it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from edgeseg._redact import redact
from edgeseg.errors import SinkError
from edgeseg.sinks.encode import jsonable

if TYPE_CHECKING:
    from edgeseg.camera.frame import Frame
    from edgeseg.rules.verdict import Verdict
    from edgeseg.runtime.result import SegResult

__all__ = ["LoopItem", "Sink", "make_record", "open_sink", "register_sink", "sink_kinds"]


@dataclass
class LoopItem:
    """One processed frame as the sinks see it.

    ``record`` is the JSON-able per-frame record (see :func:`make_record`); ``stats`` a
    snapshot of the loop's live stats (FPS, latencies, drops) when the item was produced;
    ``stage_seconds`` the frame's time per stage when the loop feeds telemetry.
    """

    frame: Frame
    result: SegResult
    verdict: Optional[Verdict]
    record: dict
    stats: dict = field(default_factory=dict)
    stage_seconds: dict = field(default_factory=dict)


def make_record(frame: Frame, result: SegResult, verdict: Optional[Verdict], t_done: float) -> dict:
    """The per-frame record every record-oriented sink writes (JSON lines, MQTT, webhook).

    Keys: ``frame`` (index), ``t_capture`` (Unix s), ``latency_ms`` (capture → result),
    ``counts`` and ``area_fraction`` (by class name), ``verdict`` ("OK"/"NG", or None without
    rules), ``reasons`` (list of str), ``valid`` (False when the model's output was not
    finite: the counts mean nothing and the verdict is never OK) with ``invalid_reason``
    (None when valid), plus ``trigger_id`` / ``camera_timestamp_ns`` /
    ``camera_frame_id`` when the frame carries them. Values are plain JSON types
    (:func:`~edgeseg.sinks.encode.jsonable`: NaN → None, numpy → Python, paths → text).

    Raises:
        SinkError: A frame ``meta`` value no sink can send, named by its key.
    """
    rec: dict[str, Any] = {
        "frame": int(frame.index),
        "t_capture": round(float(frame.t_capture), 6),
        "latency_ms": round((t_done - frame.t_capture) * 1000.0, 3),
        "counts": result.counts,
        "area_fraction": {k: round(v, 6) for k, v in result.area_fraction.items()},
        "verdict": None if verdict is None else verdict.label,
        "reasons": [] if verdict is None else list(verdict.reasons),
        "valid": bool(getattr(result, "valid", True)),
        "invalid_reason": getattr(result, "invalid_reason", None),
    }
    for key in ("trigger_id", "camera_timestamp_ns", "camera_frame_id", "path"):
        if key in frame.meta:
            rec[key] = frame.meta[key]
    return jsonable(rec)


class Sink:
    """Base class of sinks (see the module docstring for the contract)."""

    spec: str = ""
    _writes_ok = 0  # write() calls that returned (counted by handle)
    _writes_failed = 0  # write() calls that raised

    def open(self) -> None:
        """Prepares the sink; raises SinkError naming the spec and the fix."""

    def write(self, item: LoopItem) -> None:
        raise NotImplementedError

    def handle(self, item: LoopItem) -> None:
        """``write(item)``, counted for :meth:`delivery_stats` (what the loop calls)."""
        try:
            self.write(item)
        except BaseException:
            self._writes_failed += 1
            raise
        self._writes_ok += 1

    def close(self, drain_timeout: Optional[float] = None) -> None:
        """Flushes and releases; safe to call twice. A sink that sends later waits up to
        ``drain_timeout`` s (None: its own default) for what it holds to be delivered."""

    def delivery_stats(self) -> dict:
        """``{"delivered", "queued", "failed"}`` (module docstring). Here, for sinks that
        deliver inside ``write``: every write that returned is delivered, every one that
        raised failed, nothing waits."""
        return {"delivered": self._writes_ok, "queued": 0, "failed": self._writes_failed}

    def stats(self) -> dict:
        """Counters (written, failed, pending in an outbox, ...)."""
        return {}


_REGISTRY: dict[str, Callable[..., Sink]] = {}


def register_sink(kind: str, factory: Callable[..., Sink]) -> None:
    """Registers ``factory(arg, **options) -> Sink`` for specs ``kind`` or ``kind:arg``."""
    _REGISTRY[kind.lower()] = factory


def sink_kinds() -> list[str]:
    return sorted(_REGISTRY)


def open_sink(spec, **options) -> Sink:
    """The (unopened) sink for a CLI spec such as ``jsonl:out.jsonl`` or ``mqtt://h:1883/t``."""
    if isinstance(spec, Sink):
        return spec
    text = str(spec)
    kind, _, arg = text.partition(":")
    factory = _REGISTRY.get(kind.lower())
    if factory is None:
        raise SinkError(
            f"sink {redact(text)!r}: unknown kind {kind!r}; known kinds: {sink_kinds()}"
        )
    # URL-style specs (mqtt://..., webhook:http://...) get their full text when they need it.
    sink = factory(text if arg.startswith("//") else arg, **options)
    sink.spec = redact(text)  # shown in stats, logs and the live view: never a secret
    return sink
