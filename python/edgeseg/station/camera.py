"""One camera of a station: its :class:`~edgeseg.camera.CameraLoop` in a supervising thread.

A camera that fails (its source is gone, its model could not be loaded, a stage died) shows as
not ready with the reason and is started again after a back-off (1 s doubling to 30 s); the
other cameras go on. Its live view and its HTTP trigger stay mounted across restarts.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from edgeseg._redact import redact
from edgeseg.camera.loop import CameraLoop
from edgeseg.errors import EdgesegError
from edgeseg.station.config import CameraConfig

if TYPE_CHECKING:
    from edgeseg.station.station import Station

__all__ = ["CameraRunner"]

log = logging.getLogger("edgeseg.station")

_BACKOFF = (1.0, 30.0)  # s: first and longest wait before a failed camera starts again
_OUTBOX_KINDS = ("mqtt", "mqtts", "webhook")


def _telemetry(name: str) -> Any:
    """A :class:`edgeseg.telemetry.Telemetry` for the camera, None where the module is not
    part of this installation (the station runs without metrics then)."""
    try:
        from edgeseg.telemetry import Telemetry

        return Telemetry(name)
    except (ImportError, EdgesegError) as e:  # prometheus-client is not installed
        log.warning("camera %s: no metrics: %s", name, e)
        return None


class CameraRunner:
    """Runs one camera of ``station`` until the station stops (module docstring)."""

    def __init__(self, cfg: CameraConfig, station: Station) -> None:
        self.cfg, self.name, self.station = cfg, cfg.name, station
        self.state = "starting"  # starting | running | retrying | ended | stopped
        self.reason: Optional[str] = None
        self.loop: Optional[CameraLoop] = None
        self.rules: Any = None
        self.rules_error: Optional[str] = None
        self.restarts = 0
        self.frames = 0
        self.last_frame_t: Optional[float] = None
        self.started_t = 0.0
        self.last_record: Optional[dict] = None
        self.telemetry = _telemetry(cfg.name)
        self._thread: Optional[threading.Thread] = None
        self._lock = threading.Lock()
        self.live = None
        if station.config.live_view.enabled and cfg.live_view:
            from edgeseg.sinks.serve import ServeSink

            lv = station.config.live_view
            self.live = ServeSink(
                station.server.url or "127.0.0.1:0",
                server=station.server,
                prefix=f"/cameras/{cfg.name}/",
                max_fps=lv.max_fps,
                max_width=lv.max_width,
                jpeg_quality=lv.jpeg_quality,
                confidence=lv.confidence,
                max_clients=lv.max_clients,
                quiet=True,
            )
            self.live.spec = f"live view /cameras/{cfg.name}/"
        self.trigger = None
        if cfg.trigger == "http":
            from edgeseg.camera.triggers import HttpTrigger

            self.trigger = HttpTrigger(f"/v1/cameras/{cfg.name}/trigger", server=station.server)
        elif cfg.trigger:
            from edgeseg.camera.triggers import open_trigger

            self.trigger = open_trigger(cfg.trigger)
        self.sinks = [self._open_sink(s) for s in cfg.sinks]

    def _open_sink(self, spec: str):
        from edgeseg.sinks import open_sink

        kind = spec.split(":", 1)[0].lower()
        options: dict = {}
        if kind in _OUTBOX_KINDS:
            if self.station.config.outbox is not None and "outbox=" not in spec:
                options["outbox"] = str(self.station.config.outbox)
            options["close_timeout"] = self.station.config.drain_timeout
        if kind == "jsonl" and "append=" not in spec:
            options["append"] = "1"  # a restarted camera or station adds to its results
        return open_sink(spec, **options)

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"edgeseg-camera-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _fail(self, why: str) -> None:
        with self._lock:
            self.state, self.reason = "retrying", why
        log.error("camera %s: %s", self.name, redact(why))

    def _run(self) -> None:
        station, cfg = self.station, self.cfg
        backoff = _BACKOFF[0]
        while not station.stopping.is_set():
            loop = None
            try:
                seg = station.model_for(cfg.model)
                if self.rules is None and cfg.rules is not None:
                    from edgeseg.rules import Rules

                    self.rules = Rules.from_file(cfg.rules, seg.classes)
                sinks = list(self.sinks) + ([self.live] if self.live is not None else [])
                loop = CameraLoop(
                    _source(cfg),
                    seg,
                    sinks=sinks,
                    rules=self.rules,
                    on_result=self._on_result,
                    drop=cfg.drop,
                    max_fps=cfg.max_fps,
                    trigger=self.trigger,
                    on_invalid=cfg.on_invalid,
                    max_invalid=cfg.max_invalid,
                    drain_timeout=station.config.drain_timeout,
                    telemetry=self.telemetry,
                )
                loop.start()
            except (EdgesegError, OSError, ImportError) as e:
                self._fail(f"cannot start: {e}")
                if station.stopping.wait(backoff):
                    break
                backoff = min(backoff * 2, _BACKOFF[1])
                continue
            with self._lock:
                self.loop, self.state, self.reason = loop, "running", None
                self.started_t = time.time()
            while not loop.join(0.2):
                if station.stopping.is_set():
                    break
                if loop.stats.frames:
                    backoff = _BACKOFF[0]
            loop.stop(timeout=max(1.0, station.config.drain_timeout))
            if station.stopping.is_set():
                break
            if loop.error is None:
                with self._lock:
                    self.state, self.reason = "ended", "the source ended"
                log.info("camera %s: the source ended", self.name)
                return
            self.restarts += 1
            if self.telemetry is not None:
                self.telemetry.reconnect()
            self._fail(f"stopped: {loop.error}")
            if station.stopping.wait(backoff):
                break
            backoff = min(backoff * 2, _BACKOFF[1])
        with self._lock:
            self.state = "stopped"

    def swap(self, segmenter=None, rules: Any = "keep") -> None:
        """Adopts a reloaded model and/or rules (the loop takes them between two frames)."""
        if rules != "keep":
            self.rules = rules
        loop = self.loop
        if loop is not None:
            if rules == "keep":
                loop.swap(segmenter)
            else:
                loop.swap(segmenter, rules)

    def _on_result(self, item) -> None:
        self.frames += 1
        self.last_frame_t = time.time()
        self.last_record = item.record

    # ---- what the HTTP endpoints show ------------------------------------------------------
    def outbox_pending(self) -> int:
        total = 0
        for s in self.sinks:
            stats = getattr(s, "delivery_stats", None)
            try:
                d = stats() if stats is not None else s.stats()
            except Exception:
                continue
            total += int(d.get("queued", d.get("pending", 0)) or 0)
        return total

    def deliveries(self) -> dict:
        """``{sink: {"delivered", "queued", "failed"}}`` for every sink of this camera."""
        out = {}
        for spec, s in zip(self.cfg.sinks, self.sinks):
            try:
                out[redact(spec)] = dict(s.delivery_stats())
            except Exception as e:  # a sink's stats never stop the status page
                out[redact(spec)] = {"error": redact(str(e))}
        return out

    def problems(self) -> list[str]:
        """Why this camera is not ready (empty: ready)."""
        cfg, out = self.station.config, []
        with self._lock:
            state, reason = self.state, self.reason
        if state != "running":
            out.append(f"camera {self.name}: {state}" + (f" ({reason})" if reason else ""))
            return out
        age_limit = cfg.max_frame_age
        if self.trigger is None:  # a triggered camera waits for its triggers: no age limit
            last = max(self.last_frame_t or 0.0, self.started_t)
            if time.time() - last > age_limit:
                out.append(f"camera {self.name}: no result for more than {age_limit:g} s")
        pending = self.outbox_pending()
        if pending > cfg.max_outbox:
            out.append(
                f"camera {self.name}: {pending} results wait in the outboxes "
                f"(ready.max_outbox {cfg.max_outbox})"
            )
        return out

    def status(self) -> dict:
        with self._lock:
            state, reason, loop = self.state, self.reason, self.loop
        snap = loop.stats.snapshot(max_age=0.5) if loop is not None else {}
        return {
            "state": state,
            "reason": None if reason is None else redact(reason),
            "ready": not self.problems(),
            "source": redact(self.cfg.source),
            "model": str(self.cfg.model),
            "rules": None if self.cfg.rules is None else str(self.cfg.rules),
            "frames": self.frames,
            "restarts": self.restarts,
            "fps": snap.get("fps"),
            "dropped": snap.get("dropped"),
            "last_verdict": (self.last_record or {}).get("verdict"),
            "live_view": None if self.live is None else f"/cameras/{self.name}/",
            "trigger": None if self.cfg.trigger is None else redact(self.cfg.trigger),
            "outbox_pending": self.outbox_pending(),
            "sinks": self.deliveries(),
        }


def _source(cfg: CameraConfig):
    from edgeseg.camera import open_source

    return open_source(cfg.source, loop=True) if cfg.loop else open_source(cfg.source)
