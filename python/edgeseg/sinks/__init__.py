"""Sinks: where each processed frame goes. ``open_sink("jsonl:out.jsonl")``.

Every module of this package registers its sink kinds on import; importing the package
imports them all (a module whose optional dependency is missing is skipped here and says
what to install when its sink is asked for).
"""

from __future__ import annotations

import importlib
import pkgutil

from edgeseg.sinks.base import LoopItem, Sink, make_record, open_sink, register_sink, sink_kinds

__all__ = ["LoopItem", "Sink", "make_record", "open_sink", "register_sink", "sink_kinds"]

for _mod in pkgutil.iter_modules(__path__):
    if _mod.name != "base" and not _mod.name.startswith("_"):
        try:
            importlib.import_module(f"{__name__}.{_mod.name}")
        except ImportError:
            pass
