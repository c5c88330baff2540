"""Sinks: where each processed frame of the camera loop goes (see :mod:`edgeseg.sinks.base`).

Importing this package registers the built-in sink kinds with :func:`open_sink`.
"""

from edgeseg.sinks import serve  # noqa: F401 - registers the "serve" kind
from edgeseg.sinks.base import LoopItem, Sink, make_record, open_sink, register_sink, sink_kinds

__all__ = ["LoopItem", "Sink", "make_record", "open_sink", "register_sink", "sink_kinds"]
