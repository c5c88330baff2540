"""The routes of the browser live view on :class:`edgeseg.server.HttpServer` (see
:mod:`edgeseg.sinks.serve`): the page, the MJPEG stream, one JPEG, Server-Sent Events, stats.

Handlers run on the server's event loop; JPEG encoding runs in its worker threads, once per
frame and confidence display however many viewers watch (the viewers of one frame await the
same encoding)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

if TYPE_CHECKING:
    from edgeseg.server import HttpServer
    from edgeseg.sinks.base import LoopItem
    from edgeseg.sinks.serve import ServeSink

__all__ = ["CONF_MODES", "add_live_routes", "jsonable", "render"]

#: Confidence displays: plain overlay, colour opacity × confidence, confidence heat map.
CONF_MODES = ("off", "alpha", "heatmap")
_SHOW = {"off": False, "alpha": "alpha", "heatmap": "heatmap"}
_BOUNDARY = "edgeseg-frame"
_log = logging.getLogger("edgeseg.sinks.serve")
_PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'",
}


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


def add_live_routes(server: HttpServer, sink: ServeSink, prefix: str = "/") -> None:
    """Mounts the live view of ``sink`` under ``prefix`` (``"/"``, ``"/cameras/a/"``)."""
    from aiohttp import web

    prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"

    def plain(status: int, text: str) -> web.Response:
        return web.Response(status=status, text=text + "\n")

    def mode_of(request) -> Optional[str]:
        mode = request.query.get("conf", "off")
        return mode if mode in CONF_MODES else None

    async def page(request) -> web.Response:
        if sink.closing.is_set():
            return plain(503, "the live view is shutting down")
        conf = request.query.get("conf", sink.confidence)
        text = sink.page_template.replace("__EDGESEG_CONF__", conf if conf in CONF_MODES else "off")
        return web.Response(text=text, content_type="text/html", headers=_PAGE_HEADERS)

    async def stats(request) -> web.Response:
        return web.Response(body=_stats_bytes(sink), content_type="application/json")

    async def frame(request) -> web.Response:
        mode = mode_of(request)
        if mode is None:
            return plain(400, f"conf={request.query.get('conf')!r}: expected one of {CONF_MODES}")
        seq, item = sink.newest()
        if item is None:
            return plain(503, "no frame yet; the loop has not delivered one")
        data = await sink.jpeg_async(seq, item, mode)
        return web.Response(body=data, content_type="image/jpeg", headers={"X-Frame-Seq": str(seq)})

    async def stream(request) -> web.StreamResponse:
        mode = mode_of(request)
        if mode is None:
            return plain(400, f"conf={request.query.get('conf')!r}: expected one of {CONF_MODES}")
        if sink.closing.is_set():
            return plain(503, "the live view is shutting down")
        if not sink.acquire_stream():
            return plain(503, f"too many viewers (max_clients={sink.max_clients}); try later")
        try:
            resp = web.StreamResponse(
                headers={"Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}"}
            )
            resp.force_close()
            await resp.prepare(request)
            last, t_sent, repeated = 0, 0.0, True
            while not sink.closing.is_set():
                wait = sink.min_interval - (time.monotonic() - t_sent)
                if wait > 0:
                    await asyncio.sleep(wait)
                seq, item = await sink.next_item(last, 1.0)
                if item is None or (seq == last and repeated):
                    continue
                # Chromium shows a part only once the next one begins: a frame with no
                # successor for a second (a triggered camera) is sent once more (cached JPEG)
                repeated = seq == last
                data = await sink.jpeg_async(seq, item, mode)
                index = getattr(item.frame, "index", -1)
                head = (
                    ("" if last else f"--{_BOUNDARY}\r\n")
                    + f"Content-Type: image/jpeg\r\nContent-Length: {len(data)}"
                    f"\r\nX-Frame-Index: {index}\r\n\r\n"
                )
                # the boundary right after the JPEG ends the part: a browser shows a frame
                # at once, not when the next one comes (a triggered camera may wait minutes)
                await server.write(resp, head.encode() + data + f"\r\n--{_BOUNDARY}\r\n".encode())
                last, t_sent = seq, time.monotonic()
        except ConnectionError:  # the viewer left or stopped reading
            pass
        finally:
            sink.release_stream()
        return resp

    async def events(request) -> web.StreamResponse:
        """Server-Sent Events: the stats whenever a new frame came, at most every
        ``stats_interval`` s; a comment every 10 s keeps proxies and dead-peer checks honest."""
        if sink.closing.is_set():
            return plain(503, "the live view is shutting down")
        if not sink.acquire_stream():
            return plain(503, f"too many viewers (max_clients={sink.max_clients}); try later")
        try:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            resp.force_close()
            await resp.prepare(request)
            await server.write(resp, b"retry: 1000\n\n")
            last, idle = -1, 0.0
            while not sink.closing.is_set():
                seq, _ = await sink.next_item(last, 1.0)
                if seq == last:
                    idle += 1.0
                    if idle >= 10.0:
                        await server.write(resp, b": idle\n\n")
                        idle = 0.0
                    continue
                await server.write(resp, b"data: " + _stats_bytes(sink) + b"\n\n")
                last, idle = seq, 0.0
                await asyncio.sleep(sink.stats_interval)
        except ConnectionError:
            pass
        finally:
            sink.release_stream()
        return resp

    if prefix != "/":

        async def slash(request) -> web.Response:
            query = f"?{request.query_string}" if request.query_string else ""
            raise web.HTTPPermanentRedirect(prefix + query)

        server.add_route("GET", prefix.rstrip("/"), slash)
    server.add_route("GET", prefix, page)
    server.add_route("GET", prefix + "index.html", page)
    server.add_route("GET", prefix + "stats.json", stats)
    server.add_route("GET", prefix + "frame.jpg", frame)
    server.add_route("GET", prefix + "stream.mjpg", stream)
    server.add_route("GET", prefix + "events", events)


def _stats_bytes(sink: ServeSink) -> bytes:
    return json.dumps(sink.snapshot(), separators=(",", ":")).encode()
