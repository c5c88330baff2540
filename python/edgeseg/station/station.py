"""``Station``: the cameras of a station file in one process, one HTTP server, reload.

::

    from edgeseg.station import Station, load_station
    with Station(load_station("station.yaml")) as st:   # cameras run, the server listens
        st.reload()                                     # what SIGHUP does
        print(st.status())

Models are loaded once per file (cameras naming the same file share one
:class:`~edgeseg.Segmenter`). :meth:`Station.reload` loads every model and rules file whose
modification time or size changed; a file that fails to load or validate keeps the old one
running and the reason is logged, shown on the cameras' live views and in ``/v1/status``,
and counted by the telemetry module (``Telemetry.reload(False)``).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Optional

from edgeseg._redact import redact
from edgeseg.errors import EdgesegError, StationError
from edgeseg.server import HttpServer
from edgeseg.station.camera import CameraRunner
from edgeseg.station.config import StationConfig

__all__ = ["Station"]

log = logging.getLogger("edgeseg.station")
_SINK_ALPHA = 0.5  # the live view's overlay opacity (the fused overlay must match it)


def _stamp(p: Path) -> Optional[tuple]:
    try:
        st = p.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


class Station:
    """Runs a validated :class:`~edgeseg.station.config.StationConfig` (module docstring).

    Raises:
        StationError: the HTTP server cannot start (port in use, TLS files, ...).
    """

    def __init__(self, config: StationConfig) -> None:
        self.config = config
        h = config.http
        self.server = HttpServer(
            h.addr,
            h.token,
            allowed_hosts=h.allowed_hosts,
            tls_cert=h.tls_cert,
            tls_key=h.tls_key,
            request_timeout=h.request_timeout,
            idle_timeout=h.idle_timeout,
            max_connections=h.max_connections,
            max_body=h.max_image_bytes,
            error=StationError,
            what=f"{config.path}: http",
        )
        self.stopping = threading.Event()
        self._models: dict[Path, Any] = {}
        self._model_errors: dict[Path, str] = {}
        self._models_lock = threading.Lock()
        self._stamps: dict[Path, Optional[tuple]] = {}
        self.reloads = {"ok": 0, "failed": 0}
        self.last_reload: Optional[dict] = None
        self._reload_lock = threading.Lock()
        self.cameras: dict[str, CameraRunner] = {}
        for cam in config.cameras:
            if cam.enabled:
                self.cameras[cam.name] = CameraRunner(cam, self)
        from edgeseg.station.routes import add_station_routes

        add_station_routes(self.server, self)
        self._started = False

    # ---- models ----------------------------------------------------------------------------
    def _load_model(self, path: Path):
        from edgeseg.runtime import Segmenter

        live = self.config.live_view.enabled and any(
            c.live_view for c in self.config.cameras if c.model == path
        )
        return Segmenter(
            path,
            backend=self.config.backend,
            threads=self.config.threads,
            overlay_alpha=_SINK_ALPHA if live else None,
        )

    def model_for(self, path: Path):
        """The shared segmenter of a model file (loaded on first use); raises the load error
        (ModelError, ...) again until the file is fixed and reloaded."""
        with self._models_lock:
            seg = self._models.get(path)
            if seg is not None:
                return seg
            if path in self._model_errors:
                raise StationError(self._model_errors[path])
            self._stamps.setdefault(path, _stamp(path))
            try:
                seg = self._load_model(path)
            except (EdgesegError, OSError, ImportError) as e:
                self._model_errors[path] = f"model {path}: {e}"
                raise
            self._models[path] = seg
            return seg

    def segmenter(self, camera: Optional[str] = None):
        """The model of ``camera`` (or the only model of the station) for ``/v1/segment``."""
        if camera is None:
            paths = sorted({c.cfg.model for c in self.cameras.values()})
            if len(paths) != 1:
                raise StationError(
                    f"this station runs {len(paths)} models: name a camera "
                    f"(?camera={'|'.join(sorted(self.cameras))})"
                )
            return self.model_for(paths[0]), None
        cam = self.cameras.get(camera)
        if cam is None:
            raise KeyError(camera)
        return self.model_for(cam.cfg.model), cam.rules

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> Station:
        """Starts the server and every camera; a camera that cannot start is retried."""
        if self._started:
            return self
        for p in self.config.files():
            self._stamps[p] = _stamp(p)
        self.server.start()
        for cam in self.cameras.values():
            if cam.live is not None:
                cam.live.open()
            cam.start()
        self._started = True
        log.info(
            "station %s: %d camera(s), http %s",
            self.config.name,
            len(self.cameras),
            self.server.url,
        )
        return self

    def stop(self) -> None:
        """Stops every camera (frames in flight finish, sinks drain up to ``drain_timeout``)
        and the server."""
        if not self._started:
            return
        self.stopping.set()
        for cam in self.cameras.values():
            cam.join(self.config.drain_timeout + 15.0)
        self.server.close()
        self._started = False

    def __enter__(self) -> Station:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- reload ----------------------------------------------------------------------------
    def changed_files(self) -> list[Path]:
        return [p for p in self.config.files() if _stamp(p) != self._stamps.get(p)]

    def reload(self, force: bool = False) -> dict:
        """Reloads the model and rules files that changed (all with ``force``); returns
        ``{"ok": bool, "reloaded": [...], "errors": [...]}``. Never stops a camera: what fails
        keeps the old model or rules."""
        from edgeseg.rules import Rules

        with self._reload_lock:
            changed = self.config.files() if force else self.changed_files()
            stamps = {p: _stamp(p) for p in changed}
            errors: list[str] = []
            reloaded: list[str] = []
            new_models: dict[Path, Any] = {}
            model_paths = {c.cfg.model for c in self.cameras.values()}
            for p in changed:
                if p not in model_paths:
                    continue
                try:
                    new_models[p] = self._load_model(p)
                except (EdgesegError, OSError, ImportError) as e:
                    errors.append(f"model {p}: {e}; the previous model keeps running")
            adopted: set[Path] = set()
            for cam in self.cameras.values():
                cfg = cam.cfg
                model_new = new_models.get(cfg.model)
                rules_changed = cfg.rules is not None and cfg.rules in changed
                if model_new is None and not rules_changed:
                    continue
                try:
                    seg = model_new if model_new is not None else self.model_for(cfg.model)
                    rules = Rules.from_file(cfg.rules, seg.classes) if cfg.rules else None
                except (EdgesegError, OSError) as e:
                    what = "rules" if rules_changed else "model"
                    errors.append(
                        f"camera {cam.name}: {e}; the previous {what} keep running"
                        if what == "rules"
                        else f"camera {cam.name}: {e}; the previous model keeps running"
                    )
                    if cam.telemetry is not None:
                        cam.telemetry.reload(False)
                    continue
                cam.swap(model_new, rules)
                if model_new is not None:
                    adopted.add(cfg.model)
                if cam.telemetry is not None:
                    cam.telemetry.reload(True)
                reloaded.append(cam.name)
            with self._models_lock:
                for p in adopted:
                    self._models[p] = new_models[p]
                    self._model_errors.pop(p, None)
            for p, st in stamps.items():  # a failed file is tried again once it changes again
                self._stamps[p] = st
            ok = not errors
            self.reloads["ok" if ok else "failed"] += 1
            errors = [redact(e) for e in errors]
            self.last_reload = {"t": time.time(), "ok": ok, "cameras": reloaded, "errors": errors}
            notice = None if ok else "reload failed: " + " | ".join(errors)
            for cam in self.cameras.values():
                if cam.live is not None:
                    cam.live.notice = notice
            if ok:
                log.info("reload: %s", ", ".join(reloaded) or "nothing changed")
            for e in errors:
                log.error("reload: %s", e)
            return {"ok": ok, "reloaded": reloaded, "errors": errors}

    # ---- health ----------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Why the station is not ready (empty: ready)."""
        out: list[str] = []
        if not self._started or self.stopping.is_set():
            out.append("the station is not running")
        for cam in self.cameras.values():
            out.extend(cam.problems())
        if not self.cameras:
            out.append("no camera is enabled")
        return out

    def status(self) -> dict:
        return {
            "station": self.config.name,
            "url": self.server.url,
            "ready": not self.problems(),
            "problems": self.problems(),
            "cameras": {name: cam.status() for name, cam in self.cameras.items()},
            "reloads": dict(self.reloads),
            "last_reload": self.last_reload,
            "server": dict(self.server.counts, connections=self.server.connections),
        }
