"""The request handler of the browser live view (see :mod:`edgeseg.sinks.serve`)."""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs, urlsplit

import numpy as np

if TYPE_CHECKING:
    from edgeseg.sinks.base import LoopItem
    from edgeseg.sinks.serve import ServeSink

__all__ = ["CONF_MODES", "LiveHandler", "jsonable", "render"]

#: Confidence displays: plain overlay, colour opacity × confidence, confidence heat map.
CONF_MODES = ("off", "alpha", "heatmap")
_SHOW = {"off": False, "alpha": "alpha", "heatmap": "heatmap"}
_BOUNDARY = "edgeseg-frame"
_log = logging.getLogger("edgeseg.sinks.serve")


def render(
    item: LoopItem, mode: str, alpha: float, max_width: Optional[int], quality: int
) -> bytes:
    """The overlay of ``item`` in confidence display ``mode`` as JPEG bytes."""
    import cv2

    res = item.result
    if res.frame is None:  # a result without its frame: the class colours alone
        img = res.palette()[res.class_map]
    else:
        show = _SHOW[mode] if res.confidence is not None else False
        img = res.overlay(alpha, show_confidence=show)
    if res.rgb:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if max_width is not None and img.shape[1] > max_width:
        h = max(1, round(img.shape[0] * max_width / img.shape[1]))
        img = cv2.resize(img, (max_width, h), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"cv2.imencode failed for a {img.shape} overlay")
    return buf.tobytes()


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values as Python ones and NaN/inf as None (JSON.parse rejects NaN)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return str(obj)


class LiveHandler(BaseHTTPRequestHandler):
    """One request; streams (MJPEG, events) hold their thread until the viewer leaves or the
    sink closes."""

    server_version = "edgeseg-live"
    timeout = 30.0  # a viewer that stops reading cannot hold a thread longer than this
    server: Any  # edgeseg.sinks.serve._Server

    @property
    def sink(self) -> ServeSink:
        return self.server.sink

    def setup(self) -> None:
        super().setup()
        self.sink.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.sink.track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib's name
        _log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib's name
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        if self.sink.closing.is_set():
            return self._plain(503, "the live view is shutting down")
        if not self.sink.authorized(self.headers, query):
            return self._plain(
                401,
                "401: this live view needs its token; open the page as /?token=YOUR_TOKEN "
                "(the value given to --token) or send 'Authorization: Bearer YOUR_TOKEN'",
                {"WWW-Authenticate": 'Bearer realm="edgeseg live view"'},
            )
        route = parts.path.rstrip("/").rsplit("/", 1)[-1] or "index.html"
        try:
            if route == "index.html":
                return self._page(query)
            if route == "stats.json":
                return self._send(200, "application/json", self._stats_bytes())
            if route in ("stream.mjpg", "frame.jpg"):
                mode = query.get("conf", ["off"])[-1]
                if mode not in CONF_MODES:
                    return self._plain(400, f"conf={mode!r}: expected one of {list(CONF_MODES)}")
                return self._mjpeg(mode) if route == "stream.mjpg" else self._frame(mode)
            if route == "events":
                return self._events()
            return self._plain(404, f"{parts.path}: not here; the live view is at /")
        except (ConnectionError, TimeoutError, socket.timeout):
            self.close_connection = True

    # -- responses -------------------------------------------------------------------------
    def _headers(self, code: int, ctype: str, extra: Optional[dict] = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)

    def _send(self, code: int, ctype: str, body: bytes, extra: Optional[dict] = None) -> None:
        self._headers(code, ctype, extra)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _plain(self, code: int, text: str, extra: Optional[dict] = None) -> None:
        self._send(code, "text/plain; charset=utf-8", (text + "\n").encode(), extra)

    def _page(self, query: dict) -> None:
        sink = self.sink
        conf = query.get("conf", [sink.confidence])[-1]
        page = sink.page_template.replace("__EDGESEG_CONF__", conf if conf in CONF_MODES else "off")
        extra = {
            "X-Frame-Options": "DENY",
            "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
            "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
        }
        if sink.token is not None:
            # The page's own requests (stream, events) then pass without the token in the URL.
            extra["Set-Cookie"] = (
                f"{sink.cookie_name}={sink.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
            )
        self._send(200, "text/html; charset=utf-8", page.encode(), extra)

    def _stats_bytes(self) -> bytes:
        return json.dumps(self.sink.snapshot(), separators=(",", ":")).encode()

    def _frame(self, mode: str) -> None:
        seq, item = self.sink.newest(-1, 0.0)
        if item is None:
            return self._plain(503, "no frame yet; the loop has not delivered one")
        self._send(200, "image/jpeg", self.sink.jpeg(seq, item, mode), {"X-Frame-Seq": str(seq)})

    def _enter_stream(self) -> bool:
        if self.sink.acquire_stream():
            return True
        self._plain(503, f"too many viewers (max_clients={self.sink.max_clients}); try later")
        return False

    def _mjpeg(self, mode: str) -> None:
        """multipart/x-mixed-replace: one part per new frame, always the newest one."""
        sink = self.sink
        if not self._enter_stream():
            return
        try:
            self._headers(200, f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.end_headers()
            last, t_sent = 0, 0.0
            while not sink.closing.is_set():
                wait = sink.min_interval - (time.monotonic() - t_sent)
                if wait > 0 and sink.closing.wait(wait):
                    break
                seq, item = sink.newest(last, 1.0)
                if item is None or seq == last:
                    continue
                data = sink.jpeg(seq, item, mode)
                frame = getattr(item.frame, "index", -1)
                head = (
                    f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}"
                    f"\r\nX-Frame-Index: {frame}\r\n\r\n"
                )
                self.wfile.write(head.encode() + data + b"\r\n")
                self.wfile.flush()
                last, t_sent = seq, time.monotonic()
        finally:
            self.sink.release_stream()
            self.close_connection = True

    def _events(self) -> None:
        """Server-Sent Events: the stats whenever a new frame came, at most every
        ``stats_interval`` s; a comment every 10 s keeps proxies and dead-peer checks honest."""
        sink = self.sink
        if not self._enter_stream():
            return
        try:
            self._headers(200, "text/event-stream")
            self.end_headers()
            self.wfile.write(b"retry: 1000\n\n")
            self.wfile.flush()
            last, idle = -1, 0.0
            while not sink.closing.is_set():
                seq, _ = sink.newest(last, 1.0)
                if seq == last:
                    idle += 1.0
                    if idle >= 10.0:
                        self.wfile.write(b": idle\n\n")
                        self.wfile.flush()
                        idle = 0.0
                    continue
                self.wfile.write(b"data: " + self._stats_bytes() + b"\n\n")
                self.wfile.flush()
                last, idle = seq, 0.0
                if sink.closing.wait(sink.stats_interval):
                    break
        finally:
            self.sink.release_stream()
            self.close_connection = True
