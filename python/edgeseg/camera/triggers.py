"""External triggers for trigger mode: an MQTT message, an HTTP request, an OPC UA method call.

``open_trigger(spec)`` picks one by its spec:

- ``mqtt://HOST[:PORT]/TOPIC[?reply=TOPIC&...]`` — every message on ``TOPIC`` is a trigger;
  its id is the payload's ``"id"`` (a JSON object), else the payload text, else a new UUID.
  The record goes back (QoS 1) to ``reply`` (default ``TOPIC/result``) or to the message's
  ``"reply_to"``. Auth/TLS options as for the MQTT sink (:mod:`edgeseg.sinks.mqtt`).
- ``http://HOST:PORT[/PATH]`` (default path ``/trigger``; port 0 picks a free one, see
  ``.url``; on :class:`edgeseg.server.HttpServer`, with its token, timeouts and Host check)
  — ``POST PATH`` (optional JSON body ``{"id": "..."}`` or ``?id=``) answers
  ``200`` with the frame's record once processed, ``504`` after ``timeout`` s, ``409`` for an
  id already seen, ``503`` when ``max_pending`` triggers already wait.
- ``opcua:opc.tcp://HOST:PORT`` — the method ``Objects/EdgeSeg/Trigger(TriggerId)`` of the
  OPC UA server (shared with an OPC UA sink on the same endpoint) returns the record as JSON.

The loop takes ids with ``wait`` and answers with ``done(id, record)`` (see
:class:`~edgeseg.camera.trigger.Trigger`); every record carries ``trigger_id``. A trigger
whose caller stopped waiting (HTTP/OPC UA timeout) is skipped rather than processed late.
"""

from __future__ import annotations

import asyncio
import collections
import json
import queue
import threading
import time
import uuid
from typing import Any, Optional
from urllib.parse import urlsplit

from edgeseg._mqtt import make_client, parse_mqtt_spec
from edgeseg._opcua import OpcuaServer, parse_opcua_endpoint
from edgeseg._redact import redact
from edgeseg.camera.trigger import Trigger
from edgeseg.errors import SinkError, SourceError
from edgeseg.sinks.encode import encode_record

__all__ = ["HttpTrigger", "MqttTrigger", "OpcuaTrigger", "QueueTrigger", "open_trigger"]

TRIGGER_FORMS = (
    "mqtt://HOST:PORT/TOPIC, http://HOST:PORT/PATH or opcua:opc.tcp://HOST:PORT "
    "(e.g. mqtt://127.0.0.1:1883/line1/trigger, http://127.0.0.1:8081/trigger)"
)


_MAX_TRIGGER_BODY = 64 * 1024


class _Waiter:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.record: Optional[dict] = None
        self.callbacks: list = []  # async callers: wake their event loop

    def set(self) -> None:
        self.event.set()
        for fn in self.callbacks:
            fn()


