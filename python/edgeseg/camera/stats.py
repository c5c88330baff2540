"""Live and final statistics of the camera loop (thread-safe, cheap to update).

``LoopStats.snapshot()`` returns a JSON-able dict::

    {"frames": processed frames, "fps": recent rate (last ~2 s), "fps_mean": over the run,
     "elapsed_s": ..., "captured": frames the source delivered, "dropped": frames skipped
     so that latency stays bounded (drop="latest"), "corrupt": bad frames skipped,
     "reconnects": stream/camera reopenings, "invalid": results whose model output was
     not finite (never OK; "last_invalid" the newest reason), "source": the source's own counters,
     "latency_ms": {"capture": {"p50":..,"p99":..}, "queue": .., "inference": ..,
                    "rules": .., "sinks": .., "total": ..},   # total = capture -> result
     "sinks": {spec: {"delivered": n, "queued": n, "failed": n, "written": n,
                      "last_error": str|None, ...}},
     "errors": {"inference": n, "rules": n, "source": n}, "last_error": str|None}

Per sink, ``written`` counts the records its ``write`` accepted, and ``delivered`` /
``queued`` / ``failed`` come from its ``delivery_stats()``: a sink that sends through an
outbox has accepted a record long before the receiver has it, so only ``delivered`` says it
arrived, and ``queued`` how many still wait (kept on disk).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Optional

import numpy as np

from edgeseg._redact import redact

__all__ = ["STAGES", "LoopStats", "format_stats"]

#: Stages whose latency is tracked (milliseconds).
STAGES = ("capture", "queue", "inference", "rules", "sinks", "total")

_WINDOW = 512  # latency samples kept per stage
_FPS_WINDOW_S = 2.0


class LoopStats:
    """Counters and latency windows of one loop run; every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lat = {s: deque(maxlen=_WINDOW) for s in STAGES}
        self._done_times: deque[float] = deque(maxlen=4096)
        self._t0 = time.monotonic()
        self._t_end: Optional[float] = None
        self.frames = 0
        self.captured = 0
        self.dropped = 0
        self.corrupt = 0
        self.invalid = 0
        self.last_invalid: Optional[str] = None
        self.errors = {"inference": 0, "rules": 0, "source": 0, "trigger": 0}
        self.last_error: Optional[str] = None
        self._sinks: dict[str, dict] = {}
        self._source_stats: dict = {}
        self._cache: Optional[tuple[float, dict]] = None
        self._watched: list = []  # sinks whose delivery_stats() the snapshots read

    # ---- updates --------------------------------------------------------------------
    def add_latency(self, stage: str, ms: float) -> None:
        with self._lock:
            self._lat[stage].append(float(ms))

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def error(self, where: str, message: str) -> None:
        message = redact(message)
        with self._lock:
            self.errors[where] = self.errors.get(where, 0) + 1
            self.last_error = f"{where}: {message}"

    def invalid_frame(self, message: str) -> None:
        """Counts one result with non-finite model output (``message``: frame and reason)."""
        with self._lock:
            self.invalid += 1
            self.last_invalid = message

    def frame_done(self, t_done: float) -> None:
        with self._lock:
            self.frames += 1
            self._done_times.append(t_done)

    def sink_result(self, spec: str, ok: bool, error: Optional[str] = None) -> None:
        spec = redact(spec)
        error = None if error is None else redact(error)
        with self._lock:
            s = self._sinks.setdefault(spec, {"written": 0, "failed": 0, "last_error": None})
            if ok:
                s["written"] += 1
            else:
                s["failed"] += 1
                s["last_error"] = error
                self.last_error = f"sink {spec}: {error}"

    def set_source_stats(self, stats: dict) -> None:
        with self._lock:
            self._source_stats = dict(stats)

    def set_sink_extra(self, spec: str, extra: dict) -> None:
        spec = redact(spec)
        extra = {k: redact(v) if isinstance(v, str) else v for k, v in extra.items()}
        with self._lock:
            s = self._sinks.setdefault(spec, {"written": 0, "failed": 0, "last_error": None})
            for k, v in extra.items():
                if k not in ("written", "failed", "last_error"):
                    s[k] = v

    def watch_sinks(self, sinks) -> None:
        """Snapshots read ``delivery_stats()`` of these sinks (keyed by their ``spec``)."""
        with self._lock:
            self._watched = list(sinks)
            for s in self._watched:
                self._sinks.setdefault(
                    redact(s.spec), {"written": 0, "failed": 0, "last_error": None}
                )

    def finish(self) -> None:
        with self._lock:
            if self._t_end is None:
                self._t_end = time.monotonic()

    # ---- reading --------------------------------------------------------------------
    def snapshot(self, max_age: float = 0.0) -> dict:
        """The stats now; with ``max_age`` > 0 a snapshot at most that old may be reused."""
        now = time.monotonic()
        with self._lock:
            if max_age > 0 and self._cache is not None and now - self._cache[0] < max_age:
                return self._cache[1]
            watched = list(self._watched)
        delivery = {}
        for sink in watched:  # outside the lock: a sink takes its own
            try:
                delivery[redact(sink.spec)] = sink.delivery_stats()
            except Exception:  # noqa: BLE001 - the stats never fail for one sink
                continue
        with self._lock:
            end = self._t_end if self._t_end is not None else now
            elapsed = max(1e-9, end - self._t0)
            done = self._done_times
            ref = time.time() if self._t_end is None else (done[-1] if done else 0.0)
            recent = [t for t in done if ref - t <= _FPS_WINDOW_S]
            if len(recent) >= 2 and recent[-1] > recent[0]:
                fps = (len(recent) - 1) / (recent[-1] - recent[0])
            else:
                fps = self.frames / elapsed if self._t_end is not None else 0.0
            lat = {}
            for stage, values in self._lat.items():
                if values:
                    arr = np.fromiter(values, np.float64, len(values))
                    p50, p99 = np.percentile(arr, (50, 99))
                    lat[stage] = {"p50": round(float(p50), 3), "p99": round(float(p99), 3)}
            src = dict(self._source_stats)
            snap = {
                "frames": self.frames,
                "fps": round(fps, 2),
                "fps_mean": round(self.frames / elapsed, 2),
                "elapsed_s": round(elapsed, 3),
                "captured": self.captured,
                "dropped": self.dropped,
                "corrupt": self.corrupt,
                "invalid": self.invalid,
                "last_invalid": self.last_invalid,
                "reconnects": int(src.get("reconnects", 0)),
                "source": src,
                "latency_ms": lat,
                "sinks": {k: {**v, **delivery.get(k, {})} for k, v in self._sinks.items()},
                "errors": dict(self.errors),
                "last_error": self.last_error,
            }
            self._cache = (now, snap)
            return snap


