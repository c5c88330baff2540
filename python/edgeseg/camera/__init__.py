"""The camera loop: frame sources by URI, the pipelined capture → inference → sinks loop.

``from edgeseg.camera import CameraLoop, open_source`` (see :mod:`edgeseg.camera.sources` for
the URI forms and :mod:`edgeseg.camera.loop` for the loop). Source modules that other parts
of edgeseg add to this package (e.g. ``genicam``) register their schemes on import here.
"""

from __future__ import annotations

import importlib
import importlib.util

from edgeseg.camera import sources
from edgeseg.camera.frame import Frame, FrameDropped, Source, open_source, register_source
from edgeseg.camera.loop import CameraLoop
from edgeseg.camera.trigger import Trigger

__all__ = [
    "CameraLoop",
    "Frame",
    "FrameDropped",
    "Source",
    "Trigger",
    "open_source",
    "register_source",
    "sources",
]

# Optional source modules register their URI schemes when they are importable.
for _name in ("genicam",):
    if importlib.util.find_spec(f"edgeseg.camera.{_name}") is not None:
        try:
            importlib.import_module(f"edgeseg.camera.{_name}")
        except ImportError:  # its optional dependency is missing; it says so when used
            pass
