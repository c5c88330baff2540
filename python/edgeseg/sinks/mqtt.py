"""MQTT sink: every record to a broker (QoS 1) through an on-disk outbox (paho-mqtt 2.x).

Spec: ``mqtt://[USER:PASS@]HOST[:PORT]/TOPIC[?OPTIONS]`` (``mqtts://`` for TLS, port 8883 by
default). ``TOPIC`` may be a template over the record's keys, e.g. ``line1/{verdict}`` →
``line1/NG``. Options (query string or keyword arguments): ``username``, ``password``,
``ca``/``cert``/``key`` (PEM files; any of them turns TLS on), ``tls=1``, ``insecure=1`` (no
host name check), ``client_id``, ``keepalive`` (s), ``qos`` (default 1; 0 can lose records),
``retain``, ``status_topic`` (default: the topic's static prefix + ``/status``;
``online``/``offline``, retained, ``offline`` also as the last will), ``outbox`` (folder or
``.sqlite3`` file), ``outbox_max_bytes``, ``outbox_sync``, ``close_timeout`` (how long
``close`` drains the outbox unless the loop gives a ``drain_timeout``; default 10 s),
``window`` (records in flight, default 20). Spec parsing, TLS and reconnecting (within about
half a second of the broker coming back) are shared with the MQTT trigger
(:mod:`edgeseg._mqtt`).

The payload is the per-frame record (:func:`~edgeseg.sinks.base.make_record`) plus a unique
``id``; delivery is at-least-once in order (see :mod:`edgeseg.sinks.outbox`). A broker that
is down at start is not an error: records wait in the outbox, ``stats()`` says
``connected: False`` and why, and they go out in order once it is reachable;
``delivery_stats()`` counts them as ``queued`` until the broker acknowledged them.
"""

from __future__ import annotations

import collections
import string
import threading
from typing import Any

from edgeseg._mqtt import MQTT_FORM, MqttEndpoint, make_client, parse_mqtt_spec
from edgeseg.errors import SinkError
from edgeseg.sinks.base import register_sink
from edgeseg.sinks.delivery import OutboxSink
from edgeseg.sinks.outbox import Outbox

__all__ = ["MQTT_FORM", "MqttEndpoint", "MqttSink", "make_client", "parse_mqtt_spec"]

_TRUE = ("1", "true", "yes", "on")


class _TopicTemplate:
    """``line1/{verdict}`` → ``line1/NG``; fields are record keys (None → ``none``)."""

    def __init__(self, template: str, spec: str) -> None:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as e:
            raise SinkError(f"sink {spec!r}: topic template {template!r}: {e}") from None
        for f in fields:
            if not f.isidentifier():
                raise SinkError(
                    f"sink {spec!r}: topic template field {{{f}}} must be a record key such as "
                    "{verdict}, {frame} or {trigger_id}"
                )
        if "+" in template or "#" in template:
            raise SinkError(f"sink {spec!r}: a topic to publish to cannot hold + or #")
        self.template = template
        self.static_prefix = template.split("{", 1)[0].rstrip("/") or "edgeseg"

    def render(self, record: dict) -> str:
        class _Values(dict):
            def __missing__(self, key):
                return "none"

        values = _Values(
            {
                k: ("none" if v is None else str(v).replace("+", "_").replace("#", "_"))
                for k, v in record.items()
            }  # fmt: skip
        )
        return self.template.format_map(values)


