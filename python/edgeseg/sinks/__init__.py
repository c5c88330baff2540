"""Sinks: where processed frames go. Importing this package registers the built-in kinds
(their heavy dependencies, paho-mqtt and asyncua, are imported only when a sink opens)."""

from edgeseg.sinks import mqtt, opcua, webhook  # noqa: F401 - registers mqtt/webhook/opcua
