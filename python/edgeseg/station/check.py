"""``edgeseg station --check``: every finding of a station file, without running it.

Beyond the keys and values (:func:`~edgeseg.station.config.check_data`) it loads every model
once, compiles every rules file against its camera's model, builds (without opening) every
source, sink and trigger, and checks the HTTP settings (address, token, TLS files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from edgeseg._redact import redact
from edgeseg.errors import EdgesegError, StationError
from edgeseg.station.config import StationConfig, _hide, check_data, read_station

__all__ = ["check_station"]


def check_station(path: Any, env: Optional[dict] = None) -> tuple[Optional[StationConfig], list]:
    """``(config or None, findings)`` of a station file; no findings means it can run."""
    p = Path(path)
    try:
        data, text = read_station(p)
    except StationError as e:
        return None, [str(e)]
    config, findings, secrets = check_data(data, p, text, env)
    if config is None:
        return None, findings
    out: list[str] = []

    def note(where: str, e: Exception) -> None:
        out.append(_hide(f"{p}: {where}: {e}", secrets))

    from edgeseg.server import HttpServer

    h = config.http
    try:
        HttpServer(h.addr, h.token, tls_cert=h.tls_cert, tls_key=h.tls_key, error=StationError)
        if h.tls_cert:
            HttpServer(h.addr, h.token, tls_cert=h.tls_cert, tls_key=h.tls_key)._ssl_context()
    except EdgesegError as e:
        note("http", e)
    models: dict = {}
    for cam in config.cameras:
        where = f"cameras.{cam.name}"
        seg = models.get(cam.model)
        if cam.model not in models:
            try:
                from edgeseg.runtime import Segmenter

                seg = models[cam.model] = Segmenter(cam.model, backend=config.backend)
            except (EdgesegError, OSError, ImportError) as e:
                models[cam.model] = None
                note(f"{where}.model", e)
        if cam.rules is not None and seg is not None:
            try:
                from edgeseg.rules import Rules

                Rules.from_file(cam.rules, seg.classes)
            except (EdgesegError, OSError) as e:
                note(f"{where}.rules", e)
        try:
            import edgeseg.camera.sources  # noqa: F401 - registers the URI schemes
            from edgeseg.camera import open_source

            open_source(cam.source)
        except (EdgesegError, ImportError) as e:
            note(f"{where}.source", e)
        for spec in cam.sinks:
            try:
                import edgeseg.sinks  # noqa: F401 - registers the sink kinds
                from edgeseg.sinks import open_sink

                open_sink(spec)
            except (EdgesegError, ImportError, TypeError) as e:
                note(f"{where}.sinks: {redact(spec)}", e)
        if cam.trigger and cam.trigger != "http":
            try:
                from edgeseg.camera.triggers import open_trigger

                open_trigger(cam.trigger)
            except (EdgesegError, ImportError) as e:
                note(f"{where}.trigger", e)
    return (config if not out else None), out
