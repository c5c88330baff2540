"""The browser live view (``--serve ADDR``, sink kind ``serve``).

A stdlib :class:`~http.server.ThreadingHTTPServer` in its own thread serves one page
(``static/live.html``): the overlay as an MJPEG stream, live stats through Server-Sent Events
and a switch for the confidence display. The loop's ``write`` only stores the newest item;
JPEGs are encoded in the threads of the connected viewers, only while one is connected and
only for the newest frame, so a slow or stalled browser never slows the loop.

Endpoints (relative to the page, so a reverse proxy may mount it under a sub-path):

- ``/`` the page; ``/stream.mjpg?conf=off|alpha|heatmap`` the overlay stream;
  ``/frame.jpg?conf=...`` the newest overlay as one JPEG; ``/events`` stats as Server-Sent
  Events; ``/stats.json`` the same stats once.
- With a token every endpoint answers 401 unless the request carries it: ``?token=T``,
  ``Authorization: Bearer T``, ``X-Edgeseg-Token: T`` or the cookie the page sets.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import sys
import threading
import warnings
from collections import deque
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Optional

from edgeseg.errors import SinkError
from edgeseg.sinks._serve_http import CONF_MODES, LiveHandler, jsonable
from edgeseg.sinks.base import LoopItem, Sink, register_sink

__all__ = ["CONF_MODES", "DEFAULT_ADDR", "ServeSink"]

DEFAULT_ADDR = "127.0.0.1:8080"
_PAGE = Path(__file__).with_name("static") / "live.html"


def parse_addr(addr: str) -> tuple[str, int]:
    """``"HOST:PORT"``, ``"[V6]:PORT"``, ``":PORT"`` or ``"PORT"`` → ``(host, port)``; an empty
    host means 127.0.0.1. Raises SinkError naming the address and the expected form."""
    text = str(addr).strip()
    hint = "use HOST:PORT such as 127.0.0.1:8080 ([::1]:8080 for IPv6; port 0 picks a free one)"
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]")
        if not sep or not port_text.startswith(":"):
            raise SinkError(f"serve: address {addr!r} is malformed; {hint}")
        port_text = port_text[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise SinkError(f"serve: IPv6 address {addr!r} needs brackets; {hint}")
    else:
        host, port_text = "", text
    if not port_text.isdigit() or int(port_text) > 65535:
        raise SinkError(f"serve: port {port_text!r} of {addr!r} is not in 0..65535; {hint}")
    return host or "127.0.0.1", int(port_text)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # the sink joins its handler threads itself, with a timeout
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], sink: ServeSink) -> None:
        self.sink = sink
        super().__init__(addr, LiveHandler)

    def handle_error(self, request, client_address) -> None:
        # A browser closing its tab mid-stream is not an error worth a traceback.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, socket.timeout)):
            return
        super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


class ServeSink(Sink):
    """Serves the live view of the loop on ``http://ADDR/``.

    Args:
        addr: ``HOST:PORT`` to bind; 127.0.0.1 unless told otherwise. Port 0 picks a free
            port; :attr:`url` gives the actual address after :meth:`open`.
        token: when set, every endpoint needs it (``?token=``, ``Authorization: Bearer`` or
            ``X-Edgeseg-Token``); binding a non-loopback address without one warns.
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
    ) -> None:
        addr = DEFAULT_ADDR if addr is None or addr == "" else str(addr)
        self.host, self.port = parse_addr(addr)
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise SinkError(f"serve: token={token!r}; pass a non-empty string, or None for none")
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
        self.spec = f"serve:{addr}"
        self.token = token
        self.alpha = float(alpha)
        self.confidence = confidence
        self.jpeg_quality = int(jpeg_quality)
        self.min_interval = 0.0 if max_fps is None else 1.0 / float(max_fps)
        self.max_width = None if max_width is None else int(max_width)
        self.stats_interval = float(stats_interval)
        self.max_clients = int(max_clients)
        self.quiet = quiet
        self.cookie_name = "edgeseg_token"
        self.cookie_value = "" if token is None else hashlib.sha256(token.encode()).hexdigest()
        self.page_template = _PAGE.read_text(encoding="utf-8")
        self.closing = threading.Event()
        self.cond = threading.Condition()
        self._item: Optional[LoopItem] = None
        self._seq = 0
        self._written = 0
        self._verdicts: deque[dict] = deque(maxlen=max(1, int(history)))
        self._enc_locks = {m: threading.Lock() for m in CONF_MODES}
        self._jpeg_cache: dict[str, tuple[int, bytes]] = {}
        self._lock = threading.Lock()  # guards the counters and the handler registry below
        self._handlers: dict[object, threading.Thread] = {}
        self.streams = 0  # open connections that hold a thread (MJPEG + events)
        self.jpeg_encoded = 0
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.url: Optional[str] = None

    # -- the Sink contract ---------------------------------------------------------------
    def open(self) -> None:
        """Binds and starts serving; raises SinkError for a port in use or a bad host."""
        if self._server is not None:
            return
        cls = _Server6 if ":" in self.host else _Server
        try:
            server = cls((self.host, self.port), self)
        except OSError as e:
            if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise SinkError(
                    f"{self.spec}: port {self.port} on {self.host} is in use; stop the other "
                    f"server or pick another port ({self.host}:0 picks a free one)"
                ) from None
            raise SinkError(
                f"{self.spec}: cannot listen on {self.host}:{self.port}: {e}; use an address "
                "of this machine such as 127.0.0.1 (0.0.0.0 for every interface)"
            ) from None
        self.closing.clear()
        self._server = server
        self.port = int(server.server_address[1])
        self.cookie_name = f"edgeseg_token_{self.port}"  # cookies ignore ports; names do not
        shown = "127.0.0.1" if self.host == "0.0.0.0" else self.host
        shown = "[::1]" if self.host == "::" else (f"[{shown}]" if ":" in shown else shown)
        self.url = f"http://{shown}:{self.port}/"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="edgeseg-serve"
        )
        self._thread.daemon = True
        self._thread.start()
        if self.token is None and not _is_loopback(self.host):
            warnings.warn(
                f"{self.spec}: the live view on {self.host} is reachable from other machines "
                "without a token; pass --token (token=...) or bind 127.0.0.1",
                UserWarning,
                stacklevel=2,
            )
        if not self.quiet:
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
        with self.cond:
            self._item = item
            self._seq += 1
            self._written += 1
            self.cond.notify_all()

    def close(self) -> None:
        """Stops serving, disconnects every viewer and joins the threads; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        self.closing.set()
        with self.cond:
            self.cond.notify_all()
        server.shutdown()
        with self._lock:
            handlers = list(self._handlers.items())
        for conn, _ in handlers:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for _, thread in handlers:
            thread.join(timeout=5.0)
        stuck = [t.name for _, t in handlers if t.is_alive()]
        if stuck:
            warnings.warn(
                f"{self.spec}: viewer threads still running after close: {stuck}",
                stacklevel=2,
            )

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

    # -- used by the request handlers -----------------------------------------------------
    def track(self, conn: object, add: bool) -> None:
        with self._lock:
            if add:
                self._handlers[conn] = threading.current_thread()
            else:
                self._handlers.pop(conn, None)

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

    def newest(self, after: int, timeout: float) -> tuple[int, Optional[LoopItem]]:
        """Waits up to ``timeout`` s for an item newer than sequence number ``after``."""
        with self.cond:
            self.cond.wait_for(lambda: self._seq != after or self.closing.is_set(), timeout)
            return self._seq, self._item

    def jpeg(self, seq: int, item: LoopItem, mode: str) -> bytes:
        """The JPEG of ``item`` in confidence display ``mode``, encoded once per frame and mode
        however many viewers watch it."""
        from edgeseg.sinks._serve_http import render

        with self._enc_locks[mode]:
            cached = self._jpeg_cache.get(mode)
            if cached is not None and cached[0] == seq:
                return cached[1]
            data = render(item, mode, self.alpha, self.max_width, self.jpeg_quality)
            self._jpeg_cache[mode] = (seq, data)
        with self._lock:
            self.jpeg_encoded += 1
        return data

    def snapshot(self) -> dict:
        """The JSON-able stats the page shows (see ``/stats.json``)."""
        with self.cond:
            seq, item = self._seq, self._item
        with self._lock:
            verdicts = [dict(v) for v in self._verdicts]
            server = {"clients": self.streams, "jpeg_encoded": self.jpeg_encoded}
        out: dict = {"seq": seq, "verdicts": verdicts[::-1], "server": server}
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

    def authorized(self, headers, query: dict) -> bool:
        """Whether a request carries the token (always true without one)."""
        if self.token is None:
            return True
        want = self.token.encode()
        offered = list(query.get("token", []))
        auth = headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            offered.append(auth[7:].strip())
        if headers.get("X-Edgeseg-Token"):
            offered.append(headers["X-Edgeseg-Token"])
        if any(hmac.compare_digest(t.encode(), want) for t in offered):
            return True
        cookie = _cookie(headers.get("Cookie", ""), self.cookie_name) or ""
        return hmac.compare_digest(cookie.encode(), self.cookie_value.encode())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _cookie(header: str, name: str) -> Optional[str]:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def _open_serve(arg: str, **options) -> ServeSink:
    return ServeSink(arg or DEFAULT_ADDR, **options)


register_sink("serve", _open_serve)