class QueueTrigger(Trigger):
    """Base of the triggers: listener threads ``fire`` ids, the loop ``wait``s for them and
    answers with ``done``; a caller may block on ``result(id, timeout)`` for the record."""

    def __init__(self, spec: str, timeout: float = 10.0, max_pending: int = 64) -> None:
        self.spec = spec
        self.timeout = float(timeout)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(max_pending)))
        self._lock = threading.Lock()
        self._waiters: dict[str, _Waiter] = {}
        self._seen: collections.OrderedDict = collections.OrderedDict()
        self.counts = {"triggers": 0, "answered": 0, "timeouts": 0, "skipped": 0, "refused": 0}
        self.closed = False

    def fire(self, trigger_id: str = "", wait: bool = False) -> str:
        """Queues a trigger and returns its id (a new UUID when ``trigger_id`` is empty).

        Raises ValueError for an id that is too long or already seen (the last 1024 ids),
        OverflowError when ``max_pending`` triggers wait already.
        """
        tid = str(trigger_id).strip() or uuid.uuid4().hex
        with self._lock:
            if len(tid) > 128 or not tid.isprintable():
                self.counts["refused"] += 1
                raise ValueError("a trigger id is at most 128 printable characters")
            if tid in self._seen:
                self.counts["refused"] += 1
                raise ValueError(f"trigger id {tid!r} was used already")
            self._seen[tid] = True
            while len(self._seen) > 1024:
                self._seen.popitem(last=False)
            if wait:
                self._waiters[tid] = _Waiter()
            try:
                self._queue.put_nowait(tid)
            except queue.Full:
                self._waiters.pop(tid, None)
                self._seen.pop(tid, None)
                self.counts["refused"] += 1
                raise OverflowError(f"{self._queue.maxsize} triggers wait already") from None
            self.counts["triggers"] += 1
        return tid

    def result(self, trigger_id: str, timeout: Optional[float] = None) -> Optional[dict]:
        """Blocks until ``done(trigger_id, ...)`` (→ the record) or ``timeout`` (→ None; the
        trigger is then skipped if the loop has not taken it yet)."""
        with self._lock:
            waiter = self._waiters.get(trigger_id)
        if waiter is None:
            return None
        waiter.event.wait(self.timeout if timeout is None else timeout)
        with self._lock:
            self._waiters.pop(trigger_id, None)
            if not waiter.event.is_set() or waiter.record is None:
                if trigger_id in self._seen:
                    self._seen[trigger_id] = "abandoned"
                self.counts["timeouts"] += 1
                return None
        return waiter.record

    async def result_async(self, trigger_id: str, timeout: Optional[float] = None):
        """:meth:`result` for a caller on an event loop: waits without holding a thread."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(None))
            except RuntimeError:  # the loop closed meanwhile
                pass

        with self._lock:
            waiter = self._waiters.get(trigger_id)
            if waiter is None:
                return None
            pending = not waiter.event.is_set()
            if pending:
                waiter.callbacks.append(wake)
        if pending:
            try:
                await asyncio.wait_for(fut, self.timeout if timeout is None else timeout)
            except asyncio.TimeoutError:
                pass
        return self.result(trigger_id, 0)

    def wait(self, timeout: Optional[float] = None) -> Optional[str]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                tid = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            with self._lock:
                if self._seen.get(tid) != "abandoned":  # its caller gave up: skip it
                    return tid
                self.counts["skipped"] += 1

    def done(self, trigger_id: str, record: dict) -> None:
        with self._lock:  # the waiter stays until result() takes it (done may come first)
            waiter = self._waiters.get(trigger_id)
            self.counts["answered"] += 1
            if waiter is not None:
                waiter.record = record
                waiter.set()
        self._answer(trigger_id, record)

    def _release_waiters(self) -> None:
        """Closing: callers still waiting get None at once (and ``closed`` is True)."""
        with self._lock:
            self.closed = True
            for waiter in self._waiters.values():
                waiter.set()

    def _answer(self, trigger_id: str, record: dict) -> None:
        """Sends the record back where the protocol needs it (MQTT reply topic)."""

    def stats(self) -> dict:
        with self._lock:
            return dict(self.counts, waiting=self._queue.qsize())


class HttpTrigger(QueueTrigger):
    """``POST /trigger`` → one frame → the record as the response (see the module docstring).

    Runs on the one HTTP server of edgeseg (:class:`edgeseg.server.HttpServer`): its own on
    the URL's address, or, with ``server``, a station's shared one at the URL's path.
    ``token``: every request needs it (``Authorization: Bearer``, ``?token=``); a non-loopback
    address without one is refused.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        max_pending: int = 64,
        token: Optional[str] = None,
        *,
        server: Any = None,
    ) -> None:
        super().__init__(url, timeout, max_pending)
        try:
            u = urlsplit(url)
            port = u.port
        except ValueError as e:
            raise SourceError(f"trigger {url!r}: {e}; expected {TRIGGER_FORMS}") from None
        if server is None and (u.scheme != "http" or not u.hostname or port is None):
            raise SourceError(f"trigger {url!r}: expected http://HOST:PORT[/PATH]")
        self.path = u.path or "/trigger"
        self._own = server is None
        if server is None:
            from edgeseg.server import HttpServer

            server = HttpServer(
                f"[{u.hostname}]:{port}" if ":" in str(u.hostname) else f"{u.hostname}:{port}",
                token,
                error=SourceError,
                what=f"trigger {redact(url)!r}",
            )
        self.server = server
        self.host, self.port = server.host, server.port
        _add_trigger_routes(server, self, self.path, fallback=self._own)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.path}"

    def open(self) -> None:
        self.closed = False
        if self._own:
            self.server.start()
            self.port = self.server.port

    def close(self) -> None:
        if self.closed:
            return
        self._release_waiters()
        if self._own:
            self.server.close()


def _add_trigger_routes(server: Any, trigger: HttpTrigger, path: str, fallback: bool) -> None:
    from aiohttp import web

    from edgeseg.server.http import read_body

    def reply(code: int, body: dict) -> web.Response:
        headers = {"Allow": "POST"} if code == 405 else None
        return web.Response(
            text=encode_record(body), status=code, headers=headers, content_type="application/json"
        )

    async def get(request) -> web.Response:
        return reply(405, {"error": f"use POST {path}"})

    async def post(request) -> web.Response:
        query = request.query
        body = await read_body(request, _MAX_TRIGGER_BODY, server.request_timeout)
        tid = query.get("id", "")
        timeout = trigger.timeout
        try:
            if body.strip():
                doc = json.loads(body)
                if not isinstance(doc, dict):
                    raise ValueError('the body must be a JSON object such as {"id": "part-1"}')
                tid = str(doc.get("id") or tid)
            if "timeout" in query:
                timeout = float(query["timeout"])
                if not 0 < timeout <= 600:
                    raise ValueError(f"timeout={query['timeout']!r}: expected 0 < seconds <= 600")
            tid = trigger.fire(tid, wait=True)
        except OverflowError as e:
            return reply(503, {"error": f"busy: {e}"})
        except ValueError as e:
            code = 409 if "used already" in str(e) else 400
            return reply(code, {"error": str(e)})
        record = await trigger.result_async(tid, timeout)
        if record is None and trigger.closed:
            return reply(503, {"error": "trigger mode stopped", "id": tid})
        if record is None:
            return reply(504, {"error": f"no result within {timeout:g} s", "id": tid})
        return reply(200, record)

    server.add_route("GET", path, get)
    server.add_route("POST", path, post)
    if fallback:

        async def missing(request) -> web.Response:
            return reply(404, {"error": f"no such path; POST {path}"})

        server.add_route("*", "/{tail:.*}", missing)