def format_stats(s: dict) -> str:
    """A few human lines of a snapshot (for ``edgeseg run``)."""
    lat = s.get("latency_ms", {})

    def p(stage: str) -> str:
        v = lat.get(stage)
        return f"{v['p50']:.1f}/{v['p99']:.1f}" if v else "-"

    lines = [
        f"frames {s['frames']}  fps {s['fps_mean']:.1f} (recent {s['fps']:.1f})  "
        f"captured {s['captured']}  dropped {s['dropped']}  corrupt {s['corrupt']}  "
        f"reconnects {s['reconnects']}" + (f"  invalid {s['invalid']}" if s.get("invalid") else ""),
        "latency p50/p99 ms: "
        + "  ".join(f"{st} {p(st)}" for st in STAGES if st in lat)
        + "   (total = capture to result)",
    ]
    for spec, v in s.get("sinks", {}).items():
        extra = (
            f"  last error: {v['last_error']}" if v.get("failed") and v.get("last_error") else ""
        )
        if "delivered" in v:
            kept = f" (kept in {v['outbox']})" if v.get("queued") and v.get("outbox") else ""
            counts = f"delivered {v['delivered']} queued {v.get('queued', 0)}{kept} failed "
        else:  # a callback (on_result)
            counts = f"written {v['written']} failed "
        lines.append(f"sink {spec}: {counts}{v['failed']}{extra}")
    if s.get("invalid"):
        lines.append(
            f"invalid model output in {s['invalid']} frame(s), never OK; last: "
            f"{s.get('last_invalid')}"
        )
    if s.get("last_error"):
        lines.append(f"last error: {s['last_error']}")
    return "\n".join(lines)
