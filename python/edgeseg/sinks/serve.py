"""The browser live view (``--serve ADDR``, sink kind ``serve``).

The live view's routes (:mod:`edgeseg.sinks._serve_http`) run on the one HTTP server of
edgeseg (:class:`edgeseg.server.HttpServer`, aiohttp): a standalone sink starts its own on
``ADDR``; a station mounts every camera's view on its shared server under
``/cameras/NAME/``. The page (``static/live.html``) shows the overlay as an MJPEG stream, live
stats through Server-Sent Events and a switch for the confidence display. The loop's
``write`` only stores the newest item; JPEGs are encoded in the server's worker threads, only
while a viewer is connected and once per frame and display, so a slow or stalled browser never
slows the loop.

Endpoints (relative to the page, so a reverse proxy may mount it under a sub-path):

- ``/`` the page; ``/stream.mjpg?conf=off|alpha|heatmap`` the overlay stream;
  ``/frame.jpg?conf=...`` the newest overlay as one JPEG; ``/events`` stats as Server-Sent
  Events; ``/stats.json`` the same stats once.
- With a token every endpoint answers 401 unless the request carries it: ``?token=T``,
  ``Authorization: Bearer T``, ``X-Edgeseg-Token: T`` or the cookie the page sets. A
  non-loopback address without a token is refused.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import deque
from pathlib import Path
from typing import Optional

from edgeseg.errors import SinkError
from edgeseg.server.http import DEFAULT_ADDR, HttpServer, parse_addr
from edgeseg.sinks._serve_http import CONF_MODES, add_live_routes, jsonable
from edgeseg.sinks.base import LoopItem, Sink, register_sink

__all__ = ["CONF_MODES", "DEFAULT_ADDR", "ServeSink", "parse_addr"]

_PAGE = Path(__file__).with_name("static") / "live.html"


class ServeSink(Sink):
    """Serves the live view of the loop on ``http://ADDR/``.

    Args:
        addr: ``HOST:PORT`` to bind; 127.0.0.1 unless told otherwise. Port 0 picks a free
            port; :attr:`url` gives the actual address after :meth:`open`.
        token: when set, every endpoint needs it (``?token=``, ``Authorization: Bearer`` or
            ``X-Edgeseg-Token``); a non-loopback address without one is refused.
        alpha: colour opacity of the overlay in [0, 1].
        confidence: the page's initial confidence display: ``"off"``, ``"alpha"``
            (transparency follows the confidence) or ``"heatmap"``; viewers switch it.
        jpeg_quality: 1..100.
        max_fps: at most this many frames a second per stream (None: every new frame).
        max_width: frames wider than this are scaled down before encoding (None: full size).
        history: how many verdict runs the page lists (consecutive equal verdicts collapse).
        stats_interval: seconds between two stats updates pushed to a page.
        max_clients: concurrent stream/event connections beyond this get 503.
        quiet: do not print the URL on :meth:`open`.
        server: mount the view on this running-to-be :class:`~edgeseg.server.HttpServer`
            under ``prefix`` instead of starting a server (``addr`` and ``token`` are then
            the server's business).
        prefix: the path the view is mounted at on ``server``.

    Raises:
        SinkError: a malformed address or option, a non-loopback bind without a token (here);
            a port in use or an address not of this machine (at :meth:`open`).
    """

    def __init__(
        self,
        addr: str = DEFAULT_ADDR,
        token: Optional[str] = None,
        *,
        alpha: float = 0.5,
        confidence: str = "off",
        jpeg_quality: int = 80,
        max_fps: Optional[float] = 25.0,
        max_width: Optional[int] = None,
        history: int = 20,
        stats_interval: float = 0.25,
        max_clients: int = 16,
        quiet: bool = False,
        server: Optional[HttpServer] = None,
        prefix: str = "/",
    ) -> None:
        addr = DEFAULT_ADDR if addr is None or addr == "" else str(addr)
        self.spec = f"serve:{addr}"
        if not 0.0 <= float(alpha) <= 1.0:
            raise SinkError(f"serve: alpha={alpha!r} is outside [0, 1]; try 0.5")
        if confidence not in CONF_MODES:
            raise SinkError(f"serve: confidence={confidence!r}; expected one of {CONF_MODES}")
        if not 1 <= int(jpeg_quality) <= 100:
            raise SinkError(f"serve: jpeg_quality={jpeg_quality!r} is outside 1..100; try 80")
        if max_fps is not None and not float(max_fps) > 0:
            raise SinkError(f"serve: max_fps={max_fps!r} must be > 0 (None: no limit)")
        if max_width is not None and int(max_width) < 16:
            raise SinkError(f"serve: max_width={max_width!r} must be >= 16 (None: full size)")
        self._own = server is None
        if server is None:
            server = HttpServer(addr, token, error=SinkError, what=self.spec)
        self.server: HttpServer = server
        self.host, self.port = server.host, server.port
        self.token = server.token
        self.prefix = prefix
        self.alpha = float(alpha)
        self.confidence = confidence
        self.jpeg_quality = int(jpeg_quality)
        self.min_interval = 0.0 if max_fps is None else 1.0 / float(max_fps)
        self.max_width = None if max_width is None else int(max_width)
        self.stats_interval = float(stats_interval)
        self.max_clients = int(max_clients)
        self.quiet = quiet
        self.page_template = _PAGE.read_text(encoding="utf-8")
        self.closing = threading.Event()
        self.notice: Optional[str] = None  # shown on the page (a reload that failed, ...)
        self._cond = threading.Condition()
        self._item: Optional[LoopItem] = None
        self._seq = 0
        self._written = 0
        self._verdicts: deque[dict] = deque(maxlen=max(1, int(history)))
        self._enc_lock = threading.Lock()
        self._jpeg_cache: dict[str, tuple[int, bytes]] = {}
        self._encoding: dict[str, tuple[int, asyncio.Future]] = {}  # event loop only
        self._event: Optional[asyncio.Event] = None  # event loop only
        self._lock = threading.Lock()  # guards the counters below
        self.streams = 0  # open stream/event connections
        self.jpeg_encoded = 0
        self.url: Optional[str] = None
        add_live_routes(server, self, prefix)
        server.on_close(self._end_streams)

    # -- the Sink contract ---------------------------------------------------------------
    def open(self) -> None:
        """Starts serving (a sink with its own server binds here; raises SinkError for a port
        in use or a bad host)."""
        self.closing.clear()
        if self._own:
            self.server.start()
            self.port = self.server.port
        if self.server.url is not None:
            self.url = self.server.url.rstrip("/") + "/" + self.prefix.strip("/")
            self.url = self.url.rstrip("/") + "/"
        if self._own and not self.quiet:
            hint = "" if self.token is None else " (open it with ?token=YOUR_TOKEN)"
            print(f"edgeseg live view: {self.url}{hint}", file=sys.stderr, flush=True)

    def write(self, item: LoopItem) -> None:
        """Keeps ``item`` as the newest frame (no encoding here; viewers encode on demand)."""
        rec = item.record or {}
        label = reasons = None
        if item.verdict is not None:
            label, reasons = item.verdict.label, list(item.verdict.reasons)
        elif rec.get("valid") is False:  # no verdict (on_invalid: skip): listed as INVALID
            label, reasons = "INVALID", [str(rec.get("invalid_reason"))]
        if label is not None:
            frame = rec.get("frame", getattr(item.frame, "index", None))
            with self._lock:
                last = self._verdicts[-1] if self._verdicts else None
                if last is not None and last["label"] == label and last["reasons"] == reasons:
                    last["last_frame"] = frame
                    last["frames"] += 1
                else:
                    entry = {"label": label, "reasons": reasons, "frames": 1}
                    self._verdicts.append({**entry, "first_frame": frame, "last_frame": frame})
        with self._cond:
            self._item = item
            self._seq += 1
            self._written += 1
        if self.streams:
            self.server.call(self._wake)

    def close(self) -> None:
        """Ends every stream; a sink with its own server stops it and joins its threads.
        Safe to call twice."""
        self.closing.set()
        self.server.call(self._wake)
        if self._own:
            self.server.close()

    def stats(self) -> dict:
        """``written`` items, ``clients`` (open stream/event connections), ``jpeg_encoded``."""
        with self._lock:
            return {
                "url": self.url,
                "written": self._written,
                "clients": self.streams,
                "jpeg_encoded": self.jpeg_encoded,
            }

    def __enter__(self) -> ServeSink:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- used by the request handlers (the event loop) -------------------------------------
    def acquire_stream(self) -> bool:
        """Counts one more stream/event viewer; False when ``max_clients`` are connected."""
        with self._lock:
            if self.streams >= self.max_clients:
                return False
            self.streams += 1
            return True

    def release_stream(self) -> None:
        with self._lock:
            self.streams -= 1

    def newest(self) -> tuple[int, Optional[LoopItem]]:
        """The sequence number and the newest item (None before the first)."""
        with self._cond:
            return self._seq, self._item

    def _wake(self) -> None:
        ev, self._event = self._event, None
        if ev is not None:
            ev.set()

    def _end_streams(self) -> None:
        self.closing.set()
        self._wake()

    async def next_item(self, after: int, timeout: float) -> tuple[int, Optional[LoopItem]]:
        """Waits up to ``timeout`` s for an item newer than sequence number ``after``."""
        seq, item = self.newest()
        if seq != after or self.closing.is_set():
            return seq, item
        if self._event is None:
            self._event = asyncio.Event()
        ev = self._event
        seq, item = self.newest()  # a write between the two looks: no wait
        if seq != after:
            return seq, item
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self.newest()

    async def jpeg_async(self, seq: int, item: LoopItem, mode: str) -> bytes:
        """:meth:`jpeg` in the server's worker threads; viewers of the same frame and mode
        await one encoding."""
        running = self._encoding.get(mode)
        if running is None or running[0] != seq:
            fut = asyncio.ensure_future(self.server.run_blocking(self.jpeg, seq, item, mode))
            running = self._encoding[mode] = (seq, fut)
        return await asyncio.shield(running[1])

    def jpeg(self, seq: int, item: LoopItem, mode: str) -> bytes:
        """The JPEG of ``item`` in confidence display ``mode``, encoded once per frame and mode
        however many viewers watch it."""
        from edgeseg.sinks._serve_http import render

        with self._enc_lock:
            cached = self._jpeg_cache.get(mode)
            if cached is not None and cached[0] == seq:
                return cached[1]
        data = render(item, mode, self.alpha, self.max_width, self.jpeg_quality)
        with self._enc_lock:
            self._jpeg_cache[mode] = (seq, data)
        with self._lock:
            self.jpeg_encoded += 1
        return data

    def snapshot(self) -> dict:
        """The JSON-able stats the page shows (see ``/stats.json``)."""
        seq, item = self.newest()
        with self._lock:
            verdicts = [dict(v) for v in self._verdicts]
            server = {"clients": self.streams, "jpeg_encoded": self.jpeg_encoded}
        out: dict = {"seq": seq, "verdicts": verdicts[::-1], "server": server}
        if self.notice:
            out["notice"] = self.notice
        if item is None:
            return out
        res, rec = item.result, item.record or {}
        pal = res.palette(rgb=True)
        out.update(
            frame=rec.get("frame", getattr(item.frame, "index", None)),
            t_capture=rec.get("t_capture"),
            latency_ms=rec.get("latency_ms"),
            verdict=rec.get("verdict", None if item.verdict is None else item.verdict.label),
            reasons=rec.get("reasons", [] if item.verdict is None else item.verdict.reasons),
            valid=rec.get("valid", bool(getattr(res, "valid", True))),
            invalid_reason=rec.get("invalid_reason", getattr(res, "invalid_reason", None)),
            width=res.shape[1],
            height=res.shape[0],
            has_confidence=res.confidence is not None,
            classes=[
                {
                    "name": c.name,
                    "color": "#" + bytes(int(v) for v in pal[i]).hex(),
                    "area_fraction": float(a),
                    "count": int(n),
                }
                for i, (c, a, n) in enumerate(
                    zip(res.classes, res.area_fraction.values(), res.counts_array)
                )
            ],
            timings_ms=res.timings,
            loop=item.stats,
        )
        return jsonable(out)


def _open_serve(arg: str, **options) -> ServeSink:
    return ServeSink(arg or DEFAULT_ADDR, **options)


register_sink("serve", _open_serve)
