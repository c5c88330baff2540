"""Prometheus metrics of the inspection stations: frames, drops, latencies, verdicts, delivery.

One :class:`~prometheus_client.CollectorRegistry` belongs to this module (:data:`REGISTRY`);
:func:`render` gives its text exposition for an HTTP ``/metrics`` endpoint. Each camera
loop feeds a :class:`Telemetry` bound to its camera name::

    from edgeseg.telemetry import Telemetry, render
    t = Telemetry("line1")
    t.frame({"preprocess": 0.002, "infer": 0.011, "postprocess": 0.001})
    t.verdict(ok=False, reason="scratch")
    body, content_type = render()

Metrics (every one labelled ``camera``):

- ``edgeseg_frames_total`` — processed frames;
- ``edgeseg_frames_dropped_total`` — frames skipped to keep latency bounded;
- ``edgeseg_source_reconnects_total`` — reopenings of the stream or camera;
- ``edgeseg_stage_seconds{stage}`` — histogram per stage (``preprocess``, ``infer``,
  ``postprocess``, ``rules``, ``sinks``, ``total``), buckets from 0.5 ms to 250 ms, finest
  between 1 and 100 ms;
- ``edgeseg_verdicts_total{verdict, reason}`` — ``verdict`` ``ok``/``ng``; ``reason`` the
  class of the first failed rule (``scratch``), ``invalid_output``, ``rules_error``, empty
  for OK (at most :data:`MAX_REASONS` values per camera, then ``other``);
- ``edgeseg_reloads_total{result}`` — model/rules reloads, ``ok`` or ``failed``;
- per sink (label ``sink``, its spec with secrets hidden), read from the sinks'
  ``delivery_stats()`` at every scrape: ``edgeseg_sink_delivered_total``,
  ``edgeseg_sink_failed_total`` and the gauge ``edgeseg_sink_queued`` (records waiting in
  the sink's outbox);
- the process collector's ``process_*`` (CPU seconds, resident memory, open files).

Needs ``prometheus-client`` (``pip install 'edgeseg[line]'``); :class:`Telemetry` raises
:class:`~edgeseg.errors.EdgesegError` saying so when it is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from edgeseg._redact import redact
from edgeseg.errors import EdgesegError

__all__ = [
    "BUCKETS",
    "MAX_REASONS",
    "REGISTRY",
    "STAGES",
    "Telemetry",
    "reason_class",
    "render",
]

#: Stages of ``edgeseg_stage_seconds`` (``frame`` ignores other keys).
STAGES = ("preprocess", "infer", "postprocess", "rules", "sinks", "total")
#: Histogram buckets (s): fine from 1 to 100 ms, where a station's stages live.
BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.25,
)  # fmt: skip
#: Distinct ``reason`` label values per camera before further ones count as ``other``.
MAX_REASONS = 32
_REASON_CHARS = 48

try:
    import prometheus_client as _prom
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
except ImportError:  # the deploy half may run without metrics
    _prom = None

_lock = threading.Lock()
_watched: dict[str, dict[str, Any]] = {}  # camera -> {sink label: object with delivery_stats}

if _prom is not None:
    #: The registry of every edgeseg metric (the module owns it; render() exposes it).
    REGISTRY: Any = _prom.CollectorRegistry(auto_describe=True)
    _prom.ProcessCollector(registry=REGISTRY)
    _FRAMES = _prom.Counter("edgeseg_frames", "Processed frames", ["camera"], registry=REGISTRY)
    _DROPS = _prom.Counter(
        "edgeseg_frames_dropped",
        "Frames skipped so that latency stays bounded",
        ["camera"],
        registry=REGISTRY,
    )
    _RECONNECTS = _prom.Counter(
        "edgeseg_source_reconnects",
        "Reopenings of the stream or camera",
        ["camera"],
        registry=REGISTRY,
    )
    _STAGE = _prom.Histogram(
        "edgeseg_stage_seconds",
        "Time per frame in each stage of the loop",
        ["camera", "stage"],
        buckets=BUCKETS,
        registry=REGISTRY,
    )
    _VERDICTS = _prom.Counter(
        "edgeseg_verdicts",
        "Verdicts by result and reason class",
        ["camera", "verdict", "reason"],
        registry=REGISTRY,
    )
    _RELOADS = _prom.Counter(
        "edgeseg_reloads",
        "Model or rules reloads by result",
        ["camera", "result"],
        registry=REGISTRY,
    )

    class _SinkCollector:
        """Reads ``delivery_stats()`` of the watched sinks at every scrape."""

        def collect(self):
            delivered = CounterMetricFamily(
                "edgeseg_sink_delivered",
                "Records the sink's receiver has",
                labels=["camera", "sink"],
            )
            failed = CounterMetricFamily(
                "edgeseg_sink_failed",
                "Records that will never arrive (not storable, or refused by the receiver)",
                labels=["camera", "sink"],
            )
            queued = GaugeMetricFamily(
                "edgeseg_sink_queued",
                "Records waiting in the sink's outbox",
                labels=["camera", "sink"],
            )
            with _lock:
                watched = [(c, dict(s)) for c, s in _watched.items()]
            for camera, sinks in watched:
                for label, sink in sinks.items():
                    try:
                        d = sink.delivery_stats()
                    except Exception:  # noqa: BLE001 - a scrape never fails for one sink
                        continue
                    delivered.add_metric([camera, label], float(d.get("delivered", 0)))
                    failed.add_metric([camera, label], float(d.get("failed", 0)))
                    queued.add_metric([camera, label], float(d.get("queued", 0)))
            return [delivered, failed, queued]

        def describe(self):
            return []

    REGISTRY.register(_SinkCollector())
else:
    REGISTRY = None


def _need_prometheus() -> None:
    if _prom is None:
        raise EdgesegError(
            "metrics need prometheus-client: pip install 'edgeseg[line]' (or prometheus-client)"
        )


def render() -> tuple[bytes, str]:
    """The metrics as Prometheus text: ``(body, content type)`` for an HTTP response."""
    _need_prometheus()
    return _prom.generate_latest(REGISTRY), _prom.CONTENT_TYPE_LATEST


def reason_class(verdict: Any) -> str:
    """The ``reason`` label of a :class:`~edgeseg.rules.verdict.Verdict`: empty for OK,
    ``invalid_output`` for model output that was not finite, the class of the first failed
    rule (``scratch``), else the first reason up to its ``:``."""
    if verdict is None or verdict.ok:
        return ""
    if not getattr(verdict, "valid", True):
        return "invalid_output"
    for d in getattr(verdict, "details", None) or ():
        if isinstance(d, Mapping) and d.get("ok") is False and d.get("class"):
            return str(d["class"])
    reasons = getattr(verdict, "reasons", None) or []
    if reasons and str(reasons[0]).startswith("rules could not be evaluated"):
        return "rules_error"
    return str(reasons[0]).split(":", 1)[0] if reasons else "unspecified"


class Telemetry:
    """The metrics of one camera (label ``camera``); thread-safe, a few microseconds a call.

    Args:
        camera: The camera's name, the ``camera`` label of every series (e.g. ``line1``).

    Raises:
        EdgesegError: prometheus-client is not installed, or ``camera`` is empty.
    """

    def __init__(self, camera: str) -> None:
        _need_prometheus()
        camera = str(camera).strip()
        if not camera:
            raise EdgesegError("Telemetry: camera must be a non-empty name, e.g. 'line1'")
        self.camera = camera
        self._frames = _FRAMES.labels(camera)
        self._drops = _DROPS.labels(camera)
        self._reconnects = _RECONNECTS.labels(camera)
        self._stages = {s: _STAGE.labels(camera, s) for s in STAGES}
        self._reasons: dict[tuple[str, str], Any] = {}
        self._reloads = {
            True: _RELOADS.labels(camera, "ok"),
            False: _RELOADS.labels(camera, "failed"),
        }
        self._reason_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Telemetry({self.camera!r})"

    def frame(self, stage_seconds: Mapping[str, float]) -> None:
        """One processed frame and its time per stage in seconds (keys among :data:`STAGES`;
        others and negative or non-finite values are ignored)."""
        self._frames.inc()
        stages = self._stages
        for stage, seconds in stage_seconds.items():
            h = stages.get(stage)
            if h is not None and seconds is not None and 0.0 <= seconds < float("inf"):
                h.observe(seconds)

    def drop(self, n: int = 1) -> None:
        """``n`` frames skipped to keep latency bounded."""
        self._drops.inc(n)

    def reconnect(self, n: int = 1) -> None:
        """The source was reopened (``n`` times)."""
        self._reconnects.inc(n)

    def verdict(self, ok: bool, reason: str = "") -> None:
        """One verdict: ``ok`` and the class of its reason (see :func:`reason_class`; free
        text is cut at its first ``:``)."""
        label = "" if ok else str(reason or "unspecified").split(":", 1)[0].strip()
        label = label[:_REASON_CHARS]
        key = ("ok" if ok else "ng", label)
        child = self._reasons.get(key)
        if child is None:
            with self._reason_lock:
                if len(self._reasons) >= MAX_REASONS and key not in self._reasons:
                    key = (key[0], "other")
                child = self._reasons.get(key)
                if child is None:
                    child = _VERDICTS.labels(self.camera, key[0], key[1])
                    self._reasons[key] = child
        child.inc()

    def reload(self, ok: bool) -> None:
        """A model or rules reload that succeeded (``ok``) or failed."""
        self._reloads[bool(ok)].inc()

    def sinks(self, sinks: Iterable[Any]) -> None:
        """Watches these sinks (objects with ``spec`` and ``delivery_stats()``): every scrape
        reads their delivered / queued / failed counts. Replaces the sinks watched before."""
        watched = {redact(str(getattr(s, "spec", "") or type(s).__name__)): s for s in sinks}
        with _lock:
            _watched[self.camera] = watched

    def close(self) -> None:
        """Stops watching this camera's sinks (its counters stay: Prometheus counters only
        grow)."""
        with _lock:
            _watched.pop(self.camera, None)