class MqttTrigger(QueueTrigger):
    """A trigger per MQTT message; the record goes back to a reply topic."""

    _EXTRA = ("reply", "timeout", "max_pending")

    def __init__(self, spec: str, **options: Any) -> None:
        ep, extra = parse_mqtt_spec(spec, options, self._EXTRA, what="trigger", error=SourceError)
        if "{" in ep.topic:
            raise SourceError(f"trigger {spec!r}: the trigger topic cannot be a template")
        super().__init__(
            ep.spec, float(extra.get("timeout", 10.0)), int(extra.get("max_pending", 64))
        )
        self.endpoint = ep
        self.reply_topic = str(extra.get("reply") or f"{ep.topic.rstrip('/#+')}/result")
        self._reply_to: dict[str, str] = {}
        self._client = None
        self.connected = threading.Event()
        self.last_error: Optional[str] = None

    def open(self) -> None:
        if self._client is not None:
            return
        self.closed = False
        client = make_client(self.endpoint)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = lambda *a: self.connected.clear()
        client.on_message = self._on_message
        client.connect_async(self.endpoint.host, self.endpoint.port, self.endpoint.keepalive)
        client.loop_start()  # an unreachable broker is retried in the background
        self._client = client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker {self.endpoint.address} refused: {reason_code}"
            return
        client.subscribe(self.endpoint.topic, qos=1)
        self.connected.set()

    def stats(self) -> dict:
        out = super().stats()
        out["connected"] = self.connected.is_set()
        out["last_error"] = self.last_error
        return out

    def _on_connect_fail(self, client, userdata) -> None:
        self.last_error = f"cannot reach the broker at {self.endpoint.address}; retrying"

    def _on_message(self, client, userdata, msg) -> None:
        text = bytes(msg.payload).decode("utf-8", errors="replace").strip()
        tid, reply_to = "", None
        if text.startswith("{"):
            try:
                doc = json.loads(text)
                tid, reply_to = str(doc.get("id") or ""), doc.get("reply_to")
            except (ValueError, AttributeError):
                tid = ""
        else:
            tid = text
        try:
            tid = self.fire(tid)
        except (ValueError, OverflowError):
            return  # counted as refused; a redelivered message repeats its id
        if reply_to:
            with self._lock:
                self._reply_to[tid] = str(reply_to)

    def _answer(self, trigger_id: str, record: dict) -> None:
        with self._lock:
            topic = self._reply_to.pop(trigger_id, self.reply_topic)
        client = self._client
        if client is not None:
            client.publish(topic, encode_record(record), qos=1)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._release_waiters()
        client.disconnect()
        client.loop_stop()


class OpcuaTrigger(QueueTrigger):
    """The ``Trigger`` method of the OPC UA server on the endpoint (shared with the sink)."""

    def __init__(self, arg: str, timeout: float = 10.0, max_pending: int = 64) -> None:
        self.endpoint = parse_opcua_endpoint(arg, what="trigger", error=SourceError)
        super().__init__(f"opcua:{self.endpoint}", timeout, max_pending)
        self._server: Any = None

    def open(self) -> None:
        if self._server is not None:
            return
        try:
            server = OpcuaServer.acquire(self.endpoint)
        except SinkError as e:
            raise SourceError(f"trigger {self.spec!r}: {e}") from None
        if server.trigger is not None:
            server.release()
            raise SourceError(f"trigger {self.spec!r}: the server has a trigger already")
        self.closed = False
        server.trigger = self
        self._server = server

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._release_waiters()
            server.trigger = None
            server.release()


def open_trigger(spec, **options: Any) -> Trigger:
    """The (unopened) trigger for ``spec`` (see the module docstring for the forms)."""
    if isinstance(spec, Trigger):
        return spec
    text = str(spec)
    scheme = text.split(":", 1)[0].lower()
    if scheme in ("mqtt", "mqtts"):
        return MqttTrigger(text, **options)
    if scheme == "http":
        return HttpTrigger(text, **options)
    if scheme == "opcua":
        return OpcuaTrigger(text[len("opcua:") :], **options)
    raise SourceError(
        f"trigger {redact(text)!r}: unknown kind {scheme!r}; expected {TRIGGER_FORMS}"
    )
