"""MQTT client setup shared by the MQTT sink and the MQTT trigger (paho-mqtt 2.x).

One parser of ``mqtt[s]://[USER:PASS@]HOST[:PORT]/TOPIC[?OPTIONS]`` specs and one client
factory, so auth, TLS, the last will and the reconnect behaviour are the same everywhere.
Options both accept: ``username``, ``password``, ``ca``/``cert``/``key`` (PEM files; any of
them turns TLS on), ``tls=1``, ``insecure=1`` (no host name check), ``client_id``,
``keepalive`` (s), ``qos``.

Reconnecting: paho retries a lost or refused connection in its network thread; the delay
between tries starts at :data:`RECONNECT_MIN_S` and doubles up to :data:`RECONNECT_MAX_S`,
so a broker that comes back is reconnected to within about half a second (a try to a host
that is down costs one refused TCP connection).
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from edgeseg._redact import redact
from edgeseg.errors import SinkError

__all__ = [
    "MQTT_FORM",
    "RECONNECT_MAX_S",
    "RECONNECT_MIN_S",
    "MqttEndpoint",
    "make_client",
    "parse_mqtt_spec",
]

MQTT_FORM = (
    "mqtt://HOST[:PORT]/TOPIC (mqtts:// for TLS), options as a query string, e.g. "
    "mqtt://127.0.0.1:1883/line1/{verdict}?username=U&password=P&ca=ca.pem&cert=c.pem&key=k.pem"
)
#: Reconnect delays (s): the first retry after this, doubling up to RECONNECT_MAX_S.
RECONNECT_MIN_S = 0.25
RECONNECT_MAX_S = 0.5

_COMMON = ("username", "password", "ca", "cert", "key", "tls", "insecure", "client_id",
           "keepalive", "qos")  # fmt: skip
_TRUE = ("1", "true", "yes", "on")


@dataclass
class MqttEndpoint:
    """A parsed MQTT spec: where to connect, how, and the topic (template)."""

    spec: str
    host: str
    port: int
    topic: str
    tls: bool = False
    ca: Optional[str] = None
    cert: Optional[str] = None
    key: Optional[str] = None
    insecure: bool = False
    username: Optional[str] = None
    password: Optional[str] = None
    client_id: str = ""
    keepalive: int = 30
    qos: int = 1
    what: str = "sink"  # how messages name the user of the endpoint: "sink" or "trigger"
    error: type = SinkError

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_mqtt_spec(
    spec: str,
    options: dict,
    extra: tuple = (),
    what: str = "sink",
    error: type = SinkError,
) -> tuple[MqttEndpoint, dict]:
    """Parses ``mqtt[s]://...`` plus keyword ``options`` (which win over the query string).

    Returns the endpoint and the remaining options among ``extra`` (the caller's own keys);
    any other key raises ``error`` (naming the ``what``, e.g. ``sink 'mqtt://…'``) listing
    the known ones.
    """
    text = str(spec)
    shown = redact(text)
    head = f"{what} {shown!r}"
    try:
        u = urlsplit(text)
        port = u.port
    except ValueError as e:
        raise error(f"{head}: {e}; expected {MQTT_FORM}") from None
    if "#" in text:
        raise error(
            f"{head}: '#' (an MQTT wildcard, or a URL fragment) is not allowed here; "
            f"expected {MQTT_FORM}"
        )
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        raise error(f"{head}: no broker host; expected {MQTT_FORM}")
    topic = unquote(u.path.lstrip("/"))
    if not topic:
        raise error(f"{head}: no topic after the host; expected {MQTT_FORM}")
    merged: dict[str, Any] = dict(parse_qsl(u.query, keep_blank_values=True))
    merged.update({k: v for k, v in options.items() if v is not None})
    unknown = sorted(set(merged) - set(_COMMON) - set(extra))
    if unknown:
        raise error(f"{head}: unknown option(s) {unknown}; known: {sorted(_COMMON + extra)}")
    ep = MqttEndpoint(spec=shown, host=u.hostname, port=port or 0, topic=topic)
    ep.what, ep.error = what, error
    ep.username = merged.get("username") or (unquote(u.username) if u.username else None)
    ep.password = merged.get("password") or (unquote(u.password) if u.password else None)
    for name in ("ca", "cert", "key"):
        path = merged.get(name)
        if path:
            if not Path(path).is_file():
                raise error(f"{head}: {name}={path!r} is not a file; give a PEM file")
            setattr(ep, name, str(path))
    if bool(ep.cert) != bool(ep.key):
        raise error(f"{head}: a client certificate needs both cert= and key=")
    ep.tls = u.scheme == "mqtts" or str(merged.get("tls", "")).lower() in _TRUE or bool(ep.ca)
    ep.tls = ep.tls or bool(ep.cert)
    ep.insecure = str(merged.get("insecure", "")).lower() in _TRUE
    ep.port = ep.port or (8883 if ep.tls else 1883)
    try:
        ep.keepalive = int(merged.get("keepalive", 30))
        ep.qos = int(merged.get("qos", 1))
    except (TypeError, ValueError):
        raise error(f"{head}: keepalive and qos must be integers") from None
    if ep.qos not in (0, 1, 2):
        raise error(f"{head}: qos={ep.qos}; expected 0, 1 or 2")
    ep.client_id = str(
        merged.get("client_id")
        or f"edgeseg-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    )
    return ep, {k: merged[k] for k in extra if k in merged}


def make_client(ep: MqttEndpoint, will: Optional[tuple[str, str]] = None, clean: bool = True):
    """A paho-mqtt 2.x client for ``ep`` (auth, TLS, last will, reconnect delays set), not
    yet connected. Raises ``ep.error`` when paho-mqtt is missing or the TLS files are
    unusable."""
    head = f"{ep.what} {ep.spec!r}"
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ep.error(f"{head}: needs paho-mqtt 2.x; pip install 'edgeseg[line]'") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise ep.error(f"{head}: needs paho-mqtt >= 2.0; pip install -U paho-mqtt")
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=ep.client_id,
        clean_session=clean,
        protocol=mqtt.MQTTv311,
    )
    if ep.username:
        client.username_pw_set(ep.username, ep.password)
    if ep.tls:
        try:
            client.tls_set(ca_certs=ep.ca, certfile=ep.cert, keyfile=ep.key)
        except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
            raise ep.error(f"{head}: cannot use the TLS files: {e}") from None
        if ep.insecure:
            client.tls_insecure_set(True)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    # paho takes seconds as numbers (its type hints say int; fractions work and are needed)
    client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
    return client