class MqttSink(OutboxSink):
    """Publishes every record to an MQTT broker (see the module docstring)."""

    kind = "mqtt"
    _EXTRA = ("status_topic", "retain", "outbox", "outbox_max_bytes", "outbox_sync",
              "close_timeout", "window")  # fmt: skip

    def __init__(self, spec: str, **options: Any) -> None:
        ep, extra = parse_mqtt_spec(spec, options, self._EXTRA)
        self.endpoint = ep
        self._topic = _TopicTemplate(ep.topic, ep.spec)
        self.status_topic = str(extra.get("status_topic") or f"{self._topic.static_prefix}/status")
        self.retain = str(extra.get("retain", "")).lower() in _TRUE
        try:
            max_bytes = extra.get("outbox_max_bytes")
            super().__init__(
                spec,
                f"{ep.host}:{ep.port}/{ep.topic}",
                outbox=extra.get("outbox"),
                outbox_max_bytes=None if max_bytes is None else int(max_bytes),
                outbox_sync=str(extra.get("outbox_sync", "normal")),
                close_timeout=float(extra.get("close_timeout", 10.0)),
            )
            self._window = max(1, int(extra.get("window", 20)))
        except (TypeError, ValueError) as e:
            raise SinkError(f"sink {ep.spec!r}: bad option value: {e}") from None
        self._client = None
        self._connected = threading.Event()
        self._refused = False
        self._inflight: collections.deque = collections.deque()
        self._last_sent = 0

    def _topic_for(self, record: dict) -> str:
        return self._topic.render(record)

    def _start(self) -> None:
        client = make_client(self.endpoint, will=(self.status_topic, "offline"))
        client.max_inflight_messages_set(self._window)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = lambda *a: self._wake.set()
        self._client = client
        self._inflight.clear()
        self._last_sent = 0
        try:
            client.connect_async(self.endpoint.host, self.endpoint.port, self.endpoint.keepalive)
        except (OSError, ValueError) as e:
            raise SinkError(f"sink {self.label!r}: cannot connect: {e}") from None
        client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self._refused = True
            self._count(None, error=f"broker {self.endpoint.address} refused: {reason_code}")
            return
        self._connected.set()
        self._count("connects")
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self._wake.set()

    def _on_connect_fail(self, client, userdata) -> None:
        self._count(
            None,
            error=f"cannot reach the broker at {self.endpoint.address}; results wait in the "
            f"outbox {self.outbox_path}",
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        refused, self._refused = self._refused, False
        if self._stop.is_set() or refused:  # a refusal keeps its own message
            return
        if was_connected:
            self._count(None, error=f"disconnected from {self.endpoint.address}: {reason_code}")
        else:  # e.g. a TLS listener that wants a client certificate
            self._count(
                None,
                error=f"the broker at {self.endpoint.address} closed the connection before "
                f"accepting it ({reason_code}); check TLS (ca/cert/key), the port and the "
                "credentials",
            )

    def _deliver(self, outbox: Outbox) -> None:
        while self._inflight:
            seq, info = self._inflight[0]
            try:
                if not info.is_published():
                    break
            except (RuntimeError, ValueError):  # paho gave up on it: send again from here
                self._inflight.clear()
                self._last_sent = seq - 1
                break
            self._inflight.popleft()
            self._ack(outbox, seq)
        if self._connected.is_set() and len(self._inflight) < self._window:
            after = self._inflight[-1][0] if self._inflight else self._last_sent
            for e in outbox.peek(self._window - len(self._inflight), after=after):
                try:
                    info = self._client.publish(
                        e.topic, e.payload, qos=self.endpoint.qos, retain=self.retain
                    )
                except ValueError as err:  # a topic the broker can never take
                    self._reject(
                        outbox, e.seq, f"topic {e.topic!r}: {err}", f"rejected record {e.id}: {err}"
                    )
                    continue
                if int(info.rc) not in (0, -1):  # not MQTT_ERR_SUCCESS/AGAIN: the link dropped
                    break  # the record stays in the outbox; it goes again after reconnecting
                self._inflight.append((e.seq, info))
                self._last_sent = e.seq
        self._wake.wait(0.2)
        self._wake.clear()

    def _stop_io(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        if self._connected.is_set():
            info = client.publish(self.status_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass
            client.disconnect()
        client.loop_stop()
        self._connected.clear()

    def stats(self) -> dict:
        out = super().stats()
        out["connected"] = self._connected.is_set()
        out["broker"] = self.endpoint.address
        if out["connected"]:
            out["status"] = f"connected to {self.endpoint.address}"
        else:
            out["status"] = f"not connected ({out['last_error'] or 'connecting'})"
        return out


def _factory(spec: str, **options: Any) -> MqttSink:
    return MqttSink(spec, **options)


register_sink("mqtt", _factory)
register_sink("mqtts", _factory)
