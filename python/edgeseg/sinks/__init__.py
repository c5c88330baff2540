"""Sinks: where each processed frame of the camera loop goes (see :mod:`edgeseg.sinks.base`).

Importing this package registers the built-in sink kinds with :func:`open_sink` (paho-mqtt
and asyncua are imported only when an MQTT or OPC UA sink opens).
"""

from edgeseg.sinks import mqtt, opcua, serve, webhook  # noqa: F401 - register their kinds
from edgeseg.sinks.base import LoopItem, Sink, make_record, open_sink, register_sink, sink_kinds

__all__ = ["LoopItem", "Sink", "make_record", "open_sink", "register_sink", "sink_kinds"]
