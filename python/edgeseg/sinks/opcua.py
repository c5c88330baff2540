"""OPC UA server sink: the latest verdict, counts and health as variables a PLC or SCADA reads.

Spec: ``opcua:opc.tcp://HOST:PORT`` (e.g. ``opcua:opc.tcp://0.0.0.0:4840``). The server
(asyncua, run in a thread of its own with its own asyncio event loop) publishes, under
``Objects/EdgeSeg`` in namespace ``urn:edgeseg``:

``Verdict`` (String "OK"/"NG"/""), ``Ok`` (Boolean), ``Valid`` (Boolean: False when the
model's output was not finite; never with ``Ok``), ``InvalidReason`` (String, "" when valid),
``FrameIndex`` (Int64), ``TriggerId``
(String), ``Reasons`` (String array), ``ReasonsText`` (String, "; "-joined), ``LatencyMs``
(Double), ``Frames`` / ``NgCount`` (Int64, since start), ``Health`` (String: ``starting``,
``ok``, ``stopped``), ``Stats`` (String, the loop's stats as JSON), ``LastRecord`` (String,
the record as JSON), and per class ``Counts/<class>`` (Int64 pixels) and
``AreaFraction/<class>`` (Double); plus the method ``Trigger(TriggerId: String) -> Record:
String`` used in trigger mode (``--trigger opcua:...`` on the same endpoint shares the
server; see :mod:`edgeseg.camera.triggers`).

The endpoint runs without OPC UA security (no certificates, anonymous access): keep it on the
machine network.
"""

from __future__ import annotations

from typing import Any, Optional

from edgeseg._opcua import NAMESPACE, OpcuaServer, parse_opcua_endpoint
from edgeseg.errors import SinkError
from edgeseg.sinks.base import LoopItem, Sink, register_sink
from edgeseg.sinks.encode import encode_record

__all__ = ["NAMESPACE", "OpcuaServer", "OpcuaSink", "parse_opcua_endpoint"]


class OpcuaSink(Sink):
    """Publishes the latest record as OPC UA variables (see the module docstring)."""

    def __init__(self, arg: str, **options: Any) -> None:
        if options:
            raise SinkError(f"sink 'opcua:{arg}': unknown option(s) {sorted(options)}; none known")
        self.endpoint = parse_opcua_endpoint(arg)
        self.spec = f"opcua:{self.endpoint}"
        self._server: Optional[OpcuaServer] = None
        self._frames = 0
        self._ng = 0
        self._failed = 0
        self._last_error: Optional[str] = None

    def open(self) -> None:
        if self._server is None:
            self._server = OpcuaServer.acquire(self.endpoint)

    def write(self, item: LoopItem) -> None:
        if self._server is None:
            raise SinkError(f"sink {self.spec!r}: write() before open()")
        rec = item.record
        self._frames += 1
        self._ng += int(rec.get("verdict") == "NG")
        reasons = [str(r) for r in rec.get("reasons") or []]
        values = {
            "Verdict": (rec.get("verdict") or "", "String"),
            "Ok": (rec.get("verdict") == "OK" and rec.get("valid") is not False, "Boolean"),
            "Valid": (rec.get("valid") is not False, "Boolean"),
            "InvalidReason": (str(rec.get("invalid_reason") or ""), "String"),
            "FrameIndex": (int(rec.get("frame", -1)), "Int64"),
            "TriggerId": (str(rec.get("trigger_id") or ""), "String"),
            "Reasons": (reasons, "String"),
            "ReasonsText": ("; ".join(reasons), "String"),
            "LatencyMs": (float(rec.get("latency_ms", 0.0)), "Double"),
            "Frames": (self._frames, "Int64"),
            "NgCount": (self._ng, "Int64"),
            "Health": ("ok", "String"),
            "Stats": (encode_record(item.stats), "String"),
            "LastRecord": (encode_record(rec), "String"),
        }
        per_class = {
            "Counts": {k: int(v) for k, v in (rec.get("counts") or {}).items()},
            "AreaFraction": {k: float(v) for k, v in (rec.get("area_fraction") or {}).items()},
        }
        try:
            self._server.call(self._server.aupdate(values, per_class))
        except Exception as e:
            self._failed += 1
            self._last_error = f"{type(e).__name__}: {e}"
            raise SinkError(f"sink {self.spec!r}: cannot update the variables: {e}") from None

    def close(self, drain_timeout: Optional[float] = None) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.call(server.aupdate({"Health": ("stopped", "String")}, {}))
        except Exception:  # noqa: BLE001 - the server goes away anyway
            pass
        server.release()

    def stats(self) -> dict:
        return {
            "written": self._frames,
            "ng": self._ng,
            "failed": self._failed,
            "last_error": self._last_error,
            "endpoint": self.endpoint,
        }


register_sink("opcua", lambda arg, **options: OpcuaSink(arg, **options))
