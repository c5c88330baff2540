"""The OPC UA server shared by the OPC UA sink and the OPC UA trigger (asyncua).

One asyncua server per endpoint and process, run in a thread of its own with its own asyncio
event loop: the sink writes variables through it (:mod:`edgeseg.sinks.opcua`), the trigger
answers its ``Trigger`` method (:mod:`edgeseg.camera.triggers`). ``OpcuaServer.acquire`` /
``release`` count the users; the last release stops it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from edgeseg.errors import SinkError

__all__ = ["NAMESPACE", "OPCUA_FORM", "OpcuaServer", "parse_opcua_endpoint"]

NAMESPACE = "urn:edgeseg"
OPCUA_FORM = "opcua:opc.tcp://HOST:PORT, e.g. opcua:opc.tcp://127.0.0.1:4840"
_START_TIMEOUT = 30.0
_CALL_TIMEOUT = 5.0


def parse_opcua_endpoint(arg: str, what: str = "sink", error: type = SinkError) -> str:
    """``opc.tcp://HOST:PORT`` (with or without the ``opcua:`` prefix), checked."""
    text = str(arg)
    url = text[len("opcua:") :] if text.startswith("opcua:") else text
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError as e:
        raise error(f"{what} 'opcua:{url}': {e}; expected {OPCUA_FORM}") from None
    if u.scheme != "opc.tcp" or not u.hostname or not port:
        raise error(f"{what} 'opcua:{url}': expected {OPCUA_FORM}")
    return f"opc.tcp://{u.hostname}:{port}"


class OpcuaServer:
    """One asyncua server per endpoint, shared by the sink and the trigger of a process
    (``acquire``/``release`` count its users; the last release stops it)."""

    _servers: dict[str, OpcuaServer] = {}
    _registry_lock = threading.Lock()

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.users = 0
        self.trigger: Any = None  # a QueueTrigger, set by the OPC UA trigger
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="edgeseg-opcua", daemon=True
        )
        self._server: Any = None
        self._ua: Any = None
        self._nodes: dict[str, Any] = {}
        self._folders: dict[str, Any] = {}
        self.idx = 0

    @classmethod
    def acquire(cls, endpoint: str) -> OpcuaServer:
        """The running server of ``endpoint``, started on first use."""
        with cls._registry_lock:
            server = cls._servers.get(endpoint)
            if server is None:
                server = cls(endpoint)
                server._start()
                cls._servers[endpoint] = server
            server.users += 1
            return server

    def release(self) -> None:
        with self._registry_lock:
            self.users -= 1
            if self.users > 0:
                return
            self._servers.pop(self.endpoint, None)
        self._stop()

    # -- lifecycle (callers' threads) ------------------------------------------------------
    def _start(self) -> None:
        try:
            import asyncua  # noqa: F401
        except ImportError:
            raise SinkError(
                f"opcua:{self.endpoint}: needs asyncua; pip install 'edgeseg[line]'"
            ) from None
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)
        u = urlsplit(self.endpoint)
        try:  # a busy port fails here in milliseconds, not after the server's slow init
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((u.hostname, u.port))
        except OSError as e:
            raise SinkError(
                f"opcua:{self.endpoint}: cannot start the OPC UA server: {e}; is the port in use "
                "or the address not on this machine?"
            ) from None
        self._thread.start()
        try:
            self.call(self._astart(), timeout=_START_TIMEOUT)
        except Exception as e:
            self._stop()
            raise SinkError(
                f"opcua:{self.endpoint}: cannot start the OPC UA server: {e}; is the port in use "
                "or the address not on this machine?"
            ) from None

    def _stop(self) -> None:
        if self._server is not None:
            try:
                self.call(self._server.stop(), timeout=_CALL_TIMEOUT)
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
            self._server = None
        if self._thread.is_alive():
            try:  # the Trigger method's waits run in the loop's default executor
                self.call(self._loop.shutdown_default_executor(), timeout=_CALL_TIMEOUT)
            except Exception:  # noqa: BLE001 - stopping anyway
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_CALL_TIMEOUT)
        if not self._thread.is_alive():
            self._loop.close()

    def call(self, coro, timeout: float = _CALL_TIMEOUT) -> Any:
        """Runs ``coro`` on the server's event loop and waits for it (at most ``timeout`` s)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=timeout)

    # -- on the server's loop ------------------------------------------------------------
    async def _astart(self) -> None:
        from asyncua import Server, ua

        self._ua = ua
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("edgeseg")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        self.idx = await server.register_namespace(NAMESPACE)
        obj = await server.nodes.objects.add_object(self.idx, "EdgeSeg")
        V = ua.VariantType
        spec = {
            "Verdict": ("", V.String),
            "Ok": (False, V.Boolean),
            "Valid": (True, V.Boolean),
            "InvalidReason": ("", V.String),
            "FrameIndex": (-1, V.Int64),
            "TriggerId": ("", V.String),
            "Reasons": ([], V.String),
            "ReasonsText": ("", V.String),
            "LatencyMs": (0.0, V.Double),
            "Frames": (0, V.Int64),
            "NgCount": (0, V.Int64),
            "Health": ("starting", V.String),
            "Stats": ("{}", V.String),
            "LastRecord": ("{}", V.String),
        }
        for name, (value, vtype) in spec.items():
            self._nodes[name] = await obj.add_variable(self.idx, name, ua.Variant(value, vtype))
        for folder in ("Counts", "AreaFraction"):
            self._folders[folder] = await obj.add_folder(self.idx, folder)
        await obj.add_method(self.idx, "Trigger", self._on_trigger, [V.String], [V.String])
        await server.start()
        self._server = server

    async def _on_trigger(self, parent, trigger_id) -> Any:
        # A status code (not an exception) is what asyncua hands back to the caller as is.
        ua = self._ua
        trigger = self.trigger
        if trigger is None:
            return ua.StatusCode(ua.StatusCodes.BadInvalidState)  # no trigger mode
        try:
            tid = trigger.fire(str(trigger_id.Value or ""), wait=True)
        except ValueError:  # an id used already, or not printable
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        except OverflowError:  # too many triggers wait already
            return ua.StatusCode(ua.StatusCodes.BadTooManyOperations)
        loop = asyncio.get_running_loop()
        record = await loop.run_in_executor(None, trigger.result, tid, trigger.timeout)
        if record is None:
            code = ua.StatusCodes.BadShutdown if trigger.closed else ua.StatusCodes.BadTimeout
            return ua.StatusCode(code)
        # imported here: edgeseg.sinks imports this module (its OPC UA sink), not the reverse
        from edgeseg.sinks.encode import encode_record

        return [ua.Variant(encode_record(record), ua.VariantType.String)]

    async def aupdate(self, values: dict, per_class: dict) -> None:
        """Writes ``values`` (name → (value, VariantType name)) and per-class folders."""
        ua = self._ua
        for name, (value, vtype) in values.items():
            await self._nodes[name].write_value(ua.Variant(value, getattr(ua.VariantType, vtype)))
        for folder, items in per_class.items():
            vtype = ua.VariantType.Int64 if folder == "Counts" else ua.VariantType.Double
            for cls_name, value in items.items():
                key = f"{folder}/{cls_name}"
                node = self._nodes.get(key)
                if node is None:
                    node = await self._folders[folder].add_variable(
                        self.idx, cls_name, ua.Variant(value, vtype)
                    )
                    self._nodes[key] = node
                else:
                    await node.write_value(ua.Variant(value, vtype))
