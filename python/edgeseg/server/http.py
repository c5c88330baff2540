"""``HttpServer``: aiohttp in a background thread, with the guards a factory line needs.

One asyncio event loop in one thread serves every connection (an idle socket costs a few
kilobytes, not a thread). Blocking work (JPEG encoding, inference, waiting on the camera loop)
runs in a small thread pool (:meth:`HttpServer.run_blocking`), never on the event loop.

Guards, all on by default:

- **token**: with ``token`` set every route except those added with ``auth=False``
  (``/healthz``) needs it: ``Authorization: Bearer T``, ``?token=T``, ``X-Edgeseg-Token: T``
  or the cookie the live view page sets (a SHA-256 of the token, never the token). Compared
  with :func:`hmac.compare_digest`. A bind to a non-loopback address without a token is
  refused: a line's network is not a place for an open inference and trigger endpoint.
- **Host header** (DNS rebinding): a request whose ``Host`` names neither an IP address, a
  localhost name, the bind address nor one of ``allowed_hosts`` gets 421 (``"*"`` allows any).
- **timeouts**: a request whose head or body does not arrive within ``request_timeout`` s is
  answered 408 and closed; a keep-alive connection idle for ``idle_timeout`` s is closed; a
  stream whose viewer stops reading is dropped after ``write_timeout`` s.
- **bounded connections**: at most ``max_connections`` sockets; when full, the oldest one
  that is not inside a request handler (idle or still sending its head) is closed to admit
  the new one, so idle sockets never lock out a real request; 503 when every one is busy.
- **listen backlog** ``backlog`` (≥ 128); a malformed request (bad ``Content-Length``,
  oversized head) gets aiohttp's 400 and never a traceback; bodies above ``max_body`` get 413.
- **TLS** from ``tls_cert`` / ``tls_key`` PEM files.

One room on purpose: the guards share the per-connection state (:class:`_Conn`: admitted,
busy, sending a head) that the life cycle creates and tears down; split apart, each half would
reach into the other's bookkeeping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

from edgeseg.errors import EdgesegError, ServerError

__all__ = ["DEFAULT_ADDR", "HttpServer", "is_loopback", "parse_addr", "read_body"]

log = logging.getLogger("edgeseg.server")

DEFAULT_ADDR = "127.0.0.1:8080"
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")
_INSTALL = "pip install 'edgeseg[serve]' (the HTTP server runs on aiohttp)"
T = TypeVar("T")


def parse_addr(addr: Any, error: type[EdgesegError] = ServerError, what: str = "http") -> tuple:
    """``"HOST:PORT"``, ``"[V6]:PORT"``, ``":PORT"`` or ``"PORT"`` → ``(host, port)``; an empty
    host means 127.0.0.1. Raises ``error`` naming the address and the expected form."""
    text = str(addr).strip()
    hint = "use HOST:PORT such as 127.0.0.1:8080 ([::1]:8080 for IPv6; port 0 picks a free one)"
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]")
        if not sep or not port_text.startswith(":"):
            raise error(f"{what}: address {addr!r} is malformed; {hint}")
        port_text = port_text[1:]
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise error(f"{what}: IPv6 address {addr!r} needs brackets; {hint}")
    else:
        host, port_text = "", text
    if not port_text.isdigit() or int(port_text) > 65535:
        raise error(f"{what}: port {port_text!r} of {addr!r} is not in 0..65535; {hint}")
    return host or "127.0.0.1", int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine only."""
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8080`` → ``::1``), lower case."""
    h = header.strip().lower()
    if h.startswith("["):
        return h[1:].partition("]")[0]
    if h.count(":") == 1:
        h = h.partition(":")[0]
    return h.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


async def read_body(request, limit: int, timeout: float) -> bytes:
    """The request body, at most ``limit`` bytes, within ``timeout`` s; raises aiohttp's 413
    (too large) or 408 (too slow) with a reason the client can act on."""
    from aiohttp import web

    declared = request.content_length
    if declared is not None and declared > limit:
        raise web.HTTPRequestEntityTooLarge(
            max_size=limit,
            actual_size=declared,
            text=f"413: the body is {declared} bytes; the limit is {limit} bytes\n",
        )

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise web.HTTPRequestEntityTooLarge(
                    max_size=limit,
                    actual_size=size,
                    text=f"413: the body is over the limit of {limit} bytes\n",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout)
    except asyncio.TimeoutError:
        raise web.HTTPRequestTimeout(
            text=f"408: the body did not arrive within {timeout:g} s\n",
            headers={"Connection": "close"},
        ) from None


class _Conn(asyncio.Protocol):
    """Wraps aiohttp's protocol object for one connection: counts it, and tells the watchdog
    whether a handler runs (``busy``) or the client is still sending a head (``partial``)."""

    def __init__(self, inner: asyncio.Protocol, owner: HttpServer) -> None:
        self.inner, self.owner = inner, owner
        self.transport: Optional[asyncio.Transport] = None
        self.busy = 0
        self.partial = False
        self.since = time.monotonic()
        self.admitted = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.owner._all.add(self)
        self.admitted = self.owner._admit(self)
        if not self.admitted:
            body = b"503: the server has no free connection; try again\n"
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            transport.close()
            return
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.busy and not self.partial:
            self.partial, self.since = True, time.monotonic()
        self.inner.data_received(data)  # type: ignore[attr-defined]

    def eof_received(self):
        return self.inner.eof_received()

    def connection_lost(self, exc) -> None:
        self.owner._all.discard(self)
        if self.admitted:
            self.owner._release(self)
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def abort(self) -> None:
        """Closes at once, unsent data dropped (a closing transport whose reader stalled
        would otherwise wait for its buffer to drain forever)."""
        if self.transport is not None:
            self.transport.abort()

    def close(self, answer: Optional[bytes] = None) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if answer:
            t.write(answer)
        t.close()


class HttpServer:
    """An HTTP(S) server on aiohttp, run in its own thread (module docstring for the guards).

    Args:
        addr: ``HOST:PORT`` to bind (127.0.0.1 unless told otherwise; port 0 picks a free one,
            :attr:`port` and :attr:`url` tell which after :meth:`start`).
        token: the access token (None: no auth; refused for a non-loopback bind).
        allowed_hosts: more ``Host`` header names to accept (``"*"``: any).
        tls_cert, tls_key: PEM files for HTTPS (both or neither).
        request_timeout: seconds for a request's head and body to arrive.
        idle_timeout: seconds a keep-alive connection may sit idle.
        write_timeout: seconds a stream may wait for a client that stopped reading.
        max_connections: open sockets at most (the oldest idle one makes room).
        backlog: the listen backlog (at least 128).
        max_body: largest request body in bytes.
        workers: threads for blocking work (:meth:`run_blocking`).
        error: the EdgesegError subclass start-up problems raise (default ServerError).
        what: how messages name this server (``"http"``, ``"serve:127.0.0.1:8080"``).

    Raises:
        ServerError (or ``error``): a malformed address, a non-loopback bind without a token,
            TLS files missing or given alone, aiohttp not installed.
    """

    def __init__(
        self,
        addr: str = DEFAULT_ADDR,
        token: Optional[str] = None,
        *,
        allowed_hosts: Iterable[str] = (),
        tls_cert: Optional[str] = None,
        tls_key: Optional[str] = None,
        request_timeout: float = 10.0,
        idle_timeout: float = 30.0,
        write_timeout: float = 10.0,
        max_connections: int = 256,
        backlog: int = 128,
        max_body: int = 16 * 1024 * 1024,
        workers: int = 4,
        error: type[EdgesegError] = ServerError,
        what: str = "http",
    ) -> None:
        self.error, self.what = error, what
        self.host, self.port = parse_addr(addr or DEFAULT_ADDR, error, what)
        if token is not None and (not isinstance(token, str) or not token.strip()):
            raise error(f"{what}: the token is empty; give a non-empty string, or none at all")
        if token is None and not is_loopback(self.host):
            raise error(
                f"{what}: binding {self.host} makes the server reachable from other machines; "
                "it needs a token (http.token: ${EDGESEG_TOKEN} in a station file, --token for "
                "edgeseg run), or bind 127.0.0.1"
            )
        if (tls_cert is None) != (tls_key is None):
            raise error(f"{what}: TLS needs both a certificate and a key file (PEM), or neither")
        for name, value in (
            ("request_timeout", request_timeout),
            ("idle_timeout", idle_timeout),
            ("write_timeout", write_timeout),
        ):
            if not float(value) > 0:
                raise error(f"{what}: {name}={value!r} must be > 0 seconds")
        if int(max_connections) < 1:
            raise error(f"{what}: max_connections={max_connections!r} must be >= 1")
        self.token = token
        self.allowed_hosts = tuple(str(h).lower() for h in allowed_hosts)
        self.tls_cert, self.tls_key = tls_cert, tls_key
        self.request_timeout = float(request_timeout)
        self.idle_timeout = float(idle_timeout)
        self.write_timeout = float(write_timeout)
        self.max_connections = int(max_connections)
        self.backlog = max(128, int(backlog))
        self.max_body = int(max_body)
        self.workers = max(1, int(workers))
        self.cookie_value = "" if token is None else hashlib.sha256(token.encode()).hexdigest()
        self.closing = threading.Event()
        self.counts = {"requests": 0, "unauthorized": 0, "bad_host": 0, "timeouts": 0}
        self.counts.update(evicted=0, refused=0)
        self._routes: list[tuple[str, str, Callable, bool]] = []
        self._public: set[tuple[str, str]] = set()
        self._conns: dict[Any, _Conn] = {}  # admitted connections by transport
        self._all: set[_Conn] = set()  # every open connection, admitted or being refused
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._pool: Optional[concurrent.futures.ThreadPoolExecutor] = None
        self._server: Any = None
        self._runner: Any = None
        self._watchdog: Any = None
        self._on_close: list[Callable[[], None]] = []
        self.url: Optional[str] = None

    # ---- configuration -------------------------------------------------------------------
    @property
    def cookie_name(self) -> str:
        """The name of the cookie the live view page sets (per port: cookies ignore ports)."""
        return f"edgeseg_token_{self.port}"

    def add_route(self, method: str, path: str, handler: Callable, *, auth: bool = True) -> None:
        """Adds an aiohttp handler (before :meth:`start`); ``auth=False`` makes it public."""
        if self._runner is not None:
            raise RuntimeError("add_route: the server is running already; add routes first")
        self._routes.append((method.upper(), path, handler, auth))

    def on_close(self, fn: Callable[[], None]) -> None:
        """Calls ``fn()`` on the event loop first thing when the server closes (streams end)."""
        self._on_close.append(fn)

    @property
    def loop(self) -> Optional[asyncio.AbstractEventLoop]:
        """The server's event loop while it runs."""
        return self._loop

    @property
    def connections(self) -> int:
        return len(self._conns)

    # ---- life cycle ------------------------------------------------------------------------
    def start(self) -> HttpServer:
        """Binds, starts the thread and serves; raises ``error`` for a port in use, an address
        not of this machine or unreadable TLS files."""
        if self._loop is not None:
            return self
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            raise self.error(f"{self.what}: aiohttp is not installed; {_INSTALL}") from None
        ctx = self._ssl_context()
        sock = self._bind()
        self.port = int(sock.getsockname()[1])
        shown = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"{'https' if ctx else 'http'}://{shown}:{self.port}/"
        self.closing.clear()
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.workers, thread_name_prefix="edgeseg-http-work"
        )
        self._thread = threading.Thread(target=self._run_loop, name="edgeseg-http", daemon=True)
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._astart(sock, ctx), loop).result(30)
        except BaseException:
            sock.close()
            self._stop_loop()
            raise
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Ends every stream, closes every connection and joins the threads; twice is fine."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        self.closing.set()
        try:
            asyncio.run_coroutine_threadsafe(self._astop(timeout), loop).result(timeout + 5)
        except Exception as e:  # closing goes on: the threads are joined below either way
            log.warning("%s: while closing: %s", self.what, e)
        self._loop = loop
        self._stop_loop()

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, fn: Callable[[], T]) -> None:
        """Runs ``fn()`` on the event loop (thread-safe); a no-op when the server is down."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(fn)
            except RuntimeError:  # closed between the check and the call
                pass

    async def run_blocking(self, fn: Callable[..., T], *args) -> T:
        """``fn(*args)`` in the server's worker threads (never blocks the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def write(self, response, data: bytes) -> None:
        """``response.write(data)`` bounded by ``write_timeout`` (a stalled reader's socket
        buffer fills; raising ConnectionError then ends its stream)."""
        try:
            await asyncio.wait_for(response.write(data), self.write_timeout)
        except asyncio.TimeoutError:
            self.counts["timeouts"] += 1
            raise ConnectionResetError("the client stopped reading") from None

    # ---- internals -------------------------------------------------------------------------
    def _ssl_context(self) -> Optional[ssl.SSLContext]:
        if self.tls_cert is None:
            return None
        for name, p in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
            if not Path(str(p)).is_file():
                raise self.error(f"{self.what}: {name} {p}: no such file; give a PEM file")
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(str(self.tls_cert), str(self.tls_key))
        except (ssl.SSLError, OSError) as e:
            raise self.error(
                f"{self.what}: cannot load the TLS certificate {self.tls_cert} with key "
                f"{self.tls_key}: {e}; give a PEM certificate and its matching private key"
            ) from None
        return ctx

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            return socket.create_server(
                (self.host, self.port), family=family, backlog=self.backlog, reuse_port=False
            )
        except OSError as e:
            if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
                raise self.error(
                    f"{self.what}: port {self.port} on {self.host} is in use; stop the other "
                    f"server or pick another port ({self.host}:0 picks a free one)"
                ) from None
            raise self.error(
                f"{self.what}: cannot listen on {self.host}:{self.port}: {e}; use an address "
                "of this machine such as 127.0.0.1 (0.0.0.0 for every interface)"
            ) from None

    def _run_loop(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def _astart(self, sock: socket.socket, ctx: Optional[ssl.SSLContext]) -> None:
        from aiohttp import web

        app = web.Application(middlewares=[self._guard_middleware], client_max_size=self.max_body)
        app.on_response_prepare.append(_security_headers)
        for method, path, handler, auth in self._routes:
            app.router.add_route(method, path, handler)
            if not auth:
                self._public.add((method, path))
        runner = web.AppRunner(
            app,
            handle_signals=False,
            shutdown_timeout=1.0,
            access_log=None,
            keepalive_timeout=self.idle_timeout,
            max_line_size=8190,
            max_field_size=8190,
        )
        await runner.setup()
        self._runner = runner
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Conn(runner.server(), self), sock=sock, ssl=ctx, backlog=self.backlog
        )
        self._watchdog = loop.create_task(self._watch())

    async def _astop(self, timeout: float) -> None:
        for fn in self._on_close:
            try:
                fn()
            except Exception as e:
                log.warning("%s: while closing: %s", self.what, e)
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._server is not None:
            # Stop accepting first and let the connections accepted meanwhile reach their
            # protocol (which refuses them); asyncio's Server.close() with accepts still
            # pending leaks their sockets (an assertion in Server._attach, Python <= 3.11).
            loop = asyncio.get_running_loop()
            for sock in self._server.sockets:
                try:
                    loop.remove_reader(sock.fileno())
                except (NotImplementedError, ValueError, OSError):
                    pass
            for _ in range(3):
                await asyncio.sleep(0)
            self._server.close()
        try:
            for conn in list(self._conns.values()):
                if not conn.busy:
                    conn.close()
            deadline = time.monotonic() + min(1.0, timeout)
            while any(c.busy for c in self._conns.values()) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)  # streams see `closing` and end by themselves
        finally:
            for conn in list(self._conns.values()):
                conn.abort()  # a stalled reader's buffer would never flush: cut it
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), timeout)
        await asyncio.sleep(0.05)  # connections accepted just before the close arrive
        for conn in list(self._all):
            conn.abort()
        await asyncio.sleep(0)  # their connection_lost runs before the loop stops

    def _admit(self, conn: _Conn) -> bool:
        if self.closing.is_set():  # accepted while closing: answered 503 and closed
            return False
        if len(self._conns) >= self.max_connections:
            idle = [c for c in self._conns.values() if not c.busy]
            if not idle:
                self.counts["refused"] += 1
                return False
            oldest = min(idle, key=lambda c: c.since)
            self.counts["evicted"] += 1
            self._conns.pop(oldest.transport, None)
            oldest.close()
        self._conns[conn.transport] = conn
        return True

    def _release(self, conn: _Conn) -> None:
        self._conns.pop(conn.transport, None)

    async def _watch(self) -> None:
        """Closes heads that do not arrive in time (408) and idle keep-alive connections."""
        answer = (
            b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            b"Content-Length: 46\r\n\r\n408: the request did not arrive in time\r\n\r\n\r\n"
        )
        period = min(1.0, self.request_timeout / 4, self.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self._conns.values()):
                if conn.busy:
                    continue
                if conn.partial and now - conn.since > self.request_timeout:
                    self.counts["timeouts"] += 1
                    conn.close(answer)
                elif not conn.partial and now - conn.since > self.idle_timeout:
                    conn.close()

    def authorized(self, request) -> bool:
        """Whether ``request`` carries the token (always true without one)."""
        if self.token is None:
            return True
        want = self.token.encode()
        offered = list(request.query.getall("token", []))
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            offered.append(auth[7:].strip())
        if request.headers.get("X-Edgeseg-Token"):
            offered.append(request.headers["X-Edgeseg-Token"])
        ok = False
        for t in offered:  # every offer is compared: the time does not tell which matched
            ok |= hmac.compare_digest(t.encode(), want)
        cookie = request.cookies.get(self.cookie_name, "")
        ok |= hmac.compare_digest(cookie.encode(), self.cookie_value.encode())
        return ok

    def host_allowed(self, header: Optional[str]) -> bool:
        """Whether a ``Host`` header names this server (see the module docstring)."""
        if "*" in self.allowed_hosts:
            return True
        if not header:
            return False
        host = _host_of(header)
        return (
            _is_ip(host)  # an address cannot be rebound by DNS
            or host in _LOCAL_NAMES
            or host == self.host.lower()
            or host in self.allowed_hosts
        )

    def _cookie_header(self) -> str:
        return f"{self.cookie_name}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict"

    @property
    def _guard_middleware(self):
        from aiohttp import web

        server = self

        @web.middleware
        async def guard(request, handler: Callable[[Any], Awaitable[Any]]):
            conn = server._conns.get(request.transport)
            if conn is not None:
                conn.busy += 1
                conn.partial = False
            try:
                server.counts["requests"] += 1
                if not server.host_allowed(request.headers.get("Host")):
                    server.counts["bad_host"] += 1
                    return web.Response(
                        status=421,
                        text=f"421: Host {request.headers.get('Host', '')!r} is not a name of "
                        "this server; add it to http.allowed_hosts (station file) or use the "
                        "address\n",
                    )
                route = request.match_info.route
                key = (request.method, getattr(route.resource, "canonical", ""))
                if key not in server._public and not server.authorized(request):
                    server.counts["unauthorized"] += 1
                    return web.Response(
                        status=401,
                        text="401: this server needs its token; send 'Authorization: Bearer "
                        "YOUR_TOKEN' or add ?token=YOUR_TOKEN (the live view page: open it as "
                        "/?token=YOUR_TOKEN)\n",
                        headers={"WWW-Authenticate": 'Bearer realm="edgeseg"'},
                    )
                response = await handler(request)
                if (
                    server.token is not None
                    and getattr(response, "content_type", "") == "text/html"
                    and not response.prepared
                ):
                    # the page's own requests (stream, events) then pass without the token
                    response.headers["Set-Cookie"] = server._cookie_header()
                return response
            finally:
                if conn is not None:
                    conn.busy -= 1
                    conn.since = time.monotonic()

        return guard


async def _security_headers(request, response) -> None:
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
